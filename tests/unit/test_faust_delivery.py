"""faust_delivery: the fetcher's delivery runs in place when it does not wait, and
behaves exactly like Service.wait_first when it does."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import mode
import pytest

from streams import faust_delivery


class Fetcher(mode.Service):
    """The parts of Faust's consumer that ``wait_first`` and the fast path read."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


faust_delivery.install(Fetcher)


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

    assert faust_delivery.install()
    patched = Consumer.wait_first
    assert faust_delivery.install()
    assert Consumer.wait_first is patched
    assert getattr(patched, "fast_delivery", False)
