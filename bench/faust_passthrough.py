"""Measure a bare faust-streaming pass-through worker on the local broker (Tansu).

Why: Faust's per-event machinery, not Kafka, bounds logfog's throughput; this script
measures how much each agent style and setting changes it, and how long a worker
takes from start to its first record (consumer-group join on Tansu).

Usage (each run starts its own broker, loads N records, runs ONE worker subprocess,
verifies the out topic by consuming it, kills everything; all bounded by --timeout):

    .venv/bin/python bench/faust_passthrough.py --mode send --records 200000
    .venv/bin/python bench/faust_passthrough.py --mode take --loop uvloop --settings fast

Modes: iter (no produce), send (``await out.send``), send_soon, take
(``stream.take`` + ``await out.send``), producer (``await app.producer.send`` per
record, i.e. enqueue only), take_producer (take + producer enqueue), take_events
(no produce: batches from ``streams.faust_take.take_events``, each event acknowledged,
as logfog's worker takes them: its ceiling).
``--fetcher-fixes``: with logfog's fetcher fixes (``streams/faust_fetcher.py``).
Payloads are synthetic; nothing is logged per record.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_TOPIC = "bench.in"
OUT_TOPIC = "bench.out"
MODES = ("iter", "send", "send_soon", "take", "producer", "take_producer", "take_events")

FAST_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 0.5,
    "broker_rebalance_timeout": 6.0,
    "stream_recovery_delay": 0.0,
    "broker_commit_every": 10_000,
    "broker_commit_interval": 1.0,
    "stream_buffer_maxsize": 16_384,
    "broker_max_poll_records": 5_000,
    "producer_linger": 0.02,
    "producer_max_batch_size": 1 << 20,
    "stream_wait_empty": False,
}


def synthetic_lines(n: int, seed: int = 7) -> list[bytes]:
    """Combined-log-like lines (documentation IPs, fixed pool of paths and UAs)."""
    rnd = random.Random(seed)
    paths = ["/", "/index.html", "/blog/post-12", "/api/v1/items?id=42&utm_source=x", "/img/a.png"]
    uas = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Safari",
        "curl/8.4.0",
    ]
    out = []
    for i in range(n):
        ip = f"198.51.100.{rnd.randrange(256)}"
        out.append(
            f"{ip} - - [29/Nov/2025:07:{i // 60 % 60:02d}:{i % 60:02d} +0000] "
            f'"GET {rnd.choice(paths)} HTTP/1.1" {rnd.choice((200, 200, 304, 404))} '
            f'{rnd.randrange(100, 90000)} "https://example.org/" "{rnd.choice(uas)}"'.encode()
        )
    return out


# ----------------------------------------------------------------------------- worker


def run_worker(args: argparse.Namespace) -> None:
    """Runs in the subprocess: a Faust worker that exits after ``records`` events."""
    t_proc = float(args.t_spawn)
    if args.loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    import faust

    if args.fetcher_fixes:
        from streams import faust_fetcher

        faust_fetcher.install()

    t_import = time.time()
    settings: dict[str, Any] = {"consumer_auto_offset_reset": "earliest"}
    if args.settings == "fast":
        settings.update(FAST_SETTINGS)
    app = faust.App(
        f"bench-{args.mode}-{os.getpid()}",
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        # Faust creates <id>-data in the working directory otherwise: one per run.
        datadir=tempfile.mkdtemp(prefix="faust-bench-"),
        topic_partitions=1,
        **settings,
    )
    in_t = app.topic(IN_TOPIC, value_type=bytes, partitions=1)
    out_t = app.topic(OUT_TOPIC, value_type=bytes, partitions=1)
    n_target = int(args.records)
    state: dict[str, float] = {"n": 0, "first": 0.0, "last": 0.0}
    result_path = Path(args.result)

    async def finish() -> None:
        await app.producer.flush()
        t_done = time.time()
        result_path.write_text(
            json.dumps(
                {
                    "t_spawn": t_proc,
                    "t_import": t_import,
                    "t_first": state["first"],
                    "t_last": state["last"],
                    "t_flushed": t_done,
                    "events": state["n"],
                }
            )
        )
        os._exit(0)

    def seen(k: int) -> bool:
        if state["n"] == 0:
            state["first"] = time.time()
        state["n"] += k
        if state["n"] >= n_target:
            state["last"] = time.time()
            return True
        return False

    mode_ = args.mode
    producer_topic = OUT_TOPIC

    @app.agent(in_t)
    async def passthrough(stream: Any) -> None:
        if mode_ == "take_events":
            from streams.faust_take import take_events

            async for events in take_events(stream, args.take, 0.05):
                for event in events:
                    event.ack()
                if seen(len(events)):
                    await finish()
        elif mode_ == "iter":
            async for _v in stream:
                if seen(1):
                    await finish()
        elif mode_ == "send":
            async for v in stream:
                await out_t.send(value=v)
                if seen(1):
                    await finish()
        elif mode_ == "send_soon":
            async for v in stream:
                out_t.send_soon(value=v)
                if seen(1):
                    await finish()
        elif mode_ == "producer":
            prod = app.producer
            async for v in stream:
                await prod.send(producer_topic, None, v, None, None, None)
                if seen(1):
                    await finish()
        elif mode_ == "take":
            async for batch in stream.take(args.take, within=0.2):
                for v in batch:
                    await out_t.send(value=v)
                if seen(len(batch)):
                    await finish()
        elif mode_ == "take_producer":
            prod = app.producer
            async for batch in stream.take(args.take, within=0.2):
                for v in batch:
                    await prod.send(producer_topic, None, v, None, None, None)
                if seen(len(batch)):
                    await finish()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# ----------------------------------------------------------------------------- driver


def load(bootstrap: str, lines: list[bytes], lines_per_record: int) -> int:
    """Produce the input records (batched, fast); returns the record count."""
    from kafka import KafkaProducer

    from streams.shipper import frame_lines

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20)
    n = 0
    for rec in frame_lines(lines, lines_per_record, 900_000):
        prod.send(IN_TOPIC, value=rec, partition=0)
        n += 1
    prod.flush(60)
    prod.close()
    return n


def count_out(bootstrap: str, want: int, timeout_s: float) -> int:
    """Consume bench.out from the start; count records (never trust high watermarks)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=100,
    )
    tp = TopicPartition(OUT_TOPIC, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    n = 0
    deadline = time.monotonic() + timeout_s
    while n < want and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=200, max_records=50_000).values():
            n += len(msgs)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        for msgs in c.poll(timeout_ms=100).values():
            n += len(msgs)
    c.close()
    return n


