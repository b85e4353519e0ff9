"""faust_fetcher: the fetcher's delivery runs in place when it does not wait, and
behaves exactly like Service.wait_first when it does; a fetcher whose partitions are
all stopped for a full buffer wakes when the buffer drains, not a second later."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import mode
import pytest

from streams import faust_fetcher


class Fetcher(mode.Service):
    """The parts of Faust's consumer that ``wait_first`` and the fast path read."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


faust_fetcher.install_first_to_finish(Fetcher)


async def current_task(_: Any = None) -> asyncio.Task[Any] | None:
    return asyncio.current_task()


def test_a_delivery_that_does_not_wait_runs_in_the_callers_task() -> None:
    async def main() -> tuple[Any, Any]:
        fetcher = Fetcher()
        result = await fetcher.wait_first(current_task(), fetcher.suspend_flow.wait())
        return result, asyncio.current_task()

    result, caller = asyncio.run(main())
    assert result.results == [caller]
    assert not result.stopped


def test_the_flow_wait_that_never_ran_is_not_reported_as_never_awaited() -> None:
    async def main() -> None:
        fetcher = Fetcher()
        for _ in range(3):
            await fetcher.wait_first(current_task(), fetcher.suspend_flow.wait())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_a_delivery_that_waits_goes_on_to_its_result() -> None:
    async def main() -> list[Any]:
        fetcher = Fetcher()
        gate = asyncio.get_running_loop().create_future()

        async def deliver() -> str:
            await asyncio.sleep(0)  # a bare yield first
            return str(await gate)

        asyncio.get_running_loop().call_later(0.01, gate.set_result, 42)
        result = await fetcher.wait_first(deliver(), fetcher.suspend_flow.wait())
        return list(result.results)

    assert asyncio.run(main()) == ["42"]


def test_a_rebalance_while_delivery_waits_wins_and_cancels_the_delivery() -> None:
    seen: list[str] = []

    async def main() -> Any:
        fetcher = Fetcher()
        never = asyncio.get_running_loop().create_future()

        async def deliver() -> None:
            try:
                await never
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.01, fetcher.suspend_flow.set)
        flow = fetcher.suspend_flow.wait()
        result = await fetcher.wait_first(deliver(), flow)
        await asyncio.sleep(0)  # let the cancellation be delivered
        return result, flow

    (result, flow) = asyncio.run(main())
    assert result.done == [flow]
    assert seen == ["cancelled"]


@pytest.mark.parametrize("waits_first", [False, True])
def test_errors_in_the_delivery_propagate(waits_first: bool) -> None:
    async def main() -> None:
        fetcher = Fetcher()

        async def deliver() -> None:
            if waits_first:
                await asyncio.sleep(0.001)
            raise KeyError("boom")

        await fetcher.wait_first(deliver(), fetcher.suspend_flow.wait())

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_a_suspended_flow_takes_the_original_path() -> None:
    async def main() -> tuple[Any, Any]:
        fetcher = Fetcher()
        fetcher.suspend_flow.set()
        result = await fetcher.wait_first(current_task(), fetcher.suspend_flow.wait())
        return result, asyncio.current_task()

    result, caller = asyncio.run(main())
    # The original wraps the delivery in a task of its own.
    assert all(r is not caller for r in result.results)


def test_a_stopped_service_takes_the_original_path() -> None:
    async def main() -> Any:
        fetcher = Fetcher()
        fetcher._stopped.set()
        return await fetcher.wait_first(current_task(), fetcher.suspend_flow.wait())

    assert asyncio.run(main()).stopped


def test_other_calls_go_to_the_original() -> None:
    async def main() -> Any:
        fetcher = Fetcher()
        return await fetcher.wait_first(current_task(), timeout=1.0)

    result = asyncio.run(main())
    assert len(result.results) == 1 and result.results[0] is not None


def test_installs_on_the_faust_this_project_pins_once() -> None:
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread as Thread
    from faust.transport.producer import ProducerBuffer

    def patched() -> tuple[Any, ...]:
        return (Consumer.wait_first, Consumer._wait_next_records, Consumer.on_buffer_drop,
                Thread._create_worker_consumer, ProducerBuffer.size.fget)  # fmt: skip

    assert faust_fetcher.install()
    first = patched()
    assert faust_fetcher.install()
    assert patched() == first
    assert all(getattr(p, "logfog_fix", False) for p in first)


@pytest.mark.parametrize("threaded", [False, True])
def test_the_producer_buffer_size_is_fausts_without_a_settings_lookup_each_time(
    threaded: bool,
) -> None:
    """The conductor awaits ``wait_until_ebb`` before every message; ``size`` looked the
    setting up in Faust's registry each time (4.9 -> 0.7 us a message, measured)."""
    import faust
    from faust.exceptions import AlreadyConfiguredWarning

    faust_fetcher.install()
    app = faust.App(f"logfog-test-ebb-{threaded}", broker="kafka://127.0.0.1:1",
                    producer_threaded=threaded)  # fmt: skip
    buffer = app.producer.buffer
    if threaded:
        buffer.queue = asyncio.Queue()
        queue = buffer.queue
    else:
        queue = buffer.pending
    assert buffer.size == 0
    for n in range(3):
        queue.put_nowait(n)
    assert buffer.size == 3
    with pytest.warns(AlreadyConfiguredWarning):  # Faust does not support it either
        app.conf.producer_threaded = not threaded
    assert buffer.size == 3  # not read again: fixed once the app is up


