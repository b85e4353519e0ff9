"""Book-keeping that ties the aggregation stages to Kafka partitions, without Kafka.

The worker (``streams/app.py``) owns one :class:`AggregationRuntime`. It holds one
:class:`~streams.aggregate.PartialAggregator` per *assigned* partition of the
visitor-keyed input topic, restores each from its latest checkpoint when the
partition is (re)assigned, drops it when the partition is revoked, and says when
checkpoints are due. Exactness across restarts comes from the order the worker keeps:
events are acknowledged only after a checkpoint that includes them is written, and a
restored aggregator skips offsets it has already applied.

>>> from streams.aggregate import OPS_5M
>>> rt = AggregationRuntime([OPS_5M], partitions=2, snapshot_interval=5.0)
>>> agg = rt.aggregator(1, lambda key: None)
>>> rt.add(1, 7, {"time": 600, "visitor": "9f86d081884c7d65", "status_class": "2xx"})
True
>>> sorted(rt.due_snapshots(force=True))
['partial/1']
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from streams.aggregate.merge import WindowMerger
from streams.aggregate.partial import SOURCE_IDLE_SECONDS, Partial, PartialAggregator
from streams.aggregate.spec import PLACE, AggregateSpec, published_specs
from streams.durations import parse_duration

MERGER_KEY = "merger"
CHECKPOINT_COST_FACTOR = 50


def specs_from_config(aggregates: Mapping[str, Any]) -> tuple[AggregateSpec, ...]:
    """The outputs ``aggregates.windows`` names, with the config's k, lateness, cap
    and cardinality bound.

    >>> [s.output_window for s in specs_from_config({"windows": ["product/1d"], "k": 10,
    ...     "allowed_lateness": "10m", "max_events_per_visitor": 100, "max_cells": 1000,
    ...     "max_combinations": 1000})]
    ['product/1d']
    """
    per_output = aggregates.get("k_by_output") or {}
    return tuple(
        replace(
            spec,
            k=per_output.get(spec.name, aggregates["k"]),
            allowed_lateness_seconds=parse_duration(aggregates["allowed_lateness"]),
            max_events_per_visitor=aggregates["max_events_per_visitor"],
            max_cells=aggregates["max_cells"],
            max_combinations=aggregates["max_combinations"],
        )
        for spec in published_specs(aggregates.get("windows"))
    )


def partial_key(partition: int) -> str:
    return f"partial/{partition}"


class AggregationRuntime:
    """Stage-2 aggregators by partition plus the stage-3 merger, and checkpoint timing."""

    def __init__(
        self,
        specs: Sequence[AggregateSpec],
        partitions: int,
        snapshot_interval: float,
        layout: Sequence[str] | None = None,
        raw_partitions: int = 0,
        clock: Callable[[], float] = time.time,
        source_idle: float = SOURCE_IDLE_SECONDS,
    ) -> None:
        """``raw_partitions``: of the raw topic, whose partitions the rows come from
        (each stage-2 aggregator waits for them all before time moves on; see
        :class:`PartialAggregator`, also for ``source_idle``); 0: none expected (a
        file). ``clock``: the wall clock of the stage-2 aggregators (future rows, idle
        raw partitions)."""
        self.specs = tuple(specs)
        self.raw_partitions = raw_partitions
        self._clock = clock
        self._source_idle = source_idle
        #: Field order of the rows :meth:`add_rows` takes (the internal destination's).
        self.layout = None if layout is None else tuple(layout)
        self.partitions = partitions
        self.snapshot_interval = snapshot_interval
        self.aggregators: dict[int, PartialAggregator] = {}
        self._dirty: set[int] = set()
        # Partitions that applied a record since the previous advance(): not idle.
        self._active: set[int] = set()
        self._last_snapshot: dict[int, float] = {}
        # Checkpoint cost grows with window state (a day's visitor sets): the gap
        # between two checkpoints of a partition is at least CHECKPOINT_COST_FACTOR
        # times the last one's cost times the partitions held, which bounds
        # checkpointing to ~2% of the worker's time at any state size (replay after a
        # crash grows instead; never loss). At 20x it measured 8% of the main thread
        # (serializing is only part of a checkpoint's cost: producing it is the rest).
        self._gap: dict[int, float] = {}
        self.merger = WindowMerger(self.specs)
        self.last_rows: list[dict[str, Any]] = []
        self.last_window: dict[str, Any] | None = None
        #: Kept out of their own rows by k, over the summaries published by this
        #: process: the requests folded into __other__, and the folds' visitors as far as
        #: published (``visitors_min``: a fold's count is never published). Only
        #: published numbers: a window below k publishes nothing and adds nothing.
        self.suppressed: dict[str, int] = {"requests": 0, "visitors": 0}
        self.rows_published = 0
        #: Rows in the records add_rows applied (malformed rows included: they are
        #: counted in the aggregator's ``invalid``); replays of applied records excluded.
        self.events = 0

    # -- stage 2 ---------------------------------------------------------------------

    def aggregator(self, partition: int, load: Callable[[str], bytes | None]) -> PartialAggregator:
        """The aggregator of ``partition``, restored from its checkpoint on first use."""
        agg = self.aggregators.get(partition)
        if agg is None:
            data = load(partial_key(partition))
            sources, clock, idle = range(self.raw_partitions), self._clock, self._source_idle
            agg = (
                PartialAggregator.restore(
                    zlib.decompress(data), self.layout, clock, sources, idle, self.specs
                )
                if data is not None
                else PartialAggregator(
                    self.specs, partition, self.partitions, self.layout, clock, sources, idle
                )
            )
            self.aggregators[partition] = agg
            self._last_snapshot[partition] = time.monotonic()
        return agg

    def add(self, partition: int, offset: int, event: Mapping[str, Any]) -> bool:
        return self.add_many(partition, offset, (event,))

    def add_many(self, partition: int, offset: int, events: Iterable[Mapping[str, Any]]) -> bool:
        """All events of one record (one offset); skipped if the offset was applied."""
        return self._applied(partition, self.aggregators[partition].add(events, offset))

    def add_rows(self, partition: int, offset: int, rows: Sequence[Sequence[Any]]) -> bool:
        """:meth:`add_many` for rows in :attr:`layout` order (the worker's stream)."""
        applied = self.aggregators[partition].add_rows(rows, offset)
        if applied:
            self.events += len(rows)
        return self._applied(partition, applied)

    def _applied(self, partition: int, applied: bool) -> bool:
        self._active.add(partition)  # a replayed record too: the partition is busy
        if applied:
            self._dirty.add(partition)
        return applied

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget state for partitions another worker now owns (it restores them)."""
        for p in partitions:
            self.aggregators.pop(p, None)
            self._dirty.discard(p)
            self._active.discard(p)
            self._last_snapshot.pop(p, None)

    def advance(self, now: int, end_offsets: Mapping[int, int | None]) -> list[int]:
        """Let idle, caught-up partitions close windows by the clock (else the merger
        would wait for an idle partition forever); return the partitions advanced.

        ``end_offsets``: per partition, the offset the next record written to it will
        get (None: not known yet, e.g. nothing fetched since the assignment). A
        partition advances only if every record before that end is applied and it
        applied none since the previous call, and only once every raw partition has
        been silent for ``source_idle`` (:meth:`PartialAggregator.advance_idle`).
        A partition replaying a backlog (after a restart, or behind by more than the
        allowed lateness) never does: its events would be judged against the wall clock
        and dropped as late.
        """
        advanced = []
        for p, agg in self.aggregators.items():
            end = end_offsets.get(p)
            if end is None or agg.applied_offset + 1 < end or p in self._active:
                continue
            before = agg.watermark_time
            agg.advance_idle(now)
            if agg.watermark_time != before:
                self._dirty.add(p)
                advanced.append(p)
        self._active.clear()
        return advanced

    def close_ready(self) -> list[tuple[int, Partial]]:
        out: list[tuple[int, Partial]] = []
        for p, agg in self.aggregators.items():
            for partial in agg.close_ready():
                out.append((p, partial))
                self._dirty.add(p)
        return out

    def due_snapshots(self, now: float | None = None, force: bool = False) -> dict[str, bytes]:
        """Checkpoints to write now (dirty partitions whose interval has passed)."""
        now = time.monotonic() if now is None else now
        due: dict[str, bytes] = {}
        for p in sorted(self._dirty):
            gap = max(self.snapshot_interval, self._gap.get(p, 0.0))
            if force or now - self._last_snapshot.get(p, 0.0) >= gap:
                started = time.perf_counter()
                # Visitor sets of a day window are large; hex pseudonyms compress well.
                due[partial_key(p)] = zlib.compress(self.aggregators[p].snapshot(), 1)
                cost = time.perf_counter() - started
                self._gap[p] = CHECKPOINT_COST_FACTOR * cost * max(1, len(self.aggregators))
        return due

    def snapshots_written(self, keys: Iterable[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            p = int(key.split("/", 1)[1])
            self._dirty.discard(p)
            self._last_snapshot[p] = now

    # -- stage 3 ---------------------------------------------------------------------

    def restore_merger(self, data: bytes | None) -> list[dict[str, Any]]:
        """Take over the merger from its latest checkpoint (None: start empty); return
        the rows its previous owner checkpointed but may not have published, one
        revision higher: publish them before merging anything else."""
        self.merger = (
            WindowMerger(self.specs)
            if data is None
            else WindowMerger.restore(zlib.decompress(data), self.specs)
        )
        rows = self.merger.republish()
        if rows:
            self._note_rows(rows)
        return rows

    def drop_merger(self) -> None:
        """Forget the merger's state: another worker owns the partials partition now."""
        self.merger = WindowMerger(self.specs)

    def merger_snapshot(self, merger: WindowMerger | None = None) -> bytes:
        return zlib.compress((merger or self.merger).snapshot(), 1)

    def merge(self, partial: Partial) -> list[dict[str, Any]]:
        rows = self.merger.add(partial)
        if rows:
            self._note_rows(rows)
        return rows

    def _note_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows_published += len(rows)
        for row in rows:
            if row.get("kind") == "summary":
                # Counted from the fold: the summaries' former "suppressed" was 0 in
                # every published window (small cells are folded, not suppressed), so
                # these figures read 0 however many cells k kept out.
                fold = row.get("other") or {}
                self.suppressed["requests"] += int(fold.get("requests") or 0)
                self.suppressed["visitors"] += int(fold.get("visitors_min") or 0)
        self.last_rows = rows
        first = rows[0]
        self.last_window = {
            "name": f"{first['output']} {first['window']}",
            "start": first["window_start"],
            "version": first["version"],
            "revision": first["revision"],
        }

    def status(self) -> dict[str, Any]:
        """What the status page shows: suppression totals and the last window's tops."""

        def top(dimension: str) -> list[tuple[str, int]]:
            cells = [r for r in self.last_rows
                     if r.get("kind") == "cell" and r.get("dimension") == dimension]  # fmt: skip
            cells.sort(key=lambda r: -int(r.get("requests") or 0))
            return [(str(r["value"]), int(r["requests"])) for r in cells[:8]]

        return {
            "suppressed": dict(self.suppressed),
            "window": self.last_window,
            "top_routes": top("route"),
            "top_countries": top("country") or top(PLACE),
            "rows_published": self.rows_published,
            "events": self.events,
            "merger": dict(self.merger.stats),
            "pending_windows": {
                f"{name} {width}s": starts
                for (name, width), starts in self.merger.pending_windows().items()
            },
            "watermarks": {
                str(p): agg.watermark_time for p, agg in sorted(self.aggregators.items())
            },
            "open_partitions": sorted(self.aggregators),
        }
