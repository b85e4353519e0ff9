"""Publishing one processed batch through the aiokafka producer, in few requests.

The pipeline hands over an :class:`~streams.pipeline.Output` per batch of raw records.
Going through Faust's ``topic.send`` costs an await, a future and an attachment per
event (``bench/NOTES-faust.md``); here every event is appended to an aiokafka
``BatchBuilder`` (a plain synchronous call) and each builder is submitted once.

Partitioning, documented because ordering depends on it:

- keyed events (``key:`` in the destination, e.g. the product ``visitor``
  pseudonym) go to ``int(key[:8], 16) % partitions`` when the key is hex (our
  pseudonyms are), else to a CRC32 of the key: the same visitor always lands in the
  same partition (one consumer sees all of them). Not in request order: raw records
  are unkeyed, so one visitor's lines are spread over raw partitions and workers, and
  the partition gets them in publishing order (README, "Partitioning and ordering").
  Pseudonyms are uniformly random, so partitions stay balanced without murmur2. The
  aggregation merger depends on this: it adds up distinct visitors across the
  partitions of its input, which is exact only if each visitor is in one of them;
- unkeyed events (ops, NDJSON batches, dead letters) are "sticky": all events made
  from one input batch go to one partition, and the next batch moves on to the next
  partition (what Kafka's sticky partitioner does), so order within a batch holds;
- a keyed destination is decided by its config, never by its events: an event whose
  key is None (no pseudonym: a stale or future-dated line, a destroyed epoch) is
  sticky like an unkeyed one, and the keyed events around it still go where their
  key says. The partition is chosen per event, in both framings. An NDJSON
  destination's keys reach the publisher as text (its records carry no key; the rules
  skip encoding them): they are partitioned as their UTF-8 bytes, as above.

Record timestamps are the coarsened request time, but never later than the wall clock
plus ``FUTURE_SKEW_SECONDS``: Kafka deletes a segment by time only once its *largest*
timestamp is older than ``retention.ms``, so one line dated in year 2999 would keep its
whole segment (everybody's events) for centuries (privacy rule 14). The event body
keeps the coarsened time; only the Kafka timestamp is capped.

Nothing here logs payloads; failures are reported by topic and partition only.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from streams.memo import remember
from streams.pipeline import Emitted, Output, dead_letter
from streams.records import FUTURE_SKEW_SECONDS
from streams.rules import CompiledDestination

#: A NDJSON record stays below Kafka's default 1 MB message limit.
MAX_NDJSON_BYTES = 900_000
_KEY_CACHE = 65536
_VALUE = itemgetter(1)
_TIMESTAMP = itemgetter(2)


def latest_timestamp_ms(now: float | None = None) -> int:
    """The latest record timestamp (ms) the publisher gives Kafka: the wall clock plus
    the skew every other part of the pipeline allows log servers' clocks.

    >>> latest_timestamp_ms(1_000) == (1_000 + FUTURE_SKEW_SECONDS) * 1000
    True
    """
    return int((time.time() if now is None else now) + FUTURE_SKEW_SECONDS) * 1000


def cap_timestamps(events: list[Emitted], latest: int) -> list[Emitted]:
    """``events`` with no timestamp past ``latest``; the same list when none is (the
    common case: one C-level pass, no copy, the hot loops below stay as they are).
    The publisher floors ``latest`` to the destination's time bucket first.

    >>> cap_timestamps([(None, b"a", 5), (None, b"b", 9)], 7)
    [(None, b'a', 5), (None, b'b', 7)]
    """
    if not events or max(map(_TIMESTAMP, events)) <= latest:
        return events
    return [(k, v, t if t <= latest else latest) for k, v, t in events]


def key_partition(key: bytes, partitions: int) -> int:
    """Partition of a keyed event; stable for a key.

    >>> key_partition(b"9f86d081884c7d65", 4), key_partition(b"9f86d081884c7d65", 4)
    (1, 1)
    >>> key_partition(b"not-hex", 3) == zlib.crc32(b"not-hex") % 3
    True
    """
    try:
        return int(key[:8], 16) % partitions
    except ValueError:
        return zlib.crc32(key) % partitions


def ndjson_records(values: Iterable[bytes], limit: int = MAX_NDJSON_BYTES) -> list[bytes]:
    """Join event values into newline-delimited records of at most ``limit`` bytes.

    >>> ndjson_records([b'{"a":1}', b'{"a":2}', b'{"a":3}'], limit=16)
    [b'{"a":1}\\n{"a":2}', b'{"a":3}']
    """
    values = values if isinstance(values, list) else list(values)
    if not values:
        return []
    joined = b"\n".join(values)
    if len(joined) < limit:  # the common case, one record: no pass to add up the sizes
        return [joined]
    records: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for value in values:
        if current and size + len(value) + 1 > limit:
            records.append(b"\n".join(current))
            current, size = [], 0
        current.append(value)
        size += len(value) + 1
    if current:
        records.append(b"\n".join(current))
    return records


@dataclass(slots=True)
class PublishTarget:
    topic: str
    partitions: int
    framing: str = "record"
    #: The destination has a ``key:``; its events may still have None keys.
    keyed: bool = False
    sticky: int = 0  # next partition for unkeyed events
    #: key -> partition: visitors send many requests, the hex parse is paid once each.
    partition_of: dict[bytes, int] = field(default_factory=dict)
    #: The destination's time bucket (ms): a capped record timestamp is floored to it.
    bucket_ms: int = 1000


def _next_sticky(target: PublishTarget) -> int:
    """The partition for this batch's unkeyed events; the next batch gets the next one."""
    partition = target.sticky
    target.sticky = (partition + 1) % target.partitions
    return partition


