"""Stage 3: completeness, duplicates, the k gate and the subtraction checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from streams.aggregate import (
    OTHER,
    PLACE,
    AggregateSpec,
    Cell,
    Partial,
    PartialAggregator,
    WindowMerger,
    gate_cells,
    gate_place,
    histogram,
)
from streams.aggregate.merge import merge_window, untailed
from streams.aggregate.partial import SEP
from tests.support.draws import most_likely as most_likely_draw

T0 = 1709546400
SPEC = AggregateSpec("t", 3600, ("browser",), k=3, allowed_lateness_seconds=0)


def partials(partition: int, partitions: int, events: list[dict[str, Any]], until: int) -> list:
    agg = PartialAggregator([SPEC], partition, partitions)
    agg.add(events, offset=0)
    agg.advance_to(until)
    return agg.close_ready()


def people(n: int, browser: str, prefix: str, t: int = T0) -> list[dict[str, Any]]:
    return [{"time": t, "visitor": f"{prefix}{i}", "browser": browser} for i in range(n)]


def test_window_waits_for_every_partition_and_empty_partials_count() -> None:
    merger = WindowMerger([SPEC])
    p0 = partials(0, 3, people(5, "Firefox", "a"), T0 + 3600)
    p1 = partials(1, 3, people(5, "Firefox", "b"), T0 + 3600)
    p2 = partials(2, 3, [], T0 + 3600)  # idle partition: an empty heartbeat partial
    assert p2 and p2[0].requests == 0
    assert merger.add(p0[0]) == [] and merger.add(p1[0]) == []
    assert merger.add(p0[0]) == []  # duplicate replaces, does not add
    rows = merger.add(p2[0])
    assert [(r["value"], r["visitors"]) for r in rows] == [("Firefox", 10), (None, 10)]
    assert merger.add(p1[0]) == [] and merger.stats["stale"] == 1  # never emitted twice
    assert merger.stats["replaced"] == 1


def test_later_partial_covers_windows_a_partition_never_saw() -> None:
    merger = WindowMerger([SPEC])
    early = partials(0, 2, people(6, "Chrome", "a"), T0 + 3600)
    late_start = partials(1, 2, people(6, "Chrome", "b", T0 + 7200), T0 + 3 * 3600)
    assert merger.add(early[0]) == []
    rows = [r for p in late_start for r in merger.add(p)]
    assert {(r["window_start"], r["visitors"]) for r in rows if r["kind"] == "summary"} == {
        ("2024-03-04T10:00:00Z", 6)
    }


def test_merger_snapshot_restore() -> None:
    merger = WindowMerger([SPEC])
    merger.add(partials(0, 2, people(5, "Firefox", "a"), T0 + 3600)[0])
    restored = WindowMerger.restore(merger.snapshot())
    last = partials(1, 2, people(5, "Firefox", "b"), T0 + 3600)[0]
    assert restored.add(last) == merger.add(last) != []


def test_a_restored_merger_draws_the_percentiles_its_previous_owner_would() -> None:
    """Each pending window's draw key is checkpointed with its partials: a new owner
    restoring the merger (or the old one, paused past its turn, finishing the same
    windows) publishes the same percentiles, not a second independent draw of each
    (two draws of one histogram average toward its nearest rank). A checkpoint from
    before the keys gives its pending windows keys of their own, which its own next
    checkpoint carries on; a merged window's key is forgotten."""
    spec = AggregateSpec("ops", 300, ("route",), ("requests", "visitors", "p50_ms"), k=10,
                         allowed_lateness_seconds=0)  # fmt: skip

    def windows(partition: int) -> list:
        # Per window 19 visitors per partition, durations an octave apart: the median's
        # odds spread over many buckets.
        events = [
            {"time": T0 + 300 * w, "visitor": f"{partition}-{w}-{i}", "route": "/",
             "duration_ms": float(2 ** (i + w % 3))}
            for w in range(8) for i in range(19)
        ]  # fmt: skip
        agg = PartialAggregator([spec], partition, 2)
        agg.add(events, offset=0)
        agg.advance_to(T0 + 3000)
        return agg.close_ready()

    first, last = windows(0), windows(1)
    merger = WindowMerger([spec])
    for p in first:
        assert merger.add(p) == []
    snapshot = merger.snapshot()
    restored = WindowMerger.restore(snapshot, [spec])
    saved = orjson.loads(snapshot)
    keys = [key for _, key in saved["outputs"][0]["draw_keys"]]
    assert len(set(keys)) == len(keys) == 9  # a key per window (the empty newest too)
    del saved["outputs"][0]["draw_keys"]
    keyless = WindowMerger.restore(orjson.dumps(saved), [spec])
    carried = WindowMerger.restore(keyless.snapshot(), [spec])
    rows = [r for p in last for r in merger.add(p)]
    p50s = [r["p50_ms"] for r in rows if r["kind"] == "summary"]
    assert len(p50s) == 8 and None not in p50s
    assert [r for p in last for r in restored.add(p)] == rows
    keyless_p50s = [r["p50_ms"] for p in last for r in keyless.add(p) if r["kind"] == "summary"]
    assert keyless_p50s != p50s
    assert [r["p50_ms"] for p in last for r in carried.add(p) if r["kind"] == "summary"] == (
        keyless_p50s
    )
    # Keys nobody can compute: another merger over the same partials draws apart (a
    # key made from the window's start passed every other test; an audit).
    again = WindowMerger([spec])
    for p in first:
        again.add(p)
    assert [r["p50_ms"] for p in last for r in again.add(p) if r["kind"] == "summary"] != p50s
    assert orjson.loads(merger.snapshot())["outputs"][0]["draw_keys"] == []


