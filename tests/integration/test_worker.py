"""The streaming worker against the real local broker: completeness, faults, scale-out."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.admin import ensure_topics
from streams.broker import LocalBroker
from streams.shipper import ship
from streams.topics import topic_specs
from tests.integration.workers import (
    OutputCounter,
    WorkerProcess,
    free_port,
    numbered_lines,
    process_gone,
    worker_config,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(
    broker: LocalBroker, geo_dbs: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., tuple[dict[str, Any], Path]]]:
    made: list[OutputCounter] = []

    def make(partitions: int = 4) -> tuple[dict[str, Any], Path]:
        config = worker_config(broker.bootstrap, geo_dbs, partitions)
        from streams.config import normalize

        ensure_topics(broker.bootstrap, topic_specs(normalize(config, [], [])))
        return config, write_config(config, tmp_path / "logfog.yaml")

    yield make
    for c in made:
        c.close()


def topics(config: dict[str, Any]) -> dict[str, str]:
    return {
        "raw": config["kafka"]["raw"]["topic"],
        "dead": config["kafka"]["dead_letter"]["topic"],
        "ops": config["destinations"]["ops"]["topic"],
        "product": config["destinations"]["product"]["topic"],
    }


def ship_lines(bootstrap: str, topic: str, lines: list[bytes], path: Path, per_record: int) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ship(str(path), bootstrap, topic, lines_per_record=per_record, progress=False)
    assert result.lines == len(lines), result


def test_every_line_is_published_or_dead_lettered(
    broker: LocalBroker, setup: Any, tmp_path: Path
) -> None:
    config, path = setup()
    t = topics(config)
    lines, good = numbered_lines(3000, junk_every=50)
    huge = b"203.0.113.9 - - " + b"x" * (1 << 20)  # 1 MB line
    lines += [huge, b"", b"\x00\x01\x02\xff" * 10, "caf\xe9".encode("latin-1")]
    worker = WorkerProcess(path, tmp_path, "w1").start()
    counter = OutputCounter(broker.bootstrap, [t["ops"], t["product"], t["dead"]])
    try:
        worker.wait_ready()
        ship_lines(broker.bootstrap, t["raw"], lines, tmp_path / "in.log", per_record=100)
        expected_dead = len(lines) - len(good)
        counter.wait(lambda c: len(c.values(t["ops"])) >= len(good)
                     and len(c.values(t["dead"])) >= expected_dead)  # fmt: skip
        ops = counter.event_ids(t["ops"])
        assert set(ops) == good and sum(ops.values()) == len(good), "lost or doubled lines"
        assert len(counter.values(t["product"])) == len(good)
        dead = [orjson.loads(v) for v in counter.values(t["dead"])]
        coordinates = {(d["partition"], d["offset"], d["line"]) for d in dead}
        assert len(dead) == len(coordinates) == expected_dead
        reasons = {d["reason"] for d in dead}
        assert {"parse.too_long", "parse.empty", "parse.no_match"} <= reasons
        everything = b"\n".join(
            m.value + (m.key or b"") for ms in counter.messages.values() for m in ms
        )
        assert b"198.51.100." not in everything.replace(b"198.51.100.0/24", b"")
        assert b"xxxxxxxx" not in everything and b"Mozilla" not in everything
        # keys and timestamps: product is keyed by the visitor pseudonym, times are coarse
        product = counter.messages[t["product"]]
        assert all(m.key == orjson.loads(m.value)["visitor"].encode() for m in product)
        assert all(m.timestamp % 3_600_000 == 0 for m in product)
        status = worker.status()
        assert status["lines"] == len(lines)
        _, metrics = worker.get("/metrics")
        assert f"logfog_lines_total {float(len(lines))}".encode() in metrics
        assert worker.terminate() == 0, worker.tail()
    finally:
        counter.close()
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()


#: Every codec a Kafka producer may use. Log shippers compress (Filebeat gzip by default,
#: Vector, Fluent Bit and librdkafka clients often lz4, snappy or zstd).
CODECS = ("lz4", "gzip", "snappy", "zstd")


def produce_compressed(bootstrap: str, topic: str, records: list[bytes], codec: str) -> None:
    """``records`` in ``codec``: gzip and lz4 through kafka-python (``logfog ship``'s
    client; lz4 from the ``lz4`` package), snappy and zstd through aiokafka."""
    if codec in ("gzip", "lz4"):
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                 linger_ms=50)  # fmt: skip
        for record in records:
            producer.send(topic, record)
        producer.flush(30)
        producer.close()
        return

    import asyncio

    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                    linger_ms=50)  # fmt: skip
        await producer.start()
        try:
            for record in records:
                await producer.send(topic, record)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def test_raw_records_in_any_kafka_codec_are_read(
    broker: LocalBroker, setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw records compressed with snappy, lz4 or zstd used to stop the worker: aiokafka
    reads those codecs only with cramjam installed, and its fetcher's
    UnsupportedCodecError ended the process (seen with lz4 from kafka-python).
    The worker writes its own records in ``kafka.compression`` (lz4 in these tests)."""
    from kafka.record.default_records import DefaultRecordBatch

    codecs_read: list[int] = []  # of the batches this process's consumer decoded
    uncompress = DefaultRecordBatch._maybe_uncompress

    def spy(batch: DefaultRecordBatch) -> None:
        codecs_read.append(batch.compression_type)
        uncompress(batch)

    monkeypatch.setattr(DefaultRecordBatch, "_maybe_uncompress", spy)
    config, path = setup(partitions=2)
    assert config["kafka"]["compression"] == "lz4"
    t = topics(config)
    lines, good = numbered_lines(400)
    worker = WorkerProcess(path, tmp_path, "codecs").start()
    counter = OutputCounter(broker.bootstrap, [t["ops"]])
    try:
        worker.wait_ready()
        per_codec = len(lines) // len(CODECS)
        for i, codec in enumerate(CODECS):
            part = lines[i * per_codec : (i + 1) * per_codec]
            records = [b"\n".join(part[j : j + 20]) for j in range(0, len(part), 20)]
            produce_compressed(broker.bootstrap, t["raw"], records, codec)
        counter.wait(lambda c: len(c.values(t["ops"])) >= len(good), timeout_s=60)
        assert set(counter.event_ids(t["ops"])) == good, counter.describe(t["ops"], good)
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        assert codecs_read and set(codecs_read) == {DefaultRecordBatch.CODEC_LZ4}
        assert worker.terminate() == 0, worker.tail()
    finally:
        counter.close()
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()


