"""The shipper's partitioner: keyless records go to the topic's partitions in turn.

Why not kafka-python's default (a random partition per keyless record): the aggregator
closes a window once *every* raw partition's event time has passed it, so windows
close at the pace of the raw partition that is furthest behind. Random choice leaves
runs where a partition gets nothing: with 4 partitions, the 26 records of 50 lines that
5 minutes of a 20,000-line, 75-minute log make miss one partition with a probability
of about 1 in 400, and its windows then wait for the aggregator's idle rule (a minute
of wall clock) instead of the next records. In turn, each partition gets every
4th record, and the raw partitions' event times move together. The first turn is a
random one, so that many short runs (a shipper per file, from cron) do not all begin
with the first partition. Keyed records keep kafka-python's murmur2 placement (the
Java client's), so a key's records stay together.

>>> class Cluster:  # kafka-python's ClusterMetadata, the calls used
...     def topics(self): return {"raw"}
...     def partitions_for_topic(self, topic): return {0, 1, 2}
...     def available_partitions_for_topic(self, topic): return {0, 2} if down else {0, 1, 2}
>>> spread, cluster, down = RoundRobinPartitioner(start=0), Cluster(), False
>>> [spread.partition("raw", None, None, b"x", b"x", cluster) for _ in range(4)]
[0, 1, 2, 0]
>>> spread.on_new_batch("raw", cluster, 0)  # the producer asks again for the same record
>>> [spread.partition("raw", None, None, b"x", b"x", cluster) for _ in range(2)]
[0, 1]
>>> down = True  # partition 1 has no leader: skipped while it has none
>>> [spread.partition("raw", None, None, b"x", b"x", cluster) for _ in range(3)]
[2, 0, 2]
>>> spread.partition("raw", b"k", b"k", b"x", b"x", cluster)  # murmur2 of the key
2
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from kafka.partitioner import DefaultPartitioner, Partitioner


class RoundRobinPartitioner(Partitioner):
    """Keyless records: the available partitions in turn (all of them if none is
    available), from turn ``start`` (random if None). Keyed records: as
    :class:`kafka.partitioner.DefaultPartitioner`."""

    def __init__(self, start: int | None = None) -> None:
        self._keyed = DefaultPartitioner()
        self._start = start
        self._turns: dict[str, itertools.count[int]] = {}
        self._again: dict[str, int] = {}

    def on_new_batch(self, topic: str, cluster: Any, prev_partition: int) -> None:
        """kafka-python's producer asks for a keyless record's partition again when that
        partition needs a new batch (its hook for sticky partitioners): the record stays
        where its turn put it, or every new batch would skip a partition's turn."""
        self._again[topic] = prev_partition

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is not None:
            return int(
                self._keyed.partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        if self._again:
            again = self._again.pop(topic, None)
            if again is not None:
                return again
        turn = self._turns.get(topic)
        if turn is None:
            first = random.randrange(1 << 16) if self._start is None else self._start
            turn = self._turns[topic] = itertools.count(first)
        pool = sorted(cluster.available_partitions_for_topic(topic) or ()) or sorted(
            cluster.partitions_for_topic(topic)
        )
        return int(pool[next(turn) % len(pool)])
