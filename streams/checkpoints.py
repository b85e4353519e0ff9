"""Reading the latest checkpoint per key from a (compacted) Kafka topic.

Window state of the aggregator is checkpointed to an internal topic, key = what the
state belongs to (``partial/3``, ``merger``). A worker that takes over a partition
reads the topic from the beginning and keeps the last value per key.

Complete or nothing: the end offsets are fetched first and every partition is read at
least up to them; what is not read by the deadline raises
:class:`CheckpointsIncomplete` (the caller retries). A partial read would restore an
older checkpoint while the committed input offsets are already past it: events lost.
Past the end offsets it keeps reading until the topic stays quiet briefly, because
the local broker reports a low end offset for multi-record batches (the last batch's
base offset + 1: README, "Operations"): reaching it means the last batch is
being fetched, and its remaining records arrive with it.
"""

from __future__ import annotations

import time

from streams.admin import reader_from_beginning
from streams.security import PLAINTEXT, KafkaSecurity


class CheckpointsIncomplete(TimeoutError):
    """The checkpoint topic was not read up to its end offsets in time."""


def load_latest(
    bootstrap: str,
    topic: str,
    *,
    quiet_s: float = 0.3,
    timeout_s: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, bytes]:
    """Last value per key in ``topic`` (tombstones delete); blocking, use off the loop.

    Raises :class:`CheckpointsIncomplete` rather than return a partial result.
    """
    consumer = reader_from_beginning(
        bootstrap, [topic], security=security, max_partition_fetch_bytes=64 << 20,
        fetch_max_bytes=64 << 20,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        ends = consumer.end_offsets(list(consumer.assignment()))
        latest: dict[str, bytes] = {}
        behind = {tp for tp, end in ends.items() if end > 0}
        quiet_since = time.monotonic()
        while behind or time.monotonic() - quiet_since < quiet_s:
            if time.monotonic() >= deadline:
                if behind:
                    raise CheckpointsIncomplete(
                        f"{topic}: {len(behind)} partition(s) not read to their end "
                        f"offsets in {timeout_s:.0f}s"
                    )
                break  # read to the end offsets; only the quiet wait is cut short
            batch = consumer.poll(timeout_ms=100)
            if batch:
                quiet_since = time.monotonic()
            for messages in batch.values():
                for m in messages:
                    if m.key is None:
                        continue
                    key = m.key.decode()
                    if m.value is None:
                        latest.pop(key, None)
                    else:
                        latest[key] = m.value
            behind = {tp for tp in behind if consumer.position(tp) < ends[tp]}
        return latest
    finally:
        consumer.close()
