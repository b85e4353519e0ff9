"""SharedKeyRing against the real local broker: agreement, destruction, wrong master key.

Two ring instances in one process stand for two workers: they share nothing but the
topic. Records are counted by consuming them back, never from high watermarks.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.actions.base import BuildContext
from streams.actions.pseudonymize import SPEC
from streams.admin import ensure_topics
from streams.broker import LocalBroker
from streams.keyshare import (
    KeyShareError,
    MasterKeys,
    RecordCodec,
    RecordError,
    SharedKeyRing,
    parse_record_key,
    record_key,
    topic_spec,
)

pytestmark = pytest.mark.integration
HOUR = 3600


def _records(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool] | None = None,
    timeout_s: float = 5.0,
) -> list[tuple[int, int | None, bytes | None]]:
    """All records of the topic as (offset, epoch, value), read from the beginning."""
    return [r[:3] for r in _timed_records(bootstrap, topic, until, timeout_s)]


def _timed_records(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool] | None = None,
    timeout_s: float = 5.0,
) -> list[tuple[int, int | None, bytes | None, int]]:
    """All records as (offset, epoch, value, timestamp ms), read from the beginning."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        fetch_max_wait_ms=100,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out: list[tuple[int, int | None, bytes | None, int]] = []
    deadline = time.monotonic() + timeout_s
    idle = 0
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            got = [m for ms in batch.values() for m in ms]
            out.extend((m.offset, parse_record_key(m.key), m.value, m.timestamp) for m in got)
            idle = 0 if got else idle + 1
            if idle >= 3 and (until is None or until(out)):
                break
    finally:
        consumer.close()
    return sorted(out)


@pytest.fixture
def keys_topic(broker: LocalBroker) -> Iterator[str]:
    name = f"test.keys.{uuid.uuid4().hex[:10]}"
    report = ensure_topics(
        broker.bootstrap, [topic_spec(name, epoch_seconds=2, grace_seconds=1, margin_seconds=2)]
    )
    assert report[0].startswith("created"), report
    yield name


@pytest.fixture
def master() -> MasterKeys:
    return MasterKeys(secrets.token_bytes(32))


RingFactory = Callable[..., SharedKeyRing]


@pytest.fixture
def ring_factory(broker: LocalBroker, keys_topic: str, master: MasterKeys) -> Iterator[RingFactory]:
    made: list[SharedKeyRing] = []

    def make(
        epoch_seconds: int = HOUR,
        grace_seconds: int = 60,
        masters: MasterKeys | None = None,
        **options: Any,
    ) -> SharedKeyRing:
        # No preparing ahead unless a test asks: near an hour boundary the next epoch's
        # key would otherwise appear in the counts (seen in CI at 09:00).
        options.setdefault("lead_seconds", 0)
        ring = SharedKeyRing(
            broker.bootstrap,
            masters or master,
            epoch_seconds,
            grace_seconds,
            topic=keys_topic,
            wait_s=5.0,
            start_timeout_s=10.0,
            **options,
        )
        made.append(ring)
        return ring.start()

    yield make
    for ring in made:
        ring.close()


def _pseudonymizer(ring: SharedKeyRing) -> Callable[[tuple[Any, ...]], str | None]:
    return SPEC.build(
        {"scope": "site", "algorithm": "hmac-sha256", "length": 16},
        BuildContext(site="example.org", keyring=ring),
    )


