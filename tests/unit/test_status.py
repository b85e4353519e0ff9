"""/status.json shows only aggregate-safe figures: nothing that describes one visitor."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from streams.aggregate import PRODUCT_1H
from streams.aggregate.runtime import AggregationRuntime
from streams.app import NoLines, WorkerState, faust_settings
from streams.config import normalize
from streams.metrics import Metrics
from streams.status import status_snapshot


def _runtime_with_one_heavy_visitor() -> AggregationRuntime:
    spec = replace(PRODUCT_1H, dimensions=("route",), k=2, max_events_per_visitor=3)
    # Rows counted at 01:00 by the wall clock; the ticks below come two hours later.
    runtime = AggregationRuntime([spec], partitions=1, snapshot_interval=0,
                                 clock=lambda: 3600.0)  # fmt: skip
    runtime.aggregator(0, lambda key: None)
    events = [{"time": 60 + i, "visitor": f"v{i}", "route": "/"} for i in range(4)]
    events += [{"time": 100 + i, "visitor": "heavy", "route": "/"} for i in range(40)]
    for offset, event in enumerate(events):
        runtime.add(0, offset, event)
    # Idle and caught up (every offset before the end applied, nothing new since the
    # previous tick): the clock may close the window.
    for _ in range(2):
        runtime.advance(3 * 3600, {0: len(events)})
    for _, partial in runtime.close_ready():
        runtime.merge(partial)
    runtime.add(0, len(events), {"time": 50, "visitor": "late", "route": "/"})  # late
    return runtime


def test_status_json_leaves_out_per_visitor_figures() -> None:
    runtime = _runtime_with_one_heavy_visitor()
    full = runtime.status()["merger"]
    assert full["capped"] == 37 and "late" in full  # the heavy visitor, to the event
    state = WorkerState()
    state.aggregation = runtime
    snapshot = status_snapshot(state, NoLines(), Metrics(None))
    shown = snapshot["aggregates"]
    assert shown["merger"] == {k: full[k] for k in ("partials", "replaced", "stale", "windows",
                                                   "withheld")}  # fmt: skip
    text = orjson.dumps(snapshot).decode()
    assert "capped" not in text and "late" not in text and "37" not in text
    # What stays: totals and the published (k-gated) values.
    published = orjson.loads(text)["aggregates"]
    assert published["rows_published"] >= 1 and published["top_routes"] == [["/", 7]]
    # and the event-time watermark per partition (how an operator sees a stuck window)
    assert published["watermarks"] == {"0": runtime.aggregators[0].watermark_time}
    assert "pending_windows" in published


def test_status_json_shows_the_aggregator_child_as_a_process_only() -> None:
    import sys

    from streams.supervise import Supervisor

    state = WorkerState()
    assert status_snapshot(state, NoLines(), Metrics(None))["aggregator_process"] is None
    child = Supervisor("aggregator", [sys.executable, "-c", "import time; time.sleep(30)"],
                       {"LOGFOG_MASTER_KEY": "secret-in-env"})  # fmt: skip
    state.aggregator = child.start()
    try:
        shown = status_snapshot(state, NoLines(), Metrics(None))["aggregator_process"]
        assert shown == {"pid": child.pid, "running": True, "restarts": 0, "last_exit": None}
    finally:
        child.stop(timeout=5)
    assert "secret" not in orjson.dumps(status_snapshot(state, NoLines(), Metrics(None))).decode()


def test_web_server_binds_to_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    config = normalize({"destinations": {"o": {"topic": "t", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}}, [], [])  # fmt: skip
    monkeypatch.delenv("LOGFOG_WEB_BIND", raising=False)
    assert faust_settings(config, "127.0.0.1:9092", 6066)["web_bind"] == "127.0.0.1"
    monkeypatch.setenv("LOGFOG_WEB_BIND", "0.0.0.0")
    assert faust_settings(config, "127.0.0.1:9092", 6066)["web_bind"] == "0.0.0.0"


def test_status_rate_falls_to_zero_when_no_lines_arrive() -> None:
    """/status.json "lines_per_second" (the page: "lines/s (last ~20 s)") was computed
    between the last ten *batches*, not up to now: once traffic stopped, no batch was
    noted and the page showed the last busy rate for as long as the worker stayed idle."""
    import time

    state = WorkerState()
    now = time.time()
    # Busy 10 minutes ago (40,000 lines/s), nothing since.
    state.rates = [(now - 600 + i * 0.1, i * 4000) for i in range(10)]
    snapshot = status_snapshot(state, NoLines(), Metrics(None))
    assert snapshot["lines_per_second"] == 0, snapshot["lines_per_second"]


def test_status_rate_is_the_lines_of_the_last_20_seconds() -> None:
    import time

    state = WorkerState()
    now = time.time()
    # 100 lines a second for a minute, a batch a second; then 10 s without a batch.
    state.rates = [(now - 70 + i, 100 * i) for i in range(61)]
    rate = status_snapshot(state, NoLines(), Metrics(None))["lines_per_second"]
    assert rate == pytest.approx(100 * 10 / 20, rel=0.01)  # 10 busy seconds of the 20