def test_kill_9_mid_stream_loses_nothing(broker: LocalBroker, setup: Any, tmp_path: Path) -> None:
    config, path = setup()
    t = topics(config)
    lines, good = numbered_lines(30000)
    first = WorkerProcess(path, tmp_path, "w1").start()
    counter = OutputCounter(broker.bootstrap, [t["ops"]])
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        ship_lines(broker.bootstrap, t["raw"], lines, tmp_path / "in.log", per_record=20)
        counter.wait(lambda c: len(c.values(t["ops"])) >= 3000, timeout_s=60, settle_s=0)
        first.kill9()
        seen_at_kill = len(counter.values(t["ops"]))
        assert seen_at_kill < len(good), "the kill came too late to prove anything"
        second = WorkerProcess(path, tmp_path, "w2").start()
        second.wait_ready()
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= good, timeout_s=120)
        ops = counter.event_ids(t["ops"])
        assert set(ops) == good, f"{len(good - set(ops))} lines lost"
        duplicates = sum(ops.values()) - len(good)
        # at-least-once: the replacement replays only what the dead worker processed
        # and did not commit, so no line is published more than twice. (The count the
        # commits bound, one take of streams.app.BATCH_EVENTS records, exceeds this
        # input; and what the counter has seen at the kill is no bound either: the
        # local broker hides a batch's tail until the next batch, see landscape.md.)
        assert max(ops.values()) <= 2, "a line was published three times"
        print(f"kill -9 after {seen_at_kill} events: {duplicates} duplicates")
        assert second.terminate() == 0
    finally:
        counter.close()
        for w in (first, second):
            if w is not None and w.proc and w.proc.poll() is None:
                w.proc.kill()


