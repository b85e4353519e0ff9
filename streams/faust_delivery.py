"""Faust's fetcher delivers a message without four tasks when delivery does not wait.

Faust's fetcher (faust-streaming 0.15, ``Consumer._drain_messages``) hands every
fetched message to its stream through ``Service.wait_first(callback(message),
suspend_flow.wait())``: the delivery races a rebalance that suspends the flow.
``wait_first`` wraps both in tasks, adds two more for the service's stopped and
crashed flags, and runs ``asyncio.wait`` over the four. At one line per record that
machinery, not the delivery, was the largest share of the worker's main thread, and
the delivery itself almost never waits: it decodes the message and puts an event on
a stream buffer that holds thousands.

``install()`` replaces ``wait_first`` on Faust's consumer with ``first_to_finish``: run
the first awaitable one step in place. If it finishes, that is exactly what
``wait_first`` would have returned (the flow was not suspended and the service was
neither stopped nor crashed, so nothing else could have won). If it has to wait (a
full buffer), the started coroutine goes on inside the original ``wait_first`` and
races the rebalance as before; a cancellation reaches it the same way. Any other call
goes straight to the original.

Measured, one line per record, no aggregation, interleaved pairs (``bench/run.py``'s
end-to-end run): 5,825 -> 9,752 and 5,712 -> 10,626 lines/s.

>>> import asyncio, mode
>>> class Fetcher(mode.Service):
...     def __init__(self):
...         super().__init__()
...         self.suspend_flow = asyncio.Event()
>>> _ = install(Fetcher)
>>> async def deliver(message):
...     return message.upper()
>>> async def main():
...     fetcher = Fetcher()
...     return await fetcher.wait_first(deliver("m"), fetcher.suspend_flow.wait())
>>> asyncio.run(main()).results
['M']
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Coroutine, Generator
from types import CoroutineType
from typing import Any

log = logging.getLogger("logfog.worker")

#: The call this module speeds up, as Faust's fetcher spells it.
_FETCHER_CALL = "self.wait_first( callback(message), self.suspend_flow.wait()"


class _Resumed:
    """Awaitable that goes on driving a coroutine already run one step in place
    (what ``yield from`` does, for a coroutine that is already started)."""

    __slots__ = ("_coro", "_step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self._coro = coro
        self._step = step  # what the coroutine yielded: the future it waits on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self._coro, self._step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # a cancellation: the coroutine handles it
                try:
                    step = coro.throw(error)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value


def install(consumer_class: type[Any] | None = None) -> bool:
    """Give ``consumer_class`` (default: Faust's ``Consumer``) the fast ``wait_first``.

    Idempotent. Faust's own ``Consumer`` is patched only when its fetcher still makes
    the call this was written for (else it logs why and returns False).
    """
    if consumer_class is None:
        from faust.transport.consumer import Consumer

        try:
            source = inspect.getsource(Consumer._drain_messages)
        except (OSError, TypeError):
            source = ""
        if " ".join(_FETCHER_CALL.split()) not in " ".join(source.split()):
            log.info("faust fetcher differs from 0.15's: delivery fast path not installed")
            return False
        consumer_class = Consumer
    if getattr(consumer_class.wait_first, "fast_delivery", False):
        return True
    from mode.services import WaitResults

    original = consumer_class.wait_first

    async def first_to_finish(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (
            len(coros) == 2
            and timeout is None
            and type(coros[0]) is CoroutineType
            and type(coros[1]) is CoroutineType
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        ):
            delivery, flow = coros
            try:
                step = delivery.send(None)
            except StopIteration as done:
                flow.close()  # never started: closing it keeps it from being reported
                return WaitResults([delivery], [done.value], False)
            except BaseException:
                flow.close()
                raise
            return await original(self, _as_coroutine(_Resumed(delivery, step)), flow)
        return await original(self, *coros, timeout=timeout)

    first_to_finish.fast_delivery = True  # type: ignore[attr-defined]
    consumer_class.wait_first = first_to_finish  # type: ignore[method-assign]
    return True


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
