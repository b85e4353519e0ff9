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
    assert shown["merger"] == {k: full[k] for k in ("partials", "replaced", "stale", "windows")}
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