def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Start broker, create topics, load, run one worker subprocess, verify, report."""
    from streams.admin import TopicSpec, ensure_topics
    from streams.broker import LocalBroker

    lines = synthetic_lines(args.records * args.lines_per_record)
    with LocalBroker() as broker:
        ensure_topics(
            broker.bootstrap,
            [TopicSpec(IN_TOPIC, 1, 3_600_000), TopicSpec(OUT_TOPIC, 1, 3_600_000)],
        )
        t0 = time.monotonic()
        n_records = load(broker.bootstrap, lines, args.lines_per_record)
        load_s = time.monotonic() - t0
        result = Path(f"/tmp/faust-bench-{os.getpid()}.json")
        result.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            __file__,
            "_worker",
            "--bootstrap",
            broker.bootstrap,
            "--mode",
            args.mode,
            "--loop",
            args.loop,
            "--settings",
            args.settings,
            "--records",
            str(n_records),
            "--take",
            str(args.take),
            "--result",
            str(result),
            "--t-spawn",
            str(time.time()),
            *(["--fetcher-fixes"] if args.fetcher_fixes else []),
        ]
        wlog = Path(f"/tmp/faust-bench-{os.getpid()}.log")
        with open(wlog, "wb") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=str(ROOT))
            try:
                proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not result.exists():
            tail = wlog.read_text(errors="replace").splitlines()[-15:]
            return {"mode": args.mode, "error": "worker timed out or failed", "log": tail}
        r = json.loads(result.read_text())
        produced = args.mode not in ("iter", "take_events")
        out_records = count_out(broker.bootstrap, n_records, 60) if produced else 0
    span = r["t_last"] - r["t_first"]
    return {
        "mode": args.mode,
        "loop": args.loop,
        "settings": args.settings,
        "lines_per_record": args.lines_per_record,
        "records_in": n_records,
        "events_seen": r["events"],
        "records_out": out_records,
        "load_s": round(load_s, 2),
        "spawn_to_first_s": round(r["t_first"] - r["t_spawn"], 2),
        "import_to_first_s": round(r["t_first"] - r["t_import"], 2),
        "first_to_last_s": round(span, 2),
        "records_per_s": round((r["events"] - 1) / span) if span > 0 else None,
        "lines_per_s": round((r["events"] - 1) * args.lines_per_record / span) if span else None,
        "flush_s": round(r["t_flushed"] - r["t_last"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("role", nargs="?", default="drive", choices=["drive", "_worker"])
    p.add_argument("--mode", choices=MODES, default="send")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--settings", choices=["default", "fast"], default="fast")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--lines-per-record", type=int, default=1)
    p.add_argument("--take", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=240.0)
    p.add_argument(
        "--fetcher-fixes", action="store_true",
        help="install logfog's fetcher fixes (streams/faust_fetcher.py) first",
    )  # fmt: skip
    p.add_argument("--bootstrap")
    p.add_argument("--result")
    p.add_argument("--t-spawn")
    args = p.parse_args(argv)
    if args.role == "_worker":
        run_worker(args)
        return 0
    print(json.dumps(drive(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