P50_SPEC = AggregateSpec("ops", 300, ("route",), ("requests", "visitors", "p50_ms"), k=10,
                         allowed_lateness_seconds=0)  # fmt: skip


def two_routes_alike() -> list[dict[str, Any]]:
    """40 windows of 19 visitors on each of /a and /b, with the same durations an
    octave apart (the median's odds spread over many buckets)."""
    return [
        {"time": T0 + 300 * w, "visitor": f"{route}{w}-{i}", "route": route,
         "duration_ms": float(2**i)}
        for w in range(40) for route in ("/a", "/b") for i in range(19)
    ]  # fmt: skip


def test_two_cells_with_one_histogram_publish_independent_draws() -> None:
    """Every row's draw is its own: a cell of an attacker's visitors plus one at a
    guessed value, beside (or after) a victim's cell of the same histogram but the
    victim's, repeated the victim's cell's value exactly when the guess was right,
    while the draws were keyed by the histogram alone (an audit, session 17)."""
    spec, events = P50_SPEC, two_routes_alike()
    rows = publish([spec], events)
    p50 = {(r["window_start"], r["value"]): r["p50_ms"] for r in rows if r["kind"] == "cell"}
    starts = {start for start, _ in p50}
    assert len(starts) == 40 and None not in p50.values()
    same = sum(p50[start, "/a"] == p50[start, "/b"] for start in starts)
    assert same < 12  # independent draws agree about 1 time in 25 here


def test_one_key_for_every_window_still_draws_each_window_anew() -> None:
    """What is hashed holds the window's start: one cell's histogram in two windows
    is two independent draws even under one key (without the start, a cell of an
    attacker's visitors in a later window repeated the victim's; an audit)."""
    spec, events = P50_SPEC, two_routes_alike()
    agg = PartialAggregator([spec], 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 10 * 86400)
    rows = [row for p in agg.close_ready() for row in merge_window(spec, [p], b"k" * 32)]
    p50s = [r["p50_ms"] for r in rows if r["kind"] == "cell" and r["value"] == "/a"]
    assert len(p50s) == 40 and len(set(p50s)) > 5


def test_partition_count_must_match() -> None:
    merger = WindowMerger([SPEC])
    merger.add(partials(0, 2, [], T0 + 3600)[0])
    with pytest.raises(ValueError, match="partitions"):
        merger.add(partials(0, 3, [], T0 + 3600)[0])


def cells(**counts: int) -> dict[str, Cell]:
    return {k: Cell(v, v) for k, v in counts.items()}


def test_gate_publishes_large_cells_and_an_exact_other() -> None:
    c = cells(Chrome=50, Firefox=30, Lynx=2, Links=9)
    tails = [((("Links",), 5), (("Links", "Lynx"), 2)), ((("Links",), 4),)]
    g = gate_cells(c, tails, total=91, k=10)
    assert (g.published, g.folded, g.other_visitors, g.secondary) == (
        ["Chrome", "Firefox"], ["Links", "Lynx"], 11, 0
    )  # fmt: skip


def test_gate_secondary_suppression_when_the_rest_is_below_k() -> None:
    # The rest (Lynx, 2 visitors) would be isolated by total - published: fold Firefox too.
    g = gate_cells(cells(Chrome=50, Firefox=30, Lynx=2), [((("Lynx",), 2),)], total=82, k=10)
    assert g.published == ["Chrome"] and g.folded == ["Firefox", "Lynx"]
    assert g.other_visitors is None and g.other_min == 32 and g.secondary == 1


def test_gate_total_minus_cell_below_k_folds_the_cell() -> None:
    g = gate_cells(cells(home=95, cart=40), [], total=100, k=10)  # 5 never saw "home"
    assert g.published == ["cart"] and g.folded == ["home"]
    # The fold's lower bound is published next to T: "home"'s 95 there would be the
    # subtraction check (a) just prevented (found by an audit). It is T - cart, as
    # anyone can compute (before: T - k = 90, which told a cell of > 90 was folded).
    assert g.other_visitors is None and g.other_min == 60


def test_the_folds_lower_bound_never_undoes_check_a() -> None:
    """43 visitors, 40 of them saw "/" (withheld: 3 never did), 12 saw "/p"."""
    g = gate_cells(cells(**{"/": 40, "/p": 12}), [], total=43, k=10)
    assert g.published == ["/p"] and g.other_visitors is None
    assert g.other_min == 31 and 43 - g.other_min >= 10  # 43 - 12


def test_gate_check_b_folds_a_cell_that_other_would_isolate() -> None:
    """Check (b): ``T - other`` must be 0 or >= k. T = 25, A has 15 (T - A = 10 passes
    check a), B and C hold 17 distinct visitors: A next to ``__other__`` = 17 tells that
    8 visitors (< k) saw A and nothing else. A is folded too."""
    tails = [((("B",), 9), (("C",), 8))]
    g = gate_cells(cells(A=15, B=9, C=8), tails, total=25, k=10)
    assert (g.published, g.folded, g.other_visitors) == ([], ["A", "B", "C"], 25)


