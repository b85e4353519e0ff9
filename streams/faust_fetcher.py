"""Four fixes to Faust's fetcher (faust-streaming 0.15), found at one line per record.

**Deliver in place.** The fetcher (``Consumer._drain_messages``) hands every fetched
message to its stream through ``Service.wait_first(callback(message),
suspend_flow.wait())``: the delivery races a rebalance that suspends the flow.
``wait_first`` wraps both in tasks, adds two more for the service's stopped and
crashed flags, and runs ``asyncio.wait`` over the four. The delivery itself almost
never waits: it decodes the message and puts an event on a stream buffer that holds
thousands. ``first_to_finish`` runs the first awaitable one step in place; if it
finishes, that is exactly what ``wait_first`` would have returned (the flow was not
suspended and the service neither stopped nor crashed, so nothing else could have
won). If it has to wait (a full buffer), the started coroutine goes on inside the
original ``wait_first`` and races the rebalance as before; a cancellation reaches it
the same way. Any other call goes straight to the original.

**Wake when the buffer drains.** When a stream's buffer passes 80% of
``stream_buffer_maxsize``, Faust stops fetching the partition until the buffer is
down to 40%. Meanwhile the fetcher waits a full second: asleep if no partition is left
to fetch, else in a fetch from the others (``_wait_next_records``), which in a worker
are the idle ones (internal topics, a quiet raw partition). The buffer drains much
sooner, and the worker then idled for the rest of that second: with a backlog at one
line per record, a timeline showed a stop every ~15,000 events, the drain 0.3 s later
and the next fetch 0.7 s after that. ``wait_for_drain`` waits for the drain itself
when nothing else can be fetched, and otherwise fetches the others for at most
``DRAIN_POLL_SECONDS``. Faust's flow control (what to stop, when to resume) is
unchanged.

**Short long-polls.** Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500``
(not a setting). aiokafka keeps one fetch in flight per broker and does not fetch a
partition whose records are still buffered; while the busy partition waited in a
full stream buffer, a fetch for the idle partitions went out and the broker held it
for the full 1.5 s, during which the busy partition, drained by then, could not be
fetched: the timeline showed stalls of 1.0-1.5 s every ~15,000 events. With
``FETCH_MAX_WAIT_MS`` the worst case is that long; the price is a few more empty
fetches a second for idle partitions.

**The producer buffer's size, once configured.** Before delivering each message the
conductor awaits ``ProducerBuffer.wait_until_ebb`` (tables' changelog messages wait
there), which reads ``size``, which looks up ``app.conf.producer_threaded`` through
Faust's settings registry: about 7% of the worker's main thread at one line per
record (py-spy). The setting cannot change once the app exists: it is read once.

``resize_buffer`` is the one helper here that is not a fix: it lets the worker bound a
stream buffer by bytes, which Faust counts in events (``streams/app.py``).

Measured with ``bench/run.py``'s end-to-end run, one line per record, no aggregation:
in place, interleaved pairs 5,825 -> 9,752 and 5,712 -> 10,626 lines/s; the first three
fixes together: see the README's performance section.

>>> import asyncio, mode
>>> class Fetcher(mode.Service):
...     def __init__(self):
...         super().__init__()
...         self.suspend_flow = asyncio.Event()
>>> _ = install_first_to_finish(Fetcher)
>>> async def deliver(message):
...     return message.upper()
>>> async def main():
...     fetcher = Fetcher()
...     return await fetcher.wait_first(deliver("m"), fetcher.suspend_flow.wait())
>>> asyncio.run(main()).results
['M']
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any

log = logging.getLogger("logfog.worker")

#: Longest fetch wait while a partition is stopped for a full buffer (see the module).
DRAIN_POLL_SECONDS = 0.05

#: Longest time the broker may hold a fetch for partitions without data (see the module).
FETCH_MAX_WAIT_MS = 100

#: What these fixes were written against, as Faust spells it: (method, code).
_EXPECTED = (
    ("Consumer._drain_messages",
     "self.wait_first( callback(message), self.suspend_flow.wait()"),
    ("Consumer._wait_next_records",
     "else: # We should still release to the event loop await self.sleep(1)"),
    ("AIOKafkaConsumerThread._create_worker_consumer", "fetch_max_wait_ms=1500,"),
)  # fmt: skip


def faust_source(function: Any, *, code_only: bool = False) -> str:
    """The source of one of Faust's functions with its layout removed (whitespace runs
    as one space), to compare with what a fix was written against; with ``code_only``
    also without docstrings and comments. "" when there is no source to read.

    >>> faust_source(_as_coroutine)
    'async def _as_coroutine(awaitable: Awaitable[Any]) -> Any: return await awaitable'
    >>> faust_source(len)  # a builtin: no source
    ''
    """
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ""
    if code_only:
        source = re.sub(r"#[^\n]*", "", re.sub(r'""".*?"""', "", source, flags=re.S))
    return " ".join(source.split())


def install() -> bool:
    """All four fixes, if Faust's code is still what they were written against (else
    it logs why, changes nothing and returns False). Idempotent."""
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    classes = {"Consumer": Consumer, "AIOKafkaConsumerThread": AIOKafkaConsumerThread}
    for where, expected in _EXPECTED:
        class_name, method = where.split(".")
        function = getattr(classes[class_name], method)
        if getattr(function, "logfog_fix", False):
            continue  # installed already
        if expected not in faust_source(function):
            log.info("faust's %s differs from 0.15's: fetcher fixes not installed", where)
            return False
    install_first_to_finish(Consumer)
    install_wait_for_drain(Consumer)
    install_short_long_polls(AIOKafkaConsumerThread)
    install_buffer_size_once_configured()
    return True


def install_buffer_size_once_configured() -> bool:
    """The producer buffer's size without a settings lookup per message (see the
    module); whether installed (not if Faust's ``ProducerBuffer.size`` changed)."""
    from faust.transport.producer import ProducerBuffer

    prop = ProducerBuffer.__dict__.get("size")
    getter = getattr(prop, "fget", None)
    if getattr(getter, "logfog_fix", False):
        return True
    if "if app.conf.producer_threaded:" not in faust_source(getter):
        log.info("faust's ProducerBuffer.size differs from 0.15's: not replaced")
        return False

    def size(self: Any) -> int:
        # producer_threaded is a setting of the app: fixed once the app exists.
        threaded = self.__dict__.get("_logfog_threaded")
        if threaded is None:
            threaded = self.__dict__["_logfog_threaded"] = bool(self.app.conf.producer_threaded)
        if threaded:
            return len(self.queue._queue) if self.queue else 0
        return len(self.pending._queue)

    size.logfog_fix = True  # type: ignore[attr-defined]
    ProducerBuffer.size = property(size)  # type: ignore[method-assign,assignment]
    return True


def install_short_long_polls(thread_class: type[Any]) -> bool:
    """Short long-polls (see the module): the aiokafka consumer that
    ``thread_class._create_worker_consumer`` makes waits at most ``FETCH_MAX_WAIT_MS``."""
    original = thread_class._create_worker_consumer

    def create_worker_consumer(self: Any, *args: Any, **kwargs: Any) -> Any:
        consumer = original(self, *args, **kwargs)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by start(): not started yet
        return consumer

    return _patched(thread_class, "_create_worker_consumer", create_worker_consumer)


def _patched(cls: type[Any], name: str, replacement: Callable[..., Any]) -> bool:
    """Set ``cls.name`` unless it is already ours; whether it was set."""
    if getattr(getattr(cls, name), "logfog_fix", False):
        return False
    replacement.logfog_fix = True  # type: ignore[attr-defined]
    setattr(cls, name, replacement)
    return True


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


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def install_first_to_finish(consumer_class: type[Any]) -> bool:
    """Deliver in place (see the module): ``consumer_class.wait_first``."""
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

    return _patched(consumer_class, "wait_first", first_to_finish)


def install_wait_for_drain(consumer_class: type[Any]) -> bool:
    """Wake when the buffer drains (see the module): ``consumer_class``'s
    ``_wait_next_records`` and ``on_buffer_drop``."""
    original_wait = consumer_class._wait_next_records
    original_drop = consumer_class.on_buffer_drop

    def drained(consumer: Any) -> asyncio.Event:
        event: asyncio.Event | None = consumer.__dict__.get("_logfog_drained")
        if event is None:
            event = consumer.__dict__["_logfog_drained"] = asyncio.Event()
        return event

    def on_buffer_drop(self: Any, tp: Any) -> None:
        original_drop(self, tp)
        drained(self).set()

    async def wait_for_drain(self: Any, timeout: float) -> Any:
        if self._buffered_partitions and self.flow_active and not self.app.client_only:
            # A partition is not fetched because its stream's buffer is full: do not
            # wait on the others for longer than it takes that buffer to drain.
            if not self._get_active_partitions():
                event = drained(self)
                event.clear()
                await self.wait(event, timeout=timeout)
                if not self._get_active_partitions():
                    return {}, set()  # nothing to fetch yet: the fetcher asks again
            timeout = min(timeout, DRAIN_POLL_SECONDS)
        return await original_wait(self, timeout)

    first = _patched(consumer_class, "on_buffer_drop", on_buffer_drop)
    return _patched(consumer_class, "_wait_next_records", wait_for_drain) or first


def resize_buffer(queue: Any, events: int) -> bool:
    """Make a stream buffer (a mode ``FlowControlQueue``) hold ``events`` events, its
    flow-control marks (80% stop, 40% resume) moving with it; whether it changed.

    >>> from mode.utils.queues import FlowControlEvent, FlowControlQueue
    >>> queue = FlowControlQueue(maxsize=16384, flow_control=FlowControlEvent())
    >>> queue.pressure_high_size
    13107
    >>> resize_buffer(queue, 1000), queue.maxsize, queue.pressure_high_size
    (True, 1000, 800)
    """
    if queue.maxsize == events:
        return False
    queue._maxsize = events  # asyncio.Queue's own field behind ``maxsize``
    for mark in ("pressure_high_size", "pressure_drop_size"):  # mode caches both
        queue.__dict__.pop(mark, None)
    return True
