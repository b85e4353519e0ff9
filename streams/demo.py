"""``make run``: the whole job end to end on the embedded broker, then a clean shutdown.

Starts the local Tansu broker, creates the topics, starts one ``logfog worker``, ships
a generated realistic log covering the last hour or so, then the bundled sample log
(timestamps moved to now), prints events arriving on each destination topic, the dead
letters and the k-gated aggregates of the windows that closed, a summary, and stops
everything. ``--keep`` leaves it running so the status page can be looked at.

The generated log starts at most :data:`SPAN` ago, and never before the current key
epoch (a UTC day by default): shared epoch keys exist only for current epochs, so
older events would have no pseudonym and count no visitors. Event time, not the
clock, closes windows: the older part of the log closes five-minute windows (and the
previous hour's, from ten past the hour) once the newer part has been counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from streams.aggregate.spec import AggregateSpec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "samples" / "combined.log"
_CLF_TIME = re.compile(rb"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]")
#: How far back the generated log starts (see the module docstring).
SPAN = timedelta(minutes=75)
#: Windows the demo waits for: closed by the log's event time minus this.
CLOSE_MARGIN = timedelta(minutes=5)


def say(text: str) -> None:
    print(text, flush=True)


def rebase_times(data: bytes) -> bytes:
    """Move every CLF timestamp to "now" (keeps the lines otherwise as written)."""
    now = datetime.now(UTC).strftime("[%d/%b/%Y:%H:%M:%S +0000]").encode()
    return _CLF_TIME.sub(lambda m: now, data)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generated_span(
    now: datetime, epoch_s: int = 86400, span: timedelta = SPAN
) -> tuple[datetime, float]:
    """Start of the generated log and its length in seconds: ``span`` back from
    ``now``, but not before the current key epoch began (``keys.epoch``, from 00:00 UTC).

    >>> generated_span(datetime(2026, 11, 29, 22, 20, tzinfo=UTC))
    (datetime.datetime(2026, 11, 29, 21, 5, tzinfo=datetime.timezone.utc), 4500.0)
    >>> generated_span(datetime(2026, 11, 30, 0, 30, tzinfo=UTC))[1]
    1800.0
    >>> generated_span(datetime(2026, 11, 30, 6, 40, tzinfo=UTC), epoch_s=6 * 3600)[1]
    2400.0
    """
    stamp = int(now.timestamp())
    epoch_start = datetime.fromtimestamp(stamp - stamp % epoch_s, UTC)
    start = max(now - span, epoch_start)
    return start, max((now - start).total_seconds(), 1.0)


def consume(
    bootstrap: str,
    topics: list[str],
    done: Callable[[dict[str, list[Any]]], bool],
    timeout_s: float,
    quiet_s: float = 0.0,
) -> dict[str, list[Any]]:
    """The messages of ``topics`` from their beginning, by topic: read until
    ``done(messages)`` holds and nothing more came for ``quiet_s``, or ``timeout_s``."""
    from streams.admin import reader_from_beginning

    consumer = reader_from_beginning(bootstrap, topics)
    got: dict[str, list[Any]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=300)
            for tp, messages in polled.items():
                got[tp.topic].extend(messages)
            if polled:
                quiet_since = time.monotonic()
            elif done(got) and time.monotonic() - quiet_since >= quiet_s:
                break
    finally:
        consumer.close()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.demo", description=__doc__)
    parser.add_argument("--lines", type=int, default=20000, help="generated lines to ship")
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args(argv)

    from streams.broker import LocalBroker
    from streams.config import AGGREGATE_INPUT, normalize
    from streams.durations import parse_duration
    from streams.keys import generate_key
    from streams.shipper import ship

    work = Path(tempfile.mkdtemp(prefix="logfog-demo-"))
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    web_port, aggregator_port = free_port(), free_port()
    with LocalBroker(startup_timeout_s=30) as broker:
        say(f"1. local broker (Tansu) up at {broker.bootstrap}")
        config["kafka"]["bootstrap"] = broker.bootstrap
        config_path = work / "logfog.yaml"
        config_path.write_text(yaml.safe_dump(config))
        normalized = normalize(config, [], [])
        env = {**os.environ, "LOGFOG_MASTER_KEY": generate_key(), "LOGFOG_DATA_DIR": str(work)}
        log_path = work / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "-c", str(config_path),
                 "--web-port", str(web_port), "--aggregator-web-port", str(aggregator_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_ready(web_port, worker, log_path)
            say(
                f"2. worker ready (topics created); status page: http://127.0.0.1:{web_port}/status"
            )
            generated = work / "generated.log"
            end = datetime.now(UTC).replace(microsecond=0)
            start, seconds = generated_span(end, parse_duration(normalized["keys"]["epoch"]))
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "generate.py"), "-n", str(args.lines),
                 "--seed", "1", "--start", start.isoformat(), "--rate",
                 str(max(args.lines, 1) / seconds), "--junk-rate", "0.001", "-o", str(generated)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            sample = work / "sample.log"
            sample.write_bytes(rebase_times(SAMPLE.read_bytes()))
            raw = normalized["kafka"]["raw"]["topic"]
            shipped = 0
            # Oldest first: the aggregator drops what is older than its allowed lateness.
            for path in (generated, sample):
                # Small records spread each stretch of the log over every raw
                # partition: windows close at the pace of the one that is furthest behind.
                result = ship(str(path), broker.bootstrap, raw, progress=False,
                              lines_per_record=50)  # fmt: skip
                shipped += result.lines
            say(f"3. shipped {shipped:,} lines to {raw} (bundled sample + generated log)")
            public = [n for n in normalized["destinations"] if n != AGGREGATE_INPUT]
            topics = [normalized["destinations"][n]["topic"] for n in public]
            dead = normalized["kafka"]["dead_letter"]["topic"]
            status = _wait_processed(web_port, shipped)
            expected = sum(status["published"][n] for n in public)
            expected += sum(status["rejected"].values())

            def all_in(got: dict[str, list[Any]]) -> bool:
                return sum(map(len, got.values())) >= expected

            got = consume(broker.bootstrap, [*topics, dead], all_in, timeout_s=60)
            for topic in topics:
                messages = got[topic]
                say(f"\n--- {topic}: {len(messages):,} events; first three:")
                for m in messages[:3]:
                    key = f"key={m.key.decode()} " if m.key else ""
                    say(f"  {key}{m.value.decode()}")
            say(f"\n--- {dead}: {len(got[dead]):,} dead letters (reason and coordinates only):")
            for m in got[dead][:4]:
                say(f"  {m.value.decode()}")
            if normalized["aggregates"]["enabled"]:
                show_aggregates(broker.bootstrap, normalized["aggregates"], start, end)
            status = orjson.loads(_get(web_port, "/status.json"))
            say("\n4. summary (from the worker's /status.json):")
            say(f"  lines read {status['lines']:,}; published {status['published']};")
            say(f"  rejected {status['rejected']}; leaks removed {status['leaks_removed']}")
            say(_aggregation_summary(aggregator_port, status.get("aggregator_process")))
            if args.keep:
                say(f"\nrunning; open http://127.0.0.1:{web_port}/status  (Ctrl-C to stop)")
                with contextlib.suppress(KeyboardInterrupt):
                    worker.wait()
        finally:
            if worker.poll() is None:
                worker.terminate()
                code = worker.wait(30)
                say(f"5. worker stopped (exit {code}); broker stopping")
    return 0


def expected_windows(
    specs: Iterable[AggregateSpec], start: datetime, end: datetime
) -> set[tuple[str, str, str]]:
    """(output, window, start) of every window that events from ``start`` to ``end``
    fill and the newest of them close: its end plus the allowed lateness is <= ``end``.

    >>> from streams.aggregate.spec import DEFAULT_SPECS
    >>> at = lambda h, m: datetime(2026, 11, 29, h, m, tzinfo=UTC)
    >>> closed = expected_windows(DEFAULT_SPECS, at(20, 43), at(22, 15))  # lateness 10m
    >>> sorted(start[11:16] for output, _, start in closed if output == "ops")[::6]
    ['20:40', '21:10', '21:40']
    >>> len([w for w in closed if w[0] == "ops"]), sorted(w for w in closed if w[0] != "ops")
    (17, [('product', '1h', '2026-11-29T20:00:00Z'), ('product', '1h', '2026-11-29T21:00:00Z')])
    """
    first, last = int(start.timestamp()), int(end.timestamp())
    out = set()
    for spec in specs:
        width = spec.window_seconds
        for window in range(first - first % width, last, width):
            if window + width + spec.allowed_lateness_seconds <= last:
                stamp = datetime.fromtimestamp(window, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                out.add((spec.name, spec.window_label, stamp))
    return out


def show_aggregates(
    bootstrap: str, aggregates: dict[str, Any], start: datetime, end: datetime,
    timeout_s: float | None = None,
) -> None:  # fmt: skip
    """Print what reached the aggregates topics from the windows the shipped log closed
    (see :func:`expected_windows`), per topic (the operations aggregates of windows under
    an hour, then the analytics ones): a cell and its summary for each output, and per
    output the smallest visitor count of a published cell next to k.

    Waits for the expected windows at most ``timeout_s``: by default half a minute
    more than the aggregator's idle rule, because a raw partition whose last records
    end before a window's close holds it until the partition counts as idle (a minute
    of wall clock). Usually the windows are in within two seconds."""
    from streams.aggregate.partial import SOURCE_IDLE_SECONDS
    from streams.aggregate.runtime import specs_from_config
    from streams.topics import aggregate_output_topics

    if timeout_s is None:
        timeout_s = SOURCE_IDLE_SECONDS + 30

    specs = specs_from_config(aggregates)
    routes = aggregate_output_topics(aggregates, specs)
    topics = list(dict.fromkeys(routes[s.name, s.window_label] for s in specs))
    topics.sort(key=lambda t: t != aggregates["ops_output"]["topic"])  # ops first
    # Windows close when every raw partition's event time has passed them, and the
    # partition that received the log's last record furthest from its end lags by a few
    # records: the newest windows may take until the raw partitions count as idle.
    expected = expected_windows(specs, start, end - CLOSE_MARGIN)
    got: dict[str, list[Any]] = {topic: [] for topic in topics}
    if expected:
        # A window's rows are published together: a quiet second after the last
        # expected window arrived (or was passed over: see _settled) means its rows
        # are all in.
        def arrived(got: dict[str, list[Any]]) -> bool:
            windows = {_window_of(orjson.loads(m.value)) for t in topics for m in got[t]}
            return expected <= _settled(expected, windows)

        got = consume(bootstrap, topics, arrived, timeout_s, quiet_s=1.0)
    for topic in topics:
        mine = [s for s in specs if routes[s.name, s.window_label] == topic]
        rows = [orjson.loads(m.value) for m in got[topic]]
        _show_topic(topic, mine, rows, {w for w in expected if routes[w[:2]] == topic},
                    timeout_s)  # fmt: skip


def _show_topic(
    topic: str,
    specs: list[AggregateSpec],
    rows: list[dict[str, Any]],
    expected: set[tuple[str, str, str]],
    timeout_s: float,
) -> None:
    """One aggregates topic's part of :func:`show_aggregates`."""
    windows = sorted(set(map(_window_of, rows)))
    kinds = ", ".join(sorted({f"{o} {w}" for o, w, _ in windows})) or "none"
    say(f"\n--- {topic}: {len(rows):,} rows from {len(windows)} closed windows ({kinds}):")
    if not rows:
        labels = ", ".join(f"{s.name} {s.window_label}" for s in specs)
        say(f"  ({labels}: a window is published once event time passes its end plus "
            "the allowed lateness; the log covers too little of the current key epoch "
            "for that)")  # fmt: skip
        return
    missing = expected - set(windows)
    passed = missing & _settled(expected, set(windows))
    if passed:
        say(f"  ({len(passed)} windows published nothing: fewer than k visitors)")
    if missing - passed:
        late = ", ".join(f"{o} {w} {s[11:16]}" for o, w, s in sorted(missing - passed))
        say(f"  ({len(missing - passed)} windows did not arrive within {timeout_s:.0f} s: {late})")
    for output in dict.fromkeys(s.name for s in specs):
        # The output's newest closed window: one published cell and its dimension's summary.
        newest = max((w for w in windows if w[0] == output), default=None)
        in_window = [r for r in rows if _window_of(r) == newest]
        cell = next((r for r in in_window if r["kind"] == "cell" and r["value"] != "__other__"),
                    None)  # fmt: skip
        if cell is not None:
            dimension = cell["dimension"]
            summary = next(r for r in in_window
                           if r["kind"] == "summary" and r["dimension"] == dimension)  # fmt: skip
            say(f"  {orjson.dumps(cell).decode()}")
            say(f"  {orjson.dumps(summary).decode()}")
    for spec in specs:
        mine = [r for r in rows if (r["output"], r["window"]) == (spec.name, spec.window_label)]
        if not mine:
            continue
        counted = [r["visitors"] for r in mine if r["kind"] == "cell" and r["visitors"] is not None]
        summaries = [r for r in mine if r["kind"] == "summary"]
        folded = sum(_count(r, "other", "requests") for r in summaries)
        say(f"  {spec.name} {spec.window_label}: k = {spec.k}; {len(counted):,} cells "
            f"published, the smallest counting {min(counted, default=0):,} visitors; "
            f"{folded:,} requests folded into __other__ (summed over the dimensions)")  # fmt: skip


