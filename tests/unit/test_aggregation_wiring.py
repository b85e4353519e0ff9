"""The aggregation wiring of streams/app.py (``_add_aggregation``): the order of
sends, checkpoints and acknowledgements when a send fails or never completes, or a
rebalance comes in the middle. Three data-loss bugs an audit found, each shown by one
test that failed before its fix.

Races like these cannot be produced on demand against a real broker, so the agents,
the timer and the revocation handler are driven directly: a stand-in Faust app
captures them, a stand-in producer makes chosen topics fail or hang, and checkpoints
are read back from what it stored."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections import namedtuple
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.aggregate.partial import PartialAggregator
from streams.aggregate.runtime import MERGER_KEY, AggregationRuntime, specs_from_config
from streams.app import NoLines, WorkerState, _add_aggregation
from streams.config import load_file
from streams.metrics import Metrics
from streams.pipeline import aggregate_layout

TP = namedtuple("TP", "topic partition")
INPUT, PARTIALS, STATE, OUTPUT, OPS_OUTPUT = (
    "logfog.agg.input", "logfog.agg.partials", "logfog.agg.state", "logs.aggregates",
    "logs.aggregates.ops",
)  # fmt: skip


def config(input_partitions: int) -> tuple[dict[str, Any], dict[str, int]]:
    cfg, _ = load_file("config/logfog.yaml")
    cfg["aggregates"]["snapshot_interval"] = "0s"
    parts = {INPUT: input_partitions, PARTIALS: 1, STATE: 1, OUTPUT: 1, "logs.raw": 1}
    return cfg, parts


class Producer:
    def __init__(self) -> None:
        self.durable: list[tuple[str, bytes | None, bytes]] = []
        self.mode: dict[str, str] = {}  # topic -> "ok" | "fail" | "hang"
        self.failures = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   timestamp_ms: int | None = None) -> asyncio.Future[None]:  # fmt: skip
        from aiokafka.errors import KafkaTimeoutError

        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mode = self.mode.get(topic, "ok")
        if mode == "ok":
            self.durable.append((topic, key, value))
            fut.set_result(None)
        elif mode == "fail":
            self.failures += 1
            fut.set_exception(KafkaTimeoutError())
        return fut  # "hang": never completes (in flight when the process dies)

    def latest_state(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for topic, key, value in self.durable:
            if topic == STATE and key is not None:
                out[key.decode()] = value
        return out


class Consumer:
    def __init__(self, assigned: set[Any]) -> None:
        self.assigned = assigned

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return {tp: 0 for tp in tps}

    async def commit(self) -> None:
        return None


class Stream:
    def __init__(self) -> None:
        from mode.utils.queues import FlowControlEvent, FlowControlQueue

        self.queue: asyncio.Queue[list[Any]] = asyncio.Queue()
        # Faust's stream buffer, which the agent sizes by bytes.
        self.channel = SimpleNamespace(
            queue=FlowControlQueue(maxsize=16384, flow_control=FlowControlEvent())
        )

    async def noack_take(self, n: int, within: float) -> Any:
        while True:
            yield await self.queue.get()


class App:
    def __init__(self, producer: Producer, assigned: set[Any]) -> None:
        self.agents: dict[str, Any] = {}
        self.timers: list[Any] = []
        self.revoked: list[Any] = []
        self.producer = SimpleNamespace(_ensure_producer=lambda: producer)
        self.consumer = Consumer(assigned)
        self.on_partitions_revoked = SimpleNamespace(connect=self._connect)
        self.conf = SimpleNamespace(stream_buffer_maxsize=16384)

    def _connect(self, fn: Any) -> Any:
        self.revoked.append(fn)
        return fn

    def topic(self, name: str, **_: Any) -> str:
        return name

    def agent(self, topic: str, name: str) -> Any:
        def deco(fn: Any) -> Any:
            self.agents[name] = fn
            return fn

        return deco

    def timer(self, interval: float) -> Any:
        def deco(fn: Any) -> Any:
            self.timers.append(fn)
            return fn

        return deco


def event(topic: str, partition: int, offset: int, value: bytes) -> Any:
    msg = SimpleNamespace(topic=topic, partition=partition, offset=offset, value=value)
    return SimpleNamespace(message=msg, ack=lambda: None)


def build(monkeypatch: pytest.MonkeyPatch, producer: Producer, cfg: dict[str, Any],
          parts: dict[str, int], assigned: set[Any],
          load: Any = None) -> tuple[App, WorkerState]:  # fmt: skip
    import streams.checkpoints

    monkeypatch.setattr(
        streams.checkpoints, "load_latest",
        load or (lambda *a, **k: producer.latest_state()),
    )  # fmt: skip
    app = App(producer, assigned)
    state = WorkerState()
    _add_aggregation(app, cfg, "fake:9092", parts, state, Metrics(NoLines()),
                     layout=aggregate_layout(cfg))  # fmt: skip
    return app, state


def rows_value(layout: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps([r.get(name) for name in layout]) for r in rows)


def row(t: int, visitor: str, raw_offset: int) -> dict[str, Any]:
    return {"time": t, "visitor": visitor, "route": "/", "country": "DE", "bytes": 1,
            "source_partition": 0, "source_offset": raw_offset, "source_line": 1}  # fmt: skip


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def stage2_on_one_partition(
    monkeypatch: pytest.MonkeyPatch, mode: dict[str, str]
) -> tuple[Producer, App, tuple[str, ...]]:
    """A worker holding input partition 0, its producer's topics in ``mode``."""
    cfg, parts = config(1)
    producer = Producer()
    producer.mode.update(mode)
    app, _ = build(monkeypatch, producer, cfg, parts, {TP(INPUT, 0)})
    return producer, app, aggregate_layout(cfg)


