"""``make run``: the whole job end to end on the embedded broker, then a clean shutdown.

Starts the local Tansu broker, creates the topics, starts one ``logfog worker``, ships
the bundled sample log (timestamps moved to now: shared epoch keys exist only for
current epochs) plus a generated realistic log, prints events arriving on each
destination topic and the dead letters, a summary, and stops everything.
``--keep`` leaves it running so the status page can be looked at.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "samples" / "combined.log"
_CLF_TIME = re.compile(rb"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]")


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


def consume(
    bootstrap: str, topics: list[str], expect: int, timeout_s: float
) -> dict[str, list[Any]]:
    from streams.admin import reader_from_beginning

    consumer = reader_from_beginning(bootstrap, topics)
    got: dict[str, list[Any]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sum(len(v) for v in got.values()) < expect:
        for tp, messages in consumer.poll(timeout_ms=300).items():
            got[tp.topic].extend(messages)
    consumer.close()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.demo", description=__doc__)
    parser.add_argument("--lines", type=int, default=20000, help="generated lines to ship")
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args(argv)

    from streams.broker import LocalBroker
    from streams.config import AGGREGATE_INPUT, normalize
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
            sample = work / "sample.log"
            sample.write_bytes(rebase_times(SAMPLE.read_bytes()))
            generated = work / "generated.log"
            start = datetime.now(UTC).replace(microsecond=0).isoformat()
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "generate.py"), "-n", str(args.lines),
                 "--seed", "1", "--start", start, "--junk-rate", "0.001", "-o", str(generated)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            raw = normalized["kafka"]["raw"]["topic"]
            shipped = 0
            for path in (sample, generated):
                result = ship(str(path), broker.bootstrap, raw, progress=False)
                shipped += result.lines
            say(f"3. shipped {shipped:,} lines to {raw} (bundled sample + generated log)")
            public = [n for n in normalized["destinations"] if n != AGGREGATE_INPUT]
            topics = [normalized["destinations"][n]["topic"] for n in public]
            dead = normalized["kafka"]["dead_letter"]["topic"]
            status = _wait_processed(web_port, shipped)
            expected = sum(status["published"][n] for n in public)
            expected += sum(status["rejected"].values())
            got = consume(broker.bootstrap, [*topics, dead], expected, timeout_s=60)
            for topic in topics:
                messages = got[topic]
                say(f"\n--- {topic}: {len(messages):,} events; first three:")
                for m in messages[:3]:
                    key = f"key={m.key.decode()} " if m.key else ""
                    say(f"  {key}{m.value.decode()}")
            say(f"\n--- {dead}: {len(got[dead]):,} dead letters (reason and coordinates only):")
            for m in got[dead][:4]:
                say(f"  {m.value.decode()}")
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


def _aggregation_summary(port: int, child: dict[str, Any] | None) -> str:
    """One line on the aggregator child (aggregates.run_in: process): what it holds.
    Windows are published when they close (5 minutes and more): not during a demo."""
    if child is None:
        return "  aggregation: not in a child process (aggregates.run_in)"
    try:
        aggregates = orjson.loads(_get(port, "/status.json")).get("aggregates") or {}
    except OSError:
        return f"  aggregation: child pid {child['pid']} not answering yet"
    return (f"  aggregation (child pid {child['pid']}, http://127.0.0.1:{port}/status): "
            f"{aggregates.get('events', 0):,} rows counted in open windows; k-gated rows "
            "reach logs.aggregates when a window closes")  # fmt: skip


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
