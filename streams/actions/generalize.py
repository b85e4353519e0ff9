"""``generalize``: publish a coarser value than the source holds.

- ``to: status_class``: 404 -> ``"4xx"``.
- ``to: country | region | continent`` on a geo field: publish that level instead
  (``{from: geo.city, action: generalize, to: country}``). The finer value is never
  read, so it cannot leak. Analytics destinations refuse ``to: region`` (rule 4: a
  region per event is published with no k gate) unless the rule says ``unsafe``.
- ``bins: [100, 1000]`` on a number: ``"<100"``, ``"100-1000"``, ``">=1000"``.

``unsafe: true`` lets a rule read a source its ``to`` should not (:data:`READS`: a
finer geo level, the status class of a byte count), never one it cannot apply to
(:data:`APPLIES`: bins of text, a geo level of the IP), nor ``to: bins`` without bins.

>>> SPEC.build({"to": "status_class", "bins": []}, BuildContext())(404)
'4xx'
>>> f = SPEC.build({"to": "bins", "bins": [100, 1000]}, BuildContext())
>>> f(5), f(100), f(5000), f(None)
('<100', '100-1000', '>=1000', None)
>>> SPEC.retarget({"to": "country", "bins": []}, "geo.city")
'geo.country'
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from typing import Any, Final

from streams.actions.base import ActionSpec, BuildContext, Option, Transform
from streams.fields import SOURCES

_GEO_LEVELS = ("continent", "country", "region", "city")
_GEO_SOURCES = frozenset(f"geo.{level}" for level in _GEO_LEVELS)
_NUMERIC_SOURCES = frozenset({"response.bytes", "response.duration_ms", "response.status"})


def _status_class(status: int | None) -> str | None:
    return None if status is None else f"{status // 100}xx"


def _identity(value: Any) -> Any:
    return value


def _labels(edges: list[float]) -> list[str]:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    labels = [f"<{fmt(edges[0])}"]
    labels += [f"{fmt(a)}-{fmt(b)}" for a, b in itertools.pairwise(edges)]
    labels.append(f">={fmt(edges[-1])}")
    return labels


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    to = options["to"]
    if to == "status_class":
        return _status_class
    if to == "bins":
        edges = sorted(float(x) for x in options["bins"])
        labels = _labels(edges)
        right = bisect.bisect_right

        def binned(value: float | None) -> str | None:
            return None if value is None else labels[right(edges, value)]

        return binned
    return _identity  # geo levels: the compiler already reads the coarser field


def retarget(options: Mapping[str, Any], source: str) -> str:
    if options["to"] in _GEO_LEVELS and source in _GEO_SOURCES:
        return f"geo.{options['to']}"
    return source


#: The sources each ``to`` reads: a geo level reads that level or a finer one, bins a
#: number, status_class the status. Of bytes or durations status_class would keep all
#: but the last two digits (an audit).
READS: Final[Mapping[str, frozenset[str]]] = {
    "status_class": frozenset({"response.status"}),
    **{
        level: frozenset(f"geo.{finer}" for finer in _GEO_LEVELS[i:])
        for i, level in enumerate(_GEO_LEVELS[:-1])
    },
    "bins": _NUMERIC_SOURCES,
}


def _of_kind(*kinds: str) -> frozenset[str]:
    return frozenset(name for name, source in SOURCES.items() if source.kind in kinds)


#: The sources each ``to`` can apply to at all, even with ``unsafe: true``: a geo level
#: a geo field (one finer than the source only with unsafe), status_class an integer,
#: bins a number. Of any other source the rule raised for every value (bins of text:
#: TypeError), or published it unchanged (a geo level of client.ip).
APPLIES: Final[Mapping[str, frozenset[str]]] = {
    "status_class": _of_kind("int"),
    **{level: _GEO_SOURCES for level in _GEO_LEVELS[:-1]},
    "bins": _of_kind("int", "float"),
}


def refuse(options: Mapping[str, Any], context: BuildContext) -> list[str]:
    """What no ``unsafe: true`` allows: a ``to`` of a source it cannot apply to
    (:data:`APPLIES`), and ``to: bins`` without bins (an IndexError at build)."""
    to, sources = options["to"], context.sources
    errors = []
    if to == "bins" and not options["bins"]:
        errors.append("to: bins needs a non-empty 'bins' list")
    applies = APPLIES.get(to)  # None: a `to` the option's choices refuse
    bad = [s for s in sources if applies is not None and s not in applies]
    if bad:
        kind = SOURCES[bad[0]].kind if bad[0] in SOURCES else "unknown"
        needs = {"status_class": "an integer field such as response.status",
                 "bins": "a numeric field (int or float)"}.get(to, "a geo.* field")  # fmt: skip
        errors.append(
            f"to: {to} cannot apply to {bad[0]} ({kind}): it needs {needs} "
            "(unsafe: true does not change what a rule can read)"
        )
    return errors


def validate(options: Mapping[str, Any], context: BuildContext) -> list[str]:
    """Sources ``to`` applies to but should not read (:data:`READS`): allowed with
    ``unsafe: true``, with a warning."""
    to, sources = options["to"], context.sources
    reads = READS.get(to)  # None: a `to` the option's choices refuse
    bad = [s for s in sources if reads is not None and s not in reads]
    if not bad:
        return []
    if to in _GEO_LEVELS:
        return [f"to: {to} is finer than the source {bad[0]}: not a generalization"]
    if to == "bins":
        return [f"to: {to} needs a numeric response.* source, not {bad[0]}"]
    return [f"to: {to} needs response.status, not {bad[0]}"]


def _check_bins(value: list[Any]) -> str | None:
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        return "must be a list of numbers"
    return None


SPEC = ActionSpec(
    name="generalize",
    doc="Publish a coarser value: status class, a geo level, or a numeric bin.",
    options=(
        Option(
            "to",
            str,
            "bins",
            "status_class, continent, country, region or bins",
            choices=("status_class", "continent", "country", "region", "bins"),
        ),
        Option(
            "bins",
            list,
            [],
            "bin edges for to: bins (at least one)",
            check=_check_bins,
            json={"items": {"type": "number"}},
        ),
    ),
    build=build,
    validate=validate,
    retarget=retarget,
    reads_by=("to", READS),
    applies_by=APPLIES,
    refuse=refuse,
)
