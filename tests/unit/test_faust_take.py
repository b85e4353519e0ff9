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
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.faust_take import take_events

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
