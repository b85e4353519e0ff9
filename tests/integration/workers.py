"""Run real ``logfog worker`` processes against the local broker, and count their output.

Every generated line carries its line number in the response-size field, which the ops
destination publishes as ``bytes``: that makes each published event traceable to the
exact input line without anything identifying, so tests can check set equality
(no line lost) and count duplicates (at-least-once). Rejected lines are traced by their
dead letters' coordinates (partition, offset, line within the record).
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[2]

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "curl/8.5.0",
]


def numbered_lines(n: int, seed: int = 7, junk_every: int = 0) -> tuple[list[bytes], set[int]]:
    """``n`` combined-log lines; line i has response size i. Returns (lines, good ids).

    With ``junk_every`` k, every k-th line is unparseable junk instead.
    """
    rng = random.Random(seed)
    # Recent times: shared epoch keys exist only for the current epochs (older ones are
    # destroyed by design, and their events publish no pseudonym).
    now = int(time.time())
    start = max(now - 600, now - now % 86400)  # never in yesterday's (destroyed) epoch
    lines: list[bytes] = []
    good: set[int] = set()
    for i in range(n):
        if junk_every and i % junk_every == junk_every - 1:
            lines.append(rng.choice([b"\x16\x03\x01junk", b"", b"not a log line", b"\xff\xfe"]))
            continue
        ip = f"198.51.100.{rng.randint(1, 254)}" if i % 3 else f"2001:db8::{rng.randint(1, 9999):x}"
        ts = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i // 50))
        path = rng.choice(["/", f"/products/{rng.randint(1, 99999)}", "/cart", "/search?q=x"])
        lines.append(
            f'{ip} - - [{ts}] "GET {path} HTTP/1.1" 200 {i} "-" "{rng.choice(UAS)}"'.encode()
        )
        good.add(i)
    return lines, good


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_config(bootstrap: str, geo_dbs: dict[str, str], partitions: int = 4) -> dict[str, Any]:
    """config/logfog.yaml with unique topics/group, tiny geo DBs and this broker."""
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    config = copy.deepcopy(config)
    tag = uuid.uuid4().hex[:8]
    config["kafka"]["bootstrap"] = bootstrap
    config["kafka"]["group"] = f"it-{tag}"
    config["kafka"]["raw"] = {"topic": f"it.raw.{tag}", "partitions": partitions, "retention": "1d"}
    config["kafka"]["dead_letter"] = {"topic": f"it.dead.{tag}", "partitions": 1, "retention": "1d"}
    for name, dest in config["destinations"].items():
        dest["topic"] = f"it.{name}.{tag}"
        dest["partitions"] = partitions
    config["enrich"]["geo"] = {"city": geo_dbs["city"], "asn": geo_dbs["asn"]}
    config["keys"]["topic"] = f"it.keys.{tag}"
    # Aggregation topics too: shared, every new group read all earlier tests' rows and
    # checkpoints from the start (load on 2 cores, and state that was not its own).
    aggregates = config["aggregates"]
    for part, name in (("input", "agg-in"), ("partials", "agg-partials"),
                       ("state", "agg-state"), ("output", "agg")):  # fmt: skip
        aggregates[part] = {**aggregates.get(part, {}), "topic": f"it.{name}.{tag}"}
    # The anonymizer's tests count in the worker: on 2 cores a child per worker would
    # only slow them. The default (run_in: process) has its own tests (test_aggregates,
    # test_worker's aggregator child test).
    config["aggregates"]["run_in"] = "worker"
    # As in production (deploy/): every record logfog writes is lz4, so every test reads
    # compressed events and checkpoints back through both Kafka clients.
    config["kafka"]["compression"] = "lz4"
    return config


#: The test cluster's master key (tests only; real ones come from `logfog keygen`).
TEST_MASTER_KEY = "6c6f67666f672d746573742d6d61737465722d6b65792d3235362d626974732e"


@dataclass
class WorkerProcess:
    """One ``logfog worker`` (or ``command``) subprocess with its own web port and data dir."""

    config_path: Path
    workdir: Path
    name: str = "w"
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    command: str = "worker"
    #: The web port of a worker's aggregator child (aggregates.run_in: process).
    aggregator_web_port: int = field(default_factory=free_port)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        env = dict(os.environ)
        env["LOGFOG_DATA_DIR"] = str(self.workdir / f"{self.name}-data")
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("LOGFOG_MASTER_KEY", TEST_MASTER_KEY)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", self.command, "-c", str(self.config_path),
             "--web-port", str(self.web_port),
             *(["--aggregator-web-port", str(self.aggregator_web_port)]
               if self.command == "worker" else [])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def get(self, path: str, timeout: float = 2.0, port: int | None = None) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{port or self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.tail()}")
            with contextlib.suppress(OSError):
                status, _ = self.get("/readyz")
                if status == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout_s}s:\n{self.tail()}")

    def status(self) -> dict[str, Any]:
        _, body = self.get("/status.json")
        return dict(orjson.loads(body))

    def child_status(self) -> dict[str, Any]:
        """The status page of this worker's aggregator child (run_in: process)."""
        _, body = self.get("/status.json", port=self.aggregator_web_port)
        return dict(orjson.loads(body))

    def wait_child_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError):
                if self.get("/readyz", port=self.aggregator_web_port)[0] == 200:
                    return
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.3)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return int(self.proc.returncode)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def process_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (not ours to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class OutputCounter:
    """Consume destination and dead-letter topics; trace events back to input lines."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        from streams.admin import reader_from_beginning

        self.consumer: Any = reader_from_beginning(bootstrap, topics)
        self.messages: dict[str, list[Any]] = {t: [] for t in topics}

    def poll(self, timeout_ms: int = 200) -> None:
        for tp, msgs in self.consumer.poll(timeout_ms=timeout_ms).items():
            self.messages[tp.topic].extend(msgs)

    def values(self, topic: str) -> list[bytes]:
        out: list[bytes] = []
        for m in self.messages[topic]:
            out.extend(m.value.split(b"\n"))
        return out

    def wait(self, predicate: Any, timeout_s: float = 60.0, settle_s: float = 1.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self) and time.monotonic() < deadline:
            self.poll()
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            self.poll(100)

    def event_ids(self, topic: str) -> Counter[int]:
        return Counter(int(orjson.loads(v)["bytes"]) for v in self.values(topic))

    def describe(self, topic: str, expected: Iterable[int]) -> str:
        """For an assertion message: the expected ids not seen (as ranges) and, per
        partition, the records read and the last offset (a consumer stuck on one
        partition and a worker that never published look different here)."""
        missing = sorted(set(expected) - set(self.event_ids(topic)))
        # Consecutive ids share n - index: one group per run.
        runs = [
            [n for _, n in run] for _, run in groupby(enumerate(missing), lambda x: x[1] - x[0])
        ]
        ranges = [f"{run[0]}-{run[-1]}" for run in runs]
        read: dict[int, tuple[int, int]] = {}
        for m in self.messages[topic]:
            count, _ = read.get(m.partition, (0, -1))
            read[m.partition] = (count + 1, m.offset)
        return f"missing ids {ranges[:20]}; read per partition (records, last offset): {read}"

    def close(self) -> None:
        self.consumer.close()


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