def _count(summary: dict[str, Any], part: str, name: str) -> int:
    """A count of a summary row's ``other`` or ``suppressed``; 0 when absent or null:
    version-1 rows of a window below k had null counts (summing them crashed the demo),
    version-2 rows have no ``suppressed``.

    >>> _count({"other": None}, "other", "requests"), _count({"suppressed": {"cells": None}},
    ...                                                      "suppressed", "cells")
    (0, 0)
    """
    return int((summary.get(part) or {}).get(name) or 0)


def _settled(
    expected: set[tuple[str, str, str]], arrived: set[tuple[str, str, str]]
) -> set[tuple[str, str, str]]:
    """The expected windows that arrived or never will: the merger publishes an
    output's windows in order, and one with fewer than k visitors not at all (like an
    empty one), so a later window of the same output having arrived settles it.

    >>> ops = lambda start: ("ops", "5m", f"2026-11-29T21:{start}:00Z")
    >>> sorted(_settled({ops("05"), ops("10"), ops("15")}, {ops("10")}))
    [('ops', '5m', '2026-11-29T21:05:00Z'), ('ops', '5m', '2026-11-29T21:10:00Z')]
    """
    newest: dict[tuple[str, str], str] = {}
    for output, width, start in arrived:
        newest[output, width] = max(newest.get((output, width), start), start)
    return {w for w in expected if w in arrived or w[2] < newest.get((w[0], w[1]), "")}