def test_merger_rows_survive_a_crash_while_the_output_topic_refuses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """publish_rows used to send the rows and the outbox-free merger checkpoint as one
    list: when the state topic took its record and the output topic did not (another
    leader), the checkpoint that says "published" was durable and the rows were not. A
    crash (or a restart) then, and the new owner restored that checkpoint: nothing
    republished the window."""
    cfg, parts = config(1)
    producer = Producer()
    producer.mode[OUTPUT] = "fail"
    app, _ = build(monkeypatch, producer, cfg, parts, {TP(PARTIALS, 0)})
    # stage 2: 12 visitors in one window, closed
    now = int(time.time())
    agg = PartialAggregator(specs_from_config(cfg["aggregates"]), 0, 1,
                            layout=aggregate_layout(cfg))  # fmt: skip
    agg.add([row(now - 7200, f"v{i}", i) for i in range(12)], offset=0)
    agg.advance_to(now + 2 * 86400)
    partials = agg.close_ready()

    async def scenario() -> tuple[list[Any], bytes | None]:
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-merge"](stream))
        await stream.queue.put(
            [event(PARTIALS, 0, i, p.to_bytes()) for i, p in enumerate(partials)]
        )
        await until(lambda: producer.failures >= 2)  # retrying the rows
        task.cancel()  # the worker dies (or is restarted) meanwhile
        with pytest.raises(asyncio.CancelledError):
            await task
        return [v for t, _, v in producer.durable if t == OUTPUT], producer.latest_state().get(
            MERGER_KEY
        )

    published, saved = asyncio.run(scenario())
    assert published == []
    # the next owner of the partials partition
    runtime = AggregationRuntime(specs_from_config(cfg["aggregates"]), 1, 0.0)
    republished = runtime.restore_merger(saved)
    assert republished, "the window's rows are in no outbox: never published"


def test_rows_of_windows_under_an_hour_go_to_the_operations_aggregates_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 8 buckets analytics to at least 1h, rule 14 keeps operations data at most
    30 d: the ops output's 5-minute rows used to be published to logs.aggregates (kept
    760 d) with the hourly and daily product rows (an audit, D10). They go to
    aggregates.ops_output (7 d) now; logs.aggregates holds windows of 1h and more only."""
    cfg, parts = config(1)
    producer = Producer()
    app, _ = build(monkeypatch, producer, cfg, parts, {TP(PARTIALS, 0)})
    now = int(time.time())
    agg = PartialAggregator(specs_from_config(cfg["aggregates"]), 0, 1,
                            layout=aggregate_layout(cfg))  # fmt: skip
    agg.add([row(now - 7200, f"v{i}", i) for i in range(12)], offset=0)
    agg.advance_to(now + 2 * 86400)
    partials = agg.close_ready()

    def published_then_checkpointed() -> bool:
        """The rows are out and the merger's outbox-free checkpoint followed them."""
        topics = [t for t, _, _ in producer.durable]
        rows = [i for i, t in enumerate(topics) if t not in (STATE, PARTIALS)]
        return bool(rows) and STATE in topics[rows[-1] :]

    async def scenario() -> None:
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-merge"](stream))
        await stream.queue.put(
            [event(PARTIALS, 0, i, p.to_bytes()) for i, p in enumerate(partials)]
        )
        await until(published_then_checkpointed)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    windows: dict[str, set[tuple[str, str]]] = {OUTPUT: set(), OPS_OUTPUT: set()}
    for topic, _, value in producer.durable:
        if topic in windows:
            published = orjson.loads(value)
            windows[topic].add((published["output"], published["window"]))
    assert windows == {OUTPUT: {("product", "1h"), ("product", "1d")},
                       OPS_OUTPUT: {("ops", "5m")}}  # fmt: skip


