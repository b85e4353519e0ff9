"""Re-identification check for published aggregates (privacy rules 4, 9, 15).

A generated population (many ordinary visitors, a few rare ones: one visitor from a
small city with a rare browser, a lone visitor from a rare country, a heavy visitor
beyond the contribution cap) goes through stage 2, split over 3 partitions by visitor
hash, and stage 3. Every published number is compared with a naive brute-force
computation over the event list, and the published rows are checked for:

- every published cell has >= k distinct visitors (rule 9);
- the share of rows whose quasi-identifier combination is held by < k visitors is 0
  (rule 15);
- no subtraction isolates fewer than k visitors: total vs cell, total vs __other__,
  place ancestor vs descendant, and a place parent vs what its published children
  leave uncovered (computed exactly here, from the events);
- the rare visitors' city, country and browser never appear as published values;
- a window with fewer than k visitors publishes nothing, like an empty one;
- __other__ holds the rest of the mass exactly (requests are additive);
- measures count one value per visitor, that of its first request in the cell (in
  the window, for summaries), and a percentile is published only when k visitors'
  values lie at or below its nearest rank and k at or above it (else null), and its
  most likely draw is the nearest rank's bucket (the draw itself is random: here it
  is replaced by its most likely outcome; its odds are tests/unit/test_histogram.py's);
  __other__ publishes none; no bot count below k follows from the summary's bot share
  minus the published cells' (complementary suppression).

The tests at the end play the analyst with the default config's outputs (an audit,
branch audit-differencing): they combine published rows of nested windows of
different outputs, or a summary's bot share with its cells', and check that no group
of 1..k-1 visitors (or one heavy visitor's capped volume) follows.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.aggregate import (
    DEFAULT_SPECS,
    OTHER,
    PLACE,
    UNKNOWN,
    AggregateSpec,
    Partial,
    PartialAggregator,
    WindowMerger,
    histogram,
)
from streams.aggregate.merge import iso_utc
from streams.aggregate.runtime import specs_from_config
from streams.aggregate.spec import MEASURES
from streams.config import load_file
from tests.support.draws import most_likely

T0 = 1709546400  # 2024-03-04T10:00:00Z
PLACES = [
    (("DE", "Bavaria", "Munich"), 30), (("DE", "Bavaria", "Nuremberg"), 8),
    (("DE", "Berlin", "Berlin"), 25), (("FR", "Ile-de-France", "Paris"), 20),
    (("FR", "Occitanie", "Toulouse"), 6), (("US", "California", "San Francisco"), 10),
    (("US", None, None), 4), ((None, None, None), 3),
]  # fmt: skip
BROWSERS = [("Chrome", 50), ("Firefox", 25), ("Safari", 20), ("Edge", 5)]
ROUTES = [("/", 40), ("/products/{id}", 30), ("/cart", 10), ("/about", 5), ("/blog/{id}", 15)]
RARE_CITY = ("IS", "Westfjords", "Isafjordur")
RARE_BROWSER = "Lynx"
RARE_COUNTRY = ("KI", "Gilbert Islands", "Tarawa")


def _pick(rng: random.Random, table: Sequence[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def population(seed: int, visitors: int = 240, hours: int = 3) -> list[dict[str, Any]]:
    """Events in arrival order: time-ordered up to a shuffle within 5 minutes."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []

    def visit(pseudo: str, place: tuple[Any, ...], browser: str, n: int, hour: int) -> None:
        for _ in range(n):
            t = T0 + hour * 3600 + rng.randrange(0, 3600)
            events.append(
                {
                    "time": t - t % 300,
                    "visitor": pseudo,
                    "route": _pick(rng, ROUTES),
                    "status_class": rng.choice(["2xx", "2xx", "2xx", "3xx", "4xx"]),
                    "method": rng.choice(["GET", "GET", "GET", "POST"]),
                    "country": place[0],
                    "region": place[1],
                    "city": place[2],
                    "browser": browser,
                    "os": rng.choice(["Windows", "macOS", "Android"]),
                    "device": rng.choice(["desktop", "mobile"]),
                    "referrer": rng.choice([None, "google.com", "news.example"]),
                    "language": rng.choice(["de", "en", "fr"]),
                    "bytes": rng.randrange(100, 50_000),
                    "duration_ms": round(rng.lognormvariate(3, 1), 2),
                    "bot": rng.random() < 0.05,
                }
            )

    for i in range(visitors):
        pseudo = f"{rng.getrandbits(64):016x}"
        place, browser = _pick(rng, PLACES), _pick(rng, BROWSERS)
        for hour in rng.sample(range(hours), rng.randint(1, hours)):
            visit(pseudo, place, browser, rng.randint(1, 6), hour)
        if i == 0:  # heavy visitor: beyond the contribution cap
            visit(pseudo, place, browser, 130, 0)
    visit(f"{rng.getrandbits(64):016x}", RARE_CITY, RARE_BROWSER, 7, 1)
    visit(f"{rng.getrandbits(64):016x}", RARE_COUNTRY, "Chrome", 3, 2)
    events.sort(key=lambda e: (e["time"], rng.random()))
    # Shuffle within the lateness bound: swap neighbours less than 5 minutes apart.
    for i in range(len(events) - 1):
        if rng.random() < 0.3 and events[i + 1]["time"] - events[i]["time"] <= 300:
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


