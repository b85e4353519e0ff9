"""The live status page in real headless Chromium, against a real worker and broker.

The worker processes a few hundred lines (some of them junk), then Chromium loads
``/status``, lets its script poll ``status.json`` and draw, and the test reads the
numbers out of the rendered DOM and compares them with ``/metrics``.
"""

from __future__ import annotations

import re
import struct
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.admin import ensure_topics
from streams.broker import LocalBroker
from streams.config import normalize
from streams.shipper import ship
from streams.topics import topic_specs
from tests.integration.workers import WorkerProcess, numbered_lines, worker_config, write_config
from tests.support.browser import ensure_chromium, foreign_requests, render, screenshot

pytestmark = pytest.mark.integration

PARTITIONS = 3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: Generous width of one character of the bar charts' 11px text (DejaVu Sans digits: ~7px).
CHAR_PX = 7.5
VOID = {"meta", "br", "rect", "polyline", "input", "img", "link"}


class StatusDom(HTMLParser):
    """Pull what the status page shows out of the DOM Chromium dumped.

    ``bars[container id]`` maps each bar's ``data-label`` to its ``data-value``;
    ``totals`` maps the totals table's ``data-metric`` to its text; ``overflows`` lists
    bar values whose text would run past the right edge of their SVG (clipped).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []  # id of each open element (None if it has none)
        self.texts: dict[str, str] = {}  # element id -> its text
        self.totals: dict[str, str] = {}
        self.bars: dict[str, dict[str, int]] = {}
        self.overflows: list[str] = []
        self._svg_width = 0.0
        self._capture: tuple[str, str] | None = None  # (kind, key) of the open text
        self._value_x = 0.0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag not in VOID:
            self.ids.append(a.get("id"))
        if a.get("id"):
            self._capture = ("id", a["id"])
            self.texts[a["id"]] = ""
        if tag == "svg":
            self._svg_width = float(a.get("width", "0"))
        elif tag == "td" and "data-metric" in a:
            self._capture = ("metric", a["data-metric"])
        elif tag == "text" and "data-value" in a:
            container = next((i for i in reversed(self.ids) if i), "?")
            rows = self.bars.setdefault(container, {})
            label = a.get("data-label", f"(unlabelled #{len(rows)})")
            rows[label] = int(a["data-value"])
            self._capture = ("value", label)
            self._value_x = float(a["x"])

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self.ids:
            self.ids.pop()
        self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is None:
            return
        kind, key = self._capture
        if kind == "id":
            self.texts[key] += data
        elif kind == "metric":
            self.totals[key] = self.totals.get(key, "") + data
        elif kind == "value" and self._value_x + CHAR_PX * len(data) > self._svg_width:
            self.overflows.append(f"{key}={data} at x={self._value_x} in {self._svg_width}")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus exposition text -> {(sample name, labels): value}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def by_label(metrics: dict[Any, float], name: str, label: str) -> dict[str, int]:
    return {
        dict(labels)[label]: int(value)
        for (sample, labels), value in metrics.items()
        if sample == name and label in dict(labels)
    }


def number(text: str) -> int:
    """A count as the page prints it (en-US grouping: ``1,234``)."""
    return int(text.replace(",", "").strip())


def wait_until_idle(worker: WorkerProcess, lines: int, timeout_s: float = 45.0) -> dict[str, Any]:
    """Wait until the worker read every line and its counters stopped moving."""
    deadline = time.monotonic() + timeout_s
    previous: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        status = worker.status()
        stable = {k: status[k] for k in ("lines", "published", "rejected", "records_out", "lag")}
        if status["lines"] >= lines and stable == previous:
            return status
        previous = stable if status["lines"] >= lines else None
        time.sleep(0.5)
    raise AssertionError(f"worker not idle after {timeout_s}s: {worker.status()}\n{worker.tail()}")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_status_page_in_chromium_matches_metrics(
    broker: LocalBroker, geo_dbs: dict[str, str], tmp_path: Path
) -> None:
    ensure_chromium()  # before the clock matters: a first install takes ~25 s
    config = worker_config(broker.bootstrap, geo_dbs, partitions=PARTITIONS)
    ensure_topics(broker.bootstrap, topic_specs(normalize(config, [], [])))
    config_path = write_config(config, tmp_path / "logfog.yaml")
    raw_topic = config["kafka"]["raw"]["topic"]
    lines, good = numbered_lines(400, junk_every=25)
    lines += [b"", b"\x00\x01\x02\xff" * 8, b"198.51.100.7 - - " + b"x" * (1 << 20)]
    worker = WorkerProcess(config_path, tmp_path, "status").start()
    try:
        worker.wait_ready()
        log = tmp_path / "in.log"
        log.write_bytes(b"\n".join(lines) + b"\n")
        shipped = ship(str(log), broker.bootstrap, raw_topic, lines_per_record=20, progress=False)
        assert shipped.lines == len(lines), shipped
        status = wait_until_idle(worker, len(lines))
        assert status["lines"] == len(lines)

        code, body = worker.get("/metrics")
        assert code == 200
        metrics = parse_metrics(body.decode())
        lines_total = int(metrics[("logfog_lines_total", frozenset())])
        rejected = by_label(metrics, "logfog_rejected_total", "reason")
        published = by_label(metrics, "logfog_events_total", "destination")
        lag = {
            f"{dict(labels)['topic']}/{dict(labels)['partition']}": int(value)
            for (name, labels), value in metrics.items()
            if name == "logfog_consumer_lag"
        }
        # the metrics themselves are right, or comparing the page with them proves little
        assert lines_total == len(lines)
        assert sum(rejected.values()) == len(lines) - len(good) > 0
        assert {"parse.empty", "parse.no_match", "parse.too_long"} <= set(rejected)
        # (the aggregation stage may add internal destinations such as "_aggregate")
        assert {d: published.get(d) for d in config["destinations"]} == dict.fromkeys(
            config["destinations"], len(good)
        ), published

        # the served page: self-contained, nothing but relative URLs
        code, page = worker.get("/status")
        assert code == 200
        html = page.decode()
        assert not re.search(r"<link\b|<script[^>]+\bsrc\s*=|<img\b|<iframe\b", html, re.I)
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "absolute URL"
        assert not re.search(r"\b(src|href|action)\s*=", html, re.I)

        url = f"http://127.0.0.1:{worker.web_port}/status"
        net_log = tmp_path / "netlog.json"
        dom_text = render(url, wait_ms=3000, net_log=net_log)
        assert foreign_requests(net_log) == set(), "Chromium went beyond loopback"
        dom = StatusDom()
        dom.feed(dom_text)

        assert dom.texts.get("state") == "ready", (dom.texts, dom_text[:2000])
        assert re.fullmatch(r"up \d+ s", dom.texts.get("uptime", "")), dom.texts
        assert number(dom.totals["lines read"]) == lines_total
        for destination, count in published.items():
            assert number(dom.totals[f"published: {destination}"]) == count, destination
        assert dom.bars.get("rejected") == rejected, (dom.bars, rejected)
        raw_rows = {k: v for k, v in dom.bars.get("lag", {}).items() if k.startswith(raw_topic)}
        assert set(raw_rows) == {f"{raw_topic}/{p}" for p in range(PARTITIONS)}, dom.bars
        assert raw_rows == {k: v for k, v in lag.items() if k.startswith(raw_topic)}
        assert dom.overflows == [], "bar values clipped by their chart"
        assert not re.search(r"https?://(?!www\.w3\.org/)", dom_text), "absolute URL in DOM"

        shot = screenshot(url, tmp_path / "status.png", wait_ms=3000)
        data = shot.read_bytes()
        assert png_size(data) == (1280, 900)
        assert len(data) > 20_000, f"screenshot looks blank ({len(data)} bytes)"
        assert worker.terminate() == 0, worker.tail()
    finally:
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()
