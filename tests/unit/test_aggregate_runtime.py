"""Runtime: which partitions the wall clock may advance, merger restores and revisions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streams.aggregate import PRODUCT_1H, AggregateSpec
from streams.aggregate.partial import SOURCE_IDLE_SECONDS
from streams.aggregate.runtime import AggregationRuntime
from streams.rules import SOURCE_FIELDS

SPEC = replace(PRODUCT_1H, dimensions=("route",), k=2)
T0 = 1709546400  # 2024-03-04T10:00:00Z
ROWS = ("time", "visitor", "bytes", "bot", "duration_ms", "route", *SOURCE_FIELDS)


def ev(t: int, visitor: str) -> dict[str, Any]:
    return {"time": t, "visitor": visitor, "route": "/"}


def row(t: int, visitor: str, raw_partition: int, raw_offset: int) -> list[Any]:
    """A worker's row (raw line coordinates last)."""
    return [t, visitor, 0, False, None, "/", raw_partition, raw_offset, 1]


def test_a_restart_replaying_a_backlog_loses_no_event_to_the_wall_clock() -> None:
    # Events of hour [0, 3600) arrive; a checkpoint after offset 0; a crash after 2.
    before = AggregationRuntime([SPEC], partitions=1, snapshot_interval=0)
    before.aggregator(0, lambda key: None)
    before.add(0, 0, ev(3000, "a"))
    saved = before.due_snapshots(force=True)
    before.add(0, 1, ev(3500, "b"))
    before.add(0, 2, ev(3550, "c"))
    # Restarted 15 minutes after the hour: the clock ticks (every 2 s) before the
    # replay starts (end offset 3: offsets 1 and 2 are still to be applied) and during it.
    now = [3600.0 + 900]
    after = AggregationRuntime([SPEC], partitions=1, snapshot_interval=0, clock=lambda: now[0])
    after.aggregator(0, saved.get)

    def tick(end: int) -> list[int]:
        now[0] += 2
        return after.advance(int(now[0]), {0: end})

    assert tick(3) == []
    after.add(0, 1, ev(3500, "b"))
    assert tick(3) == []  # applied a record since: busy
    after.add(0, 2, ev(3550, "c"))
    assert tick(3) == []  # caught up, but busy this tick
    # Idle and caught up, but its rows' source was heard from less than
    # SOURCE_IDLE_SECONDS ago (a worker may be restarting mid-backlog): not yet.
    assert tick(3) == []
    now[0] += SOURCE_IDLE_SECONDS
    assert tick(3) == [0]  # silent for longer: windows close by the clock
    closed = after.close_ready()
    assert [(p.window_start, p.requests, p.late) for _, p in closed] == [(0, 3, 0)]


def test_a_pause_in_a_backlog_does_not_let_the_clock_make_it_late() -> None:
    # The worker replaying an hour-old backlog stops for 10 s (killed and replaced, a
    # rebalance): this input partition is caught up and idle meanwhile. Moving its
    # event time to the clock would make the rest of the backlog late.
    now = [10_000.0]
    rt = AggregationRuntime([SPEC], partitions=1, snapshot_interval=0, clock=lambda: now[0],
                            layout=ROWS, raw_partitions=2)  # fmt: skip
    rt.aggregator(0, lambda key: None)
    rt.add_rows(0, 0, [row(100, "a", 0, 0), row(110, "b", 1, 0)])
    for _ in range(5):  # 10 s without rows
        now[0] += 2
        assert rt.advance(int(now[0]), {0: 1}) == []
    rt.add_rows(0, 1, [row(200, "c", 0, 1), row(210, "d", 1, 1)])
    rt.aggregators[0].advance_to(7200)
    closed = [partial for _, partial in rt.close_ready()]
    assert sum(p.late for p in closed) == 0 and sum(p.requests for p in closed) == 4


def test_only_idle_caught_up_partitions_advance() -> None:
    rt = AggregationRuntime([SPEC], partitions=3, snapshot_interval=0)
    for p in range(3):
        rt.aggregator(p, lambda key: None)
    rt.add(1, 0, ev(100, "a"))
    rt.advance(50_000, {})  # clears the tick's activity
    # 0: nothing ever written, caught up; 1: behind (end 5); 2: end offset unknown.
    assert rt.advance(50_000, {0: 0, 1: 5, 2: None}) == [0]
    assert rt.aggregators[1].watermark_time == 100
    assert rt.aggregators[2].watermark_time is None


def _window_partials(rt: AggregationRuntime) -> list[Any]:
    for p in range(rt.partitions):
        rt.aggregator(p, lambda key: None)
        rt.add(p, 0, ev(100, f"a{p}"))
        rt.add(p, 1, ev(200, f"b{p}"))
        rt.aggregators[p].advance_to(7200)
    return [partial for _, partial in rt.close_ready()]


def test_rows_checkpointed_but_maybe_unpublished_come_back_one_revision_higher() -> None:
    owner = AggregationRuntime([SPEC], partitions=2, snapshot_interval=0)
    rows = [row for partial in _window_partials(owner) for row in owner.merge(partial)]
    assert rows and {row["revision"] for row in rows} == {1}
    # The merge agent's order: checkpoint with the outbox, publish, checkpoint without.
    owner.merger.outbox = rows
    with_outbox = owner.merger_snapshot()
    owner.merger.outbox = []
    without = owner.merger_snapshot()
    # The owner dies before its second checkpoint; the next owner publishes again.
    heir = AggregationRuntime([SPEC], partitions=2, snapshot_interval=0)
    again = heir.restore_merger(with_outbox)
    assert [{**row, "revision": 1} for row in again] == rows
    assert {row["revision"] for row in again} == {2}
    assert heir.restore_merger(without) == []
    # Either way the window is done: a replayed partial does not publish it again.
    for partial in _window_partials(AggregationRuntime([SPEC], 2, 0)):
        assert heir.merge(partial) == []
    assert heir.merger.stats["stale"] == 2


