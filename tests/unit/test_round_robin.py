"""The shipper's partitioner (streams/round_robin.py): even, and not always from 0."""

from __future__ import annotations

from collections import Counter

from streams.round_robin import RoundRobinPartitioner


class Cluster:
    """The two calls of kafka-python's ClusterMetadata the partitioner makes."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_any_run_of_records_is_spread_within_one_record() -> None:
    cluster = Cluster(4)
    for records in (1, 3, 4, 5, 101, 1000):
        spread = RoundRobinPartitioner()
        counts = Counter(spread.partition("raw", None, None, b"", b"", cluster)
                         for _ in range(records))  # fmt: skip
        assert max(counts.values()) - min(counts.get(p, 0) for p in range(4)) <= 1, counts


def test_short_runs_do_not_all_begin_with_the_first_partition() -> None:
    cluster = Cluster(4)
    firsts = Counter(RoundRobinPartitioner().partition("raw", None, None, b"", b"", cluster)
                     for _ in range(400))  # fmt: skip
    assert set(firsts) == {0, 1, 2, 3}  # each missed by chance with p = 0.75**400
    assert min(firsts.values()) > 50, firsts  # 100 expected each


def test_topics_take_turns_of_their_own() -> None:
    spread, cluster = RoundRobinPartitioner(start=0), Cluster(2)
    picks = [spread.partition(topic, None, None, b"", b"", cluster) for topic in "aabb"]
    assert picks == [0, 1, 0, 1]
