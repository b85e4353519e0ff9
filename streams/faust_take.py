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
acknowledged here: the agent does it once they are published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


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