def partition_of(visitor: str, partitions: int) -> int:
    return zlib.crc32(visitor.encode()) % partitions


def run(
    specs: Sequence[AggregateSpec],
    events: Sequence[dict[str, Any]],
    partitions: int = 3,
    batch: int = 37,
) -> tuple[list[dict[str, Any]], list[Partial], WindowMerger]:
    """Stage 2 per partition (one record per event) and stage 3; flush at the end."""
    by_partition: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for e in events:
        by_partition[partition_of(e["visitor"], partitions)].append(e)
    aggs = [PartialAggregator(specs, p, partitions) for p in range(partitions)]
    merger = WindowMerger(specs)
    rows: list[dict[str, Any]] = []
    partials: list[Partial] = []
    cursor = [0] * partitions
    while any(c < len(b) for c, b in zip(cursor, by_partition, strict=True)):
        for p, agg in enumerate(aggs):
            chunk = by_partition[p][cursor[p] : cursor[p] + batch]
            for i, e in enumerate(chunk):
                agg.add([e], offset=cursor[p] + i)
            cursor[p] += len(chunk)
            for partial in agg.close_ready():
                partials.append(partial)
                rows.extend(merger.add(Partial.from_bytes(partial.to_bytes())))
    for agg in aggs:
        agg.advance_to(T0 + 10 * 86400)
        for partial in agg.close_ready():
            partials.append(partial)
            rows.extend(merger.add(partial))
    return rows, partials, merger


def canonical(rows: list[dict[str, Any]]) -> list[bytes]:
    """Rows in a stable order (emission order depends on partition timing)."""
    return sorted({orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in rows})


# --- naive brute force -----------------------------------------------------------------


def _value(v: Any) -> str:
    return UNKNOWN if v is None else str(v)


def place_paths(e: dict[str, Any]) -> list[str]:
    """The place cells of an event, written independently of the implementation."""
    if e["country"] is None:
        return [UNKNOWN]
    parts = [e["country"], e["region"], e["city"]]
    out = []
    for depth in range(1, 4):
        if parts[depth - 1] is None:
            break
        out.append("/".join(parts[:depth]))
    return out


