"""What to aggregate: one :class:`AggregateSpec` per published output and window size.

A spec names the dimensions (one breakdown each: a row per value), the measures each
row carries and the privacy knobs: ``k`` (minimum distinct visitors per published cell,
privacy rule 9), the per-visitor contribution cap and the per-dimension cardinality
bound that keeps memory proportional to window size rather than stream length.

The special dimension ``place`` is the (country, region, city) hierarchy whose
precision adapts to ``k`` in the merger (privacy rule 4).

>>> [(s.name, s.window_label) for s in DEFAULT_SPECS]
[('ops', '5m'), ('product', '1h'), ('product', '1d')]
>>> AggregateSpec("x", 300, ("route",), ("requests", "median"))
Traceback (most recent call last):
...
ValueError: unknown measures ['median'] (see MEASURES)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from streams.durations import format_duration

#: Measures a spec may ask for. ``requests`` and ``visitors`` are always computed
#: (the gate needs visitors) and always published.
MEASURES = ("requests", "visitors", "bytes", "p50_ms", "p95_ms", "p99_ms", "bot_share")
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}

#: The cross-dimension geo cell: built from the event's country, region and city.
PLACE = "place"
PLACE_FIELDS = ("country", "region", "city")
#: Cell name for folded small cells (merger) and for values beyond ``max_cells`` (stage 2).
OTHER = "__other__"
#: Cell name for a missing (None) dimension value.
UNKNOWN = "__unknown__"

#: Analytics time must be bucketed to at least one hour (privacy rule 8); operations
#: aggregates may use shorter windows but never below one minute.
MIN_WINDOW_SECONDS = 60
#: Outputs with windows shorter than this are operations data (rule 8): their rows are
#: published to ``aggregates.ops_output``, kept at most 30 days (rule 14), never to the
#: long-kept analytics topic ``aggregates.output`` (see ``streams.topics``).
ANALYTICS_MIN_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class AggregateSpec:
    """One published aggregate output: a name, a tumbling window and its breakdowns."""

    name: str
    window_seconds: int
    dimensions: tuple[str, ...]
    measures: tuple[str, ...] = ("requests", "visitors")
    k: int = 10
    allowed_lateness_seconds: int = 600
    max_events_per_visitor: int = 100
    max_cells: int = 10_000
    #: Distinct combinations of all dimensions' values per open window (the memory
    #: bound: ``max_cells`` is per dimension, and combinations multiply).
    max_combinations: int = 250_000

    def __post_init__(self) -> None:
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measures {unknown} (see MEASURES)")
        if self.window_seconds < MIN_WINDOW_SECONDS:
            raise ValueError(f"window {self.window_seconds}s is below {MIN_WINDOW_SECONDS}s")
        if self.k < 2:
            raise ValueError("k must be at least 2 (k=1 publishes single visitors)")
        if self.max_events_per_visitor < 1 or self.max_cells < 1 or self.max_combinations < 1:
            raise ValueError(
                "max_events_per_visitor, max_cells and max_combinations must be positive"
            )
        if self.allowed_lateness_seconds < 0:
            raise ValueError("allowed_lateness_seconds must be >= 0")
        if len(set(self.dimensions)) != len(self.dimensions) or not self.dimensions:
            raise ValueError("dimensions must be non-empty and distinct")

    @property
    def key(self) -> tuple[str, int]:
        """Identity of the output in partials and the merger: (name, window seconds)."""
        return (self.name, self.window_seconds)

    @property
    def operations(self) -> bool:
        """Whether the windows are finer than analytics may be (rule 8): the rows go to
        the operations aggregates topic.

        >>> OPS_5M.operations, PRODUCT_1H.operations
        (True, False)
        """
        return self.window_seconds < ANALYTICS_MIN_WINDOW_SECONDS

    @property
    def window_label(self) -> str:
        """``"5m"``, ``"1h"``, ``"1d"``: the ``window`` field of published rows."""
        return format_duration(self.window_seconds)

    @property
    def output_window(self) -> str:
        """``"ops/5m"``: how ``aggregates.windows`` names this output and window."""
        return f"{self.name}/{self.window_label}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (stored inside snapshots so a restore needs no config)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AggregateSpec:
        """Inverse of :meth:`to_dict`.

        >>> s = DEFAULT_SPECS[0]
        >>> AggregateSpec.from_dict(s.to_dict()) == s
        True
        """
        data = dict(data)
        data["dimensions"] = tuple(data["dimensions"])
        data["measures"] = tuple(data["measures"])
        return cls(**data)

    def continues(self, other: AggregateSpec) -> bool:
        """Whether window state kept under ``other`` can go on as this output's: the
        same window and measures, and breakdowns the same or fewer (the state's extra
        ones are summed away: a product hour that stops publishing ``place`` keeps its
        counts). The rest (k, lateness, the caps) is policy, which the current config
        decides.

        >>> from dataclasses import replace
        >>> OPS_5M.continues(replace(OPS_5M, k=20)), OPS_5M.continues(PRODUCT_1H)
        (True, False)
        >>> hour = published_specs(None)[1]
        >>> hour.continues(PRODUCT_1H), PRODUCT_1H.continues(hour)
        (True, False)
        """
        return (self.key, self.measures) == (other.key, other.measures) and set(
            self.dimensions
        ) <= set(other.dimensions)


def reconcile(
    current: Sequence[AggregateSpec] | None, saved: Sequence[AggregateSpec]
) -> tuple[list[AggregateSpec], list[AggregateSpec | None]]:
    """The outputs a restored checkpoint continues: the current config's (``current``;
    None: the checkpoint's own), each paired with the saved spec whose state it takes
    over, or None (a new output, or one whose window, measures or breakdowns changed,
    other than breakdowns dropped: it starts empty). Saved outputs the config no longer
    has are dropped. Without this, a restored checkpoint kept its old k and breakdowns
    for good, whatever the config said after a restart.

    >>> from dataclasses import replace
    >>> specs, states = reconcile([replace(OPS_5M, k=20), PRODUCT_1D], [OPS_5M, PRODUCT_1H])
    >>> [s.k for s in specs], [s and s.window_seconds for s in states]
    ([20, 10], [300, None])
    """
    if current is None:
        return list(saved), list(saved)
    return list(current), [
        next((old for old in saved if spec.continues(old)), None) for spec in current
    ]


OPS_5M = AggregateSpec(
    "ops",
    300,
    ("status_class", "method", "route", "country"),
    ("requests", "visitors", "bytes", "p50_ms", "p95_ms", "p99_ms", "bot_share"),
)
_PRODUCT_DIMENSIONS = (
    "route", "country", PLACE, "browser", "os", "device", "referrer", "language",
)  # fmt: skip
PRODUCT_1H = AggregateSpec("product", 3600, _PRODUCT_DIMENSIONS, ("requests", "visitors"))
PRODUCT_1D = AggregateSpec("product", 86400, _PRODUCT_DIMENSIONS, ("requests", "visitors"))
DEFAULT_SPECS: tuple[AggregateSpec, ...] = (OPS_5M, PRODUCT_1H, PRODUCT_1D)
#: Their names in ``aggregates.windows``.
OUTPUT_WINDOWS: tuple[str, ...] = tuple(spec.output_window for spec in DEFAULT_SPECS)


def published_specs(windows: object) -> tuple[AggregateSpec, ...]:
    """The default outputs ``aggregates.windows`` names; all of them when it names none
    (or is not a list: a config error reported by the config check).

    >>> [s.output_window for s in published_specs(["product/1d", "ops/5m"])]
    ['ops/5m', 'product/1d']
    >>> len(published_specs(None)) == len(DEFAULT_SPECS)
    True

    Regions and cities (``place`` below the country) are published in one window of an
    output, its longest: a product day's cities minus the same day's hours' cities gave
    the visitors of a city in the hours whose gate withheld it, fewer than k (an audit).
    The shorter windows keep the ``country`` dimension.

    >>> [(s.window_label, PLACE in s.dimensions) for s in published_specs(None)]
    [('5m', False), ('1h', False), ('1d', True)]
    >>> [PLACE in s.dimensions for s in published_specs(["product/1h"])]
    [True]
    """
    named = {w for w in windows if isinstance(w, str)} if isinstance(windows, list) else None
    chosen = named or set(OUTPUT_WINDOWS)
    specs = [spec for spec in DEFAULT_SPECS if spec.output_window in chosen]
    longest: dict[str, int] = {}
    for spec in specs:
        longest[spec.name] = max(longest.get(spec.name, 0), spec.window_seconds)
    return tuple(
        spec
        if spec.window_seconds == longest[spec.name] or PLACE not in spec.dimensions
        else replace(spec, dimensions=tuple(d for d in spec.dimensions if d != PLACE))
        for spec in specs
    )
