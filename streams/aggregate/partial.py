"""Stage 2 of aggregation: per source partition, windowed partial counts.

One :class:`PartialAggregator` runs per partition of the internal analytics topic.
That topic is keyed by the visitor pseudonym, so this instance sees *all* events of
each of its visitors and no other instance sees any of them: per-cell distinct-visitor
counts from different partitions are over disjoint visitor sets and add up exactly.

Per output spec and tumbling event-time window it keeps, for every value of every
dimension (a *cell*): requests, the set of visitor pseudonyms and bytes; and for specs
with measures (percentiles, bot share), per visitor the values of its *first* event in
the cell. Why each rule:

- **Watermark** = event time - ``allowed_lateness_seconds``, where the event time is
  the *lowest* of the highest event times seen per raw partition (the rows carry their
  raw partition). The worker reads its raw partitions at their own pace: after a
  restart, or on a shipped backlog, one raw partition can be many minutes of event time
  ahead of another, and the highest time seen overall would judge the slower one's
  events late. A raw partition that has sent no row for ``source_idle`` seconds of wall
  clock (``SOURCE_IDLE_SECONDS`` by default) is left out until it sends again (a quiet
  or dead source must not hold every window open); the event time never moves back.
  A window ``[s, s+W)`` is closed by :meth:`PartialAggregator.close_ready` once the
  watermark is >= ``s+W``. An event whose window end is already <= the watermark
  (judged against the event time at the start of its record, so the outcome does not
  depend on when ``close_ready`` is called), or <= the end of the last window closed
  (``closed_through``: after a restart with a raised lateness, the watermark can be
  behind windows already sent), is counted ``late`` and dropped: a closed window is
  never reopened or double-counted.
- **One fate per event for every output**: an event late for one output's window is
  dropped from every output, and one over the contribution cap of one output's window
  counts in none. Otherwise nested windows of different outputs (ops 5m, product 1h
  and 1d) held different events, and a big window minus the published small ones
  was exactly the late events, or a heavy visitor's capped requests (an audit). Each
  dropped event is counted once: ``late`` in the first output (in spec order) it was
  late for, ``capped`` in the window of the first checked output whose cap it reached.
  One comparison per event decides lateness (the latest of the outputs' earliest counted
  times), and only the caps that can bind are checked (:func:`_binding`: by default
  the day's, whose windows contain the others' and hold every event they hold).
- **Future events**: an event dated more than ``FUTURE_SKEW_SECONDS`` after the wall
  clock (read once per record) is counted ``future`` and dropped. It does not move the
  watermark: one line from a broken clock (or a forged date) would otherwise close
  every open window and make the partition's next events late.
- **Contribution cap**: a visitor's events beyond ``max_events_per_visitor`` per window
  are counted ``capped`` and ignored, so one heavy visitor cannot dominate a cell's
  requests. As the fate is one for every output, the cap of the widest window binds
  them all: with the defaults, 100 counted events per visitor and UTC day, in the
  5-minute ops windows too.
- **Measures are per visitor**: a cell's percentiles (a log-bucket histogram of
  ``duration_ms``) and bot share count one value per visitor, that of the visitor's
  first request in the cell (its first counted event of the window among those in
  the cell); the visitor's further requests there count in ``requests`` and ``bytes``
  only. With per-event values, a visitor at the cap (100 events) made 100 of the 109
  values of a 10-visitor cell and decided its median and bot share. The window's own
  values (the summaries') are each visitor's first request in the window. Each is
  packed in one int per (combination, visitor), ordered by the event's index among
  the visitor's events of the window, so the smallest one of a visitor in a cell is
  its first there (:func:`measure_code`).
- **Cardinality bound**: at most ``max_cells`` distinct values per dimension per window;
  further values go to the ``__other__`` cell (for ``place``: new countries go to
  ``__other__``, new regions/cities are not created and stay counted at the coarser
  level). Closed windows are dropped, so memory does not grow with stream length.
- **Memory bound**: an open window keeps one entry per distinct combination of its
  dimensions' values, and ``max_cells`` is per dimension, so combinations multiply:
  without a bound they grew with the window's events (343,000 per product window and
  about 1 GB after one million bench rows in one window, ``/tmp/statemem.py``). At
  ``max_combinations`` per window, the events of further combinations go to one
  combination that is ``__other__`` in every dimension: the summary's totals stay
  exact, the cells undercount and ``__other__`` holds the rest.
- **Exactly-once by offsets**: ``add`` takes the Kafka offset of the record and skips
  records at or below the highest applied offset, and :meth:`snapshot` stores that
  offset with the open windows. Restore from a snapshot, replay the partition from
  any earlier offset, and the output is identical (nothing lost, nothing doubled).
- **Exactly-once across the anonymizer's replays**: the anonymizer is at-least-once;
  a crash (or a raw-topic rebalance) after it published rows but before it committed
  re-publishes them at *new* offsets. So the worker's rows end with their raw line's
  coordinates (``streams.rules.SOURCE_FIELDS``: raw partition, offset, line), and per
  raw partition the highest (offset, line) applied is kept (and snapshotted); a row
  at or below it is counted ``duplicates`` and skipped. Sound because rows of one raw
  partition reach a given input partition in raw order: one worker at a time owns a
  raw partition, publishes in order and waits for the broker before its next batch,
  and a replay repeats the same lines with the same coordinates.

What leaves the instance (:class:`Partial`) holds counts only, never a pseudonym: per
cell the distinct-visitor *count*, and per dimension a *tail*: for the cells with fewer
than k local visitors (and ``__other__``) the multiset of "which of these rare values
one visitor touched" (value tuples with a visitor count). A globally small cell is
small in every partition, so the merger can compute the exact number of distinct
visitors in the union of the small cells it folds into ``__other__`` without any
visitor identity. Snapshots *do* contain pseudonyms (needed to keep counting distinct
visitors after a restart) and stay inside the cluster on a compacted internal topic.

>>> from streams.aggregate.spec import AggregateSpec
>>> spec = AggregateSpec("t", 300, ("route",), k=2, allowed_lateness_seconds=0)
>>> agg = PartialAggregator([spec], partition=0, partitions=1)
>>> agg.add([{"time": 0, "visitor": "a1", "route": "/"}], offset=7)
True
>>> agg.add([{"time": 0, "visitor": "a1", "route": "/"}], offset=7)  # replayed record
False
>>> agg.add([{"time": 300, "visitor": "b2", "route": "/x"}], offset=8)
True
>>> [(p.window_start, p.requests, p.visitors) for p in agg.close_ready()]
[(0, 1, 1)]
>>> agg.applied_offset, agg.state_size()["windows"]
(8, 1)
>>> PartialAggregator.restore(agg.snapshot()).snapshot() == agg.snapshot()
True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import contains, itemgetter
from typing import Any

import orjson

from streams.aggregate import histogram
from streams.aggregate.spec import (
    OTHER,
    PERCENTILES,
    PLACE,
    PLACE_FIELDS,
    UNKNOWN,
    AggregateSpec,
    reconcile,
)
from streams.gctune import collector_paused
from streams.records import FUTURE_SKEW_SECONDS
from streams.rules import SOURCE_FIELDS

#: Separator of the levels of a ``place`` cell key: ``"DE"``, ``"DE\x1fBavaria"``,
#: ``"DE\x1fBavaria\x1fMunich"``. A control character, so no real name contains it.
SEP = "\x1f"
#: 2: per-visitor measure codes instead of per-event bot counts and histograms. A
#: version-1 snapshot still restores; its windows publish no measures (see restore).
SNAPSHOT_VERSION = 2
#: The histogram bucket of a measure code whose event had no ``duration_ms``.
NO_DURATION = histogram.BUCKETS
#: Bits of a measure code below the event index: 9 for the bucket (0..256), 1 for bot.
_CODE_SHIFT = 10
_BUCKET_MASK = (1 << (_CODE_SHIFT - 1)) - 1  # 9 bits: the bucket, below the bot bit
_bucket = histogram.bucket
#: Default wall-clock seconds without a row after which a raw partition no longer holds
#: back the event time (``aggregates.source_idle``; see the module docstring). Longer
#: than a worker's failover (session timeout, rebalance and restart: ~10 s on the local
#: broker, 30-45 s with the production session timeout of 30 s) so that the partitions
#: of a worker that died keep their windows open until their new owner resumes them;
#: short enough that a source that went quiet delays windows of 5 minutes and more
#: (plus their lateness) by a minute at most.
SOURCE_IDLE_SECONDS = 60.0
#: Event time before any row: nothing is late in a partition's first record.
_NO_TIME = -(1 << 62)
#: How far past the wall clock an event may be dated and still count (``FUTURE_SKEW_SECONDS``
#: from streams.records); later events are counted ``future`` and dropped.

#: ``((value, ...), visitors)`` pairs: how many visitors touched exactly these rare values.
Tail = tuple[tuple[tuple[str, ...], int], ...]


def measure_code(n: int, bucket: int | None, bot: bool) -> int:
    """A visitor's measured values of one event, packed: its duration bucket and bot
    flag, above them ``n``, the event's index among the visitor's counted events of
    the window. So the smallest code a visitor has in a cell is its first event there.

    >>> measure_code(0, 70, True), measure_code(1, 70, True)
    (141, 1165)
    """
    return n << _CODE_SHIFT | (NO_DURATION if bucket is None else bucket) << 1 | bot


def measured(codes: Iterable[int]) -> tuple[dict[int, int], int]:
    """The duration histogram and bot count of per-visitor measure codes.

    >>> measured([measure_code(0, 70, True), measure_code(5, 70, False),
    ...           measure_code(1, None, True)])
    ({70: 2}, 2)
    """
    hist: dict[int, int] = {}
    bots = 0
    for code in codes:
        b = code >> 1 & _BUCKET_MASK
        if b != NO_DURATION:
            hist[b] = hist.get(b, 0) + 1
        bots += code & 1
    return hist, bots


@dataclass(slots=True)
class Cell:
    """Counts of one cell; visitors is a distinct count (disjoint across partitions).

    ``requests`` and ``bytes`` count events; ``bots`` and ``hist`` (durations) count
    visitors, one value each: that of the visitor's first event in the cell (empty for
    outputs without measures).
    """

    requests: int = 0
    visitors: int = 0
    bytes: int = 0
    bots: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, other: Cell) -> None:
        """Add another partition's (or another folded cell's) counts."""
        self.requests += other.requests
        self.visitors += other.visitors
        self.bytes += other.bytes
        self.bots += other.bots
        histogram.merge(self.hist, other.hist)

    def to_list(self) -> list[Any]:
        return [self.requests, self.visitors, self.bytes, self.bots, histogram.to_pairs(self.hist)]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Cell:
        return cls(data[0], data[1], data[2], data[3], histogram.from_pairs(data[4]))


@dataclass(frozen=True, slots=True)
class DimensionPartial:
    """One dimension of a partial: its cells and the tail of small cells."""

    cells: dict[str, Cell]
    tail: Tail = ()


@dataclass(frozen=True, slots=True)
class Partial:
    """A closed window's counts from one source partition (no pseudonyms).

    ``late`` counts events dropped as late since this output's previous partial from
    this partition; ``capped`` the events of this window ignored by the contribution
    cap. A dropped event is dropped from every output but counted once, by one output
    it was late for or whose cap it reached (see the module docstring), so the
    sums over all outputs count events. Both are operational counters for metrics,
    not for publication. ``bots`` and
    ``hist`` are the window's per-visitor measures (each visitor's first event in the
    window, for the summaries). ``per_visitor`` is False for a partial whose measures
    cannot be trusted to count one value per visitor (one from code before that rule,
    or a window restored from such code's checkpoint): the merger publishes no
    measures for its window.
    """

    output: str
    window_seconds: int
    window_start: int
    partition: int
    partitions: int
    requests: int
    visitors: int
    capped: int
    late: int
    dimensions: dict[str, DimensionPartial]
    bots: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    per_visitor: bool = False

    @property
    def key(self) -> tuple[str, int]:
        """(output name, window seconds): the spec this partial belongs to."""
        return (self.output, self.window_seconds)

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the internal partials topic."""
        return {
            "output": self.output,
            "window_seconds": self.window_seconds,
            "window_start": self.window_start,
            "partition": self.partition,
            "partitions": self.partitions,
            "requests": self.requests,
            "visitors": self.visitors,
            "capped": self.capped,
            "late": self.late,
            "dimensions": {
                name: {
                    "cells": {k: c.to_list() for k, c in dim.cells.items()},
                    "tail": [[list(values), n] for values, n in dim.tail],
                }
                for name, dim in self.dimensions.items()
            },
            "bots": self.bots,
            "hist": histogram.to_pairs(self.hist),
            "per_visitor": self.per_visitor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Partial:
        dims = {
            name: DimensionPartial(
                {k: Cell.from_list(c) for k, c in d["cells"].items()},
                tuple((tuple(values), int(n)) for values, n in d["tail"]),
            )
            for name, d in data["dimensions"].items()
        }
        scalars = {k: data[k] for k in _PARTIAL_SCALARS}
        # Absent from older partials (per-event measures): per_visitor False withholds them.
        return cls(**scalars, dimensions=dims, bots=data.get("bots", 0),
                   hist=histogram.from_pairs(data.get("hist", ())),
                   per_visitor=data.get("per_visitor", False))  # fmt: skip

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        """Inverse of :meth:`to_bytes`."""
        return cls.from_dict(orjson.loads(data))


_PARTIAL_SCALARS = ("output", "window_seconds", "window_start", "partition", "partitions",
                    "requests", "visitors", "capped", "late")  # fmt: skip


def normalize(value: object) -> str:
    """A dimension value as a cell key: None -> ``__unknown__``, booleans lower-case.

    >>> normalize(None), normalize(True), normalize(404), normalize("DE")
    ('__unknown__', 'true', '404', 'DE')
    """
    if value is None:
        return UNKNOWN
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    return text.replace(SEP, " ") if SEP in text else text


# A stage-2 accumulator: [requests, visitors, bytes]. Visitors: a set, or for outputs
# with measures a dict of pseudonym -> measure code of its first event here. A list,
# not an object: this is the per-event hot path.
_Acc = list[Any]


class _Window:
    """One open window. Events are accumulated per *combination* of raw field values
    (one dict hit per event instead of one per dimension); the per-dimension cells are
    built when the window closes. Visitors with the same combination share an entry,
    so this is also more compact than per-dimension sets for per-visitor-constant
    fields (browser, os, device, country, language)."""

    __slots__ = ("bots", "capped", "combos", "hist", "per_visitor", "requests", "seen",
                 "visitors")  # fmt: skip

    def __init__(self, nfields: int) -> None:
        self.visitors: dict[str, int] = {}  # pseudonym -> events counted (for the cap)
        self.requests = 0
        self.capped = 0
        # Per visitor, its first event in the window: the summaries' measures.
        self.bots = 0
        self.hist: dict[int, int] = {}
        self.per_visitor = True  # False: restored from a snapshot without measure codes
        self.combos: dict[tuple[Any, ...], _Acc] = {}
        # Values admitted per field (the cardinality bound). None is always admitted and
        # kept in every set, so that "every value known" is one C-level check (_admit).
        self.seen: list[set[Any]] = [{None} for _ in range(nfields)]


def _layout(dimensions: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Raw event fields read per event, and where each dimension's fields start.

    >>> _layout(("route", "place"))
    (('route', 'country', 'region', 'city'), [('route', 0), ('place', 1)])
    """
    fields: list[str] = []
    positions: list[tuple[str, int]] = []
    for name in dimensions:
        positions.append((name, len(fields)))
        fields.extend(PLACE_FIELDS if name == PLACE else (name,))
    return tuple(fields), positions


def _projection(saved: Sequence[str], current: Sequence[str]) -> list[int]:
    """For each raw field of the ``current`` dimensions' layout, its index in the layout
    of the ``saved`` dimensions (which hold every current one).

    >>> _projection(("route", "country", "place", "browser"), ("route", "country", "browser"))
    [0, 1, 5]
    """
    starts = dict(_layout(saved)[1])
    return [
        starts[name] + offset
        for name in current
        for offset in range(len(PLACE_FIELDS) if name == PLACE else 1)
    ]


def _merge_combo(combos: dict[tuple[Any, ...], _Acc], key: tuple[Any, ...], acc: _Acc) -> None:
    """Add the restored combination ``acc`` under ``key``: requests and bytes add up,
    visitors unite (with measure codes, a visitor keeps its smallest: its first event).

    >>> combos = {}
    >>> _merge_combo(combos, ("/",), [2, {"a": 5, "b": 9}, 10])
    >>> _merge_combo(combos, ("/",), [1, {"a": 3}, 4])
    >>> combos
    {('/',): [3, {'a': 3, 'b': 9}, 14]}
    """
    mine = combos.get(key)
    if mine is None:
        combos[key] = acc
        return
    mine[0] += acc[0]
    mine[2] += acc[2]
    if isinstance(mine[1], set):
        mine[1] |= acc[1]
    else:
        codes = mine[1]
        for visitor, code in acc[1].items():
            if code < codes.get(visitor, code + 1):
                codes[visitor] = code


def _place_keys(country: Any, region: Any, city: Any) -> list[str]:
    """Cell keys of one event in the ``place`` dimension, coarsest first.

    >>> [k.replace(SEP, "/") for k in _place_keys("DE", "Bavaria", "Munich")]
    ['DE', 'DE/Bavaria', 'DE/Bavaria/Munich']
    >>> _place_keys(None, "x", "y"), _place_keys("FR", None, "Paris")
    (['__unknown__'], ['FR'])
    """
    if country is None or country == OTHER:
        return [normalize(country)]
    keys = [normalize(country)]
    if region is not None:
        keys.append(keys[0] + SEP + normalize(region))
        if city is not None:
            keys.append(keys[1] + SEP + normalize(city))
    return keys


class _Output:
    """State of one spec: open windows, close horizon, late counter."""

    __slots__ = (
        "cap", "closed_through", "fields", "late", "lateness", "max_cells", "max_combos",
        "overflow", "positions", "spec", "want_measures", "width", "windows",
    )  # fmt: skip

    def __init__(self, spec: AggregateSpec) -> None:
        self.spec = spec
        self.width = spec.window_seconds
        self.lateness = spec.allowed_lateness_seconds
        self.cap = spec.max_events_per_visitor
        self.max_cells = spec.max_cells
        self.max_combos = spec.max_combinations
        self.fields, self.positions = _layout(spec.dimensions)
        # The one combination events beyond max_combinations go to: __other__ in every
        # dimension (a place's region and city: None, counted at the country level).
        self.overflow = tuple(
            None if self._is_place(i) and self.fields[i] in ("region", "city") else OTHER
            for i in range(len(self.fields))
        )
        self.want_measures = any(m in PERCENTILES or m == "bot_share" for m in spec.measures)
        self.windows: dict[int, _Window] = {}
        self.closed_through: int | None = None  # every window ending <= this is closed
        # Events dropped as late since the previous emitted partial, each counted by
        # the first output it was late for (PartialAggregator.add_rows).
        self.late = 0

    def accept_from(self, max_time: int) -> int:
        """The earliest event time this output still counts at event time ``max_time``:
        an event is late here when its window ends at or before the watermark
        (``max_time`` - lateness) or at or before :attr:`closed_through`. The latter
        matters after a restart with a raised lateness: a window already closed and
        sent is never reopened (its second partial would replace the first one in the
        merger, or be ignored as stale).

        >>> o = _Output(AggregateSpec("t", 300, ("route",), allowed_lateness_seconds=600))
        >>> o.accept_from(1000), o.accept_from(1200)  # the window [0, 300) closed at 900
        (300, 600)
        >>> o.closed_through = 900
        >>> o.accept_from(1000)
        900
        """
        limit = max_time - self.lateness
        if self.closed_through is not None and self.closed_through > limit:
            limit = self.closed_through
        return limit // self.width * self.width  # the window ending at limit ends <= limit

    def add(
        self,
        key: tuple[Any, ...],
        t: int,
        visitor: str,
        nbytes: int,
        bot: bool,
        duration: Any,
    ) -> None:
        """Count one event whose fate was decided for every output (neither late nor
        over the cap: :meth:`PartialAggregator.add_rows`)."""
        width = self.width
        start = t - t % width
        win = self.windows.get(start)
        if win is None:
            win = self.windows[start] = _Window(len(self.fields))
        counts = win.visitors
        n = counts.get(visitor, 0)
        counts[visitor] = n + 1
        win.requests += 1
        combos = win.combos
        try:
            acc = combos.get(key)
        except TypeError:  # an unhashable value (not produced by the pipeline)
            key = tuple(None if v is None else normalize(v) for v in key)
            acc = combos.get(key)
        if acc is None:
            key = self._admit(win, key)
            acc = combos.get(key)
            if acc is None:
                if len(combos) >= self.max_combos:
                    key = self.overflow
                    acc = combos.get(key)
                if acc is None:
                    acc = combos[key] = [0, {} if self.want_measures else set(), 0]
        acc[0] += 1
        acc[2] += nbytes
        if not self.want_measures:
            acc[1].add(visitor)
        elif visitor not in acc[1]:
            # The visitor's first event in this combination: its measured values (the
            # bucket only now, once per visitor and combination). Later events count
            # in requests and bytes only: no visitor weighs more than one in a measure.
            # The code is measure_code's, inlined (hot path).
            b = _bucket(duration)
            acc[1][visitor] = n << _CODE_SHIFT | (NO_DURATION if b is None else b) << 1 | bot
            if n == 0:  # and its first in the window: the summaries' measures
                if b is not None:
                    win.hist[b] = win.hist.get(b, 0) + 1
                if bot:
                    win.bots += 1

    def _admit(self, win: _Window, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """Apply the cardinality bound to a new combination: a value beyond
        ``max_cells`` distinct ones becomes ``__other__`` (a region or city: None, so
        the event stays counted at the coarser place level)."""
        seen_sets = win.seen
        if all(map(contains, seen_sets, key)):  # the common case: no value is new
            return key
        limit = self.max_cells + 1  # each set holds None besides the values
        out = list(key)
        for i, value in enumerate(key):
            seen = seen_sets[i]
            if value in seen:
                continue
            if len(seen) < limit:
                seen.add(value)
            elif self.fields[i] in ("region", "city") and self._is_place(i):
                out[i] = None
                if self.fields[i] == "region":
                    out[i + 1] = None
            else:
                out[i] = OTHER
        return tuple(out)

    def _is_place(self, index: int) -> bool:
        return any(n == PLACE and p <= index < p + 3 for n, p in self.positions)

    def close(self, max_time: int, partition: int, partitions: int) -> list[Partial]:
        """Partials of the windows the watermark has passed, oldest first.

        Always ends with a partial for the newest closed window (empty if it saw no
        events): that is how the merger learns this partition has closed everything up
        to there, even when the partition is idle.
        """
        width = self.width
        last_end = (max_time - self.lateness) // width * width
        if self.closed_through is not None and last_end <= self.closed_through:
            return []
        out: list[Partial] = []
        for start in sorted(s for s in self.windows if s + width <= last_end):
            out.append(self._partial(start, self.windows.pop(start), partition, partitions))
        if not out or out[-1].window_start != last_end - width:
            empty = _Window(len(self.fields))
            out.append(self._partial(last_end - width, empty, partition, partitions))
        self.closed_through = last_end
        return out

    def _cells(self, win: _Window) -> list[dict[str, _Acc]]:
        """Per-dimension cells from the window's combinations (visitors are unioned, so
        a visitor is counted once per cell however many combinations it has; with
        measures, it keeps the code of its first event among them)."""
        dims: list[dict[str, _Acc]] = [{} for _ in self.positions]
        measures = self.want_measures
        for key, acc in win.combos.items():
            for cells, (name, pos) in zip(dims, self.positions, strict=True):
                if name == PLACE:
                    keys = _place_keys(key[pos], key[pos + 1], key[pos + 2])
                else:
                    keys = [normalize(key[pos])]
                for ck in keys:
                    cell = cells.get(ck)
                    if cell is None:
                        cells[ck] = [acc[0], acc[1].copy(), acc[2]]
                        continue
                    cell[0] += acc[0]
                    cell[2] += acc[2]
                    if not measures:
                        cell[1] |= acc[1]
                        continue
                    mine, other = cell[1], acc[1]
                    both = mine.keys() & other.keys()
                    earlier = {v: min(mine[v], other[v]) for v in both}
                    mine.update(other)
                    mine.update(earlier)
        return dims

    def _cell(self, acc: _Acc) -> Cell:
        if not self.want_measures:
            return Cell(acc[0], len(acc[1]), acc[2])
        hist, bots = measured(acc[1].values())
        return Cell(acc[0], len(acc[1]), acc[2], bots, hist)

    def _partial(self, start: int, win: _Window, partition: int, partitions: int) -> Partial:
        dims = {}
        for (name, _), cells in zip(self.positions, self._cells(win), strict=True):
            dims[name] = DimensionPartial(
                {key: self._cell(c) for key, c in sorted(cells.items())},
                self._tail(name, cells),
            )
        late, self.late = self.late, 0
        return Partial(
            self.spec.name, self.width, start, partition, partitions,
            win.requests, len(win.visitors), win.capped, late, dims,
            bots=win.bots, hist=win.hist, per_visitor=win.per_visitor,
        )  # fmt: skip

    def _tail(self, name: str, cells: dict[str, _Acc]) -> Tail:
        """Which rare values each visitor touched, as counts (see the module docstring)."""
        k = self.spec.k
        touched: dict[str, list[str]] = {}
        for key, cell in cells.items():
            if name == PLACE and SEP in key:
                continue  # only countries are folded into __other__; sub-levels roll up
            if key == OTHER or len(cell[1]) < k:
                for visitor in cell[1]:
                    touched.setdefault(visitor, []).append(key)
        counts = Counter(tuple(sorted(keys)) for keys in touched.values())
        return tuple(sorted(counts.items()))


def _dominates(big: _Output, small: _Output, i: int, j: int) -> bool:
    """Whether the cap of ``big`` (index ``i``) binds before that of ``small`` (``j``):
    its windows contain small's (windows start at multiples of their width) and its cap
    is no higher, so under one fate per event it has counted at least as many of a
    visitor's events as small has (ties: the earlier output)."""
    if big is small or big.width % small.width or big.cap > small.cap:
        return False
    return big.width != small.width or big.cap != small.cap or i < j


def _binding(outputs: Sequence[_Output]) -> list[int]:
    """The outputs whose cap must be checked for each event: those no other output
    dominates (:func:`_dominates`). With the defaults (5m, 1h, 1d, cap 100 each): the
    day's only.

    >>> from streams.aggregate.spec import DEFAULT_SPECS
    >>> _binding([_Output(s) for s in DEFAULT_SPECS])
    [2]
    """
    return [
        j
        for j, small in enumerate(outputs)
        if not any(_dominates(big, small, i, j) for i, big in enumerate(outputs))
    ]


#: Fields every row must have, read first: event time, visitor, and the measures.
ROW_BASE = ("time", "visitor", "bytes", "bot", "duration_ms")

_KeyOf = Callable[[Sequence[Any]], tuple[Any, ...]]
_Readers = tuple[int, _KeyOf, list[tuple[_KeyOf, tuple["_Output", ...]]]]


def _row_readers(
    layout: tuple[str, ...], groups: list[tuple[tuple[str, ...], tuple[_Output, ...]]]
) -> _Readers:
    """Compile the row layout once: ``itemgetter``s that pull the base fields and each
    group's key out of a row at C speed. A dimension the layout lacks (no geo
    database: no country) reads as None.

    >>> layout = ("visitor", "time", "bytes", "bot", "duration_ms", "route", "os")
    >>> width, base, readers = _row_readers(
    ...     layout, [(("route",), ()), (("os", "route"), ()), (("route", "city"), ())])
    >>> row = ["v1", 600, 10, False, None, "/", "Linux"]
    >>> width, base(row), [key_of(row) for key_of, _ in readers]
    (7, (600, 'v1', 10, False, None), [('/',), ('Linux', '/'), ('/', None)])
    """
    index = {name: i for i, name in enumerate(layout)}
    missing = [name for name in ROW_BASE if name not in index]
    if missing:
        raise ValueError(f"aggregation rows lack {missing}")
    base = itemgetter(*(index[name] for name in ROW_BASE))
    readers = []
    for fields, outputs in groups:
        at = [index.get(name) for name in fields]
        present = [i for i in at if i is not None]
        key_of: _KeyOf
        if len(present) < len(at):
            key_of = _sparse_key(at)
        elif len(present) == 1:  # itemgetter of one index returns the value, not a tuple
            key_of = _single_key(present[0])
        else:
            key_of = itemgetter(*present)
        readers.append((key_of, outputs))
    return len(layout), base, readers


def _sparse_key(at: list[int | None]) -> _KeyOf:
    return lambda row: tuple(None if i is None else row[i] for i in at)


def _single_key(i: int) -> _KeyOf:
    return lambda row: (row[i],)


class PartialAggregator:
    """Stage 2 for one source partition and any number of output specs.

    ``partition``/``partitions`` identify this instance among the P stage-2 instances
    (P = partitions of the input topic); they travel in every :class:`Partial` so the
    merger knows when a window is complete.
    """

    def __init__(
        self,
        specs: Sequence[AggregateSpec],
        partition: int,
        partitions: int,
        layout: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        sources: Iterable[int] = (),
        source_idle: float = SOURCE_IDLE_SECONDS,
    ) -> None:
        """``sources``: the raw partitions expected to send rows. Until each has sent
        one or been silent for ``source_idle`` seconds, the event time stays: a first
        record holding one raw partition's backlog would otherwise make the rows of
        the others late."""
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate (name, window) in specs: {keys}")
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} not in 0..{partitions - 1}")
        self.specs = tuple(specs)
        self.partition = partition
        self.partitions = partitions
        self._outputs = [_Output(s) for s in self.specs]
        # What the cap is judged on, per output: (open windows, width, cap). Only the
        # outputs whose cap can bind (_binding) are checked, unless restored windows
        # break what that relies on: then all, until those windows close.
        self._all_caps = [(o.windows, o.width, o.cap) for o in self._outputs]
        self._binding = _binding(self._outputs)
        self._caps = [self._all_caps[i] for i in self._binding]
        self._all_caps_until: int | None = None
        # Per output, the earliest event time it counts (_Output.accept_from), valid
        # for the event time _floors_at (None: to compute).
        self._floors: list[int] = []
        self._accept_from = _NO_TIME  # their latest: earlier events are late for some output
        self._floors_at: int | None = None
        # Outputs reading the same fields (product per hour and per day) share one key.
        groups: dict[tuple[str, ...], list[_Output]] = {}
        for o in self._outputs:
            groups.setdefault(o.fields, []).append(o)
        self._groups = [(fields, tuple(outs)) for fields, outs in groups.items()]
        needed = dict.fromkeys([*ROW_BASE, *(f for fields in groups for f in fields)])
        #: Field names of the rows :meth:`add_rows` takes, in order.
        self.layout = tuple(layout) if layout is not None else tuple(needed)
        self._readers = _row_readers(self.layout, self._groups)
        # Rows carrying their raw line's coordinates (the worker's): deduplicated.
        self._source: Callable[[Sequence[Any]], tuple[Any, Any, Any]] | None = None
        if all(name in self.layout for name in SOURCE_FIELDS):
            self._source = itemgetter(*(self.layout.index(name) for name in SOURCE_FIELDS))
        #: Per raw partition, the highest (offset, line) applied (see add_rows).
        self.sources: dict[int, tuple[int, int]] = {}
        #: Per raw partition (None: rows without coordinates), the highest event time,
        #: and the wall-clock time of its latest row (not snapshotted).
        self.source_times: dict[int | None, int] = {}
        self._source_seen: dict[int | None, float] = dict.fromkeys(sources, clock())
        self._source_idle = source_idle
        self._applied = -1
        self._max_time: int | None = None
        self._clock = clock
        #: Events without an int ``time`` or a string ``visitor`` (skipped, counted).
        self.invalid = 0
        #: Events without a visitor pseudonym: their epoch's key was gone (a line older
        #: than the epoch and its grace) or refused (too far ahead). Skipped, counted.
        self.no_visitor = 0
        #: Events dated over FUTURE_SKEW_SECONDS past the wall clock (skipped, counted).
        self.future = 0
        #: Rows re-published by the anonymizer, already applied (skipped, counted).
        self.duplicates = 0

    @property
    def applied_offset(self) -> int:
        """Highest Kafka offset applied (-1: none). Commit/replay from here."""
        return self._applied

    @property
    def watermark_time(self) -> int | None:
        """Event time: the lowest of the active raw partitions' highest event times,
        never moving back (the watermark of a spec subtracts its lateness)."""
        return self._max_time

    def add(self, events: Iterable[Mapping[str, Any]], offset: int) -> bool:
        """:meth:`add_rows` for events given as mappings (missing fields are None)."""
        layout = self.layout
        return self.add_rows(([e.get(name) for name in layout] for e in events), offset)

    def add_rows(self, rows: Iterable[Sequence[Any]], offset: int) -> bool:
        """Apply the events of the record at ``offset``; False if it was applied before.

        An event is a row: a list of values in :attr:`layout` order (what the worker's
        internal stream carries, as JSON arrays). Per event and output: one dict and
        one set update; nothing is logged. Malformed rows are counted in ``invalid``,
        rows without a visitor pseudonym in ``no_visitor``, rows dated too far ahead of
        the wall clock in ``future``.
        """
        if offset <= self._applied:
            return False
        self._applied = offset
        width, base, groups = self._readers
        now = self._clock()
        horizon = int(now) + FUTURE_SKEW_SECONDS
        source = self._source
        sources = self.sources
        times = self.source_times
        seen = self._source_seen
        # Judged against the event time before this record: rows of the same record
        # from a faster raw partition must not make a slower one's rows late.
        max_time = _NO_TIME if self._max_time is None else self._max_time
        # One fate per event for every output (see the module docstring): late for one
        # output's window is late for all, and over one output's cap counts in none.
        outputs = self._outputs
        if self._floors_at != max_time:  # the closes since then reset it too
            self._floors = [o.accept_from(max_time) for o in outputs]
            self._accept_from = max(self._floors)
            self._floors_at = max_time
        floors = self._floors
        accept_from = self._accept_from
        caps = self._caps
        if self._all_caps_until is not None:
            if accept_from < self._all_caps_until:
                caps = self._all_caps
            else:  # the restored windows that needed it take no more events
                self._all_caps_until = None
        for row in rows:
            raw_partition = None
            if row.__class__ is not list or len(row) != width:
                # A row without coordinates (a worker older than this reader) counts,
                # undeduplicated: the fields before them are where the layout says.
                if source is None or row.__class__ is not list or len(row) != width - 3:
                    self.invalid += 1
                    continue
            elif source is not None:
                raw_partition, raw_offset, line = source(row)
                if raw_offset is not None:  # None: from a file, nothing to replay
                    position = (raw_offset, line)
                    mark = sources.get(raw_partition)
                    if mark is not None and position <= mark:
                        self.duplicates += 1
                        continue
                    sources[raw_partition] = position
            t, visitor, nbytes, bot, duration = base(row)
            if t.__class__ is not int or visitor.__class__ is not str or not visitor:
                if t.__class__ is int and visitor is None:
                    self.no_visitor += 1
                else:
                    self.invalid += 1
                continue
            if t > horizon:
                self.future += 1
                continue
            latest = times.get(raw_partition)
            if latest is None or t > latest:
                times[raw_partition] = t
            seen[raw_partition] = now
            if t < accept_from:
                # Counted once, by the first output it is late for.
                for out, floor in zip(outputs, floors, strict=True):
                    if t < floor:
                        out.late += 1
                        break
                continue
            for windows, w, cap in caps:
                win = windows.get(t - t % w)
                if win is not None and win.visitors.get(visitor, 0) >= cap:
                    win.capped += 1  # once, in the first checked window it is over the cap of
                    break
            else:
                if nbytes.__class__ is not int:
                    nbytes = 0
                bot = bot is True
                for key_of, group in groups:
                    key = key_of(row)
                    for out in group:
                        out.add(key, t, visitor, nbytes, bot, duration)
        self._advance_from_sources(now)
        return True

    def _advance_from_sources(self, now: float) -> None:
        cutoff = now - self._source_idle
        times = self.source_times
        lowest = None
        for p, seen_at in self._source_seen.items():
            if seen_at < cutoff:
                continue  # idle: left out until it sends again
            t = times.get(p)
            if t is None:
                return  # expected, not heard from yet, not idle yet: wait for it
            if lowest is None or t < lowest:
                lowest = t
        if lowest is not None:
            self.advance_to(lowest)

    def advance_to(self, event_time: int) -> None:
        """Move event time forward without an event (e.g. from the wall clock when the
        partition is idle, so its windows still close). Events behind the new
        watermark then count as late: use a conservative clock.
        """
        if self._max_time is None or event_time > self._max_time:
            self._max_time = event_time

    def advance_idle(self, now: float) -> None:
        """Move event time to the wall clock ``now`` (the caller saw this input partition
        caught up and idle) once every raw partition has been silent for the idle
        time: its windows must close without new rows. A shorter pause (a worker
        restarting, a rebalance) leaves it, or the rest of a backlog, dated earlier,
        would all be late."""
        cutoff = now - self._source_idle
        if all(seen_at < cutoff for seen_at in self._source_seen.values()):
            self.advance_to(int(now))

    def close_ready(self) -> list[Partial]:
        """Partials of every window the watermark has passed, per spec, oldest first."""
        if self._max_time is None:
            return []
        out: list[Partial] = []
        for o in self._outputs:
            out.extend(o.close(self._max_time, self.partition, self.partitions))
        self._floors_at = None  # closed_through moved
        return out

    def state_size(self) -> dict[str, int]:
        """Open windows, combinations and visitor entries held (metrics and tests)."""
        windows = combos = entries = 0
        for o in self._outputs:
            for win in o.windows.values():
                windows += 1
                combos += len(win.combos)
                entries += len(win.visitors) + sum(len(a[1]) for a in win.combos.values())
        return {"windows": windows, "combinations": combos, "entries": entries}

    @collector_paused()  # a day of state: no collections while copying it (gctune)
    def snapshot(self) -> bytes:
        """Full state (specs, applied offset, open windows incl. visitor sets) as orjson.

        Contains pseudonyms: keep it on the internal compacted topic, never publish it.
        """
        outputs = []
        for o in self._outputs:
            windows = [
                [
                    start,
                    win.visitors,
                    win.requests,
                    win.capped,
                    [list(seen) for seen in win.seen],
                    [
                        # Visitors: a list, or with measures {pseudonym: code}.
                        [list(key), a[0], a[1] if o.want_measures else list(a[1]), a[2]]
                        for key, a in win.combos.items()
                    ],
                    win.bots,
                    win.hist,
                    win.per_visitor,
                ]
                for start, win in o.windows.items()
            ]
            outputs.append({"closed_through": o.closed_through, "late": o.late, "windows": windows})
        return orjson.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "partition": self.partition,
                "partitions": self.partitions,
                "specs": [s.to_dict() for s in self.specs],
                "applied_offset": self._applied,
                "max_time": self._max_time,
                "invalid": self.invalid,
                "no_visitor": self.no_visitor,
                "future": self.future,
                "duplicates": self.duplicates,
                "sources": [[p, o, n] for p, (o, n) in self.sources.items()],
                "source_times": [[p, t] for p, t in self.source_times.items()],
                "outputs": outputs,
                # Counted with one fate per event for all outputs, and no restored window
                # left that breaks checking only the binding caps (see _unbound_until).
                "one_fate": self._all_caps_until is None,
            },
            option=orjson.OPT_NON_STR_KEYS,  # histograms as they are: {bucket: count}
        )

    @classmethod
    @collector_paused()
    def restore(
        cls,
        data: bytes,
        layout: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        sources: Iterable[int] = (),
        source_idle: float = SOURCE_IDLE_SECONDS,
        specs: Sequence[AggregateSpec] | None = None,
    ) -> PartialAggregator:
        """A new instance in exactly the state :meth:`snapshot` captured (the row
        layout and the expected raw partitions are the reader's, not state: pass the
        current ones). ``specs``: the config's outputs, which take over the saved state
        of the same window and breakdowns with the config's k, lateness and caps (see
        :func:`~streams.aggregate.spec.reconcile`); None: the saved specs."""
        state = orjson.loads(data)
        version = state.get("version")
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(f"unsupported snapshot version {version!r}")
        saved_specs = [AggregateSpec.from_dict(s) for s in state["specs"]]
        specs, from_saved = reconcile(specs, saved_specs)
        agg = cls(specs, state["partition"], state["partitions"], layout, clock, sources,
                  source_idle)  # fmt: skip
        agg._applied = state["applied_offset"]
        agg._max_time = state["max_time"]
        agg.invalid = state["invalid"]
        agg.no_visitor = state.get("no_visitor", 0)  # absent from older snapshots, as are
        agg.future = state.get("future", 0)  # these three
        agg.duplicates = state.get("duplicates", 0)
        agg.sources = {p: (o, n) for p, o, n in state.get("sources", ())}
        agg.source_times = {p: t for p, t in state.get("source_times", ())}
        # Restored sources count as just seen: their owners resume them now.
        agg._source_seen.update(dict.fromkeys(agg.source_times, agg._clock()))
        saved_outputs = dict(zip([s.key for s in saved_specs], state["outputs"], strict=True))
        for o, old_spec in zip(agg._outputs, from_saved, strict=True):
            if old_spec is None:
                continue  # new, or a changed window or measures: starts empty
            saved = saved_outputs[old_spec.key]
            o.closed_through = saved["closed_through"]
            o.late = saved["late"]
            # Fewer breakdowns than saved (the hour that stops publishing ``place``):
            # each saved field's place in the new layout, and combinations summed.
            index = _projection(old_spec.dimensions, o.spec.dimensions)
            for start, visitors, requests, capped, seen, combos, *measures in saved["windows"]:
                win = _Window(len(o.fields))
                win.visitors = visitors
                win.requests = requests
                win.capped = capped
                win.seen = [{None, *seen[i]} for i in index]
                if measures:
                    win.bots = measures[0]
                    win.hist = {int(i): n for i, n in measures[1].items()}
                    win.per_visitor = measures[2]
                else:
                    # Version 1 kept per-event bot counts and histograms, not which of
                    # a visitor's events came first: this window publishes no measures.
                    win.per_visitor = False
                for key, req, vis, nbytes, *_ in combos:
                    if not o.want_measures:
                        acc = [req, set(vis), nbytes]
                    elif isinstance(vis, dict):
                        acc = [req, vis, nbytes]
                    else:  # version 1 (see above): no code known, none published
                        unknown = measure_code(0, None, False)
                        acc = [req, dict.fromkeys(vis, unknown), nbytes]
                    _merge_combo(win.combos, tuple([key[i] for i in index]), acc)
                o.windows[start] = win
        # Windows counted with one fate per event under the same caps keep what checking
        # only the binding caps relies on; else (older code, a cap changed, an output
        # added) see which restored windows need every cap checked.
        if not state.get("one_fate") or any(
            old is None or old.max_events_per_visitor != spec.max_events_per_visitor
            for spec, old in zip(specs, from_saved, strict=True)
        ):
            agg._all_caps_until = agg._unbound_until()
        return agg

    def _unbound_until(self) -> int | None:
        """After a restore: the end of the last open window in which checking only the
        binding outputs' caps (:func:`_binding`) could let an output exceed its own
        cap, or None. Under one fate per event a dominated output counts every event
        its binding dominator counts, so ``count - count(dominator)`` never grows; a
        checkpoint of older code, changed caps or a new output (empty) can start it
        above ``cap - cap(dominator)``."""
        outputs = self._outputs
        until = None
        for i, o in enumerate(outputs):
            if i in self._binding:
                continue
            d = next(outputs[j] for j in self._binding if _dominates(outputs[j], o, j, i))
            slack = o.cap - d.cap
            for start, win in o.windows.items():
                big = d.windows.get(start - start % d.width)
                theirs = {} if big is None else big.visitors
                if any(n - theirs.get(v, 0) > slack for v, n in win.visitors.items()):
                    end = start + o.width
                    until = end if until is None or end > until else until
        return until