class Publisher:
    """Turns an Output into aiokafka batches and waits until the broker has them all."""

    def __init__(
        self,
        producer: Any,
        destinations: Sequence[CompiledDestination],
        dead_letter_topic: str,
        partitions: dict[str, int],
    ) -> None:
        self._producer = producer
        self._targets = [
            PublishTarget(
                d.topic,
                partitions[d.topic],
                d.framing,
                d.key_field is not None,
                bucket_ms=d.time_bucket * 1000,
            )
            for d in destinations
        ]
        self._dead = PublishTarget(dead_letter_topic, partitions[dead_letter_topic])
        self.records_sent = 0

    async def publish(self, out: Output) -> int:
        """Send everything in ``out``; return when every record is acknowledged.

        Raises the producer's error if the broker does not take the records; the
        caller then retries the same batch (nothing was acknowledged upstream yet).
        """
        batches: list[tuple[Any, str, int]] = []
        latest = latest_timestamp_ms()  # once per batch: the clock is not read per event
        for target, events in zip(self._targets, out.per_destination, strict=True):
            if not events:
                continue
            # Floored to the bucket: a line dated past the clock (a log server's clock or
            # zone off) would otherwise carry the worker's clock to the second, beside
            # its pseudonym, every time (an audit).
            cap = latest - latest % target.bucket_ms
            if target.framing == "ndjson":
                # A record's timestamp is its events' latest, capped: the same as the
                # latest of the capped timestamps, without a pass to cap them.
                if target.keyed:
                    self._append_keyed_ndjson(batches, target, events, cap)
                else:
                    timestamp = min(max(map(_TIMESTAMP, events)), cap)
                    records = ndjson_records(list(map(_VALUE, events)))
                    records_out = ((None, r, timestamp) for r in records)
                    self._append_unkeyed(batches, target, records_out)
            elif target.keyed:
                self._append_keyed(batches, target, cap_timestamps(events, cap))
            else:
                self._append_unkeyed(batches, target, cap_timestamps(events, cap))
        if out.rejections:
            letters = ((None, dead_letter(r), None) for r in out.rejections)
            self._append_unkeyed(batches, self._dead, letters)
        futures = []
        for builder, topic, partition in batches:
            futures.append(await self._producer.send_batch(builder, topic, partition=partition))
        if futures:
            await asyncio.gather(*futures)
        sent = sum(b.record_count() for b, _, _ in batches)
        self.records_sent += sent
        return sent

    def _append_keyed(
        self, batches: list[tuple[Any, str, int]], target: PublishTarget, events: Sequence[Any]
    ) -> None:
        builders: dict[int, Any] = {}
        count = target.partitions
        cached = target.partition_of
        keyless = -1  # one sticky partition for this batch's events without a key
        for key, value, timestamp in events:
            partition = cached.get(key)
            if partition is None:
                if key is None:  # never cached: None is not a key
                    if keyless < 0:
                        keyless = _next_sticky(target)
                    partition = keyless
                else:
                    partition = remember(cached, key, key_partition(key, count), _KEY_CACHE)
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = self._producer.create_batch()
            if builder.append(timestamp=timestamp, key=key, value=value) is None:
                batches.append((builder, target.topic, partition))  # full: submit it
                builder = builders[partition] = self._producer.create_batch()
                builder.append(timestamp=timestamp, key=key, value=value)
        batches.extend((b, target.topic, p) for p, b in builders.items())

    def _append_keyed_ndjson(
        self,
        batches: list[tuple[Any, str, int]],
        target: PublishTarget,
        events: Sequence[Any],
        cap: int,
    ) -> None:
        """NDJSON records per partition of the key: every event still lands where its
        key says (per-key order kept), in a few large records instead of one per event.
        Events without a key share one sticky partition. The keys are text (``rules``
        gives NDJSON destinations their key unencoded: the records carry none), and the
        partition is :func:`key_partition` of its UTF-8."""
        count = target.partitions
        # A list per partition, indexed: no dict lookup and no test an event.
        groups: list[list[Any]] = [[] for _ in range(count)]
        cached = target.partition_of
        cached_get = cached.get
        keyless = -1
        for event in events:
            key = event[0]
            partition = cached_get(key)
            if partition is None:
                if key is None:
                    if keyless < 0:
                        keyless = _next_sticky(target)
                    partition = keyless
                else:
                    encoded = key.encode() if type(key) is str else key
                    partition = remember(cached, key, key_partition(encoded, count), _KEY_CACHE)
            groups[partition].append(event)
        # The groups in partition order, not in order of first appearance: a partition's
        # records and their order are what they were, only the requests' order moved.
        for partition, group in enumerate(groups):
            if not group:
                continue
            timestamp = min(max(map(_TIMESTAMP, group)), cap)
            builder = self._producer.create_batch()
            for record in ndjson_records(list(map(_VALUE, group))):
                if builder.append(timestamp=timestamp, key=None, value=record) is None:
                    batches.append((builder, target.topic, partition))
                    builder = self._producer.create_batch()
                    builder.append(timestamp=timestamp, key=None, value=record)
            batches.append((builder, target.topic, partition))

    def _append_unkeyed(
        self,
        batches: list[tuple[Any, str, int]],
        target: PublishTarget,
        records: Iterable[tuple[bytes | None, bytes, int | None]],
    ) -> None:
        partition = _next_sticky(target)
        builder = self._producer.create_batch()
        for key, value, timestamp in records:
            if builder.append(timestamp=timestamp, key=key, value=value) is None:
                batches.append((builder, target.topic, partition))
                builder = self._producer.create_batch()
                builder.append(timestamp=timestamp, key=key, value=value)
        batches.append((builder, target.topic, partition))