def test_sigterm_under_load_finishes_in_flight_and_publishes_every_line_once(
    broker: LocalBroker, setup: Any, tmp_path: Path
) -> None:
    """SIGTERM mid-backlog: the worker finishes the chunk in flight (publish, ack,
    commit), leaves the rest unacknowledged and exits 0; a new worker takes over. Every
    line is then published or dead-lettered exactly once: no loss, and (unlike kill -9)
    no duplicates, since nothing published was left uncommitted."""
    config, path = setup()
    t = topics(config)
    lines, good = numbered_lines(30000, junk_every=97)
    expected_dead = len(lines) - len(good)
    first = WorkerProcess(path, tmp_path, "w1").start()
    counter = OutputCounter(broker.bootstrap, [t["ops"], t["dead"]])
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        ship_lines(broker.bootstrap, t["raw"], lines, tmp_path / "in.log", per_record=20)
        # mode's answers to these were a stack dump with locals (raw lines) on stderr and
        # pdb on the event loop; the worker logs and ignores them, and carries on.
        assert first.proc is not None
        first.proc.send_signal(signal.SIGUSR1)
        first.proc.send_signal(signal.SIGUSR2)
        counter.wait(lambda c: len(c.values(t["ops"])) >= 3000, timeout_s=60, settle_s=0)
        started = time.monotonic()
        assert first.terminate(timeout_s=40) == 0, first.tail()
        stop_seconds = time.monotonic() - started
        counter.poll(500)
        seen_at_stop = len(counter.values(t["ops"]))
        assert seen_at_stop < len(good), "the stop came too late to prove anything"
        second = WorkerProcess(path, tmp_path, "w2").start()
        second.wait_ready()
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= good
                     and len(c.values(t["dead"])) >= expected_dead, timeout_s=120)  # fmt: skip
        ops = counter.event_ids(t["ops"])
        assert set(ops) == good, f"{len(good - set(ops))} lines lost"
        doubled = sorted(i for i, n in ops.items() if n > 1)
        assert not doubled, f"{len(doubled)} lines published twice, e.g. {doubled[:5]}"
        dead = [orjson.loads(v) for v in counter.values(t["dead"])]
        coordinates = {(d["partition"], d["offset"], d["line"]) for d in dead}
        assert len(dead) == len(coordinates) == expected_dead
        print(f"SIGTERM after {seen_at_stop} events, stopped in {stop_seconds:.1f}s")
        first_log = first.log_path.read_text(errors="replace")
        assert "SIGUSR1 ignored" in first_log and "SIGUSR2 ignored" in first_log
        assert "LOCAL VARIABLES" not in first_log
        assert second.terminate() == 0, second.tail()
    finally:
        counter.close()
        for w in (first, second):
            if w is not None and w.proc and w.proc.poll() is None:
                w.proc.kill()