def test_two_workers_agree_under_concurrency(
    ring_factory: RingFactory, broker: LocalBroker, keys_topic: str, master: MasterKeys
) -> None:
    a, b = ring_factory(), ring_factory()
    epoch = int(time.time() // HOUR)
    results: dict[str, bytes | None] = {}
    barrier = threading.Barrier(2)

    def ask(name: str, ring: SharedKeyRing) -> None:
        barrier.wait()
        results[name] = ring.key_for(epoch)

    threads = [threading.Thread(target=ask, args=(n, r)) for n, r in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results["a"] is not None and len(results["a"]) == 32
    assert results["a"] == results["b"]
    # Both asked before either had seen a record: usually both published a candidate,
    # and whichever came first in the partition is the key both use.
    recs = [r for r in _records(broker.bootstrap, keys_topic) if r[1] == epoch]
    assert 1 <= len(recs) <= 2
    assert a.counters["candidates"] + b.counters["candidates"] == len(recs)
    codec = RecordCodec(master, keys_topic, HOUR)
    assert recs[0][2] is not None and codec.open(epoch, recs[0][2]).key == results["a"]
    # The hot path is a lookup now: no further records.
    assert a.key_for(epoch) == results["a"] and b.key_for(epoch) == results["b"]
    # close() stops the consumer thread and forgets the keys.
    thread = a._thread
    a.close()
    assert thread is not None and not thread.is_alive() and a.describe()["live_epochs"] == []
    with pytest.raises(KeyShareError, match="not running"):
        a.key_for(epoch)


def test_an_idle_ring_polls_rarely_and_still_agrees_at_once(ring_factory: RingFactory) -> None:
    """Ten kafka-python polls a second cost 3.5% of a core beside the hot path: an idle
    ring polls once per idle wait, yet a key it must agree on is read back at once
    (the candidate wakes the consumer thread) rather than after the idle wait."""
    ring = ring_factory(idle_ms=5000, poll_ms=100)
    consumer = ring._consumer
    assert consumer is not None
    polls: list[float] = []
    real_poll = consumer.poll

    def counted_poll(*args: Any, **kwargs: Any) -> Any:
        polls.append(time.monotonic())
        return real_poll(*args, **kwargs)

    consumer.poll = counted_poll
    time.sleep(2.0)
    assert len(polls) <= 1, polls  # 20 at the 100 ms fetch wait alone
    started = time.monotonic()
    assert ring.key_for(int(time.time() // HOUR)) is not None  # a new epoch: agreed
    assert time.monotonic() - started < 2.0  # not after the rest of the 5 s idle wait


def test_first_record_wins_even_if_unseen_candidates_exist(
    ring_factory: RingFactory, broker: LocalBroker, keys_topic: str, master: MasterKeys
) -> None:
    """Two candidates already on the topic: a new worker adopts the first, not its own."""
    from kafka import KafkaProducer

    epoch = int(time.time() // HOUR)
    codec = RecordCodec(master, keys_topic, HOUR)
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for k in (k1, k2):
        producer.send(keys_topic, key=record_key(epoch), value=codec.seal(epoch, k), partition=0)
        producer.flush()
    producer.close()
    a, b = ring_factory(), ring_factory()
    assert a.key_for(epoch) == k1 == b.key_for(epoch)
    assert a.counters["candidates"] == 0


def test_pseudonyms_identical_across_workers_and_unlinkable_across_epochs_and_sites(
    ring_factory: RingFactory,
) -> None:
    # The next epoch's key may exist only within the lead (no earlier: retention).
    a, b = ring_factory(lead_seconds=HOUR), ring_factory(lead_seconds=HOUR)
    fa, fb = _pseudonymizer(a), _pseudonymizer(b)
    now = int(time.time())
    next_epoch = (now // HOUR + 1) * HOUR + 10  # within the lead: allowed to exist already
    visitor = ("203.0.113.9", "Mozilla/5.0")
    same = [fa((now, None, *visitor)), fb((now, None, *visitor)), fb((now + 1, None, *visitor))]
    assert same[0] is not None and len(set(same)) == 1
    assert fa((now, None, "203.0.113.10", "Mozilla/5.0")) != same[0]
    other_site = fa((now, "shop.example.net", *visitor))
    assert other_site is not None and other_site != same[0]
    assert other_site == fb((now, "shop.example.net", *visitor))
    tomorrow = fa((next_epoch, None, *visitor))
    assert (
        tomorrow is not None
        and tomorrow != same[0]
        and tomorrow == fb((next_epoch, None, *visitor))
    )
    # Far future epochs are never created (a bogus timestamp must not make keys).
    assert fa((now + 10 * HOUR, None, *visitor)) is None


def test_destruction_tombstone_and_no_resurrection(
    ring_factory: RingFactory, broker: LocalBroker, keys_topic: str, master: MasterKeys
) -> None:
    epoch_s, grace_s = 2, 1
    a = ring_factory(epoch_s, grace_s)
    b = ring_factory(epoch_s, grace_s)
    epoch = int(time.time() // epoch_s)
    key = a.key_for(epoch)
    assert key is not None and b.key_for(epoch) == key
    pseudonymize = _pseudonymizer(a)
    visitor = (epoch * epoch_s, None, "203.0.113.9", "Mozilla/5.0")
    pseudonym = pseudonymize(visitor)
    memos = [
        c.cell_contents
        for c in pseudonymize.__closure__ or ()
        if hasattr(c.cell_contents, "forget")
    ]  # type: ignore[attr-defined]
    assert pseudonym is not None and any(pseudonym in m.get(epoch, {}).values() for m in memos)
    assert key.hex() not in repr(a) and repr(key) not in repr(a)
    limit = (epoch + 1) * epoch_s + grace_s
    time.sleep(max(0.0, limit - time.time()))
    # Past the limit the answer is None at once (clock), event time notwithstanding.
    assert a.key_for(epoch) is None and b.key_for(epoch, now=epoch * epoch_s) is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
        a.counters["tombstones_seen"] and b.counters["tombstones_seen"]
    ):
        time.sleep(0.1)
    assert a.counters["tombstones_seen"] >= 1 and b.counters["tombstones_seen"] >= 1
    assert epoch not in a.describe()["live_epochs"] and a.describe()["destroyed"] >= 1
    # Nothing in this worker maps the visitor to the destroyed epoch's pseudonym.
    assert memos and all(epoch not in m for m in memos)
    timed = [r for r in _timed_records(broker.bootstrap, keys_topic) if r[1] == epoch]
    assert any(r[2] is None for r in timed), "no tombstone on the topic"
    # Key records are stamped lead before their epoch (lead 0 here): retention counts
    # from there (topic_spec), whenever the record was written.
    sealed = [r for r in timed if r[2] is not None]
    assert sealed and all(r[3] == epoch * epoch_s * 1000 for r in sealed), sealed
    # A fresh worker reading from the beginning can neither adopt nor recreate it.
    c = ring_factory(epoch_s, grace_s)
    assert c.key_for(epoch) is None
    assert c.key_for(epoch, now=epoch * epoch_s + 0.5) is None
    time.sleep(0.5)
    after = [r for r in _records(broker.bootstrap, keys_topic) if r[1] == epoch]
    first_tomb = min(o for o, _, v in after if v is None)
    assert not [o for o, _, v in after if v is not None and o > first_tomb], (
        "key re-created after tombstone"
    )
    assert key.hex() not in repr(c.describe()) and key.hex() not in repr(a.describe())


def test_next_epoch_is_prepared_ahead(ring_factory: RingFactory) -> None:
    epoch_s = 2
    a = ring_factory(epoch_s, 1, lead_seconds=1.5)
    deadline = time.monotonic() + 6
    nxt = None
    while time.monotonic() < deadline:
        now = time.time()
        nxt = int(now // epoch_s) + 1
        if nxt in a.describe()["live_epochs"]:
            break
        time.sleep(0.1)
    assert nxt in a.describe()["live_epochs"], a.describe()
    assert a.counters["candidates"] >= 1  # made by the background thread, nobody asked


def test_wrong_master_key_cannot_read(
    ring_factory: RingFactory, broker: LocalBroker, keys_topic: str
) -> None:
    a = ring_factory()
    epoch = int(time.time() // HOUR)
    key = a.key_for(epoch)
    assert key is not None
    wrong = MasterKeys(secrets.token_bytes(32))
    with pytest.raises(KeyShareError, match="none is readable") as caught:
        ring_factory(masters=wrong)
    assert key.hex() not in str(caught.value)
    # Without the start-up check it still never gets (or invents) the agreed key.
    w = ring_factory(masters=wrong, check_master_key=False)
    assert w.key_for(epoch) is None
    assert w.counters["candidates"] == 0 and w.describe()["unreadable_epochs"] == [epoch]
    codec = RecordCodec(wrong, keys_topic, HOUR)
    values = [v for _, e, v in _records(broker.bootstrap, keys_topic) if e == epoch and v]
    assert values
    for value in values:
        with pytest.raises(RecordError):
            codec.open(epoch, value)


def test_missing_topic_is_refused(broker: LocalBroker, master: MasterKeys) -> None:
    ring = SharedKeyRing(broker.bootstrap, master, topic=f"test.nokeys.{uuid.uuid4().hex[:8]}")
    with pytest.raises(KeyShareError, match="does not exist"):
        ring.start()
