"""Stage 2: windows, lateness, contribution cap, cardinality bound, exactly-once restarts."""

from __future__ import annotations

import random
import zlib
from dataclasses import replace
from typing import Any

import orjson
import pytest

from streams.aggregate import (
    DEFAULT_SPECS,
    OTHER,
    PLACE,
    AggregateSpec,
    Partial,
    PartialAggregator,
    WindowMerger,
    histogram,
)
from streams.aggregate.merge import iso_utc
from streams.aggregate.spec import MEASURES
from streams.records import FUTURE_SKEW_SECONDS
from streams.rules import SOURCE_FIELDS
from tests.properties.test_reidentification import (
    SPECS,
    T0,
    canonical,
    crowd,
    partition_of,
    person,
    population,
    rows_of,
    run,
)
from tests.support.draws import most_likely

SPEC = AggregateSpec("t", 300, ("route", PLACE), ("requests", "visitors", "p50_ms"), k=2)


@pytest.fixture(autouse=True)
def most_likely_percentiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Percentiles as their most likely draw: these tests compare the rows of two runs
    (shuffled against sorted input, a restart against none), which hold the same
    counts but, with real draws, not the same percentiles."""
    monkeypatch.setattr(histogram, "draw", most_likely)


def ev(t: int, visitor: str = "v1", **fields: Any) -> dict[str, Any]:
    return {"time": t, "visitor": visitor, "route": "/", "country": "DE", **fields}


def test_shuffled_within_lateness_equals_sorted() -> None:
    events = population(5, 120)
    ordered = sorted(events, key=lambda e: e["time"])
    rng = random.Random(1)
    # Each event moves behind others by less than the lateness bound (600 s). A
    # visitor's own events keep their order (Kafka keys by visitor), which decides
    # which of a heavy visitor's events the contribution cap keeps.
    jittered = sorted(ordered, key=lambda e: e["time"] + rng.uniform(0, 599))
    own: dict[str, list[dict[str, Any]]] = {}
    for e in ordered:
        own.setdefault(e["visitor"], []).append(e)
    shuffled = [own[e["visitor"]].pop(0) for e in jittered]
    assert shuffled != ordered and sorted(map(id, shuffled)) == sorted(map(id, ordered))
    a, _, ma = run(SPECS, ordered)
    b, _, mb = run(SPECS, shuffled, batch=3)
    assert canonical(a) == canonical(b)
    assert ma.stats["late"] == mb.stats["late"] == 0


def test_a_row_dated_far_ahead_is_future_and_leaves_the_watermark_alone() -> None:
    # A line dated a day ahead (a broken server clock) must not close the open windows:
    # before, it moved the watermark and the partition's next 50 events were late.
    clock = [float(T0 + 120)]
    agg = PartialAggregator([SPEC], 0, 1, clock=lambda: clock[0])
    agg.add([ev(T0, "a")], offset=0)
    agg.add([ev(T0 + 86_000, "x")], offset=1)
    for i in range(50):
        agg.add([ev(T0 + 60, f"n{i}")], offset=2 + i)
    assert agg.future == 1 and agg.watermark_time == T0 + 60
    agg.advance_to(T0 + 5000)
    partials = agg.close_ready()
    assert sum(p.requests for p in partials) == 51 and sum(p.late for p in partials) == 0
    # Within the skew an event still counts (and moves the watermark).
    clock[0] = T0 + 6000
    agg.add([ev(T0 + 6000 + FUTURE_SKEW_SECONDS, "y")], offset=60)
    assert agg.future == 1 and agg.watermark_time == T0 + 6000 + FUTURE_SKEW_SECONDS
    restored = PartialAggregator.restore(agg.snapshot())
    assert restored.future == 1


def test_events_older_than_lateness_are_late_and_excluded() -> None:
    agg = PartialAggregator([SPEC], 0, 1)
    agg.add([ev(T0, "a"), ev(T0 + 900, "b")], offset=0)  # watermark T0+300: window T0 closed
    agg.add([ev(T0 + 60, "c")], offset=1)  # window T0 already past the watermark: late
    agg.add([ev(T0 + 600, "d")], offset=2)  # window T0+600 ends T0+900 > watermark: on time
    partials = agg.close_ready()
    assert [(p.window_start - T0, p.requests) for p in partials] == [(0, 1)]
    assert partials[0].late == 1
    agg.advance_to(T0 + 5000)
    later = agg.close_ready()
    assert sum(p.requests for p in later) == 2 and sum(p.late for p in later) == 0
    merger = WindowMerger([SPEC])
    for p in partials + later:
        merger.add(p)
    assert merger.stats["late"] == 1


def test_an_event_late_for_one_output_is_late_for_all_and_counted_once() -> None:
    # Lateness was judged per output: late for the 5-minute window, counted in the
    # still open hour (audit D3). Now its fate is one for every output, and the late
    # total counts it once (it was counted once per output it was late for).
    five = AggregateSpec("five", 300, ("route",), k=2, allowed_lateness_seconds=0)
    hour = AggregateSpec("hour", 3600, ("route",), k=2, allowed_lateness_seconds=0)
    agg = PartialAggregator([five, hour], 0, 1)
    agg.add([ev(T0, "a"), ev(T0 + 300, "b")], offset=0)
    agg.add([ev(T0 + 60, "late")], offset=1)  # 5-minute window T0 closed, hour open
    agg.advance_to(T0 + 7200)
    partials = agg.close_ready()
    counts = {(p.output, p.window_start - T0): (p.requests, p.visitors) for p in partials}
    assert counts[("hour", 0)] == (2, 2) and counts[("five", 0)] == (1, 1)
    assert sum(p.late for p in partials) == 1
    assert [p.output for p in partials if p.late] == ["five"]  # the output it was late for


def test_an_event_over_the_cap_of_one_output_counts_in_none() -> None:
    # The cap was per output and window: the 5-minute windows counted a heavy visitor's
    # requests beyond the hour's cap (audit D4). Capped counts it once.
    five = AggregateSpec("five", 300, ("route",), k=2, max_events_per_visitor=3)
    hour = AggregateSpec("hour", 3600, ("route",), k=2, max_events_per_visitor=4)
    agg = PartialAggregator([five, hour], 0, 1)
    agg.add([ev(T0, "heavy")] * 5 + [ev(T0 + 300, "heavy")] * 5, offset=0)
    agg.advance_to(T0 + 7200)
    partials = [p for p in agg.close_ready() if p.requests or p.capped]
    got = {(p.output, p.window_start - T0): (p.requests, p.capped) for p in partials}
    # 3 at T0 (five's cap), 1 at T0+300 (the hour's cap of 4): the same in both outputs.
    assert got == {("five", 0): (3, 2), ("five", 300): (1, 0), ("hour", 0): (4, 4)}
    assert sum(p.capped for p in partials) == 6  # each ignored event once


def test_only_the_binding_caps_are_checked_unless_restored_windows_need_all() -> None:
    # Stage 2 checks per event only the caps that can bind (the day's, by default): the
    # outputs whose windows the day's contain count no more of a visitor's events. A
    # restore can break that (here: an output added, empty): then every cap is checked
    # until the restored windows close.
    five = AggregateSpec("five", 300, ("route",), k=2, max_events_per_visitor=3)
    hour = AggregateSpec("hour", 3600, ("route",), k=2, max_events_per_visitor=3)
    assert PartialAggregator([five, hour], 0, 1)._binding == [1]
    agg = PartialAggregator([five], 0, 1)
    agg.add([ev(T0, "heavy")] * 3, offset=0)
    agg = PartialAggregator.restore(agg.snapshot(), specs=[five, hour])  # hour: empty
    assert agg._all_caps_until == T0 + 300
    # and so does a checkpoint taken meanwhile
    agg = PartialAggregator.restore(agg.snapshot(), specs=[five, hour])
    assert agg._all_caps_until == T0 + 300
    agg.add([ev(T0, "heavy")] * 2 + [ev(T0 + 300, "heavy")] * 4, offset=1)
    agg.advance_to(T0 + 7200)
    partials = agg.close_ready()
    got = {(p.output, p.window_start - T0): p.requests for p in partials if p.requests}
    # five at T0 was at its cap: 2 capped there (checking the hour's only took them);
    # then the hour's cap (3) binds, and five's.
    assert got == {("five", 0): 3, ("five", 300): 3, ("hour", 0): 3}
    assert sum(p.capped for p in partials) == 3
    agg.add([ev(T0 + 7200, "later")], offset=2)
    assert agg._all_caps_until is None  # five's restored window closed: the hour's only
    # A checkpoint of one fate per event, same caps: nothing to check on restore.
    agg.add([ev(T0 + 7200, "heavy")] * 3, offset=3)
    assert PartialAggregator.restore(agg.snapshot(), specs=[five, hour])._all_caps_until is None
    # One of older code (main's: no "one_fate") is checked, and here holds.
    old = orjson.loads(agg.snapshot())
    del old["one_fate"]
    assert PartialAggregator.restore(orjson.dumps(old))._all_caps_until is None
    old["outputs"][1]["windows"][0][1]["heavy"] = 1  # five counted more than the hour
    assert PartialAggregator.restore(orjson.dumps(old))._all_caps_until == T0 + 7500


def test_raised_lateness_never_reopens_a_closed_window() -> None:
    """Audit D8: after a restart with a raised allowed_lateness (10 min -> 1 h), stage 2
    took events for a window it had already closed and sent, and later sent a second
    partial for it holding only them. The merger, still waiting for the other
    partition, replaced the first copy: the window was published with 21 visitors
    instead of 41 (or, already published, the events were lost as stale, counted
    nowhere). An event for a window at or before ``closed_through`` is late."""
    old = AggregateSpec("t", 300, ("route",), k=10, allowed_lateness_seconds=600)
    new = replace(old, allowed_lateness_seconds=3600)
    t = T0
    p0 = PartialAggregator([old], 0, 2)
    p0.add(crowd("a", 20, t), offset=0)
    p0.add([person("x", t + 900)], offset=1)  # event time 10:15: 10:00-10:05 closes
    merger = WindowMerger([old])
    for partial in p0.close_ready():
        assert merger.add(partial) == []  # waits for partition 1
    # Restart with the raised lateness, stage 2 and merger alike.
    p0 = PartialAggregator.restore(p0.snapshot(), specs=[new])
    merger = WindowMerger.restore(merger.snapshot(), [new])
    p0.add([person("straggler", t)], offset=2)  # 10:00, within the new hour of lateness
    p0.advance_to(t + 2 * 3600)
    late = 0
    for partial in p0.close_ready():
        assert partial.window_start != t  # not reopened
        late += partial.late
        merger.add(partial)
    assert late == 1
    p1 = PartialAggregator([new], 1, 2)
    p1.add(crowd("b", 20, t), offset=0)
    p1.advance_to(t + 2 * 3600)
    rows = [row for partial in p1.close_ready() for row in merger.add(partial)]
    summary = rows_of(rows, "t", "5m", "route")[iso_utc(t)][None]
    assert summary["visitors"] == 40  # 20 (partition 0) + 20 (partition 1)
    assert merger.stats["replaced"] == 0


def test_no_window_is_emitted_twice() -> None:
    agg = PartialAggregator(DEFAULT_SPECS, 0, 1)
    starts: list[tuple[str, int, int]] = []
    for i, e in enumerate(sorted(population(2, 80), key=lambda e: e["time"])):
        agg.add([e], offset=i)
        if i % 7 == 0:
            starts += [(p.output, p.window_seconds, p.window_start) for p in agg.close_ready()]
    agg.advance_to(T0 + 3 * 86400)
    starts += [(p.output, p.window_seconds, p.window_start) for p in agg.close_ready()]
    starts += [(p.output, p.window_seconds, p.window_start) for p in agg.close_ready()]
    assert len(starts) == len(set(starts))
    assert agg.state_size()["windows"] == 0


def _outputs(specs: list[AggregateSpec], events: list[dict[str, Any]], cut: int | None,
             rewind: int) -> list[bytes]:  # fmt: skip
    """Rows of a 3-partition run; with ``cut``, every partition snapshots after record
    ``cut``, goes on a little (output lost with the crash), restores and replays from
    ``rewind`` records before the snapshot."""
    parts = 3
    streams: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for e in events:
        streams[partition_of(e["visitor"], parts)].append(e)
    merger = WindowMerger(specs)
    rows: list[dict[str, Any]] = []
    for p, stream in enumerate(streams):
        agg = PartialAggregator(specs, p, parts)
        offset = 0
        while offset < len(stream):
            agg.add([stream[offset]], offset=offset)
            offset += 1
            if offset % 11 == 0:
                for partial in agg.close_ready():
                    rows += merger.add(partial)
            if cut is not None and offset == min(cut, len(stream)):
                snap = agg.snapshot()
                for i in range(offset, min(offset + 25, len(stream))):  # work lost in a crash
                    agg.add([stream[i]], offset=i)
                agg = PartialAggregator.restore(snap)
                assert agg.applied_offset == offset - 1
                offset = max(0, offset - rewind)  # replay includes already-applied records
                cut = None
        agg.advance_to(T0 + 5 * 86400)
        for partial in agg.close_ready():
            rows += merger.add(Partial.from_bytes(partial.to_bytes()))
    return canonical(rows)


@pytest.mark.parametrize("cut,rewind", [(1, 0), (57, 0), (133, 40), (300, 299), (10**6, 5)])
def test_restart_from_snapshot_neither_loses_nor_doubles(cut: int, rewind: int) -> None:
    events = population(21, 150)
    assert _outputs(SPECS, events, cut, rewind) == _outputs(SPECS, events, None, 0)


def test_restore_gives_identical_partials() -> None:
    events = sorted(population(4, 60), key=lambda e: e["time"])
    a = PartialAggregator(DEFAULT_SPECS, 0, 1)
    for i, e in enumerate(events[:200]):
        a.add([e], offset=i)
    b = PartialAggregator.restore(a.snapshot())
    for agg in (a, b):
        for i, e in enumerate(events[200:], start=200):
            agg.add([e], offset=i)
        agg.advance_to(T0 + 5 * 86400)
    assert [p.to_bytes() for p in a.close_ready()] == [p.to_bytes() for p in b.close_ready()]


@pytest.mark.parametrize("measures", [("requests", "visitors"), SPEC.measures])
def test_restore_under_fewer_breakdowns_keeps_the_open_windows_counts(
    measures: tuple[str, ...],
) -> None:
    """Session 12 took ``place`` out of the product hour (its cities are the day's
    only). A checkpoint of the hour with ``place`` restored under the hour without it
    starts from its counts, summed over the places, instead of empty: an upgrade mid-hour
    lost the hour's events so far, which the day still held (day minus hours: them).
    The partials are those of an aggregator that never had ``place``."""
    with_place = AggregateSpec("t", 3600, ("route", "country", PLACE, "browser"), measures, k=2)
    without = replace(with_place, dimensions=("route", "country", "browser"))
    events = sorted(population(4, 60), key=lambda e: e["time"])
    old = PartialAggregator([with_place], 0, 1)
    new = PartialAggregator([without], 0, 1)
    for agg in (old, new):
        for i, e in enumerate(events[:200]):
            agg.add([e], offset=i)
    assert any(len(w.combos) > 1 for o in old._outputs for w in o.windows.values())
    restored = PartialAggregator.restore(old.snapshot(), specs=[without])
    for agg in (new, restored):
        for i, e in enumerate(events[200:], start=200):
            agg.add([e], offset=i)
        agg.advance_to(T0 + 5 * 86400)
    expected = [p.to_bytes() for p in new.close_ready()]
    assert expected and [p.to_bytes() for p in restored.close_ready()] == expected
    # A breakdown the checkpoint does not have: that output starts empty.
    other = replace(with_place, dimensions=("route", "os"))
    assert not PartialAggregator.restore(old.snapshot(), specs=[other])._outputs[0].windows


def test_checkpoints_are_made_and_loaded_without_garbage_collections() -> None:
    # Copying a day of state makes many short-lived lists; collections they trigger
    # walk the whole state (a checkpoint cost 4x more with them). See streams.gctune.
    import gc
    import sys

    events = sorted(population(4, 60), key=lambda e: e["time"])
    a = PartialAggregator(DEFAULT_SPECS, 0, 1)
    a.add(events, offset=0)
    inside: list[str] = []  # collections that ran inside snapshot() or restore()
    outside: list[str] = []
    threshold = gc.get_threshold()

    def where(phase: str, info: dict[str, int]) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if (
                frame.f_code.co_name in ("snapshot", "restore")
                and "partial" in frame.f_code.co_filename
            ):
                inside.append(frame.f_code.co_name)
                return
            frame = frame.f_back
        outside.append(phase)

    gc.callbacks.append(where)
    gc.set_threshold(1)  # a collection at nearly every allocation, were it enabled
    try:
        restored = PartialAggregator.restore(a.snapshot())
        [[] for _ in range(10)]
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(where)
    assert inside == [] and outside  # and the collector works again afterwards
    assert restored.state_size() == a.state_size()


def test_contribution_cap() -> None:
    spec = AggregateSpec("t", 3600, ("route",), max_events_per_visitor=3, k=2)
    agg = PartialAggregator([spec], 0, 1)
    agg.add([ev(T0, "heavy", route=f"/{i}") for i in range(10)] + [ev(T0, "light")], offset=0)
    agg.advance_to(T0 + 7200)
    (p,) = agg.close_ready()
    assert (p.requests, p.capped, p.visitors) == (4, 7, 2)
    assert set(p.dimensions["route"].cells) == {"/", "/0", "/1", "/2"}  # the first three


def test_the_overflow_cell_is_in_the_tail_and_its_visitors_counted_exactly() -> None:
    """Values past ``max_cells`` are counted in ``__other__``, and the merger counts the
    fold's distinct visitors from the tails: without the overflow cell there, the
    published ``__other__`` said 0 visitors for a cell of 4 (and checks b and c ran on
    that count). A fold publishes no count since session 16, only ``visitors_min``
    from published numbers (here T - Firefox)."""
    spec = AggregateSpec("t", 3600, ("browser",), k=3, max_cells=1, allowed_lateness_seconds=0)
    events = [{"time": T0, "visitor": f"f{i}", "browser": "Firefox"} for i in range(5)]
    events += [{"time": T0, "visitor": f"o{i}", "browser": f"B{i}"} for i in range(4)]
    agg = PartialAggregator([spec], 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 3600)
    rows = [r for p in agg.close_ready() for r in WindowMerger([spec]).add(p)]
    assert {r["value"]: r["visitors"] for r in rows if r["kind"] == "cell"} == {
        "Firefox": 5,
        OTHER: None,
    }
    assert next(r for r in rows if r["value"] == OTHER)["visitors_min"] == 4


def test_cardinality_bound_and_memory_bounded_by_open_windows() -> None:
    spec = AggregateSpec("t", 300, ("route", PLACE), k=2, max_cells=5, allowed_lateness_seconds=0)
    agg = PartialAggregator([spec], 0, 1)
    for w in range(50):
        batch = [
            ev(T0 + w * 300, f"v{w}-{i}", route=f"/r{i}", country=f"C{i % 8}", region=f"R{i}",
               city=f"X{i}")
            for i in range(40)
        ]  # fmt: skip
        agg.add(batch, offset=w)
        size = agg.state_size()
        assert size["windows"] <= 2 and size["combinations"] <= 80  # open windows only
        for p in (p for p in agg.close_ready() if p.requests):
            routes = p.dimensions["route"].cells
            assert len(routes) == 6 and routes[OTHER].requests == 35
            place = p.dimensions[PLACE].cells
            countries = [k for k in place if "\x1f" not in k]
            assert len(countries) == 6 and OTHER in countries
            assert sum(place[c].requests for c in countries) == 40
            assert sum(1 for k in place if k.count("\x1f") == 1) <= 5


def test_combinations_beyond_the_bound_count_as_other_in_every_dimension() -> None:
    """max_cells is per dimension, and a window keeps one entry per combination of all
    of them: without a bound the state grew with the window's events (1 GB after a
    million bench rows in one window). Beyond max_combinations, events go to one
    combination that is __other__ everywhere: totals stay exact, memory bounded."""
    spec = AggregateSpec("t", 3600, ("route", "browser", PLACE), k=2, max_combinations=10,
                         allowed_lateness_seconds=0)  # fmt: skip
    agg = PartialAggregator([spec], 0, 1)
    events = [ev(T0, f"v{i}", route=f"/r{i % 4}", browser=f"B{i % 7}", country="DE",
                 region="BY", city="Munich") for i in range(200)]  # fmt: skip
    agg.add(events, offset=0)
    assert agg.state_size()["combinations"] <= 11  # the bound, plus the overflow
    # A checkpoint holds the overflow like any combination.
    agg = PartialAggregator.restore(agg.snapshot())
    agg.advance_to(T0 + 7200)
    (p,) = [p for p in agg.close_ready() if p.requests]
    assert (p.requests, p.visitors) == (200, 200)  # exact
    for dimension in ("route", "browser"):
        cells = p.dimensions[dimension].cells
        assert sum(c.requests for c in cells.values()) == 200
        assert cells[OTHER].requests > 0
    place = p.dimensions[PLACE].cells
    assert sum(c.requests for k, c in place.items() if "\x1f" not in k) == 200


def test_invalid_events_are_counted_not_applied() -> None:
    agg = PartialAggregator([SPEC], 0, 1)
    agg.add([{"time": "noon", "visitor": "a"}, {"time": T0}, {"time": True, "visitor": "b"}], 0)
    agg.add([{"time": T0, "visitor": "a", "route": ["unhashable"], "country": None}], 1)
    assert (agg.invalid, agg.no_visitor) == (2, 1)  # a time and no pseudonym: no_visitor
    agg.advance_to(T0 + 3600)
    (p,) = [p for p in agg.close_ready() if p.requests]
    assert p.requests == 1 and set(p.dimensions[PLACE].cells) == {"__unknown__"}
    assert set(p.dimensions["route"].cells) == {"['unhashable']"}


def test_partials_carry_no_pseudonyms_and_round_trip() -> None:
    events = population(9, 40)
    agg = PartialAggregator(DEFAULT_SPECS, 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 5 * 86400)
    partials = agg.close_ready()
    blob = b"".join(p.to_bytes() for p in partials).decode()
    assert not any(e["visitor"] in blob for e in events)
    assert all(Partial.from_bytes(p.to_bytes()) == p for p in partials)
    fresh = PartialAggregator(DEFAULT_SPECS, 0, 1)
    fresh.add(events[:1], offset=0)
    assert events[0]["visitor"] in fresh.snapshot().decode()  # internal state only


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        PartialAggregator([SPEC, SPEC], 0, 1)
    with pytest.raises(ValueError, match="partition"):
        PartialAggregator([SPEC], 3, 3)
    with pytest.raises(ValueError, match="k must"):
        AggregateSpec("t", 300, ("route",), k=1)
    with pytest.raises(ValueError, match="window"):
        AggregateSpec("t", 30, ("route",))


def test_k_per_output_from_config() -> None:
    from streams.aggregate.runtime import specs_from_config
    from streams.config import normalize

    config = normalize({"aggregates": {"enabled": False, "k": 12, "k_by_output": {"product": 25}},
                        "destinations": {"d": {"topic": "t", "fields": {
                            "s": {"from": "response.status", "action": "keep"}}}}}, [], [])  # fmt: skip
    assert {(s.name, s.window_label, s.k) for s in specs_from_config(config["aggregates"])} == {
        ("ops", "5m", 12),
        ("product", "1h", 25),
        ("product", "1d", 25),
    }


def test_rows_in_any_layout_aggregate_exactly_like_mappings() -> None:
    # The worker's internal stream carries JSON arrays in the internal destination's
    # field order; the result must not depend on the encoding or on that order.
    events = population(5, 60)
    by_mapping = PartialAggregator(DEFAULT_SPECS, 0, 1)
    layout = [*by_mapping.layout, "extra"]
    random.Random(3).shuffle(layout)
    by_row = PartialAggregator(DEFAULT_SPECS, 0, 1, layout)
    for offset, chunk in enumerate(events[i : i + 50] for i in range(0, len(events), 50)):
        by_mapping.add(chunk, offset)
        by_row.add_rows([[e.get(name) for name in layout] for e in chunk], offset)
    end = max(e["time"] for e in events) + 10 * 86400
    by_mapping.advance_to(end)
    by_row.advance_to(end)
    assert [p.to_bytes() for p in by_row.close_ready()] == [
        p.to_bytes() for p in by_mapping.close_ready()
    ]


def test_rows_without_a_pseudonym_are_counted_apart_from_malformed_ones() -> None:
    """An old log shipped after its epoch key was destroyed gives rows without a
    visitor: counted as no_visitor (an operator read "invalid" as corrupt data)."""
    agg = PartialAggregator([SPEC], 0, 1, ("time", "visitor", "bytes", "bot", "duration_ms",
                                            "route", "country", "region", "city"))  # fmt: skip
    row = [T0, None, 10, False, 12.0, "/", "DE", None, None]
    assert agg.add_rows([row, row, [T0, "", *row[2:]], ["noon", None, *row[2:]]], 0)
    assert (agg.no_visitor, agg.invalid) == (2, 2)
    restored = PartialAggregator.restore(agg.snapshot())
    assert (restored.no_visitor, restored.invalid) == (2, 2)


def test_malformed_rows_are_counted_not_fatal() -> None:
    agg = PartialAggregator([SPEC], 0, 1, ("time", "visitor", "bytes", "bot", "duration_ms",
                                            "route", "country", "region", "city"))  # fmt: skip
    good = [T0, "v1", 10, False, 12.0, "/", "DE", None, None]
    rows: list[Any] = [good, good[:-1], {"time": T0}, "junk", None, [*good, "extra"]]
    assert agg.add_rows(rows, 0)
    assert agg.invalid == 5
    assert agg.state_size()["combinations"] == 1


def test_a_layout_without_the_base_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="lack"):
        PartialAggregator([SPEC], 0, 1, ("time", "route"))


def test_dimensions_missing_from_the_layout_read_as_none() -> None:
    # Without a geo database the internal rows have no country/region/city columns.
    events = [{k: v for k, v in e.items() if k not in ("country", "region", "city")}
              for e in population(3, 30)]  # fmt: skip
    by_mapping = PartialAggregator(DEFAULT_SPECS, 0, 1)
    layout = [n for n in by_mapping.layout if n not in ("country", "region", "city")]
    by_row = PartialAggregator(DEFAULT_SPECS, 0, 1, layout)
    by_mapping.add(events, 0)
    by_row.add_rows([[e.get(n) for n in layout] for e in events], 0)
    end = max(e["time"] for e in events) + 10 * 86400
    by_mapping.advance_to(end)
    by_row.advance_to(end)
    closed = [p.to_bytes() for p in by_row.close_ready()]
    assert closed and closed == [p.to_bytes() for p in by_mapping.close_ready()]


def test_rows_republished_by_the_anonymizer_count_once() -> None:
    # The anonymizer is at-least-once: after a crash before its commit, a new owner of
    # the raw partition publishes the same lines again, at new input offsets.
    layout = ("time", "visitor", "bytes", "bot", "duration_ms", "route", *SOURCE_FIELDS)
    spec = AggregateSpec("t", 300, ("route",), ("requests", "visitors", "p50_ms"), k=2)

    def row(visitor: str, raw_partition: int, raw_offset: int, line: int) -> list[Any]:
        return [T0 + line, visitor, 10, False, 5, "/", raw_partition, raw_offset, line]

    first = [row("a", 0, 40, 1), row("b", 0, 40, 2), row("c", 1, 7, 1)]
    agg = PartialAggregator([spec], 0, 1, layout)
    assert agg.add_rows(first, offset=0)
    restored = PartialAggregator.restore(agg.snapshot(), layout)  # the marks survive
    # Replayed from raw offset 40 (and partition 1's line again), then new lines.
    replay = [row("a", 0, 40, 1), row("b", 0, 40, 2), row("d", 0, 41, 1), row("c", 1, 7, 1)]
    assert restored.add_rows(replay, offset=1)
    assert restored.add_rows([row("e", 1, 7, 2)], offset=2)
    assert restored.duplicates == 3 and restored.sources == {0: (41, 1), 1: (7, 2)}
    restored.advance_to(T0 + 3600)
    partial = restored.close_ready()[0]
    assert (partial.window_start, partial.requests, partial.visitors) == (T0, 5, 5)
    # Rows from a file carry no raw offset: never deduplicated. Rows without
    # coordinates (a worker older than this reader) still count.
    assert restored.add_rows([row("f", None, None, 1)] * 2, offset=3)  # type: ignore[list-item]
    assert restored.add_rows([row("g", 0, 42, 1)[:-3]], offset=4)
    assert restored.duplicates == 3 and restored.invalid == 0


SOURCED = ("time", "visitor", "bytes", "bot", "duration_ms", "route", *SOURCE_FIELDS)
LATE_10M = AggregateSpec("t", 300, ("route",), ("requests", "visitors"), k=2,
                         allowed_lateness_seconds=600)  # fmt: skip


def sourced(t: int, visitor: str, raw_partition: int, raw_offset: int) -> list[Any]:
    return [t, visitor, 10, False, None, "/", raw_partition, raw_offset, 1]


def counted(partials: list[Partial]) -> list[tuple[int, int]]:
    """(window start - T0, requests) of the partials that counted anything (a partition
    also sends an empty partial for its newest closed window)."""
    return [(p.window_start - T0, p.requests) for p in partials if p.requests or p.late]


def test_a_raw_partition_behind_another_is_not_late() -> None:
    # The worker reads raw partitions at their own pace (a backlog after a restart, a
    # shipped file): here partition 1 is an hour of event time behind partition 0.
    # Judged by the highest time seen overall, all of partition 1's rows were late.
    clock = [float(T0 + 4000)]
    agg = PartialAggregator([LATE_10M], 0, 1, SOURCED, clock=lambda: clock[0])
    agg.add_rows([sourced(T0, "a", 0, 0), sourced(T0, "b", 1, 0)], offset=0)
    ahead = [sourced(T0 + 60 * i, f"p0-{i}", 0, i) for i in range(1, 61)]
    behind = [sourced(T0 + 60 * i, f"p1-{i}", 1, i) for i in range(1, 61)]
    agg.add_rows(ahead, offset=1)
    assert agg.watermark_time == T0 and counted(agg.close_ready()) == []  # held by p1
    agg.add_rows(behind[:30], offset=2)
    closed = agg.close_ready()
    assert agg.watermark_time == T0 + 1800
    assert counted(closed) == [(0, 2 + 4 + 4), (300, 10), (600, 10), (900, 10)]
    agg.add_rows(behind[30:], offset=3)
    agg.advance_to(T0 + 9000)
    closed += agg.close_ready()
    assert sum(p.late for p in closed) == 0
    assert sum(p.requests for p in closed) == 2 + 60 + 60


def test_a_quiet_raw_partition_stops_holding_windows_open_after_the_idle_time() -> None:
    from streams.aggregate.partial import SOURCE_IDLE_SECONDS

    clock = [float(T0 + 4000)]
    agg = PartialAggregator([LATE_10M], 0, 1, SOURCED, clock=lambda: clock[0])
    agg.add_rows([sourced(T0, "a", 0, 0), sourced(T0, "b", 1, 0)], offset=0)
    clock[0] += SOURCE_IDLE_SECONDS - 1
    agg.add_rows([sourced(T0 + 1200, "c", 0, 1)], offset=1)
    assert agg.watermark_time == T0 and counted(agg.close_ready()) == []  # p1 may send
    clock[0] += 2  # partition 1 silent for longer than the idle time: left out
    agg.add_rows([sourced(T0 + 1260, "d", 0, 2)], offset=2)
    assert agg.watermark_time == T0 + 1260
    assert counted(agg.close_ready()) == [(0, 2)]
    # It sends again: its row for the closed window is late, the event time stays.
    agg.add_rows([sourced(T0 + 30, "e", 1, 1)], offset=3)
    assert agg.watermark_time == T0 + 1260
    agg.advance_to(T0 + 9000)
    later = agg.close_ready()
    assert sum(p.late for p in later) == 1 and sum(p.requests for p in later) == 2


def test_the_per_partition_event_times_survive_a_restore() -> None:
    clock = [float(T0 + 4000)]
    agg = PartialAggregator([LATE_10M], 0, 1, SOURCED, clock=lambda: clock[0])
    agg.add_rows([sourced(T0, "a", 0, 0), sourced(T0, "b", 1, 0)], offset=0)
    agg.add_rows([sourced(T0 + 1800, "c", 0, 1)], offset=1)
    restored = PartialAggregator.restore(agg.snapshot(), SOURCED, clock=lambda: clock[0])
    assert restored.source_times == {0: T0 + 1800, 1: T0}
    # The restored partition 1 counts as just seen: it still holds the windows open.
    restored.add_rows([sourced(T0 + 1860, "d", 0, 2)], offset=2)
    assert restored.watermark_time == T0 and counted(restored.close_ready()) == []
    restored.add_rows([sourced(T0 + 60, "e", 1, 1)], offset=3)
    restored.advance_to(T0 + 9000)
    partials = restored.close_ready()
    assert sum(p.late for p in partials) == 0 and sum(p.requests for p in partials) == 5


def test_expected_raw_partitions_are_waited_for_until_they_send_or_go_idle() -> None:
    # A fresh start on a backlog: the first record may hold one raw partition's rows
    # only; the others' rows, dated earlier, must not be late when they come.
    from streams.aggregate.partial import SOURCE_IDLE_SECONDS
    from streams.aggregate.runtime import AggregationRuntime

    clock = [float(T0 + 4000)]
    agg = PartialAggregator([LATE_10M], 0, 1, SOURCED, clock=lambda: clock[0], sources=range(3))
    agg.add_rows([sourced(T0 + 60 * i, f"a{i}", 0, i) for i in range(30)], offset=0)
    assert agg.watermark_time is None and counted(agg.close_ready()) == []
    agg.add_rows([sourced(T0 + 60 * i, f"b{i}", 1, i) for i in range(30)], offset=1)
    assert agg.watermark_time is None  # partition 2 not heard from yet
    clock[0] += SOURCE_IDLE_SECONDS + 1  # ... and idle now: left out
    agg.add_rows([sourced(T0 + 1800, "c", 0, 30), sourced(T0 + 1790, "d", 1, 30)], offset=2)
    assert agg.watermark_time == T0 + 1790
    agg.advance_to(T0 + 9000)
    partials = agg.close_ready()
    assert sum(p.late for p in partials) == 0 and sum(p.requests for p in partials) == 62
    # The runtime expects every partition of the raw topic, restored or new, and passes
    # the idle time on (aggregates.source_idle).
    runtime = AggregationRuntime([LATE_10M], partitions=1, snapshot_interval=10,
                                 layout=SOURCED, raw_partitions=4, clock=lambda: clock[0],
                                 source_idle=5)  # fmt: skip
    fresh = runtime.aggregator(0, lambda key: None)
    fresh.add_rows([sourced(T0, "a", 0, 0)], offset=0)
    assert fresh.watermark_time is None  # 1, 2, 3 not heard from
    clock[0] += 6
    fresh.add_rows([sourced(T0 + 1, "b", 0, 1)], offset=1)
    assert fresh.watermark_time == T0 + 1  # ... idle after 5 s
    fresh.add_rows([sourced(T0, "c", 1, 0)], offset=2)
    runtime.aggregators.clear()  # restored from its checkpoint: the same expectations
    restored = runtime.aggregator(0, lambda key: zlib.compress(fresh.snapshot()))
    assert restored.source_times == {0: T0 + 1, 1: T0}
    # 2 and 3, expected again and not idle since the restore, hold the event time.
    restored.add_rows([sourced(T0 + 99, "d", 0, 2), sourced(T0 + 99, "e", 1, 1)], offset=3)
    assert restored.watermark_time == T0 + 1
    clock[0] += 6
    restored.add_rows([sourced(T0 + 100, "f", 0, 3), sourced(T0 + 100, "g", 1, 2)], offset=4)
    assert restored.watermark_time == T0 + 100


def test_a_checkpoint_from_before_per_visitor_measures_restores_without_them() -> None:
    """Version-1 checkpoints kept per-event bot counts and histograms: their open
    windows still count requests and visitors after an upgrade, but publish no
    measures (which of a visitor's events came first is not in them)."""
    ops = AggregateSpec("ops", 300, ("route",), MEASURES, k=2, allowed_lateness_seconds=0)
    agg = PartialAggregator([ops], 0, 1)
    agg.add([ev(T0, f"v{i}", duration_ms=5.0, bot=i == 0) for i in range(4)], offset=0)
    state = orjson.loads(agg.snapshot())
    state["version"] = 1  # as the code before wrote it:
    for output in state["outputs"]:
        for window in output["windows"]:
            del window[6:]  # no window-level measures
            window[5] = [[key, req, list(vis), nbytes, 1, {"77": req}]
                         for key, req, vis, nbytes in window[5]]  # fmt: skip
    restored = PartialAggregator.restore(orjson.dumps(state))
    restored.add([ev(T0, "v9", duration_ms=5.0)], offset=1)
    restored.advance_to(T0 + 300)
    (partial,) = restored.close_ready()
    assert not partial.per_visitor
    rows = WindowMerger([ops]).add(partial)
    assert {r["visitors"] for r in rows} == {5}
    assert {r[m] for r in rows for m in ("p50_ms", "p95_ms", "p99_ms", "bot_share")} == {None}