def test_two_workers_split_partitions_and_survive_one_dying(
    broker: LocalBroker, setup: Any, tmp_path: Path
) -> None:
    config, path = setup(partitions=4)
    t = topics(config)
    lines, good = numbered_lines(20000)
    a = WorkerProcess(path, tmp_path, "a").start()
    b = WorkerProcess(path, tmp_path, "b").start()
    counter = OutputCounter(broker.bootstrap, [t["ops"]])
    try:
        a.wait_ready()
        b.wait_ready()
        # The group settles with both members: each holds partitions, and the split has
        # not changed for 2 s (a fixed 3 s could be too short on a busy machine, and a
        # rebalance mid-stream replays, which the exact split below does not allow).
        deadline = time.monotonic() + 60
        split, since = None, time.monotonic()
        while time.monotonic() - since < 2.0:
            assert time.monotonic() < deadline, (split, a.tail(), b.tail())
            now = tuple(orjson.loads(w.get("/readyz")[1])["assigned_partitions"] for w in (a, b))
            if now != split or 0 in now:
                split, since = now, time.monotonic()
            time.sleep(0.2)
        ship_lines(broker.bootstrap, t["raw"], lines[:10000], tmp_path / "in1.log", per_record=50)
        # Every id, not 10,000 values: duplicates (a rebalance replays what its previous
        # owner published but had not committed) ended the wait early, and ids that
        # were only late were then reported missing.
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= set(range(10000)), timeout_s=90)
        first_half = counter.event_ids(t["ops"])
        sa, sb = a.status(), b.status()
        assert set(first_half) == set(range(10000)) and sum(first_half.values()) == 10000, (
            f"{counter.describe(t['ops'], range(10000))}; "
            f"published a={sa['published']} b={sb['published']}"
        )
        assert sa["lines"] > 0 and sb["lines"] > 0, (sa["lines"], sb["lines"])
        assert sa["lines"] + sb["lines"] == 10000  # split, not doubled
        b.kill9()
        ship_lines(broker.bootstrap, t["raw"], lines[10000:], tmp_path / "in2.log", per_record=50)
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= good, timeout_s=120)
        assert set(counter.event_ids(t["ops"])) == good
        assert a.terminate() == 0
    finally:
        counter.close()
        for w in (a, b):
            if w.proc and w.proc.poll() is None:
                w.proc.kill()


