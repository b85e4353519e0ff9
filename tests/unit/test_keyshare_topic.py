"""SharedKeyRing's start against the keys topic's states a real broker reaches only
after hours (retention has emptied it) or by misconfiguration, and the keys topic's
settings. Both start bugs here were found by an audit; each test failed before its fix.

The stand-in models one Kafka partition: offsets, a log start offset (retention moves
it), the end offset, produce, fetch and position. kafka-python's classes and
``describe_topics`` are replaced for the duration of each test only.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import namedtuple
from typing import Any

import kafka
import pytest

import streams.admin
from streams.admin import TopicInfo
from streams.keyshare import KeyShareError, MasterKeys, RecordCodec, SharedKeyRing, record_key

Rec = namedtuple("Rec", "offset key value timestamp")
Meta = namedtuple("Meta", "offset")

TOPIC = "logfog.keys"
E, G = 100, 10  # epoch and grace, seconds


class FakeLog:
    def __init__(self) -> None:
        self.records: list[Rec] = []
        self.log_start = 0
        self.next_offset = 0
        self.lock = threading.Lock()

    def append(self, key: bytes | None, value: bytes | None, ts: int | None) -> int:
        with self.lock:
            offset = self.next_offset
            self.records.append(Rec(offset, key, value, ts))
            self.next_offset += 1
            return offset

    def delete_everything_by_retention(self) -> None:
        """What Kafka does to an idle topic once every record is past retention.ms:
        every segment is deleted (a fresh empty one is rolled first), the log start
        offset moves to the end offset; offsets are never reused."""
        with self.lock:
            self.records = []
            self.log_start = self.next_offset


class FakeFuture:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def get(self, timeout: float | None = None) -> Meta:
        return Meta(self._offset)


class FakeProducer:
    def __init__(self, log: FakeLog) -> None:
        self.log = log

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int,
             timestamp_ms: int | None) -> FakeFuture:  # fmt: skip
        return FakeFuture(self.log.append(key, value, timestamp_ms))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class FakeConsumer:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self._position = 0
        self.tp: Any = None

    def assign(self, tps: list[Any]) -> None:
        self.tp = tps[0]

    def seek_to_beginning(self, tp: Any) -> None:
        self._position = self.log.log_start

    def position(self, tp: Any) -> int:
        return self._position

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tps[0]: self.log.next_offset}

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        with self.log.lock:
            out = [r for r in self.log.records if r.offset >= self._position]
        if not out:
            time.sleep(timeout_ms / 1000)
            return {}
        self._position = out[-1].offset + 1
        return {self.tp: out}

    def close(self) -> None:
        pass


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> FakeLog:
    fake = FakeLog()
    monkeypatch.setattr(kafka, "KafkaProducer", lambda **kw: FakeProducer(fake))
    monkeypatch.setattr(kafka, "KafkaConsumer", lambda **kw: FakeConsumer(fake))
    monkeypatch.setattr(
        streams.admin, "describe_topics",
        lambda bootstrap, names, **kw: {TOPIC: TopicInfo(TOPIC, 1, {})},
    )  # fmt: skip
    return fake


def ring(master: bytes, clock: list[float], **kw: Any) -> SharedKeyRing:
    return SharedKeyRing("fake:9092", MasterKeys(master), E, G, topic=TOPIC,
                         clock=lambda: clock[0], start_timeout_s=2.0, poll_ms=20,
                         **kw)  # fmt: skip


def test_a_fresh_topic_starts_and_two_workers_agree(log: FakeLog) -> None:
    master = secrets.token_bytes(32)
    clock = [5 * E + 1.0]
    a, b = ring(master, clock).start(), ring(master, clock).start()
    try:
        assert a.key_for(5) is not None and a.key_for(5) == b.key_for(5)
    finally:
        a.close()
        b.close()


def test_a_worker_starts_on_a_topic_that_retention_has_emptied(log: FakeLog) -> None:
    """All workers stopped for longer than the keys topic's retention (about 25 h with
    the defaults): Kafka deletes every segment and moves the log start offset to the
    end offset. start() used to wait for the record at end - 1, which can no longer be
    read: no worker could start again."""
    master = secrets.token_bytes(32)
    clock = [5 * E + 1.0]
    for i in range(57):  # yesterday's history: key records, tombstones
        log.append(record_key(i), None, None)
    log.delete_everything_by_retention()
    r = ring(master, clock)
    try:
        r.start()
        assert r.key_for(5) is not None
    finally:
        r.close()


def test_a_wrong_master_key_is_refused_even_with_a_tombstone_on_the_topic(
    log: FakeLog,
) -> None:
    """The check counted tombstones as readable records, and with the default settings a
    tombstone is on the topic at all times (kept about a day): a worker with a wrong
    LOGFOG_MASTER_KEY started, and if it prepared the next epoch's key first, every
    other worker had no readable key (null pseudonyms) for that whole epoch."""
    good, wrong = secrets.token_bytes(32), secrets.token_bytes(32)
    clock = [5 * E + 1.0]
    codec = RecordCodec(MasterKeys(good), TOPIC, E)
    log.append(record_key(4), codec.seal(4, secrets.token_bytes(32)), None)
    log.append(record_key(4), None, None)  # epoch 4 destroyed: its tombstone
    log.append(record_key(5), codec.seal(5, secrets.token_bytes(32)), None)  # live key
    r = ring(wrong, clock)
    try:
        with pytest.raises(KeyShareError, match="none is readable"):
            r.start()
    finally:
        r.close()
    r = ring(good, clock).start()  # the right key reads it
    try:
        assert r.key_for(5) is not None
    finally:
        r.close()


def test_a_keys_topic_that_deletes_or_compacts_live_key_records_is_refused() -> None:
    """A shorter retention.ms, or a min.compaction.lag.ms below the keys' live period,
    removes a live epoch's winning record; the next worker to start then agrees on
    another key than the running ones. Both used to be harmless "differences"."""
    from streams.admin import compare
    from streams.keyshare import topic_spec

    spec = topic_spec(TOPIC, 86400, 3600, 600)
    want = spec.topic_configs()
    for changed in ({"retention.ms": str(3_600_000)}, {"min.compaction.lag.ms": "0"}):
        bad, _ = compare(spec, TopicInfo(TOPIC, 1, {**want, **changed}))
        assert bad and "still needed" in bad[0], changed
    longer = {**want, "min.compaction.lag.ms": str(int(want["min.compaction.lag.ms"]) + 1)}
    assert compare(spec, TopicInfo(TOPIC, 1, longer))[0] == []


def test_a_keys_topic_stamped_with_the_brokers_append_time_is_refused() -> None:
    """Retention counts from each key record's planned time stamp (``record_time``).
    With LogAppendTime a key created late, or copied under a new master key, would stay
    readable on the topic about an epoch after it was destroyed (an audit)."""
    from streams.admin import compare
    from streams.keyshare import topic_spec

    spec = topic_spec(TOPIC, 86400, 3600, 600)
    want = spec.topic_configs()
    bad, _ = compare(spec, TopicInfo(TOPIC, 1, {**want, "message.timestamp.type": "LogAppendTime"}))
    assert bad and "message.timestamp.type" in bad[0]
    assert compare(spec, TopicInfo(TOPIC, 1, want))[0] == []