def counted(
    specs: Sequence[AggregateSpec], events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Events that survive the contribution cap (no event here is late). One fate per
    event for all the outputs run together: an event over the cap of one output's
    window counts in none (else nested windows differ by the capped events)."""
    seen: dict[tuple[int, int, str], int] = defaultdict(int)
    out = []
    for e in events:
        keys = [(i, e["time"] // s.window_seconds, e["visitor"]) for i, s in enumerate(specs)]
        if all(seen[key] < s.max_events_per_visitor for key, s in zip(keys, specs, strict=True)):
            for key in keys:
                seen[key] += 1
            out.append(e)
    return out


class Naive:
    """Per (window, dimension, value): visitor sets, request and byte counts, and each
    visitor's first event (in the window: ``first_in_window``)."""

    def __init__(
        self,
        spec: AggregateSpec,
        events: Sequence[dict[str, Any]],
        specs: Sequence[AggregateSpec] | None = None,
    ) -> None:
        self.visitors: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.bytes: dict[tuple[str, str, str], int] = defaultdict(int)
        self.first: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
        self.total: dict[str, set[str]] = defaultdict(set)
        self.total_requests: dict[str, int] = defaultdict(int)
        self.total_bytes: dict[str, int] = defaultdict(int)
        self.first_in_window: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in counted([spec] if specs is None else specs, events):
            w = iso_utc(e["time"] - e["time"] % spec.window_seconds)
            self.total[w].add(e["visitor"])
            self.total_requests[w] += 1
            self.total_bytes[w] += e.get("bytes") or 0
            self.first_in_window[w].setdefault(e["visitor"], e)
            self.events[w].append(e)
            for dim in spec.dimensions:
                values = place_paths(e) if dim == PLACE else [_value(e[dim])]
                for v in values:
                    self.visitors[w, dim, v].add(e["visitor"])
                    self.requests[w, dim, v] += 1
                    self.bytes[w, dim, v] += e.get("bytes") or 0
                    self.first[w, dim, v].setdefault(e["visitor"], e)

    def top_values(self, w: str, dim: str) -> set[str]:
        """The values that partition the window's events: for place, the countries."""
        return {
            v
            for (ww, d, v) in self.visitors
            if ww == w and d == dim and (d != PLACE or "/" not in v)
        }


@pytest.fixture(autouse=True, scope="module")
def most_likely_percentiles() -> Iterable[None]:
    """Percentiles as their most likely draw, so rows compare with a brute force."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(histogram, "draw", most_likely)
        yield


def around_rank(values: Sequence[float], q: float, k: int) -> float | None:
    """The q quantile's nearest rank, when k values lie at or below it and k at or
    above it (published as its bucket's value: the most likely draw)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    if not ordered or rank < k or len(ordered) - rank + 1 < k:
        return None
    return ordered[rank - 1]


def check_measures(
    spec: AggregateSpec, row: dict[str, Any], first: dict[str, dict[str, Any]] | None, n_bytes: int
) -> None:
    """A row's measures against its visitors' first events (None: __other__, none)."""
    if "bytes" in spec.measures:
        assert row["bytes"] == n_bytes
    for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        if name not in spec.measures:
            continue
        durations = [e["duration_ms"] for e in (first or {}).values()
                     if e.get("duration_ms") is not None]  # fmt: skip
        truth = None if first is None else around_rank(durations, q, spec.k)
        if truth is None:
            assert row[name] is None, (name, row[name], len(durations))
        else:
            # Published as its log bucket's value (the bucket's geometric midpoint, 3
            # significant digits; 0 for the bottom bucket).
            assert row[name] == histogram.value(histogram.bucket(truth)), (name, truth)
    if "bot_share" in spec.measures:
        if first is None:
            assert row["bot_share"] is None
        else:
            bots = sum(e.get("bot") is True for e in first.values())
            others = len(first) - bots
            if not all(n == 0 or n >= spec.k for n in (bots, others)):
                assert row["bot_share"] is None  # the bots or the others: a group below k
            elif row["kind"] == "summary":
                assert row["bot_share"] == round(bots / len(first), 4)
            else:  # a cell's may also be withheld to protect another's (check_bot_shares)
                assert row["bot_share"] in (None, round(bots / len(first), 4))


def check_rows(
    spec: AggregateSpec,
    events: Sequence[dict[str, Any]],
    rows: list[dict[str, Any]],
    specs: Sequence[AggregateSpec] | None = None,
) -> Counter[str]:
    """Everything the module docstring promises, for one spec's rows (``specs``: all
    the outputs run with it, which share each event's fate; None: it alone). Returns
    how many folds of each :func:`fold_kind` the rows hold."""
    k = spec.k
    naive = Naive(spec, events, specs)
    mine = [r for r in rows if r["output"] == spec.name and r["window"] == spec.window_label]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in mine:
        groups[r["window_start"], r["dimension"]].append(r)
    # every window with k or more visitors is published once per dimension, and no
    # other window (one below k must look like one without events)
    published = {w for w, visitors in naive.total.items() if len(visitors) >= k}
    assert set(groups) == {(w, dim) for w in published for dim in spec.dimensions}
    assert len(mine) == len(
        {(r["window_start"], r["dimension"], r["kind"], r["value"]) for r in mine}
    )

    bad_rows = 0
    folds: Counter[str] = Counter()
    for (w, dim), group in groups.items():
        summaries = [r for r in group if r["kind"] == "summary"]
        assert len(summaries) == 1
        summary = summaries[0]
        total = len(naive.total[w])
        assert "suppressed" not in summary
        assert summary["visitors"] == total
        assert summary["requests"] == naive.total_requests[w]
        check_measures(spec, summary, naive.first_in_window[w], naive.total_bytes[w])
        cells = {r["value"]: r for r in group if r["kind"] == "cell" and r["value"] != OTHER}
        for value, r in cells.items():
            truth = naive.visitors[w, dim, value]
            assert r["visitors"] == len(truth) >= k, (w, dim, value)
            assert r["requests"] == naive.requests[w, dim, value]
            check_measures(spec, r, naive.first[w, dim, value], naive.bytes[w, dim, value])
            if len(truth) < k:  # rule 15: quasi-identifier combination held by < k
                bad_rows += 1
            # subtraction: the total contains every cell
            assert not 0 < total - len(truth) < k, (w, dim, value)
        # __other__ = the rest, exactly (requests); its visitors >= k
        top_published = {v for v in cells if dim != PLACE or "/" not in v}
        rest = naive.top_values(w, dim) - top_published
        rest_requests = sum(naive.requests[w, dim, v] for v in rest)
        rest_visitors = set().union(*(naive.visitors[w, dim, v] for v in rest))
        others = [r for r in group if r["value"] == OTHER]
        if rest:
            (other,) = others
            assert other["requests"] == rest_requests
            check_measures(spec, other, None, sum(naive.bytes[w, dim, v] for v in rest))
            assert summary["other"]["requests"] == rest_requests
            assert len(rest_visitors) >= k
            folds[fold_kind(naive, w, dim, rest, total, k, bool(top_published))] += 1
            # Every fold alike, forced or not (audit F1): no count, and the bound anyone
            # computes from the published numbers: k, T - published cells, requests / cap.
            assert other["visitors"] is None and summary["other"]["visitors"] is None
            lower = max(
                k,
                total - sum(cells[v]["visitors"] for v in top_published),
                math.ceil(rest_requests / spec.max_events_per_visitor),
            )
            assert other["visitors_min"] == summary["other"]["visitors_min"] == lower
            assert lower <= len(rest_visitors)
            # What anyone can tell of T - fold: [T - min(requests, T), T - lower] (each
            # fold visitor has a request in it). Never inside 1..k-1 (audit F2), and
            # its top, the most outside the fold, none or >= k (check b').
            upper = min(rest_requests, total)
            assert not (total - upper > 0 and total - lower < k), (w, dim, upper, lower)
            assert not 0 < total - lower < k, (w, dim, lower)
            # Also with the merger's own bound, the folded cells' visitors summed.
            upper = min(upper, sum(len(naive.visitors[w, dim, v]) for v in rest))
            assert not (total - upper > 0 and total - lower < k), (w, dim, upper, lower)
        else:
            assert others == [] and summary["other"] is None
        assert (
            sum(cells[v]["requests"] for v in top_published) + rest_requests == summary["requests"]
        )
        if dim == PLACE:
            check_place(naive, w, cells, total, k)
        if "bot_share" in spec.measures:
            check_bot_shares(naive, w, dim, summary, cells, k)
    assert bad_rows == 0
    return folds


def fold_kind(
    naive: Naive, w: str, dim: str, rest: set[str], total: int, k: int, beside: bool
) -> str:
    """How the gate came to a fold, from the truth: "forced (a)" holds a cell failing
    check a, "forced" a cell of >= k folded to cover others (secondary suppression),
    "small" only cells below k; "all" when nothing is published beside it."""
    sizes = [len(naive.visitors[w, dim, v]) for v in rest]
    if not beside:
        return "all"
    if any(0 < total - n < k for n in sizes):
        return "forced (a)"
    return "forced" if any(n >= k for n in sizes) else "small"


def check_bot_shares(
    naive: Naive,
    w: str,
    dim: str,
    summary: dict[str, Any],
    cells: dict[str, dict[str, Any]],
    k: int,
) -> None:
    """No bot count (or count of others) of 1..k-1 follows from the summary's bots
    minus one published cell's, or minus all top-level published cells' (visitors are
    published, so share * visitors is a row's bot count). Also when the summary's own
    share is withheld: its bots and others are still the window's, and a cell at 1.0
    beside it said where its fewer than k others were (an audit, session 16)."""

    def bots_others(first: dict[str, dict[str, Any]]) -> tuple[int, int]:
        bots = sum(e.get("bot") is True for e in first.values())
        return bots, len(first) - bots

    bots, others = bots_others(naive.first_in_window[w])
    shared = [
        bots_others(naive.first[w, dim, v])
        for v, r in cells.items()
        if r["bot_share"] is not None and (dim != PLACE or "/" not in v)
    ]
    if not shared:
        return  # nothing to subtract: the summary's own share has its own rule
    for b, o in shared:
        assert not 0 < bots - b < k and not 0 < others - o < k, (w, dim)
    assert not 0 < bots - sum(b for b, _ in shared) < k, (w, dim)
    assert not 0 < others - sum(o for _, o in shared) < k, (w, dim)


def check_place(naive: Naive, w: str, cells: dict[str, dict[str, Any]], total: int, k: int) -> None:
    published = set(cells)
    for value in published:
        parts = value.split("/")
        assert cells[value]["level"] == ("country", "region", "city")[len(parts) - 1]
        mine = naive.visitors[w, PLACE, value]
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            assert ancestor in published  # precision adapts top-down only
            assert not 0 < len(naive.visitors[w, PLACE, ancestor]) - len(mine) < k
    # a published parent minus its published children: the uncovered visitors
    for parent in published:
        children = {c for c in published if c.rsplit("/", 1)[0] == parent and c != parent}
        if not children and parent.count("/") == 2:
            continue
        uncovered = {
            e["visitor"]
            for e in naive.events[w]
            if parent in place_paths(e) and not children.intersection(place_paths(e))
        }
        if children:
            assert not 0 < len(uncovered) < k, (w, parent, len(uncovered))


# --- the properties --------------------------------------------------------------------

SPECS = [
    *DEFAULT_SPECS,
    AggregateSpec("tiny", 3600, ("browser", PLACE, "route"), k=3),
    # Small k, hour windows, every measure: percentiles up to p99 get published.
    AggregateSpec("tinyops", 3600, ("route", "status_class", "browser"), MEASURES, k=3),
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), visitors=st.sampled_from([12, 60, 240]))
def test_published_rows_pass_the_gate_and_match_brute_force(seed: int, visitors: int) -> None:
    events = population(seed, visitors)
    rows, partials, _ = run(SPECS, events)
    for spec in SPECS:
        check_rows(spec, events, rows, SPECS)
    published_values = {r["value"] for r in rows}
    for rare in (RARE_BROWSER, "IS", "IS/Westfjords", "IS/Westfjords/Isafjordur", "KI"):
        assert rare not in published_values
    # No pseudonym anywhere in what stage 2 emits or stage 3 publishes.
    pseudonyms = {e["visitor"] for e in events}
    blob = b"".join(p.to_bytes() for p in partials).decode() + repr(rows)
    assert not any(v in blob for v in pseudonyms)


def test_rare_values_are_published_once_k_visitors_share_them() -> None:
    spec = AggregateSpec("t", 3600, ("browser", PLACE), k=10)
    events = [{"time": T0, "visitor": f"de{i:014d}", "browser": "Chrome", "country": "DE",
               "region": "Berlin", "city": "Berlin"} for i in range(100)]  # fmt: skip
    events += [{"time": T0, "visitor": f"is{i:014d}", "browser": RARE_BROWSER, "country": "IS",
                "region": "Westfjords", "city": "Isafjordur"} for i in range(30)]  # fmt: skip
    rows, _, _ = run([spec], events)
    check_rows(spec, events, rows)
    published = {(r["value"], r["visitors"]) for r in rows if r["kind"] == "cell"}
    assert {(RARE_BROWSER, 30), ("IS", 30), ("IS/Westfjords/Isafjordur", 30)} <= published
    assert ("DE/Berlin/Berlin", 100) in published and not any(r["value"] == OTHER for r in rows)


def test_measures_are_per_visitor_and_withheld_without_k_visitors_each_side() -> None:
    """The brute force above checks every measure; this makes sure its cases occur:
    percentiles published and withheld, and one visitor at the cap in a cell."""
    events = population(7, 600)  # ~400 visitors an hour: p99 needs 201 (k=3)
    rows, _, _ = run(SPECS[-1:], events)
    check_rows(SPECS[-1], events, rows)
    mine = [r for r in rows if r["output"] == "tinyops" and r["value"] != OTHER]
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        assert any(r[name] is not None for r in mine), name
    for name in ("p95_ms", "p99_ms"):  # p95 needs 41 visitors (k=3), p99 201
        assert any(r[name] is None for r in mine), name
    # One visitor beyond the cap: its 100 counted requests weigh one value per cell.
    assert max(Counter(e["visitor"] for e in events).values()) > 100


def test_the_populations_exercise_every_kind_of_fold() -> None:
    """The brute force above checks every fold; this makes sure its cases occur: folds
    holding a cell check (a) withheld, a cell of >= k folded to cover smaller ones
    (secondary suppression), only cells below k, and everything."""
    kinds: Counter[str] = Counter()
    for seed, visitors in ((1, 12), (2, 60), (3, 240)):
        events = population(seed, visitors)
        rows, _, _ = run(SPECS, events)
        for spec in SPECS:
            kinds += check_rows(spec, events, rows, SPECS)
    assert {"forced (a)", "forced", "small", "all"} <= set(kinds), kinds


def test_partitioning_does_not_change_the_output() -> None:
    events = population(11, 150)
    one, _, _ = run(SPECS, events, partitions=1)
    three, _, _ = run(SPECS, events, partitions=3, batch=5)
    five, _, _ = run(SPECS, events, partitions=5, batch=500)
    assert canonical(one) == canonical(three) == canonical(five)
    assert len(one) == len(canonical(one))  # and no row twice


# --- differencing with the default config's outputs ------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DAY = 1709510400  # 2024-03-04T00:00:00Z, a UTC day start (1d windows are UTC days)
H = 3600


def default_specs() -> dict[str, AggregateSpec]:
    """The specs the default config (config/logfog.yaml) runs, by 'name window'."""
    config, _ = load_file(ROOT / "config" / "logfog.yaml")
    return {f"{s.name} {s.window_label}": s for s in specs_from_config(config["aggregates"])}


DEFAULTS = default_specs()
K = DEFAULTS["product 1h"].k
assert K == 10 and DEFAULTS["ops 5m"].allowed_lateness_seconds == 600


def person(visitor: str, t: int, **fields: Any) -> dict[str, Any]:
    """One request of the internal aggregation stream (every default dimension set)."""
    row = {
        "time": t - t % 300,  # the internal stream's time is coarsened to 5 min
        "visitor": visitor,
        "route": "/",
        "status_class": "2xx",
        "method": "GET",
        "country": "DE",
        "region": "Berlin",
        "city": "Berlin",
        "browser": "Firefox",
        "os": "Linux",
        "device": "desktop",
        "referrer": None,
        "language": "de",
        "bytes": 1000,
        "duration_ms": 20.0,
        "bot": False,
    }
    row.update(fields)
    return row


def crowd(prefix: str, n: int, t: int, **fields: Any) -> list[dict[str, Any]]:
    return [person(f"{prefix}{i:03d}", t, **fields) for i in range(n)]


def publish(
    records: Sequence[Iterable[dict[str, Any]]],
    specs: Sequence[AggregateSpec] | None = None,
    until: int = DAY + 3 * 86400,
) -> list[dict[str, Any]]:
    """Stage 2 (one input partition, one Kafka record per list, in arrival order) and
    stage 3; windows close as the watermark passes them, the rest at the end."""
    specs = list(DEFAULTS.values()) if specs is None else list(specs)
    agg = PartialAggregator(specs, 0, 1)
    merger = WindowMerger(specs)
    rows: list[dict[str, Any]] = []
    for offset, events in enumerate(records):
        agg.add(list(events), offset=offset)
        rows.extend(r for p in agg.close_ready() for r in merger.add(p))
    agg.advance_to(until)
    rows.extend(r for p in agg.close_ready() for r in merger.add(p))
    return rows


def rows_of(
    rows: list[dict[str, Any]], output: str, window: str, dimension: str
) -> dict[str, dict[str | None, dict[str, Any]]]:
    """{window_start: {value (None: the summary): row}} of one output and dimension."""
    out: dict[str, dict[str | None, dict[str, Any]]] = {}
    for r in rows:
        if (r["output"], r["window"], r["dimension"]) == (output, window, dimension):
            out.setdefault(r["window_start"], {})[r["value"]] = r
    return out


def difference(
    rows: list[dict[str, Any]], big: tuple[str, str, str], small: tuple[str, str], value: str
) -> int:
    """The analyst's subtraction, in requests (additive): the ``big`` (output, window,
    window_start) route row minus every published ``small`` (output, window) route row
    inside it, for one route."""
    output, window, start = big
    big_row = rows_of(rows, output, window, "route")[start][value]
    width = {"5m": 300, "1h": H, "1d": 86400}
    first = int(datetime.fromisoformat(start[:-1] + "+00:00").timestamp())
    published = rows_of(rows, small[0], small[1], "route")
    inside = [iso_utc(first + i * width[small[1]]) for i in range(width[window] // width[small[1]])]
    smalls = [published[s][value] for s in inside if value in published.get(s, {})]
    return int(big_row["requests"] - sum(r["requests"] for r in smalls))


@pytest.mark.parametrize(
    ("small", "big", "late_at", "closer_at"),
    [
        # late for ops 10:00-10:05 (closed at 10:15), in time for product 10:00-11:00
        (("ops", "5m"), ("product", "1h"), DAY + 10 * H + 60, DAY + 10 * H + 20 * 60),
        # late for product 10:00-11:00 (closed at 11:10), in time for the product day
        (("product", "1h"), ("product", "1d"), DAY + 10 * H + 30 * 60, DAY + 11 * H + 20 * 60),
    ],
)
def test_a_late_event_dropped_from_one_output_is_dropped_from_all(
    small: tuple[str, str], big: tuple[str, str], late_at: int, closer_at: int
) -> None:
    """Audit D3: lateness was judged per output. An event arriving after the 5-minute
    ops window closed (or the hour) was dropped there but counted in the product hour
    (or day), still open: big window minus the published small windows = exactly the
    late event (1 visitor, 1 request, its route), with every window >= k. Stage 2 now
    decides an event's fate once: late for one output's window, late for all."""
    first = crowd("a", 20, late_at - late_at % 300, route="/late")
    closer = crowd("b", 20, closer_at, route="/late")  # moves the watermark on
    late = [person("late", late_at, route="/late")]
    rows = publish([first, closer, late])
    start = late_at - late_at % {"1h": H, "1d": 86400}[big[1]]
    requests = difference(rows, (*big, iso_utc(start)), small, "/late")
    # The small windows are two published crowds: the requests differed by the late one.
    assert requests == 0, f"the big window holds {requests} request(s) the small ones do not"


def test_the_capped_volume_of_a_heavy_visitor_is_not_published_by_the_difference() -> None:
    """Audit D4: max_events_per_visitor (100) applied per output and window. A visitor
    with 100 requests in each of two 5-minute windows counted 100 + 100 in ops but
    only 100 in the product hour: the hour's ops windows minus the product hour = the
    requests the cap dropped, which the merger keeps private ("a capped count could
    describe a single heavy visitor"). An event over the cap of one output's window
    now counts in none."""
    a = crowd("a", 20, DAY + 10 * H)
    b = crowd("b", 20, DAY + 10 * H + 300)
    heavy = [person("heavy", DAY + 10 * H)] * 100 + [person("heavy", DAY + 10 * H + 300)] * 100
    rows = publish([a + b + heavy])
    requests = difference(rows, ("product", "1h", iso_utc(DAY + 10 * H)), ("ops", "5m"), "/")
    # Before the fix: 140 - 240 = -100, the capped requests.
    assert requests == 0, f"the ops windows hold {-requests} requests the product hour capped"
    day = rows_of(rows, "product", "1d", "route")[iso_utc(DAY)]["/"]["requests"]
    assert day == 140


def test_summary_bot_share_minus_cell_bot_share_recovers_no_withheld_bot_count() -> None:
    """Audit D6: bot_share was gated per row only. With visitors published, share *
    visitors is a row's bot count: ops 10:00-10:05 by country, DE 30 visitors (10 bots)
    and FR 10 (1 bot, FR's share withheld) gave 0.275 * 40 - 0.3333 * 30 = 1, FR's
    single bot. The shares are now gated against the summary's (complementary
    suppression): here DE's share is withheld too."""
    t = DAY + 10 * H
    de = crowd("d", 20, t, country="DE") + crowd("D", 10, t, country="DE", bot=True)
    fr = [*crowd("f", 9, t, country="FR"), person("curl", t, country="FR", bot=True)]
    rows = publish([de + fr])
    got = rows_of(rows, "ops", "5m", "country")[iso_utc(t)]
    assert got[None]["bot_share"] == 0.275  # the summary's: 11 bots, 29 others
    assert got["FR"]["bot_share"] is None  # FR's 1 bot: withheld
    assert got["DE"]["bot_share"] is None  # before: 0.3333, and 11 - 10 = FR's bot
    cells = [r for v, r in got.items() if v is not None and r["bot_share"] is not None]
    rest = round(got[None]["bot_share"] * got[None]["visitors"]) - sum(
        round(c["bot_share"] * c["visitors"]) for c in cells
    )
    assert not 0 < rest < K, f"{rest} bot(s) among the countries whose share is withheld"


def test_a_day_city_minus_the_hours_cities_recovers_no_small_group() -> None:
    """Audit D5: the product hour and day both published regions and cities. Munich had
    3 visitors at 10:00 (withheld in that hour, below k) and 10 others at 11:00
    (published then); the day published Munich with 13, so the day's Munich minus the
    11:00 Munich was the 3 visitors of 10:00, their city, requests and hour. Places
    below the country are now published in the output's longest window only."""
    ten, eleven = DAY + 10 * H, DAY + 11 * H
    berlin = {"region": "Berlin", "city": "Berlin"}
    munich = {"region": "Bavaria", "city": "Munich"}
    hamburg = {"region": "Hamburg", "city": "Hamburg"}
    records = [
        crowd("a", 20, ten, **berlin)
        + crowd("b", 15, ten, **hamburg)
        + crowd("c", 3, ten, **munich),
        crowd("d", 20, eleven, **berlin) + crowd("e", 10, eleven, **munich),
    ]
    rows = publish(records)
    day = rows_of(rows, "product", "1d", "place")[iso_utc(DAY)]
    hours = rows_of(rows, "product", "1h", "place")
    assert day["DE/Bavaria/Munich"]["visitors"] == 13  # the day still has its cities
    for value, row in day.items():
        if value is None or value == OTHER:
            continue
        inside = [hours[h][value]["visitors"] for h in hours if value in hours[h]]
        rest = row["visitors"] - sum(inside)  # each visitor came in one hour only
        assert not 0 < rest < K, f"{value}: {rest} visitor(s) in the hours that withheld it"


@pytest.mark.parametrize(
    ("dimension", "events"),
    [
        # Audit F1: DE 20, FR 10 (folded to cover IS), IS 1: the fold said "forced".
        ("country", [*crowd("d", 20, DAY, country="DE"), *crowd("f", 10, DAY, country="FR"),
                     person("victim", DAY, country="IS")]),
        # Audit F2: 13 on "/", 10 of them on /pricing once (folded by check a): the
        # fold's 10 requests made it exactly 10 visitors, T - 10 = 3.
        ("route", [*crowd("v", 13, DAY), *crowd("v", 10, DAY, route="/pricing")]),
    ],
)  # fmt: skip
def test_a_fold_gives_no_group_below_k(dimension: str, events: list[dict[str, Any]]) -> None:
    """Brute force over the audit's two windows (check_rows: every fold alike, and
    T - fold never pinned in 1..k-1 by its bounds)."""
    spec = DEFAULTS["product 1h"]
    rows, _, _ = run([spec], events)
    kinds = check_rows(spec, events, rows)
    assert kinds[{"country": "forced", "route": "all"}[dimension]] >= 1
