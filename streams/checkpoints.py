"""Reading the latest checkpoint per key from a (compacted) Kafka topic.

Window state of the aggregator is checkpointed to an internal topic, key = what the
state belongs to (``partial/3``, ``merger``). A worker that takes over a partition
reads the topic from the beginning and keeps the last value per key. The end is found
by consuming until the topic stays quiet, never from the high watermark (the local
broker reports a wrong one for multi-record batches, see ../shared/landscape.md).
"""

from __future__ import annotations

import time

from streams.admin import reader_from_beginning
from streams.security import PLAINTEXT, KafkaSecurity


def load_latest(
    bootstrap: str,
    topic: str,
    *,
    quiet_s: float = 0.5,
    timeout_s: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, bytes]:
    """Last value per key in ``topic`` (tombstones delete); blocking, use off the loop."""
    consumer = reader_from_beginning(
        bootstrap, [topic], security=security, max_partition_fetch_bytes=64 << 20,
        fetch_max_bytes=64 << 20,
    )  # fmt: skip
    try:
        latest: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
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
        return latest
    finally:
        consumer.close()