def test_a_dropped_merger_keeps_nothing_of_the_previous_assignment() -> None:
    rt = AggregationRuntime([SPEC], partitions=2, snapshot_interval=0)
    first, *_ = _window_partials(rt)
    assert rt.merge(first) == [] and rt.merger.pending_windows()
    rt.drop_merger()
    assert rt.merger.pending_windows() == {} and rt.merger.stats["partials"] == 0
    assert rt.restore_merger(None) == [] and rt.merger.pending_windows() == {}


def test_a_restart_applies_the_configs_k_and_outputs_to_restored_state() -> None:
    """Checkpoints carry the specs they were written under, and restoring used to keep
    them: k raised from 10 to 20 and a restart still published cells of 12 (found by
    an audit). Now the config's outputs take over the saved state of the same window
    and breakdowns with the config's k; a changed or new output starts empty and a
    removed one is dropped."""
    old = replace(PRODUCT_1H, dimensions=("route",), k=10, allowed_lateness_seconds=0)
    gone = replace(old, name="ops", window_seconds=300)
    before = AggregationRuntime([old, gone], partitions=1, snapshot_interval=0)
    before.aggregator(0, lambda key: None)
    before.add(0, 0, ev(0, "a"))
    saved = before.due_snapshots(force=True)
    saved["merger"] = before.merger_snapshot()

    events = [{"time": 10, "visitor": f"v{i}", "route": "/x"} for i in range(12)]
    events += [{"time": 20, "visitor": f"w{i}", "route": "/"} for i in range(30)]

    def restart(specs: list[Any]) -> list[dict[str, Any]]:
        after = AggregationRuntime(specs, partitions=1, snapshot_interval=0)
        after.aggregator(0, saved.get)
        after.restore_merger(saved["merger"])
        after.add_many(0, 1, events)
        after.aggregators[0].advance_to(3 * 86400)
        return [r for _, p in after.close_ready() for r in after.merge(p)]

    def hour_cells(rows: list[dict[str, Any]]) -> dict[str, int]:
        return {r["value"]: r["visitors"] or r["visitors_min"] for r in rows
                if r["window"] == "1h" and r["kind"] == "cell"}  # fmt: skip

    # 43 visitors, 31 on "/" (with "a", restored) and 12 on "/x": both pass k = 10 ...
    assert hour_cells(restart([old, gone])) == {"/": 31, "/x": 12}
    # ... and neither passes the raised k (43 - 31 < 20 withholds "/" too).
    reshaped = replace(old, window_seconds=86400, dimensions=("route", "country"))
    rows = restart([replace(old, k=20), reshaped])
    assert hour_cells(rows) == {"__other__": 43}
    # The reshaped day output counts only what came after the restart ("a" is not
    # there), and the removed ops output publishes nothing.
    day = [r for r in rows if r["window"] == "1d" and r["kind"] == "summary"]
    assert [r["visitors"] for r in day if r["dimension"] == "route"] == [42]
    assert not [r for r in rows if r["output"] == "ops"]


# --- aggregates audit (agg2) -------------------------------------------------------------


def test_status_and_metrics_count_what_k_kept_out() -> None:
    """runtime.suppressed (status page: "Suppressed by minimum group size", metric
    logfog_aggregate_suppressed) summed the summaries' ``suppressed``, which the merger
    always set to 0 (or null below k): it read 0 however many small cells were kept
    out. It now counts the folds the summaries publish."""
    from streams.metrics import AggregationCollector, Metrics
    from streams.status import aggregate_status

    spec = AggregateSpec("ops", 300, ("browser",), k=10, allowed_lateness_seconds=0)
    runtime = AggregationRuntime([spec], partitions=1, snapshot_interval=1e9)
    runtime.aggregator(0, lambda key: None)
    events = [{"time": T0, "visitor": f"c{i}", "browser": "Chrome"} for i in range(30)]
    events += [{"time": T0, "visitor": f"r{i}", "browser": f"Rare{i}"} for i in range(12)]
    runtime.add_many(0, 0, events)
    runtime.aggregators[0].advance_to(T0 + 3600)
    rows = [row for _, p in runtime.close_ready() for row in runtime.merge(p)]
    summary = next(r for r in rows if r["kind"] == "summary")
    # A fold's visitors are never published (audit F1): its bound is, T - Chrome here.
    assert summary["other"] == {"requests": 12, "visitors": None, "visitors_min": 12}
    assert aggregate_status(runtime)["suppressed"] == {  # type: ignore[index]
        "requests": 12, "visitors": 12
    }  # fmt: skip
    metrics = Metrics(None)
    metrics.registry.register(AggregationCollector(runtime))
    for what in ("requests", "visitors"):
        assert metrics.value("logfog_aggregate_suppressed_total", {"what": what}) == 12
    # The number of cells folded gave the sizes of groups below k (an audit, session 16).
    assert metrics.value("logfog_aggregate_suppressed_total", {"what": "cells"}) is None
