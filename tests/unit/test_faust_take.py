"""take_events (streams/faust_take.py): batches straight from a stream's buffer.

The buffer is mode's real ThrowableQueue under a real FlowControlEvent; the stream,
app and consumer around it are stand-ins holding only what take_events reads. The
worker's integration tests (tests/integration/test_worker.py: kill -9, SIGTERM under
load, two workers with one dying) run it against the real broker and Faust.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.faust_take import acknowledge, faust_ack_is_known, take_events

TOPIC = "logs.raw"


def make_stream(maxsize: int = 100) -> Any:
    flow = FlowControlEvent()
    flow.resume()
    queue: ThrowableQueue[Any] = ThrowableQueue(maxsize=maxsize, flow_control=flow)
    app = SimpleNamespace(
        consumer=SimpleNamespace(unacked=set()),
        topics=SimpleNamespace(acking_topics={TOPIC}),
        flow_control=flow,
        consumer_generation_id=7,
    )
    return SimpleNamespace(app=app, channel=SimpleNamespace(queue=queue), should_stop=False)


class Message:
    """What take_events reads of a faust Message (hashable by identity, as it is)."""

    def __init__(self, offset: int, generation: int) -> None:
        self.topic, self.offset, self.generation_id = TOPIC, offset, generation
        self.tracked = False


def event(offset: int, generation: int = 7) -> Any:
    return SimpleNamespace(message=Message(offset, generation))


def offsets(batch: list[Any]) -> list[int]:
    return [e.message.offset for e in batch]


async def first_batches(stream: Any, count: int, most: int, within: float) -> list[list[Any]]:
    batches = []
    async for batch in take_events(stream, most, within):
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def test_full_batches_in_order_and_every_event_tracked() -> None:
    stream = make_stream()
    for n in range(7):
        stream.channel.queue.put_nowait(event(n))
    batches = asyncio.run(first_batches(stream, 3, most=3, within=0.0))
    assert [offsets(b) for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    tracked = stream.app.consumer.unacked
    assert {m.offset for m in tracked} == set(range(7)) and all(m.tracked for m in tracked)


def test_a_partial_batch_waits_within_for_more_then_goes() -> None:
    stream = make_stream()
    queue = stream.channel.queue

    async def run() -> tuple[list[list[Any]], float]:
        loop = asyncio.get_running_loop()
        queue.put_nowait(event(0))
        loop.call_later(0.05, queue.put_nowait, event(1))  # within: joins the batch
        started = loop.time()
        batches = await first_batches(stream, 1, most=10, within=0.3)
        return batches, loop.time() - started

    batches, waited = asyncio.run(run())
    assert [offsets(b) for b in batches] == [[0, 1]] and 0.25 <= waited < 2.0


def test_events_of_an_old_generation_or_during_a_rebalance_are_dropped_untracked() -> None:
    """Read again from the committed offset by the partition's next reader: acknowledged
    here (as Faust's iteration does), they could commit past events not yet read."""
    stream = make_stream()
    queue = stream.channel.queue
    queue.put_nowait(event(0, generation=6))
    queue.put_nowait(event(1))
    batches = asyncio.run(first_batches(stream, 1, most=1, within=0.0))
    assert [offsets(b) for b in batches] == [[1]]
    assert {m.offset for m in stream.app.consumer.unacked} == {1}

    stream = make_stream()
    stream.app.flow_control.suspend()  # a rebalance in progress
    stream.channel.queue.put_nowait(event(2))

    async def none_taken() -> list[list[Any]]:
        try:
            return await asyncio.wait_for(first_batches(stream, 1, most=1, within=0.0), 0.2)
        except TimeoutError:
            return []

    assert asyncio.run(none_taken()) == [] and not stream.app.consumer.unacked


def test_an_error_thrown_to_the_channel_is_raised_in_the_agent() -> None:
    stream = make_stream()
    stream.channel.queue._throw(KeyError("decode"))
    with pytest.raises(KeyError):
        asyncio.run(first_batches(stream, 1, most=5, within=0.0))


def test_draining_a_full_buffer_resumes_the_partitions_flow_control_stopped() -> None:
    stream = make_stream(maxsize=10)
    queue = stream.channel.queue
    resumed: list[bool] = []
    for n in range(9):  # past the 80% mark: the conductor stops fetching
        queue.put_nowait_enhanced(
            event(n), on_pressure_high=lambda: None, on_pressure_drop=lambda: resumed.append(True)
        )
    assert queue._pending_pressure_drop_callbacks
    asyncio.run(first_batches(stream, 1, most=9, within=0.0))
    assert resumed == [True] and not queue._pending_pressure_drop_callbacks


def test_faust_ending_the_stream_ends_the_iteration_without_a_crash() -> None:
    """At a stop Faust throws StopAsyncIteration into the agent's channel: raised inside
    the generator it became "RuntimeError: async generator raised StopAsyncIteration",
    which Faust logged as the agent crashing on every worker stop."""
    stream = make_stream()
    queue = stream.channel.queue

    async def run() -> list[list[Any]]:
        asyncio.get_running_loop().call_later(0.05, queue._throw, StopAsyncIteration())
        return [b async for b in take_events(stream, 5, 0.0)]  # waiting in queue.get()

    assert asyncio.run(run()) == []
    queue._throw(StopAsyncIteration())  # and when it is queued before the first get
    assert asyncio.run(first_batches(stream, 1, most=5, within=0.0)) == []


# acknowledge(): event.ack() in one pass, checked against event.ack() on Faust's own
# consumer (no broker: acknowledging only touches the consumer's bookkeeping).

ACKED_TOPIC, UNACKED_TOPIC = "logs.raw", "logs.other"


@pytest.fixture(scope="module")
def faust_apps() -> tuple[Any, Any]:
    import faust

    apps = []
    for name in ("per-event", "one-pass"):
        app = faust.App(f"logfog-test-ack-{name}", broker="kafka://127.0.0.1:1")
        app.topics._acking_topics.add(ACKED_TOPIC)
        apps.append(app)
    return apps[0], apps[1]


def reset(consumer: Any, committed: dict[int, int | None]) -> None:
    consumer._acked.clear()
    consumer._acked_index.clear()
    consumer._committed_offset.clear()
    consumer._unacked_messages.clear()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    from faust.types import TP

    for partition, offset in committed.items():
        consumer._committed_offset[TP(ACKED_TOPIC, partition)] = offset


def faust_events(app: Any, specs: list[tuple[str, int, int, int, bool]]) -> list[Any]:
    from faust.events import Event
    from faust.types.tuples import ConsumerMessage

    events = []
    for topic, partition, offset, refcount, acked in specs:
        message = ConsumerMessage(topic, partition, offset, 0.0, 0, None, None, b"x", None)
        message.refcount, message.acked = refcount, acked
        app.consumer._unacked_messages.add(message)
        events.append(Event(app, None, b"x", None, message))
    return events


def bookkeeping(app: Any, events: list[Any]) -> Any:
    consumer = app.consumer
    return (
        [(e.message.acked, e.message.refcount) for e in events],
        {tp: list(v) for tp, v in consumer._acked.items()},
        {tp: set(v) for tp, v in consumer._acked_index.items()},
        dict(consumer._committed_offset),
        sorted((m.topic, m.partition, m.offset) for m in consumer._unacked_messages),
        consumer._n_acked,
    )


event_specs = st.lists(
    st.tuples(
        st.sampled_from([ACKED_TOPIC, UNACKED_TOPIC]),
        st.integers(0, 2),  # partition
        st.integers(0, 12),  # offset: repeats are a message delivered twice
        st.sampled_from([0, 1, 1, 1, 2]),  # refcount: 2 = another stream holds it
        st.sampled_from([False, False, False, True]),  # acked before
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    specs=event_specs, committed=st.dictionaries(st.integers(0, 2), st.none() | st.integers(0, 8))
)
def test_acknowledge_leaves_what_event_ack_leaves(
    faust_apps: tuple[Any, Any], specs: list[tuple[str, int, int, int, bool]],
    committed: dict[int, int | None],
) -> None:  # fmt: skip
    per_event_app, one_pass_app = faust_apps
    results = []
    for app, ack in ((per_event_app, None), (one_pass_app, acknowledge)):
        reset(app.consumer, committed)
        events = faust_events(app, specs)
        waiter = app.consumer._waiting_for_ack = asyncio.new_event_loop().create_future()
        if ack is None:
            for e in events:
                e.ack()
        else:
            ack(app, events)
        results.append((bookkeeping(app, events), waiter.done()))
        waiter.get_loop().close()
    assert results[0] == results[1]


def test_the_installed_faust_acknowledges_as_acknowledge_expects() -> None:
    # Else acknowledge() falls back to event.ack(), correct but slower: a Faust upgrade
    # that changes its acknowledgement must be looked at (streams/faust_take.py).
    assert faust_ack_is_known()


def test_a_faust_whose_acknowledgement_differs_gets_event_ack(
    faust_apps: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.faust_take as faust_take

    monkeypatch.setitem(faust_take._FAUST_ACK, "Consumer.ack", "def ack(self): pass")
    faust_ack_is_known.cache_clear()
    try:
        app = faust_apps[1]
        reset(app.consumer, {})
        events = faust_events(app, [(ACKED_TOPIC, 0, 1, 1, False)])
        acked = []
        monkeypatch.setattr(type(events[0]), "ack", lambda self: acked.append(self))
        acknowledge(app, events)
        assert acked == events and not faust_ack_is_known()
    finally:
        monkeypatch.undo()
        faust_ack_is_known.cache_clear()