def test_gate_never_publishes_the_partials_overflow_cell_as_a_value() -> None:
    """Stage 2's ``__other__`` (values past max_cells) mixes many rare values: with k
    visitors it is still no value, and is folded into the merger's own ``__other__``."""
    c = {"A": Cell(30, 20), OTHER: Cell(15, 12)}
    g = gate_cells(c, [(((OTHER,), 12),)], total=32, k=10)
    assert (g.published, g.folded, g.other_visitors) == (["A"], [OTHER], 12)


def test_gate_everything_folded_and_below_k() -> None:
    g = gate_cells(cells(a=4, b=4, c=4), [((("a",), 4), (("b",), 4), (("c",), 4))], 12, k=10)
    assert g.published == [] and g.other_visitors == 12
    assert gate_cells(cells(a=4), [], 4, k=10).below_k


def place(**counts: int) -> dict[str, Cell]:
    return {k.replace("__", SEP): Cell(v, v) for k, v in counts.items()}


def test_place_rolls_small_cities_up_and_blocks_parent_child_subtraction() -> None:
    c = place(DE=60, DE__BY=40, DE__BY__Munich=34, DE__BY__Passau=6, DE__BE=20, DE__BE__Berlin=20)
    g = gate_place(c, [], total=60, k=10)
    # Passau < k rolls up into BY; BY - Munich = 6 < k: Munich is not published.
    assert [k.replace(SEP, "/") for k in g.sub_published] == ["DE/BE", "DE/BE/Berlin", "DE/BY"]


def test_place_parent_rest_below_k_drops_the_smallest_child() -> None:
    # BY = Munich(15) + Augsburg(12) + Passau(3): children cover all but <= 3 visitors.
    c = place(DE=80, DE__BY=30, DE__BY__Munich=15, DE__BY__Augsburg=12, DE__BY__Passau=3, DE__NW=50)
    g = gate_place(c, [], total=80, k=10)
    subs = [k.replace(SEP, "/") for k in g.sub_published]
    assert "DE/BY" in subs and "DE/BY/Munich" in subs and "DE/BY/Augsburg" not in subs


def test_place_rows_carry_levels() -> None:
    spec = AggregateSpec("p", 3600, (PLACE,), k=2, allowed_lateness_seconds=0)
    agg = PartialAggregator([spec], 0, 1)
    evs = [{"time": T0, "visitor": f"v{i}", "country": "DE", "region": "BY",
            "city": "Munich" if i < 4 else "Passau"} for i in range(8)]  # fmt: skip
    evs += [{"time": T0, "visitor": f"w{i}", "country": "FR"} for i in range(3)]
    agg.add(evs, 0)
    agg.advance_to(T0 + 3600)
    merger = WindowMerger([spec])
    rows = [r for p in agg.close_ready() for r in merger.add(p)]
    got = {(r["value"], r.get("level"), r["visitors"]) for r in rows if r["kind"] == "cell"}
    assert got == {
        ("DE", "country", 8), ("DE/BY", "region", 8), ("DE/BY/Munich", "city", 4),
        ("DE/BY/Passau", "city", 4), ("FR", "country", 3),
    }  # fmt: skip
    assert OTHER not in {r["value"] for r in rows}


def test_late_events_are_counted_once_across_a_stage2_restart() -> None:
    """A crash between sending partials and the next checkpoint: the restored stage 2
    replays the same records and sends the same windows again (stale in the merger).
    Their late events used to be added to the late total a second time (an audit)."""
    spec = AggregateSpec("t", 300, ("route",), k=2, allowed_lateness_seconds=0)
    clock = lambda: 10_000.0
    agg = PartialAggregator([spec], 0, 1, clock=clock)
    agg.add([{"time": 0, "visitor": "a", "route": "/"}], offset=0)
    saved = agg.snapshot()  # checkpoint after offset 0
    replay = [(600, "b"), (10, "c"), (1200, "d")]  # "c" is late (window 0 closed at 600)
    for offset, (t, v) in enumerate(replay, start=1):
        agg.add([{"time": t, "visitor": v, "route": "/"}], offset=offset)
    merger = WindowMerger([spec])
    for p in agg.close_ready():
        merger.add(p)
    assert merger.stats["late"] == 1
    again = PartialAggregator.restore(saved, clock=clock)  # the crash
    for offset, (t, v) in enumerate(replay, start=1):
        again.add([{"time": t, "visitor": v, "route": "/"}], offset=offset)
    for p in again.close_ready():
        merger.add(p)
    assert merger.stats["stale"] > 0 and merger.stats["late"] == 1


# --- aggregates audit (agg2): measures per visitor, bracketed by k ----------------------

OPS_MEASURES = ("requests", "visitors", "bytes", "p50_ms", "p95_ms", "p99_ms", "bot_share")
OPS = AggregateSpec("ops", 300, ("route",), OPS_MEASURES, k=10, allowed_lateness_seconds=0)