def test_rebalances_while_both_workers_live_lose_nothing_and_duplicate_little(
    broker: LocalBroker, setup: Any, tmp_path: Path
) -> None:
    """Two rebalances under a continuous stream, neither worker crashing: worker A runs,
    B joins mid-stream, then B is stopped with SIGTERM mid-stream, and the stream goes
    on. The worker commits only what it published (the agent acknowledges a take's
    events after the broker took its records; take_events drops, unacknowledged, what
    was fetched before the rebalance and not yet taken): every line is published or
    dead-lettered, and a duplicate is only a line in flight at a rebalance (a rebalance
    does not wait for a take: stream_wait_empty is off), published by its old owner and
    read again from the committed offset by its new one.

    The bounds asserted: no line more than twice (the rebalances are apart: the second
    one starts only after every line shipped before the first is published, and B has
    worked for at least 2 s, so no line is in flight at both); no duplicate among the
    lines shipped and published before B started (A had committed them: commit per take,
    and a 1 s commit timer besides); and duplicates only in slices shipped from B's
    start to the end of the second rebalance, plus the slice after it (in flight then).
    """
    config, path = setup(partitions=4)
    t = topics(config)
    # A stream of about 1,600 lines/s (a slice every 0.25 s at most): well within what
    # one worker keeps up with, so what is in flight at a rebalance stays small.
    per_slice, slices_max, pace_s = 400, 240, 0.25
    lines, good = numbered_lines(per_slice * slices_max, junk_every=97)
    a = WorkerProcess(path, tmp_path, "a").start()
    b: WorkerProcess | None = None
    counter = OutputCounter(broker.bootstrap, [t["ops"], t["dead"]])
    shipped: list[str] = []  # the phase each slice was shipped in
    next_at = [0.0]

    def ship_slice(phase: str) -> bool:
        n = len(shipped)
        if n == slices_max:
            return False
        time.sleep(max(0.0, next_at[0] - time.monotonic()))
        next_at[0] = time.monotonic() + pace_s
        part = lines[n * per_slice : (n + 1) * per_slice]
        ship_lines(broker.bootstrap, t["raw"], part, tmp_path / f"s{n}.log", per_record=5)
        shipped.append(phase)
        return True

    def expected() -> set[int]:
        return {i for i in good if i < len(shipped) * per_slice}

    def ship_until(phase: str, done: Callable[[], bool], timeout_s: float = 60) -> None:
        """Ship a slice at a time until ``done`` (still waiting once none are left)."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, (phase, a.tail(), b and b.tail())
            if not ship_slice(phase):
                time.sleep(0.2)
            counter.poll(50)

    def assigned(w: WorkerProcess) -> int:
        try:
            return int(orjson.loads(w.get("/readyz")[1])["assigned_partitions"])
        except OSError:
            return -1

    try:
        a.wait_ready()
        # A alone: its slices published (so committed before B's join, seconds later).
        for _ in range(3):
            ship_slice("a")
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= expected(), settle_s=0)
        before_b = expected()
        alone = assigned(a)  # every partition of the raw and aggregation topics
        # Rebalance 1: B joins while lines keep coming; done once both hold partitions,
        # B has published, and every line shipped before B started is published.
        b = WorkerProcess(path, tmp_path, "b").start()
        joined_at: list[float] = []

        def b_joined() -> bool:
            if not joined_at:
                if assigned(a) > 0 and assigned(b) > 0 and b.status()["lines"] > 0:
                    joined_at.append(time.monotonic())
                return False
            return (
                time.monotonic() - joined_at[0] >= 2.0
                and set(counter.event_ids(t["ops"])) >= before_b
            )

        ship_until("join", b_joined, timeout_s=90)
        b_lines = b.status()["lines"]
        # Rebalance 2: B stops (SIGTERM) mid-stream; A takes all partitions back.
        exit_code: list[int] = []
        stopper = threading.Thread(target=lambda: exit_code.append(b.terminate(40)))
        stopper.start()
        ship_until("leave", lambda: not stopper.is_alive() and assigned(a) == alone)
        stopper.join()
        assert exit_code == [0], b.tail()
        # And on: A alone again.
        for _ in range(3):
            ship_slice("after")
        phases = {p: shipped.count(p) for p in ("a", "join", "leave", "after")}
        assert phases["join"] >= 2 and phases["leave"] >= 1 and phases["after"], phases
        every = expected()
        dead_count = len(shipped) * per_slice - len(every)
        counter.wait(lambda c: set(c.event_ids(t["ops"])) >= every
                     and len(c.values(t["dead"])) >= dead_count, timeout_s=90)  # fmt: skip
        ops = counter.event_ids(t["ops"])
        assert set(ops) == every, counter.describe(t["ops"], every)
        dead = [orjson.loads(v) for v in counter.values(t["dead"])]
        coordinates = Counter((d["partition"], d["offset"], d["line"]) for d in dead)
        assert len(coordinates) == dead_count, (len(coordinates), dead_count)
        assert max(coordinates.values()) <= 2, "a line was dead-lettered three times"
        doubled = {i: n for i, n in ops.items() if n > 1}
        by_phase = {p: sum(1 for i in doubled if shipped[i // per_slice] == p)
                    for p in ("a", "join", "leave", "after")}  # fmt: skip
        print(f"slices by phase {phases}, "
              f"B published {b_lines} lines before its stop; duplicates by slice phase "
              f"{by_phase}, total {sum(ops.values()) - len(ops)}, dead {len(dead)}/{dead_count}")  # fmt: skip
        assert max(ops.values()) <= 2, "a line was published three times"
        assert not doubled.keys() & before_b, "lines committed before B started replayed"
        first_after = shipped.index("after")
        late = [i for i in doubled if i // per_slice > first_after]
        assert not late, f"duplicates after the rebalances: {sorted(late)[:5]}"
        assert a.terminate() == 0, a.tail()
    finally:
        counter.close()
        for w in (a, b):
            if w is not None and w.proc and w.proc.poll() is None:
                w.proc.kill()


def test_worker_waits_for_a_broker_that_is_not_up_yet(
    geo_dbs: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    config = worker_config(bootstrap, geo_dbs, partitions=1)
    path = write_config(config, tmp_path / "logfog.yaml")
    worker = WorkerProcess(path, tmp_path, "early").start()
    try:
        # Until it says it waits (its first probe ends after a few seconds; a fixed 4 s
        # was too short with a second test process on the cores), alive all along.
        deadline = time.monotonic() + 30
        while "not reachable yet" not in worker.log_path.read_text():
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        time.sleep(1.0)  # and still up after saying so
        assert worker.proc.poll() is None, worker.tail()
        with LocalBroker(port=port) as late:
            worker.wait_ready(timeout_s=60)
            lines, good = numbered_lines(200)
            t = topics(config)
            ship_lines(late.bootstrap, t["raw"], lines, tmp_path / "in.log", per_record=10)
            counter = OutputCounter(late.bootstrap, [t["ops"]])
            counter.wait(lambda c: len(c.values(t["ops"])) >= len(good), timeout_s=60)
            assert set(counter.event_ids(t["ops"])) == good
            counter.close()
            assert worker.terminate() == 0
    finally:
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()


def test_broker_gone_mid_run_no_crash_loop(
    geo_dbs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker disappears under a running worker: the process stays up, answers its
    health check, retries instead of crash-looping, and still stops on SIGTERM, within
    LOGFOG_STOP_TIMEOUT (8 s here, 25 by default)."""
    monkeypatch.setenv("LOGFOG_STOP_TIMEOUT", "8")  # the worker inherits the environment
    port = free_port()
    broker = LocalBroker(port=port).start()
    config = worker_config(broker.bootstrap, geo_dbs, partitions=1)
    from streams.config import normalize

    ensure_topics(broker.bootstrap, topic_specs(normalize(config, [], [])))
    path = write_config(config, tmp_path / "logfog.yaml")
    worker = WorkerProcess(path, tmp_path, "orphan").start()
    try:
        worker.wait_ready()
        lines, _ = numbered_lines(100)
        t = topics(config)
        ship_lines(broker.bootstrap, t["raw"], lines, tmp_path / "in.log", per_record=10)
        deadline = time.monotonic() + 30
        while worker.status()["lines"] < len(lines):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        broker.stop(timeout_s=1.0)  # gone: not drained (Tansu waits for its clients)
        time.sleep(6)  # aiokafka's reconnects fail meanwhile: the worker must stay up
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        status, _ = worker.get("/healthz")
        assert status == 200
        # Faust's final commit cannot reach the broker: the stop deadline ends it (exit 3).
        started = time.monotonic()
        assert worker.terminate(timeout_s=60) in (0, 3)
        assert time.monotonic() - started < 8 + 10  # the timeout, and the exit after it
    finally:
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()
        broker.stop()


