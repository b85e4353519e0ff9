"""What every field action declares: its options, which sources it accepts, how to build it.

An action module defines one :class:`ActionSpec` named ``SPEC``. ``streams.rules``
validates a field rule against ``SPEC.options`` (unknown options with "did you mean",
wrong types, bad values: all reported at once, with their location), then calls
``SPEC.build(options, context)`` once at startup. ``build`` returns a plain
function ``value -> value`` that the pipeline calls per record: no checking in there.

Values an action receives: for a single ``from`` field, that field's value (``None``
when the line lacks it); for a list of ``from`` fields, a tuple of their values.
Values an action returns: ``str``, ``int``, ``float``, ``bool`` or ``None``.

>>> opt = Option("bucket", str, default="5m", doc="bucket width")
>>> opt.required
False
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

Transform = Callable[[Any], Any]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Option:
    """One option of an action.

    ``kind`` is the Python type the YAML/TOML value must have (``list`` means a list of
    strings). ``check`` validates a well-typed value and returns an error message or
    ``None``; it runs at startup only. ``json`` states what ``check`` refuses in JSON
    Schema keywords (``minimum``, ``pattern``, ``items``...) for the schema published
    for editors (``logfog schema``), where it can.
    """

    name: str
    kind: type
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    json: Mapping[str, Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


#: The internal destination feeding the aggregator (never published; its topic is as
#: sensitive as the raw one): the only one an action may give client-level values.
INTERNAL_DESTINATION: Final = "_aggregate"


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What an action may need at build time besides its own options.

    ``destination_kind`` is ``"operations"`` or ``"analytics"`` (privacy defaults
    differ). ``site`` is the configured site name (pseudonym scope, same-site test).
    ``keyring`` is the pseudonym key source (``streams.keys``), ``None`` if no
    destination pseudonymizes. ``cache_size`` bounds each per-action memo.
    ``counters`` collects per-value events worth a summary line (pseudonyms left
    empty), ``None`` when nobody reads them.
    """

    destination: str = "ops"
    destination_kind: str = "operations"
    site: str = ""
    keyring: Any = None
    cache_size: int = 65536
    unsafe: bool = False
    sources: tuple[str, ...] = ()
    counters: Counter[str] | None = None


#: A rule's typed options and the context to build it in.
RuleToBuild = tuple[Mapping[str, Any], BuildContext]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Declaration of one field action.

    ``accepts`` names the source fields the action may read (``None``: any).
    ``multi`` is True if ``from`` may be a list of fields. ``validate`` gets the typed
    options and the source list and returns extra error messages (cross-option checks,
    privacy floors), run at startup.
    """

    name: str
    doc: str
    options: tuple[Option, ...]
    build: Callable[[Mapping[str, Any], BuildContext], Transform]
    accepts: frozenset[str] | None = None
    multi: bool = False
    validate: Callable[[Mapping[str, Any], BuildContext], list[str]] | None = None
    examples: tuple[tuple[dict[str, Any], Any, Any], ...] = field(default=())
    #: Source fields read before the ``from`` fields (pseudonymize: time and host).
    implicit_sources: tuple[str, ...] = ()
    #: Maps (options, from-field) to the field actually read (generalize city -> country).
    retarget: Callable[[Mapping[str, Any], str], str] | None = None
    #: ``(option, {value: sources})``: the sources the action can read for each value of
    #: one of its options (generalize's ``to``), when ``accepts`` cannot say it alone.
    #: ``validate`` refuses the others unless ``unsafe: true``; the JSON Schema and the
    #: README's reference say the same.
    reads_by: tuple[str, Mapping[Any, frozenset[str]]] | None = None
    #: ``{value: sources}`` for the same option: the sources each value can apply to at
    #: all (a superset of ``reads_by``'s), ``unsafe`` or not: ``refuse`` refuses the
    #: others, and so do the JSON Schema and the README's reference.
    applies_by: Mapping[Any, frozenset[str]] | None = None
    #: Like ``validate``, for problems ``unsafe: true`` does not override: ``unsafe``
    #: loosens privacy floors, not what an option can apply to (such a rule raised at
    #: build, or for every value).
    refuse: Callable[[Mapping[str, Any], BuildContext], list[str]] | None = None
    #: Builds several rules of this action that read the same sources as one transform
    #: returning their values in order, sharing work per line (pseudonyms: one key and
    #: one memo lookup for the product's visitor and the aggregation input's).
    build_group: Callable[[Sequence[RuleToBuild]], Callable[[Any], tuple[Any, ...]]] | None = None