def test_fausts_worker_consumer_long_polls_briefly() -> None:
    import faust

    faust_fetcher.install()
    app = faust.App("logfog-test-fetcher", broker="kafka://127.0.0.1:1")

    async def create() -> Any:  # aiokafka objects are made inside a running loop
        return app.consumer._thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(create())
    assert consumer._fetch_max_wait_ms == faust_fetcher.FETCH_MAX_WAIT_MS


class Consumer(mode.Service):
    """What Faust 0.15's consumer does around a full buffer, in miniature: a partition
    whose buffer is full is not fetched; with none left to fetch, sleep a second."""

    def __init__(self) -> None:
        super().__init__()
        self.flow_active = True
        self.app = type("App", (), {"client_only": False})()
        self.active = {"raw-0"}
        self._buffered_partitions: set[str] = set()
        self.fetches = 0

    def _get_active_partitions(self) -> set[str]:
        return self.active

    def on_buffer_full(self, tp: str) -> None:
        self.active.discard(tp)
        self._buffered_partitions.add(tp)

    def on_buffer_drop(self, tp: str) -> None:
        if tp in self._buffered_partitions:
            self.active.add(tp)
            self._buffered_partitions.discard(tp)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        if not self.active:
            await self.sleep(1)
            return {}, set()
        if "raw-0" not in self.active:  # only idle partitions: wait for the timeout
            await self.sleep(timeout)
            return {}, set(self.active)
        self.fetches += 1
        return {"raw-0": ["record"]}, set(self.active)


faust_fetcher.install_wait_for_drain(Consumer)


def timed_fetch(consumer: Consumer, timeout: float, then: Any = None) -> tuple[Any, float]:
    async def main() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        if then is not None:
            loop.call_later(0.02, then)
        started = loop.time()
        result = await consumer._wait_next_records(timeout)
        return result, loop.time() - started

    return asyncio.run(main())


def test_a_fetcher_with_every_partition_full_wakes_when_the_buffer_drains() -> None:
    consumer = Consumer()
    consumer.on_buffer_full("raw-0")
    (records, active), waited = timed_fetch(consumer, 1.0, lambda: consumer.on_buffer_drop("raw-0"))
    assert records == {"raw-0": ["record"]} and active == {"raw-0"}
    assert waited < 0.5  # Faust's own wait: a full second


def test_without_a_drain_it_waits_at_most_the_fetch_timeout_and_fetches_nothing() -> None:
    consumer = Consumer()
    consumer.on_buffer_full("raw-0")
    (records, _), waited = timed_fetch(consumer, 0.05)
    assert records == {} and consumer.fetches == 0
    assert 0.04 < waited < 0.5


def test_a_stop_ends_the_wait() -> None:
    consumer = Consumer()
    consumer.on_buffer_full("raw-0")
    (records, _), waited = timed_fetch(consumer, 5.0, consumer._stopped.set)
    assert records == {} and waited < 0.5


def test_idle_partitions_are_not_waited_on_longer_than_a_drain_poll() -> None:
    consumer = Consumer()
    consumer.active.add("internal-0")
    consumer.on_buffer_full("raw-0")
    (records, active), waited = timed_fetch(consumer, 1.0)
    assert records == {} and active == {"internal-0"}
    assert waited < 0.5  # Faust's own wait: the full second
    consumer.on_buffer_drop("raw-0")
    (records, _), _ = timed_fetch(consumer, 1.0)
    assert records == {"raw-0": ["record"]}


def test_partitions_stopped_for_other_reasons_keep_fausts_behaviour() -> None:
    consumer = Consumer()
    consumer.active.clear()  # paused (a rebalance, a recovery), not buffered
    (records, _), waited = timed_fetch(consumer, 1.0, lambda: consumer.on_buffer_drop("raw-0"))
    assert records == {} and waited >= 0.9  # the original's fixed sleep


def test_a_fetchable_partition_is_fetched_at_once() -> None:
    consumer = Consumer()
    (records, _), waited = timed_fetch(consumer, 1.0)
    assert records and waited < 0.1


def test_a_resized_buffer_stops_fetching_at_80_percent_of_its_new_size() -> None:
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    queue: Any = FlowControlQueue(maxsize=16384, flow_control=FlowControlEvent())
    assert queue.pressure_high_size == 13107  # computed, and cached by mode
    assert faust_fetcher.resize_buffer(queue, 100)
    assert not faust_fetcher.resize_buffer(queue, 100)
    stops = []
    for n in range(100):
        if queue.put_nowait_enhanced(n, on_pressure_high=lambda: stops.append(queue.qsize()),
                                     on_pressure_drop=lambda: None):  # fmt: skip
            break
    assert stops == [80] and queue.full() is False
    assert queue.pressure_drop_size == 40
