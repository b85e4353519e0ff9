"""Checkpoints are read whole from the real broker, or not at all."""

from __future__ import annotations

import uuid

import pytest

from streams.admin import TopicSpec, ensure_topics
from streams.broker import LocalBroker
from streams.checkpoints import CheckpointsIncomplete, load_latest

pytestmark = pytest.mark.integration


def _write(bootstrap: str, topic: str, rounds: int) -> None:
    from kafka import KafkaProducer

    # Large multi-record batches: the local broker then reports a low end offset.
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20)
    for n in range(rounds):
        for key in ("partial/0", "partial/1", "merger"):
            producer.send(topic, key=key.encode(), value=f"{key}@{n}".encode(), partition=0)
    producer.send(topic, key=b"gone", value=b"x", partition=0)
    producer.send(topic, key=b"gone", value=None, partition=0)  # a tombstone deletes
    producer.flush()
    producer.close()


def test_the_latest_value_of_every_key_is_read(broker: LocalBroker) -> None:
    topic = f"it.ckpt.{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, [TopicSpec(topic, 1, None)])
    _write(broker.bootstrap, topic, 400)
    assert load_latest(broker.bootstrap, topic) == {
        "partial/0": b"partial/0@399", "partial/1": b"partial/1@399", "merger": b"merger@399",
    }  # fmt: skip


def test_an_unfinished_read_raises_instead_of_restoring_older_state(
    broker: LocalBroker,
) -> None:
    # Before, whatever had been read when time ran out was returned (here: nothing):
    # a worker restored an older checkpoint while its committed offsets were past it.
    topic = f"it.ckpt.{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, [TopicSpec(topic, 1, None)])
    _write(broker.bootstrap, topic, 50)
    with pytest.raises(CheckpointsIncomplete):
        load_latest(broker.bootstrap, topic, timeout_s=0.0)
    empty = f"it.ckpt.{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, [TopicSpec(empty, 1, None)])
    assert load_latest(broker.bootstrap, empty, timeout_s=0.0) == {}