def test_a_checkpoint_never_drops_a_window_whose_partial_is_still_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The aggregate agent closes a window and awaits the partial's delivery; the 2-s
    timer used to write the partition's checkpoint meanwhile, which no longer held the
    window. Had the process died before the partial was delivered, the window's counts
    were gone: the restored state said it was closed."""
    producer, app, layout = stage2_on_one_partition(monkeypatch, {PARTIALS: "hang"})
    now = int(time.time())
    old = now - 2 * 3600
    value = rows_value(layout, [row(old, "a", 0), row(now - 60, "b", 1)])

    async def scenario() -> None:
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-aggregate"](stream))
        await stream.queue.put([event(INPUT, 0, 0, value)])
        await asyncio.sleep(0.3)  # the agent awaits the partials' delivery
        tick = asyncio.create_task(app.timers[0]())  # advance_idle_partitions
        await asyncio.sleep(0.3)
        for t in (tick, task):  # the process dies; the partials never reached the broker
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

    asyncio.run(scenario())
    assert not [1 for t, _, _ in producer.durable if t == PARTIALS]
    saved = producer.latest_state().get("partial/0")
    if saved is not None:  # none at all is right too: the input is replayed
        restored = PartialAggregator.restore(zlib.decompress(saved), layout)
        held = {s for o in restored._outputs for s in o.windows}
        start = old - old % 300
        assert start in held, "the window is neither in the checkpoint nor delivered: lost"


def test_a_partition_revoked_while_checkpoints_are_read_is_restored_when_it_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timer reads the assignment, then awaits the checkpoints; a rebalance revokes
    partition 1 meanwhile. ensure_aggregators used to create its aggregator all the same
    (from the checkpoints of that moment), and it stayed. Another worker counts
    partition 1 and checkpoints it; when partition 1 came back, the stale aggregator was
    used instead of that checkpoint: the other worker's open-window counts were lost."""
    cfg, parts = config(2)
    producer = Producer()
    layout = aggregate_layout(cfg)
    gate = threading.Event()
    block = {"on": True}

    def load(*_: Any, **__: Any) -> dict[str, bytes]:
        if block["on"]:
            gate.wait(5)
        return producer.latest_state()

    assigned = {TP(INPUT, 0), TP(INPUT, 1)}
    app, state = build(monkeypatch, producer, cfg, parts, assigned, load)
    runtime = state.aggregation
    now = int(time.time())

    async def scenario() -> None:
        tick = asyncio.create_task(app.timers[0]())
        await asyncio.sleep(0.2)  # the timer awaits the checkpoints
        # rebalance (eager): everything revoked, partition 0 assigned again
        await app.revoked[0](None, {TP(INPUT, 0), TP(INPUT, 1)})
        app.consumer.assigned = {TP(INPUT, 0)}
        gate.set()
        await tick
        block["on"] = False
        # another worker counts partition 1 (offset 5) and checkpoints it
        other = PartialAggregator(specs_from_config(cfg["aggregates"]), 1, 2, layout=layout)
        other.add_rows([[row(now - 120, "x", 5).get(n) for n in layout]], 5)
        producer.durable.append((STATE, b"partial/1", zlib.compress(other.snapshot(), 1)))
        # partition 1 comes back to this worker (eager: its own partition 0 revoked)
        await app.revoked[0](None, {TP(INPUT, 0)})
        app.consumer.assigned = {TP(INPUT, 0), TP(INPUT, 1)}
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-aggregate"](stream))
        value = rows_value(layout, [row(now - 110, "y", 6)])
        await stream.queue.put([event(INPUT, 1, 6, value)])
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    agg = runtime.aggregators[1]
    requests = {o.spec.key: sum(w.requests for w in o.windows.values()) for o in agg._outputs}
    assert requests[("ops", 300)] == 2, (
        f"partition 1 counts {requests}: the other worker's event lost"
    )


def test_a_worker_retrying_through_a_rebalance_never_writes_over_the_new_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state topic refuses a checkpoint; the worker retries with backoff; partition 0
    is revoked meanwhile and its new owner writes a newer checkpoint. The old owner's
    retry, once the broker takes it, used to land on top: the next restore would start
    from stale state at offsets the group had already committed past (counts lost)."""
    producer, app, layout = stage2_on_one_partition(monkeypatch, {STATE: "fail"})
    now = int(time.time())
    value = rows_value(layout, [row(now - 60, "a", 0)])

    async def scenario() -> None:
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-aggregate"](stream))
        await stream.queue.put([event(INPUT, 0, 0, value)])
        await until(lambda: producer.failures >= 1)  # the checkpoint is being retried
        await app.revoked[0](None, {TP(INPUT, 0)})
        app.consumer.assigned = set()
        producer.durable.append((STATE, b"partial/0", b"the new owner's"))
        producer.mode[STATE] = "ok"  # the broker is back
        await asyncio.sleep(1.0)  # longer than the next retry
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert producer.latest_state()["partial/0"] == b"the new owner's"


def test_the_aggregate_agents_buffer_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come in NDJSON records of up to ~1 MB, and Faust bounds a stream buffer in
    records (16,384): a backlog could fill it with gigabytes. The agent resizes it to
    about 128 MB of the records it takes, as the anonymize agent does."""
    _, app, layout = stage2_on_one_partition(monkeypatch, {})
    now = int(time.time())
    value = rows_value(layout, [row(now - 60, f"v{i}", i) for i in range(2000)])
    assert len(value) > 100_000

    async def scenario() -> int:
        stream = Stream()
        task = asyncio.create_task(app.agents["logfog-aggregate"](stream))
        await stream.queue.put([event(INPUT, 0, 0, value)])
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(stream.channel.queue.maxsize)

    size = asyncio.run(scenario())
    assert size * len(value) <= (128 << 20) + len(value)
    assert size < 16384