def _window_of(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["output"], row["window"], row["window_start"]


def _aggregation_summary(port: int, child: dict[str, Any] | None) -> str:
    """One line on the aggregator child (aggregates.run_in: process): what it counted."""
    if child is None:
        return "  aggregation: not in a child process (aggregates.run_in)"
    try:
        aggregates = orjson.loads(_get(port, "/status.json")).get("aggregates") or {}
        late = _metric(_get(port, "/metrics"), "logfog_aggregate_late_events_total")
    except OSError:
        return f"  aggregation: child pid {child['pid']} not answering yet"
    return (f"  aggregation (child pid {child['pid']}, http://127.0.0.1:{port}/status): "
            f"{aggregates.get('events', 0):,} rows counted, {late:,.0f} late; windows still "
            "open are published when event time passes their end plus the allowed "
            "lateness")  # fmt: skip


def _metric(exposition: bytes, name: str) -> float:
    """A sample without labels from Prometheus text (0 when absent).

    >>> _metric(b"# TYPE x counter\\nx_total 3.0\\n", "x_total")
    3.0
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return 0.0


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return bytes(response.read())


def _wait_processed(port: int, lines: int, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = orjson.loads(_get(port, "/status.json"))
        # Published counts move after the broker acknowledged: wait for those, not for
        # lines read, or the consumer below would be told to expect too few.
        done = min(status["published"].values(), default=0) + sum(status["rejected"].values())
        if status["lines"] >= lines and done >= lines:
            break
        time.sleep(0.3)
    return status


def _wait_ready(port: int, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            sys.stderr.write(log_path.read_text(errors="replace")[-3000:])
            raise SystemExit("worker exited during startup")
        with contextlib.suppress(OSError):
            _get(port, "/readyz")
            return
        time.sleep(0.3)
    raise SystemExit("worker not ready after 90 s")


if __name__ == "__main__":
    sys.exit(main())
