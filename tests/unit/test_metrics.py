"""Consumer lag on /metrics: only partitions the worker holds, from the committed offset."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

from streams.metrics import Metrics


class Consumer:
    """The three things update_lag reads from Faust's consumer (a real one needs a
    broker and a group; the integration tests cover that path end to end)."""

    def __init__(self) -> None:
        self.assigned: set[Any] = set()
        self.high: dict[Any, int] = {}
        self._committed_offset: dict[Any, int | None] = {}

    def assignment(self) -> set[Any]:
        return self.assigned

    def highwater(self, tp: Any) -> int:
        return self.high[tp]


class TP(NamedTuple):  # like Faust's TP
    topic: str
    partition: int


def tp(partition: int) -> TP:
    return TP("logs.raw", partition)


def lag(metrics: Metrics, partition: int) -> float | None:
    return metrics.value("logfog_consumer_lag", {"topic": "logs.raw", "partition": str(partition)})


def test_before_the_first_batch_lag_counts_from_the_committed_offset() -> None:
    metrics, consumer = Metrics(None), Consumer()
    p0 = tp(0)
    consumer.assigned, consumer.high, consumer._committed_offset = {p0}, {p0: 10_000}, {p0: 9_990}
    metrics.update_lag(SimpleNamespace(consumer=consumer))
    assert lag(metrics, 0) == 10
    metrics.last_offsets[("logs.raw", 0)] = 9_995
    metrics.update_lag(SimpleNamespace(consumer=consumer))
    assert lag(metrics, 0) == 4


def test_revoked_partitions_lose_their_gauge_and_progress() -> None:
    metrics, consumer = Metrics(None), Consumer()
    p0, p1 = tp(0), tp(1)
    app = SimpleNamespace(consumer=consumer)
    consumer.assigned, consumer.high = {p0, p1}, {p0: 100, p1: 50}
    metrics.last_offsets.update({("logs.raw", 0): 89, ("logs.raw", 1): 9})
    metrics.update_lag(app)
    assert (lag(metrics, 0), lag(metrics, 1)) == (10, 40)

    consumer.assigned = {p0}  # scale-out: partition 1 went to another worker
    metrics.update_lag(app)
    assert lag(metrics, 0) == 10
    assert lag(metrics, 1) is None
    assert b'partition="1"' not in metrics.render()
    assert ("logs.raw", 1) not in metrics.lag_by_partition
    assert ("logs.raw", 1) not in metrics.last_offsets

    consumer.assigned, consumer._committed_offset = {p0, p1}, {p1: 45}  # and came back
    metrics.update_lag(app)
    assert lag(metrics, 1) == 5  # from the other worker's commit, not our old offset 9


def test_no_consumer_or_no_assignment_yet() -> None:
    metrics = Metrics(None)
    metrics.update_lag(SimpleNamespace(consumer=None))
    metrics.update_lag(SimpleNamespace(consumer=Consumer()))
    assert b"logfog_consumer_lag{" not in metrics.render()


def test_the_readme_lists_every_reason_code_of_the_rejected_metric() -> None:
    """``logfog_rejected_total{reason}``'s values are the reason codes: the README's
    metrics list names each of them (parse.missing_client and parse.missing_time came
    with a JSON-lines audit)."""
    import re
    from pathlib import Path

    from streams.records import REASONS

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    listed = re.search(r"`logfog_rejected_total\{reason\}` \(reasons: ([^)]*)\)", readme)
    assert listed is not None
    assert re.findall(r"`([a-z0-9_.]+)`", listed.group(1).split(";")[0]) == list(REASONS)
    assert {"parse.missing_client", "parse.missing_time"} <= set(REASONS)