def publish(specs: list[AggregateSpec], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage 2 (one partition) and stage 3; every window closed."""
    agg = PartialAggregator(specs, 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 10 * 86400)
    merger = WindowMerger(specs)
    return [row for p in agg.close_ready() for row in merger.add(p)]


def row_of(rows: list[dict[str, Any]], kind: str, value: str | None = None) -> dict[str, Any]:
    return next(r for r in rows if r["kind"] == kind and r["value"] == value)


def test_p95_and_p99_of_a_published_cell_are_not_one_visitors_value() -> None:
    """A published cell has >= k visitors, but p95/p99 were nearest-rank quantiles over
    its events: below 20 (p95) or 100 (p99) events they were the cell's maximum, i.e.
    one visitor's own (bucketed) response time."""
    events = [{"time": T0, "visitor": f"v{i}", "route": "/account/export", "duration_ms": 20.0}
              for i in range(9)]  # fmt: skip
    events.append(
        {"time": T0, "visitor": "outlier", "route": "/account/export", "duration_ms": 4000.0}
    )
    cell = row_of(publish([OPS], events), "cell", "/account/export")
    assert cell["visitors"] == 10
    # 4000 ms is held by one visitor of ten: not what p95/p99 publish. 10 visitors are
    # too few for any quantile bracketed by 10 on each side: all withheld.
    assert (cell["p50_ms"], cell["p95_ms"], cell["p99_ms"]) == (None, None, None)


@pytest.fixture
def most_likely(monkeypatch: pytest.MonkeyPatch) -> None:
    """Percentiles as their most likely draw: the nearest rank's bucket."""
    monkeypatch.setattr(histogram, "draw", most_likely_draw)


@pytest.mark.usefixtures("most_likely")
def test_a_percentile_is_published_once_k_visitors_lie_on_each_side() -> None:
    def p95(n: int) -> float | None:
        events = [{"time": T0, "visitor": f"v{i}", "route": "/", "duration_ms": float(i + 1)}
                  for i in range(n)]  # fmt: skip
        return row_of(publish([OPS], events), "cell", "/")["p95_ms"]

    # Nearest rank of n=180 is 171: 171 values at or below it, 10 at or above; its
    # bucket is the most likely draw (171 ms, bucketed).
    assert p95(179) is None and p95(180) == 173.0
    for n, p50 in ((18, None), (19, 9.93)):  # rank 10 of 19: 10 ms, bucketed
        events = [{"time": T0, "visitor": f"v{i}", "route": "/", "duration_ms": float(i + 1)}
                  for i in range(n)]  # fmt: skip
        assert row_of(publish([OPS], events), "cell", "/")["p50_ms"] == p50


@pytest.mark.usefixtures("most_likely")
def test_one_visitor_at_the_cap_does_not_decide_a_cells_measures() -> None:
    """max_events_per_visitor (100) is 10x k (10): in a cell of k visitors one visitor
    at the cap made 100 of 109 events, so the cell's median duration and bot_share were
    that visitor's (the cap exists "so one heavy visitor cannot dominate a cell")."""
    events = [{"time": T0, "visitor": f"v{i}", "route": "/search", "duration_ms": 20.0,
               "bytes": 1000, "bot": False} for i in range(20)]  # fmt: skip
    events += [{"time": T0, "visitor": "heavy", "route": "/search", "duration_ms": 4000.0,
                "bytes": 1000, "bot": True} for _ in range(150)]  # fmt: skip
    rows = publish([OPS], events)
    for row in (row_of(rows, "cell", "/search"), row_of(rows, "summary")):
        assert row["visitors"] == 21 and row["requests"] == 120  # requests stay per event
        assert row["bytes"] == 120_000
        assert row["p50_ms"] == 19.9  # 20 visitors' 20 ms, not the heavy one's 4000
        # 1 visitor of 21 (not 100 requests of 120): a group below k, withheld
        assert row["bot_share"] is None


def test_a_visitors_measured_request_is_its_first_in_the_cell() -> None:
    spec = AggregateSpec("ops", 300, ("route", "method"), OPS_MEASURES, k=2,
                         allowed_lateness_seconds=0)  # fmt: skip
    events = [{"time": T0, "visitor": f"v{i}", "route": "/", "method": "POST",
               "duration_ms": 1.0} for i in range(3)]  # fmt: skip
    # "a" first requests / with GET (a new combination), then with POST (an older one).
    events += [{"time": T0, "visitor": "a", "route": "/", "method": "GET", "duration_ms": 500.0},
               {"time": T0, "visitor": "a", "route": "/", "method": "POST", "duration_ms": 1.0}]  # fmt: skip
    agg = PartialAggregator([spec], 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 300)
    (partial,) = agg.close_ready()
    route = partial.dimensions["route"].cells["/"]
    assert (route.requests, route.visitors) == (5, 4)
    assert sorted(route.hist.values()) == [1, 3]  # a's 500 ms once, the others' 1 ms
    post = partial.dimensions["method"].cells["POST"]
    assert sum(post.hist.values()) == 4  # a's first POST counts in the POST cell


def test_the_fold_publishes_no_measures() -> None:
    """A visitor in several folded cells has a value in each, and the merger holds no
    identities to keep one: __other__'s percentiles and bot share are null."""
    events = [{"time": T0, "visitor": f"v{i}", "route": "/", "duration_ms": 5.0}
              for i in range(40)]  # fmt: skip
    events += [{"time": T0, "visitor": "rare", "route": f"/r{j}", "duration_ms": 900.0}
               for j in range(30)]  # fmt: skip
    events += [{"time": T0, "visitor": f"w{i}", "route": f"/s{i}"} for i in range(9)]
    rows = publish([OPS], events)
    other = row_of(rows, "cell", OTHER)
    assert other["visitors"] is None and other["requests"] == 39
    assert [other[m] for m in ("p50_ms", "p95_ms", "p99_ms", "bot_share")] == [None] * 4
    assert row_of(rows, "summary")["p50_ms"] == 4.97


def test_partials_without_per_visitor_measures_publish_none() -> None:
    """A partial from code before per-visitor measures (in flight at an upgrade) has
    per-event histograms: its window's rows carry counts, no measures."""
    agg = PartialAggregator([OPS], 0, 1)
    agg.add([{"time": T0, "visitor": f"v{i}", "route": "/", "duration_ms": 5.0, "bot": True}
             for i in range(40)], offset=0)  # fmt: skip
    agg.advance_to(T0 + 300)
    (partial,) = agg.close_ready()
    old = partial.to_dict()
    for name in ("bots", "hist", "per_visitor"):
        del old[name]
    rows = WindowMerger([OPS]).add(Partial.from_dict(old))
    assert {r["visitors"] for r in rows} == {40}
    assert {r[m] for r in rows for m in ("p50_ms", "p95_ms", "p99_ms", "bot_share")} == {None}
    fresh = WindowMerger([OPS]).add(Partial.from_bytes(partial.to_bytes()))
    assert row_of(fresh, "cell", "/")["p50_ms"] == 4.97 and fresh[0]["bot_share"] == 1.0


# --- aggregates audit (agg2): a window below k looks like an empty one ------------------


def test_a_window_with_fewer_than_k_visitors_looks_like_an_empty_window() -> None:
    """A window with 1..k-1 visitors published a 'below_k' summary per dimension; a
    window without events publishes nothing. So the rows said "somebody (fewer than k
    people) was here between 10:05 and 10:10": a group below k made visible."""
    spec = AggregateSpec("ops", 300, ("route", "status_class"), OPS_MEASURES, k=10,
                         allowed_lateness_seconds=0)  # fmt: skip
    crowd = [{"time": T0, "visitor": f"v{i}", "route": "/", "status_class": "2xx"}
             for i in range(20)]  # fmt: skip
    quiet = T0 + 300  # the window after the crowd's
    alone = [{"time": quiet, "visitor": "night-owl", "route": "/", "status_class": "2xx"}]
    later = [{"time": quiet + 300, "visitor": f"w{i}", "route": "/", "status_class": "2xx"}
             for i in range(20)]  # fmt: skip

    def published(events: list[dict[str, Any]]) -> tuple[list[str], int]:
        agg = PartialAggregator([spec], 0, 1)
        agg.add(events, offset=0)
        agg.advance_to(T0 + 10 * 86400)
        merger = WindowMerger([spec])
        rows = [row for p in agg.close_ready() for row in merger.add(p)]
        return sorted({r["window_start"] for r in rows}), merger.stats["windows"]

    with_owl, without = published(crowd + alone + later), published(crowd + later)
    assert with_owl == without == (["2024-03-04T10:00:00Z", "2024-03-04T10:10:00Z"], 2)


# --- aggregates audit (agg2): a left-over outbox after a spec change --------------------


def _outbox_checkpoint(spec: AggregateSpec) -> tuple[bytes, list[dict[str, Any]]]:
    """A merger checkpointed with its outbox and never published (the crash): 30
    visitors on Chrome, 12 on Firefox."""
    events = [{"time": T0, "visitor": f"c{i}", "browser": "Chrome"} for i in range(30)]
    events += [{"time": T0, "visitor": f"f{i}", "browser": "Firefox"} for i in range(12)]
    agg = PartialAggregator([spec], 0, 1)
    agg.add(events, offset=0)
    agg.advance_to(T0 + 3600)
    merger = WindowMerger([spec])
    merger.outbox = [row for p in agg.close_ready() for row in merger.add(p)]
    return merger.snapshot(), merger.outbox


def test_a_left_over_outbox_is_not_published_below_a_raised_k() -> None:
    """README: after a restart the config's k applies to restored state. The merger's
    outbox (rows checkpointed, maybe never published) was republished as it was: cells
    gated with the old k reached the output after k was raised."""
    from dataclasses import replace

    old = AggregateSpec("ops", 300, ("browser",), k=10, allowed_lateness_seconds=0)
    saved, rows = _outbox_checkpoint(old)
    assert ("Firefox", 12) in {(r["value"], r["visitors"]) for r in rows}
    raised = replace(old, k=20)  # the operator raises k, then restarts
    again = WindowMerger.restore(saved, [raised])
    assert again.republish() == [] and again.stats["withheld"] == len(rows)
    # Unchanged, the same rows come back one revision higher; a dropped output's do not.
    same = WindowMerger.restore(saved, [old]).republish()
    assert [{**row, "revision": 1} for row in same] == rows
    assert WindowMerger.restore(saved, [replace(old, name="other")]).republish() == []


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_left_over_outbox_of_an_older_row_version_is_withheld(
    caplog: pytest.LogCaptureFixture, version: int
) -> None:
    # Version 1 rows were gated by older rules (windows below k published, measures
    # per request): after an upgrade with the same spec they came back (a review).
    # Version 2 rows: bot shares not gated against each other (audit D6).
    import orjson

    spec = AggregateSpec("ops", 300, ("browser",), k=10, allowed_lateness_seconds=0)
    saved, rows = _outbox_checkpoint(spec)
    data = orjson.loads(saved)
    data["outbox"] = [{**row, "version": version} for row in data["outbox"]]
    with caplog.at_level("WARNING", logger="logfog.aggregate"):
        again = WindowMerger.restore(orjson.dumps(data), [spec])
    assert again.republish() == [] and again.stats["withheld"] == len(rows)
    assert f"{len(rows)} checkpointed rows withheld" in caplog.text


@pytest.mark.parametrize(
    ("bots", "humans", "share"),
    [(0, 19, 0.0), (1, 18, None), (9, 10, None), (10, 10, 0.5), (20, 0, 1.0), (10, 5, None)],
)
def test_bot_share_names_no_group_below_k(bots: int, humans: int, share: float | None) -> None:
    # One "bot" of 19 visitors (curl is a bot here, and a person) was published as
    # 0.0526: the size of a group below k (a review). Humans too: 10 bots of 15 visitors
    # (0.6667) tell that 5 people, fewer than k, are the rest of the cell.
    agents = ["curl/8.5.0"] * bots + ["Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"] * humans
    events = [{"time": T0, "visitor": f"v{i}", "route": "/", "bot": ua.startswith("curl")}
              for i, ua in enumerate(agents)]  # fmt: skip
    assert row_of(publish([OPS], events), "cell", "/")["bot_share"] == share


def test_raised_k_with_pending_partials_publishes_no_wrong_fold() -> None:
    """Audit D7: stage 2 tails only the cells below *its* k. After k was raised (10 ->
    20) and the merger restarted, it gated partials tailed under k = 10 (pending, or
    still on the topic) with k = 20: a cell of 10..19 visitors folded but in no tail,
    so union_visitors() left it out of __other__'s "exact" count (30 instead of 42),
    and with browser one per visitor, T - Chrome - other = 12 = the hidden Safari
    group. A fold holding a cell some partial did not tail now has no exact count."""
    old = AggregateSpec("t", 3600, ("browser",), k=10, allowed_lateness_seconds=0)
    new = replace(old, k=20)

    def partial(spec: AggregateSpec, partition: int, counts: dict[str, int]) -> Partial:
        agg = PartialAggregator([spec], partition, 2)
        events = [
            {"time": T0, "visitor": f"p{partition}-{name}-{i}", "browser": name}
            for name, n in counts.items()
            for i in range(n)
        ]
        agg.add(events, offset=0)
        agg.advance_to(T0 + 3600)
        (p,) = agg.close_ready()
        return p

    before = WindowMerger([old])
    # Partition 0 closed the window under k = 10 before the restart: pending.
    first = partial(old, 0, {"Chrome": 30, "Safari": 12, "Edge": 8, "Opera": 8})
    assert before.add(first) == []
    assert untailed([first], "browser") == {"Chrome", "Safari"}
    merger = WindowMerger.restore(before.snapshot(), [new])  # restarted with k = 20
    rows = merger.add(partial(new, 1, {"Chrome": 30, "Edge": 7, "Opera": 7}))
    by_value = {r["value"]: r for r in rows}
    total, chrome = by_value[None]["visitors"], by_value["Chrome"]["visitors"]
    assert (total, chrome) == (102, 60)
    # Truth: 42 folded visitors (Safari 12, Edge 15, Opera 15). Before the fix: 30.
    other = by_value[OTHER]
    assert other["visitors"] is None and other["visitors_min"] == 42
    assert by_value[None]["other"]["visitors"] is None
    assert not 0 < total - chrome - (other["visitors"] or 0) < new.k


def test_a_fold_without_an_exact_count_is_still_k_visitors_or_more() -> None:
    # An untailed cell in a fold that could be below k: the smallest published cell is
    # folded too, as for check (c), so the fold is >= k for sure.
    cells = {"A": Cell(40, 40), "B": Cell(25, 25), "S": Cell(3, 3)}
    gate = gate_cells(cells, [], total=68, k=20, untailed=frozenset({"S"}))
    assert gate.published == ["A"] and gate.folded == ["B", "S"]
    assert gate.other_visitors is None and gate.secondary == 1
    assert gate.other_min is not None and gate.other_min >= 20


def test_a_regions_bot_share_is_gated_against_its_countrys() -> None:
    # DE: Bavaria 20 visitors (10 bots), Berlin 10 (1 bot: its share withheld). With
    # Bavaria's share published beside DE's, 11 - 10 = Berlin's single bot.
    spec = AggregateSpec("t", 3600, (PLACE,), ("requests", "visitors", "bot_share"), k=10)
    bavaria = {"country": "DE", "region": "Bavaria"}
    events = [{"time": T0, "visitor": f"b{i}", **bavaria, "bot": i < 10} for i in range(20)]
    events += [{"time": T0, "visitor": f"e{i}", "country": "DE", "region": "Berlin",
                "bot": i == 0} for i in range(10)]  # fmt: skip
    rows = publish([spec], events)
    shares = {r["value"]: r["bot_share"] for r in rows if r["kind"] == "cell"}
    assert shares == {"DE": round(11 / 30, 4), "DE/Bavaria": None, "DE/Berlin": None}
    assert row_of(rows, "summary")["bot_share"] == round(11 / 30, 4)


def test_a_partial_of_an_output_no_longer_published_is_counted_not_an_error() -> None:
    """After aggregates.windows is narrowed, the partials topic still holds partials of
    the outputs left out: the merger raised ValueError, which the merge agent logs and
    counts as an unreadable record, once per partial (a review). It counts them."""
    from streams.aggregate.spec import DEFAULT_SPECS

    ops, _, day = DEFAULT_SPECS
    stage2 = PartialAggregator([ops], 0, 1)
    stage2.add([{"time": 0, "visitor": "v1", "route": "/"}], offset=1)
    stage2.advance_to(3600)
    partials = stage2.close_ready()
    merger = WindowMerger([day])
    assert partials and [merger.add(p) for p in partials] == [[] for _ in partials]
    assert merger.stats["unconfigured"] == len(partials)


# --- aggregates audit (session 16): within one window's rows -----------------------------

BOTS = AggregateSpec("ops", 300, ("country", "route"), ("requests", "visitors", "bot_share"),
                     k=10, allowed_lateness_seconds=0)  # fmt: skip


def test_cell_bot_shares_do_not_locate_the_few_others_of_a_withheld_summary_share() -> None:
    """30 bots and 2 people in a window: the summary's share is withheld (2 people < k),
    but cells were then judged by their own rule only, so US at 1.0 and the reset
    page's null share said where the two people were, and what they requested."""
    events = [{"time": T0, "visitor": f"b{i}", "country": "US" if i < 20 else "DE",
               "route": "/" if i % 2 else "/robots.txt", "bot": True} for i in range(30)]  # fmt: skip
    events += [{"time": T0, "visitor": f"b{i}", "country": "DE", "route": "/reset", "bot": True}
               for i in range(20, 30)]  # fmt: skip
    events += [{"time": T0, "visitor": f"p{i}", "country": "DE", "route": "/reset", "bot": False}
               for i in range(2)]  # fmt: skip
    rows = publish([BOTS], events)
    assert row_of(rows, "summary")["bot_share"] is None
    cells = [r for r in rows if r["kind"] == "cell"]
    assert {r["value"] for r in cells} >= {"US", "DE", "/", "/robots.txt", "/reset"}
    assert [r["bot_share"] for r in cells] == [None] * len(cells)
    # The mirror case: 40 people and one script client (a person's curl).
    events = [{"time": T0, "visitor": f"h{i}", "country": "DE" if i < 20 else "FR",
               "route": "/" if i % 2 else "/blog", "bot": False} for i in range(40)]  # fmt: skip
    events += [{"time": T0, "visitor": f"h{i}", "country": "DE", "route": "/export"}
               for i in range(9)]  # fmt: skip
    events.append({"time": T0, "visitor": "curl", "country": "DE", "route": "/export", "bot": True})
    rows = publish([BOTS], events)
    assert {r["bot_share"] for r in rows} == {None}


@pytest.mark.usefixtures("most_likely")
def test_one_visitors_extreme_value_does_not_set_a_percentile() -> None:
    """The mean of the 2k - 1 values around the rank took the maximum in at the
    smallest publishable sizes: p95 of 180 visitors went from 21.7 to 2360 ms with one
    visitor's 45 s request (an audit). The most likely draw is the nearest rank's
    bucket, which the maximum does not move (its odds: tests/unit/test_histogram.py)."""

    def p95(n: int, slow: float) -> float | None:
        durations = [20.0 + (i % 7) for i in range(n - 1)] + [slow]
        events = [{"time": T0, "visitor": f"v{i}", "route": "/", "duration_ms": d}
                  for i, d in enumerate(durations)]  # fmt: skip
        return row_of(publish([OPS], events), "cell", "/")["p95_ms"]

    for n in (180, 190, 200, 260):
        assert p95(n, 26.0) == p95(n, 45_000.0), n
    assert p95(180, 26.0) is not None


def test_the_fold_does_not_say_how_many_cells_it_holds() -> None:
    """``other: {cells, secondary}`` gave the sizes of groups below k: ten folded
    countries of ten visitors are ten countries of one visitor each (an audit)."""
    spec = AggregateSpec("product", 3600, ("country",), ("requests", "visitors"), k=10,
                         allowed_lateness_seconds=0)  # fmt: skip
    events = [{"time": T0, "visitor": f"d{i}", "country": "DE"} for i in range(30)]
    events += [{"time": T0, "visitor": f"x{i}", "country": f"C{i}"} for i in range(10)]
    summary = row_of(publish([spec], events), "summary")
    assert summary["other"] == {"requests": 10, "visitors": None, "visitors_min": 10}


PRODUCT = AggregateSpec("product", 3600, ("country", "route"), ("requests", "visitors"), k=10,
                        allowed_lateness_seconds=0)  # fmt: skip


def fold_rows(rows: list[dict[str, Any]], dimension: str) -> list[dict[str, Any]]:
    """One dimension's rows, without the window's labels (for comparing two windows)."""
    keep = ("kind", "value", "requests", "visitors", "visitors_min", "other")
    return [{k: r.get(k) for k in keep} for r in rows if r["dimension"] == dimension]


def visits(counts: dict[str, int], dimension: str = "country") -> list[dict[str, Any]]:
    return [
        {"time": T0, "visitor": f"{value}{i}", dimension: value, "route": "/"}
        for value, n in counts.items()
        for i in range(n)
    ]


def test_a_forced_fold_is_published_like_an_unforced_one() -> None:
    """Audit F1: DE 20, FR 10, IS 1. FR passes (a), but the fold {IS} (1 visitor) fails
    (c), so FR is folded too. ``visitors: null`` was published only for such forced
    folds, and in a dimension with one value per visitor the fold is T - DE = 11: a
    cell of >= 10 plus exactly one visitor from countries below k. Every fold is now
    published alike: 11 visitors in FR 9 and IS 2 (no cell of k) give the same rows."""
    forced = fold_rows(publish([PRODUCT], visits({"DE": 20, "FR": 10, "IS": 1})), "country")
    unforced = fold_rows(publish([PRODUCT], visits({"DE": 20, "FR": 9, "IS": 2})), "country")
    assert forced == unforced
    other = next(r for r in forced if r["value"] == OTHER)
    assert other["visitors"] is None and other["visitors_min"] == 11  # T - DE: published
    assert forced[-1]["other"] == {"requests": 11, "visitors": None, "visitors_min": 11}


def observed(rows: list[dict[str, Any]], k: int, cap: int = 100) -> tuple[int, int] | None:
    """What anyone can tell of ``T - fold`` from one dimension's rows: the fold has >= k
    visitors (else it is not published), every visitor outside the published cells is
    in it, it has at most ``requests`` visitors and at least requests / cap."""
    summary = next(r for r in rows if r["kind"] == "summary")
    other = next((r for r in rows if r["value"] == OTHER), None)
    if other is None:
        return None
    total = summary["visitors"]
    published = sum(r["visitors"] for r in rows if r["kind"] == "cell" and r["value"] != OTHER)
    lower = max(k, total - published, -(-other["requests"] // cap), other["visitors_min"] or 0)
    upper = min(other["requests"], total)
    if other["visitors"] is not None:
        lower = upper = other["visitors"]
    return total - upper, total - lower


def test_the_folds_requests_do_not_pin_what_check_a_withheld() -> None:
    """Audit F2: 13 visitors view /, 10 of them /pricing once. /pricing fails (a) (13 -
    10 = 3) and was folded alone, with requests 10: a published fold has >= 10 visitors
    and at most 10 (one request each at least), so exactly 10, and 3 visitors never
    requested the folded route. Check (b) now holds for the interval an observer gets
    (and for the merger's own count of a one-cell fold): / is folded too."""
    events = [{"time": T0, "visitor": f"v{i}", "country": "DE", "route": "/"} for i in range(13)]
    events += [{"time": T0, "visitor": f"v{i}", "country": "DE", "route": "/pricing"}
               for i in range(10)]  # fmt: skip
    rows = fold_rows(publish([PRODUCT], events), "route")
    low, high = observed(rows, PRODUCT.k) or (0, 0)
    assert not (low > 0 and high < PRODUCT.k), (low, high)  # not pinned
    assert not 0 < high < PRODUCT.k  # and the most outside the fold is none or k
    assert [r["value"] for r in rows] == [OTHER, None]  # everything folded: T - fold = 0
    # Twice each: requests 20 bound nothing, but the merger knows the fold is 10.
    rows = fold_rows(publish([PRODUCT], events + events[13:]), "route")
    assert [r["value"] for r in rows] == [OTHER, None]


def test_the_most_outside_the_fold_is_none_or_k() -> None:
    """Check (b'): T - visitors_min, the most the published numbers leave outside the
    fold, must be 0 or >= k, whatever bounds the fold from above."""
    # T = 13: "/" and "/q" seen by all, "/p" by 10 (fails a: 3). The fold {/p} has >= k
    # visitors, so T - fold <= 3 (and its 10 requests make it 3): "/" is folded too,
    # then "/q" (T - k is still 3), and the fold is T.
    g = gate_cells(cells(**{"/": 13, "/p": 10, "/q": 13}), [], total=13, k=10)
    assert g.published == [] and g.other_visitors == 13 and g.other_min == 13
    # "/p" seen twice each: its 20 requests bound nothing, T - fold is 0..3: the same.
    twice = {"/": Cell(13, 13), "/p": Cell(20, 10), "/q": Cell(13, 13)}
    assert gate_cells(twice, [], total=13, k=10).published == []
    # "/" by 43, "/p" by 40 (fails a), "/q" by 12: the fold {/p} has >= 10 visitors,
    # T - fold <= 33: published as before.
    g = gate_cells(cells(**{"/": 43, "/p": 40, "/q": 12}), [], total=43, k=10)
    assert g.published == ["/", "/q"] and g.folded == ["/p"] and g.other_min == 10


def test_the_published_bound_is_one_anyone_can_compute() -> None:
    """``visitors_min`` is k, T - published cells, or requests / cap, whichever is
    highest, for every fold alike: never the merger's own count of a folded cell."""
    # Everyone saw "A"; "B" and "C" 9 visitors each, 100 requests each (the cap): 1,800
    # requests in the fold are 18 visitors at least.
    heavy = {"A": Cell(1900, 50), "B": Cell(900, 9), "C": Cell(900, 9)}
    g = gate_cells(heavy, [((("B",), 9), (("C",), 9))], total=50, k=10, cap=100)
    assert g.published == ["A"] and g.other_visitors == 18 and g.other_min == 18


def test_a_windows_summary_percentiles_are_one_draw_for_every_dimension() -> None:
    """Each dimension's summary drew the window's percentiles again: an ops window of
    four dimensions published four draws of one histogram, whose most common value
    points at the nearest rank the draw hides (an audit, session 16)."""
    spec = AggregateSpec("ops", 300, ("route", "method", "country"), OPS_MEASURES, k=10,
                         allowed_lateness_seconds=0)  # fmt: skip
    events = [{"time": T0, "visitor": f"v{i}", "route": f"/r{i % 2}", "method": "GET",
               "country": "DE", "duration_ms": 10.0 * 1.3**i} for i in range(40)]  # fmt: skip
    for _ in range(5):
        summaries = [r for r in publish([spec], events) if r["kind"] == "summary"]
        assert len(summaries) == 3
        assert len({(r["p50_ms"], r["p95_ms"], r["p99_ms"]) for r in summaries}) == 1
