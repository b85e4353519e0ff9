"""``make run``'s reading of the aggregates topic (streams/demo.py), without a broker."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams import demo
from streams.aggregate import PartialAggregator, WindowMerger
from streams.aggregate.runtime import specs_from_config
from streams.config import normalize

T0 = 1709546400  # 2024-03-04T10:00:00Z

#: A version-1 summary of a window below k, as the merger published them before
#: session 10's aggregates audit: every count null. Such rows stay on the topic.
BELOW_K = {"version": 1, "revision": 1, "output": "ops", "window": "5m",
           "window_start": "2024-03-04T10:50:00Z", "dimension": "route", "kind": "summary",
           "value": None, "requests": None, "visitors": None, "published_cells": 0,
           "other": None,
           "suppressed": {"cells": None, "requests": None, "visitors": None, "below_k": True}}  # fmt: skip


class Message:
    def __init__(self, row: dict[str, Any]) -> None:
        self.value = orjson.dumps(row)


def by_topic(aggregates: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[Message]]:
    """The rows as the merger publishes them: each on its window's topic."""
    from streams.topics import aggregate_output_topics

    routes = aggregate_output_topics(aggregates)
    got: dict[str, list[Message]] = {t: [] for t in routes.values()}
    for row in rows:
        got[routes[row["output"], row["window"]]].append(Message(row))
    return got


def twenty_visitors_at_ten() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The default aggregates section, and the rows of 20 visitors at 10:01 once every
    window has closed (one cell per output, each above k)."""
    aggregates = normalize({"aggregates": {"enabled": True}}, [], [])["aggregates"]
    specs = specs_from_config(aggregates)
    agg = PartialAggregator(specs, 0, 1)
    agg.add([{"time": T0 + 60, "visitor": f"v{i}", "route": "/"} for i in range(20)], offset=0)
    agg.advance_to(T0 + 10 * 86400)
    merger = WindowMerger(specs)
    return aggregates, [row for p in agg.close_ready() for row in merger.add(p)]


def test_the_demo_summary_survives_a_window_below_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """show_aggregates summed ``suppressed.cells`` of every summary; a below-k window's
    was None, so `make run` died with a TypeError once any window (e.g. a quiet
    5-minute ops window) had fewer than k visitors."""
    aggregates, rows = twenty_visitors_at_ten()
    rows.append(BELOW_K)
    monkeypatch.setattr(demo, "consume", lambda *a, **kw: by_topic(aggregates, rows))
    said: list[str] = []
    monkeypatch.setattr(demo, "say", said.append)
    start = datetime.fromtimestamp(T0, UTC)
    end = datetime.fromtimestamp(T0 + 3 * 86400, UTC)
    demo.show_aggregates("127.0.0.1:1", aggregates, start, end, timeout_s=1)
    assert any(line.startswith("  ops 5m: k = 10; 4 cells published") for line in said), said


def test_the_demo_does_not_wait_for_a_window_below_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window with fewer than k visitors publishes nothing, like an empty one: the
    demo counted it among the windows that "did not arrive" and waited its timeout."""
    aggregates = normalize({"aggregates": {"enabled": True}}, [], [])["aggregates"]
    specs = specs_from_config(aggregates)
    agg = PartialAggregator(specs, 0, 1)
    for minute in (0, 10, 15):  # 10:05 has one visitor
        agg.add([{"time": T0 + minute * 60, "visitor": f"v{minute}-{i}", "route": "/"}
                 for i in range(20)], offset=minute)  # fmt: skip
    agg.add([{"time": T0 + 5 * 60, "visitor": "night-owl", "route": "/"}], offset=99)
    agg.advance_to(T0 + 3600)
    merger = WindowMerger(specs)
    rows = [row for p in agg.close_ready() for row in merger.add(p)]
    done: list[bool] = []

    def consume(bootstrap: str, topics: list[str], until: Any, *a: Any, **kw: Any) -> Any:
        got = by_topic(aggregates, rows)
        done.append(until(got))
        return got

    monkeypatch.setattr(demo, "consume", consume)
    said: list[str] = []
    monkeypatch.setattr(demo, "say", said.append)
    start = datetime.fromtimestamp(T0, UTC)
    demo.show_aggregates("127.0.0.1:1", aggregates, start, start + demo.CLOSE_MARGIN * 7)
    assert done == [True]
    assert "  (1 windows published nothing: fewer than k visitors)" in said
    assert not any("did not arrive" in line for line in said), said


def test_the_demo_shows_each_aggregates_topic_with_its_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 5-minute ops rows are on the operations aggregates topic (kept 7 d), the
    hourly and daily product rows on logs.aggregates (an audit, D10): `make run` reads
    both and shows each with the windows it holds."""
    aggregates, rows = twenty_visitors_at_ten()
    asked: list[list[str]] = []

    def consume(bootstrap: str, topics: list[str], *a: Any, **kw: Any) -> Any:
        asked.append(topics)
        return by_topic(aggregates, rows)

    monkeypatch.setattr(demo, "consume", consume)
    said: list[str] = []
    monkeypatch.setattr(demo, "say", said.append)
    start = datetime.fromtimestamp(T0, UTC)
    demo.show_aggregates("127.0.0.1:1", aggregates, start,
                         datetime.fromtimestamp(T0 + 3 * 86400, UTC), timeout_s=1)  # fmt: skip
    assert asked == [["logs.aggregates.ops", "logs.aggregates"]]
    headers = [re.sub(r"[\d,]+ rows", "N rows", line) for line in said
               if line.startswith("\n--- ")]  # fmt: skip
    assert headers == [
        "\n--- logs.aggregates.ops: N rows from 1 closed windows (ops 5m):",
        "\n--- logs.aggregates: N rows from 2 closed windows (product 1d, product 1h):",
    ], headers
