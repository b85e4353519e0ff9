"""Taking a Faust agent's events in batches straight from its stream's buffer.

Faust's ``stream.noack_take(n, within)`` gives an agent lists of events, but each
event still goes the whole way of single-event iteration first: a ``_passive_drainer``
task iterates the stream (``Stream._c_aiter``: a ``sleep(0)``, sensors in and out, the
current-event context variable, processors) and appends every value to the take's
buffer. At one line per record that machinery cost more than the pipeline itself:
a bare agent that only acknowledges its events passed 10.1-12.2k events/s with
``noack_take`` and 16.7-21.2k taking them from the buffer as here (``bench/
faust_passthrough.py``, one partition, uvloop, fetcher fixes, 100k records, three
rounds; see the README's performance section).

:func:`take_events` reads the queue the topic conductor fills (``stream.channel.queue``,
a mode ``FlowControlQueue``: Faust's flow control, which stops fetching a partition
while the buffer is full and clears it at a rebalance, is unchanged) and keeps of the
stream's per-event work what offsets depend on:

- an event fetched before the last rebalance (another consumer generation) or while
  flow control is off (a rebalance in progress) is dropped unacknowledged: the new
  assignment reads it again from the committed offset. (Faust's iteration
  acknowledges it, which could commit past events of the partition not yet read.)
- every other event is *tracked* as the stream does (``message.tracked``, the
  consumer's unacknowledged set), so that Faust's ``stream_wait_empty`` would wait for
  it at a rebalance. logfog turns that setting off (``app.faust_settings``): its
  at-least-once rests on acknowledging an event only once its lines are published, and
  on Faust committing no offset of a partition it no longer holds; a take in flight at
  a rebalance is read again by the partition's next owner (duplicates, never loss:
  ``tests/integration/test_worker.py``, rebalances with both workers alive).
- errors a channel was sent (``channel.throw``) are raised in the agent, as the
  stream's iteration raises them; ``StopAsyncIteration``, which Faust throws to end an
  agent's stream, ends the iteration, as it ends the stream's.

Left out: Faust's monitor sensors per event (``on_stream_event_in``/``out``,
``on_message_in``/``out``); logfog's metrics are its own. Events are never
acknowledged here: the agent does it once they are published, with
:func:`acknowledge`.

:func:`acknowledge` is ``event.ack()`` for a whole chunk of events. Per event, Faust
takes its (reentrant) ack lock three times, through four calls, and looks the
partition up three times; at one line per record that was 7.8% of the worker's main
thread (py-spy). Here the lock is taken once, and the consumer's bookkeeping of one
partition is looked up once per run of its events: 4.7-5.4 -> 1.5-2.5 us an event (on
Faust's own consumer, 20k events). The bookkeeping is Faust 0.15's
``Consumer.ack``, step for step (a test compares every structure it touches with what
``event.ack()`` leaves); if the installed Faust's code differs from it, every event
gets ``event.ack()`` as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from functools import cache
from typing import Any

from streams.faust_fetcher import faust_source

log = logging.getLogger("logfog.worker")

#: Faust 0.15's acknowledgement, what :func:`acknowledge` does in one pass: the code of
#: each function with comments, docstrings and layout removed.
_FAUST_ACK = {
    "Event.ack": "def ack(self) -> bool: return self.message.ack(self.app.consumer)",
    "Message.ack": "def ack(self, consumer: _ConsumerT, n: int = 1) -> bool: with ack_lock: "
    "if not self.acked: if not self.decref(n): return self.on_final_ack(consumer) "
    "return False",
    "Message.decref": "def decref(self, n: int = 1) -> int: with ack_lock: refcount = "
    "self.refcount = max(self.refcount - n, 0) return refcount",
    "ConsumerMessage.on_final_ack": "def on_final_ack(self, consumer: _ConsumerT) -> bool: "
    "return consumer.ack(self)",
    "Consumer.ack": "def ack(self, message: Message) -> bool: with ack_lock: if not "
    "message.acked: message.acked = True tp = message.tp offset = message.offset if "
    "self.app.topics.acks_enabled_for(message.topic): committed = "
    "self._committed_offset[tp] try: if committed is None or offset >= committed: "
    "acked_index = self._acked_index[tp] if offset not in acked_index: "
    "self._unacked_messages.discard(message) acked_index.add(offset) acked_for_tp = "
    "self._acked[tp] acked_for_tp.append(offset) self._n_acked += 1 return True "
    "finally: notify(self._waiting_for_ack) return False",
    "Conductor.acks_enabled_for": "def acks_enabled_for(self, topic: str) -> bool: "
    "return topic in self._acking_topics",
}


@cache
def faust_ack_is_known() -> bool:
    """Whether the installed Faust acknowledges as :func:`acknowledge` does (checked
    once; logged when not)."""
    from faust.events import Event
    from faust.transport.conductor import Conductor
    from faust.transport.consumer import Consumer
    from faust.types.tuples import ConsumerMessage, Message

    functions = {
        "Event.ack": Event.ack, "Message.ack": Message.ack, "Message.decref": Message.decref,
        "ConsumerMessage.on_final_ack": ConsumerMessage.on_final_ack,
        "Consumer.ack": Consumer.ack, "Conductor.acks_enabled_for": Conductor.acks_enabled_for,
    }  # fmt: skip
    for name, function in functions.items():
        if faust_source(function, code_only=True) != _FAUST_ACK[name]:
            log.info("faust's %s differs from 0.15's: events are acknowledged one by one", name)
            return False
    return True


def acknowledge(app: Any, events: Sequence[Any]) -> None:
    """``event.ack()`` for each of ``events``, in one pass (see the module doc)."""
    from faust.types.tuples import ConsumerMessage, ack_lock
    from mode.utils.futures import notify

    if not faust_ack_is_known():
        for event in events:
            event.ack()
        return
    consumer = app.consumer
    acking_topics = app.topics.acking_topics
    committed_offsets = consumer._committed_offset
    acked_indexes = consumer._acked_index
    acked_lists = consumer._acked
    unacked = consumer._unacked_messages
    last_tp: Any = None
    committed: int | None = None
    acked_index: Any = None
    acked_list: Any = None
    newly_acked = 0
    notify_waiter = False
    with ack_lock:
        try:
            for event in events:
                message = event.message
                if message.acked:
                    continue
                refcount = message.refcount = max(message.refcount - 1, 0)
                if refcount:
                    continue  # another stream still holds it
                if type(message) is not ConsumerMessage:
                    message.on_final_ack(consumer)  # a plain Message: no offset to mark
                    continue
                message.acked = True
                if message.topic not in acking_topics:
                    continue
                notify_waiter = True
                tp = message.tp
                if tp != last_tp:
                    last_tp = tp
                    committed = committed_offsets[tp]
                    acked_index = acked_list = None  # looked up when first needed, as Faust does
                offset = message.offset
                if committed is None or offset >= committed:
                    if acked_index is None:
                        acked_index = acked_indexes[tp]
                    if offset not in acked_index:
                        unacked.discard(message)
                        acked_index.add(offset)
                        if acked_list is None:
                            acked_list = acked_lists[tp]
                        acked_list.append(offset)
                        newly_acked += 1
        finally:
            consumer._n_acked += newly_acked
            if notify_waiter:
                notify(consumer._waiting_for_ack)


async def take_events(stream: Any, most: int, within: float) -> AsyncIterator[list[Any]]:
    """Yield lists of up to ``most`` events of ``stream``'s topic, unacknowledged: a
    list as soon as it is full, else once ``within`` seconds have passed since its
    first event (at least one event each)."""
    app = stream.app
    channel = stream.channel
    queue = channel.queue
    consumer = app.consumer
    unacked = consumer.unacked  # the set wait_empty() waits to see empty
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    loop = asyncio.get_running_loop()
    try:
        while not stream.should_stop:
            taken: list[Any] = []
            deadline = 0.0
            while len(taken) < most:
                # A ThrowableQueue holding an error is not empty, and its get_nowait()
                # raises the error (what channel.throw() queued), as its get() does.
                if not queue.empty():
                    item = queue.get_nowait()
                elif not taken:
                    item = await queue.get()
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                message = getattr(item, "message", None)
                if message is None:
                    continue  # not an event (no topic channel delivers one)
                if (
                    not flow_control.is_active()
                    or message.generation_id != app.consumer_generation_id
                ):
                    continue  # stale: read again by whoever is assigned its partition
                if message.topic in acking_topics and not message.tracked:
                    message.tracked = True
                    unacked.add(message)
                if not taken:
                    deadline = loop.time() + within
                taken.append(item)
            if taken:
                yield taken
    except StopAsyncIteration:
        # How Faust ends an agent's stream (thrown into its channel at a stop). Raised
        # in an async generator it would become a RuntimeError, logged as a crash;
        # events taken but not yielded are unacknowledged, read again after it.
        return