def test_the_aggregator_child_is_restarted_and_stops_with_the_worker(
    broker: LocalBroker, setup: Any, tmp_path: Path
) -> None:
    """aggregates.run_in: process (the default): the worker runs a ``logfog aggregator``
    child. Killed, the child is replaced and counts on; the worker's SIGTERM stops it
    too, and the worker exits 0."""
    config, _ = setup(partitions=1)
    config["aggregates"]["run_in"] = "process"
    path = write_config(config, tmp_path / "process.yaml")
    worker = WorkerProcess(path, tmp_path, "w").start()
    try:
        worker.wait_ready()
        worker.wait_child_ready()
        child = worker.status()["aggregator_process"]
        assert child["running"] and child["restarts"] == 0, child
        os.kill(child["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (now := worker.status()["aggregator_process"])["restarts"] or not now["running"]:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert now["pid"] != child["pid"] and now["last_exit"] == -signal.SIGKILL, now
        scraped = worker.get("/metrics")[1].decode().splitlines()
        assert "logfog_aggregator_child_restarts_total 1.0" in scraped
        assert "logfog_aggregator_child_up 1.0" in scraped
        worker.wait_child_ready()
        lines, good = numbered_lines(300)
        ship_lines(broker.bootstrap, topics(config)["raw"], lines, tmp_path / "in.log", 10)
        while (worker.child_status()["aggregates"] or {}).get("events", 0) < len(good):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert worker.terminate(timeout_s=40) == 0, worker.tail()
        assert process_gone(now["pid"]), "the aggregator child outlived the worker"
    finally:
        if worker.proc and worker.proc.poll() is None:
            worker.proc.kill()
