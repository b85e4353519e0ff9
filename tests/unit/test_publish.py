"""Publishing an Output: where every event goes (partitions, framing), no broker.

The producer is a recording stand-in for aiokafka's (``tests/support/producer.py``):
aiokafka's real ``BatchBuilder``, so the records read back are the bytes a broker gets.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from streams.config import AGGREGATE_INPUT
from streams.enrich.geo import GeoLookup
from streams.keys import DerivedKeyRing
from streams.pipeline import Output, Pipeline
from streams.publish import Publisher, key_partition
from streams.records import FUTURE_SKEW_SECONDS
from streams.rules import CompiledDestination
from tests.conftest import TEST_KEY
from tests.support.producer import RecordingProducer

DEAD = "logs.dead"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


class StaleEpochsGone:
    """Keys for recent epochs only, as the shared ring in a worker: a line from a
    destroyed (or not yet creatable) epoch gets no pseudonym, hence no Kafka key."""

    epoch_seconds = 86400

    def on_destroy(self, listener: object) -> None:
        """Never destroys a key (derived, as in tests): nothing to tell."""

    def __init__(self) -> None:
        self._ring = DerivedKeyRing(TEST_KEY, self.epoch_seconds)
        self._oldest = int(time.time()) // self.epoch_seconds - 1

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        return self._ring.key_for(epoch) if epoch >= self._oldest else None


def line(client: int, when: float) -> bytes:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(when))
    return (
        f'198.51.100.{client} - - [{stamp}] "GET /p/{client} HTTP/1.1" 200 {client} "-" "{UA}"'
    ).encode()


def publish(publisher: Publisher, out: Output) -> int:
    return asyncio.run(publisher.publish(out))


def publisher_for(
    pipeline: Pipeline, producer: RecordingProducer, partitions: int = 4
) -> Publisher:
    counts = {d.topic: partitions for d in pipeline.destinations} | {DEAD: 1}
    return Publisher(producer, pipeline.destinations, DEAD, counts)


def visitors_by_partition(
    producer: RecordingProducer, topic: str, ndjson: bool
) -> dict[str | None, set[int]]:
    """visitor -> the partitions its events went to (None: events without one)."""
    where: dict[str | None, set[int]] = defaultdict(set)
    for partition, _, value in producer.records(topic):
        for event in value.split(b"\n") if ndjson else [value]:
            decoded = orjson.loads(event)
            visitor = decoded[1] if isinstance(decoded, list) else decoded["visitor"]
            where[visitor].add(partition)
    return where


def topic_of(pipeline: Pipeline, name: str) -> str:
    return next(d.topic for d in pipeline.destinations if d.name == name)


def test_a_keyless_event_after_keyed_ones_is_published(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """The default config (aggregates on): product and the aggregation input are keyed
    by visitor; a stale line's visitor is None. It used to raise TypeError from
    key_partition(None), and the worker retried that batch forever."""
    pipeline = make_pipeline(keyring=StaleEpochsGone())
    now = time.time()
    out = pipeline.test([line(1, now), line(2, now - 30 * 86400), line(3, now)])
    assert [e["visitor"] is None for e in out.events("product")] == [False, True, False]
    producer = RecordingProducer()
    publish(publisher_for(pipeline, producer), out)
    for name in ("ops", "product"):
        sent = [v for _, _, v in producer.records(topic_of(pipeline, name))]
        assert sorted(sent) == sorted(out.values(name))
    rows = [r for _, _, v in producer.records(topic_of(pipeline, AGGREGATE_INPUT))
            for r in v.split(b"\n")]  # fmt: skip
    assert sorted(rows) == sorted(out.values(AGGREGATE_INPUT))


def test_every_keyed_event_goes_to_its_keys_partition_even_after_a_keyless_first(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """A chunk starting with a keyless event used to send all its keyed events to one
    sticky partition: a visitor split over two partitions of the aggregation input is
    counted twice by the merger (the k-gate could pass with fewer than k people)."""
    pipeline = make_pipeline(keyring=StaleEpochsGone())
    publisher = publisher_for(pipeline, producer := RecordingProducer())
    now = time.time()
    stale = now - 30 * 86400
    for batch in range(4):  # each batch starts with a keyless event
        clients = [(c * 7 + batch) % 40 + 1 for c in range(30)]
        out = pipeline.test([line(99, stale)] + [line(c, now) for c in clients])
        publish(publisher, out)
    for name, ndjson in (("product", False), (AGGREGATE_INPUT, True)):
        topic = topic_of(pipeline, name)
        where = visitors_by_partition(producer, topic, ndjson)
        keyed = {v: ps for v, ps in where.items() if v is not None}
        assert len(keyed) == 40
        for visitor, partitions in keyed.items():
            assert partitions == {key_partition(visitor.encode(), 4)}, (name, visitor)
        assert len({p for ps in keyed.values() for p in ps}) > 1  # not one sticky partition
        for partition, key, _ in producer.records(topic):
            if not ndjson:  # record framing keeps the event's key (None stays None)
                assert key is None or key_partition(key, 4) == partition


def test_keyless_events_of_one_batch_share_a_partition_and_batches_rotate() -> None:
    dest = CompiledDestination("ops", 0, "o", "record", "operations", None, 300, ("x",))
    keyed = CompiledDestination("k", 1, "k", "ndjson", "operations", "x", 300, ("x",))
    producer = RecordingProducer()
    publisher = Publisher(producer, [dest, keyed], DEAD, {"o": 3, "k": 3, DEAD: 1})
    out = Output(("ops", "k"))
    for _ in range(3):
        out.clear()
        out.per_destination[0].extend((None, b'{"x":%d}' % i, 0) for i in range(5))
        out.per_destination[1].extend((None, b'{"x":%d}' % i, 0) for i in range(5))
        publish(publisher, out)
    ops = producer.records("o")
    assert [p for p, _, _ in ops] == [0] * 5 + [1] * 5 + [2] * 5
    assert [(p, v.count(b"\n") + 1) for p, _, v in producer.records("k")] == [
        (0, 5),
        (1, 5),
        (2, 5),
    ]


@pytest.mark.parametrize("cache", [65536, 12])
def test_ndjson_text_keys_go_where_their_bytes_went(
    monkeypatch: pytest.MonkeyPatch, cache: int
) -> None:
    """NDJSON destinations get their keys as text (the records carry none): each event
    goes to key_partition of the key's UTF-8, as when keys were bytes, whether the key
    is hex, not hex, longer than the memo keeps, or None (one sticky partition a batch),
    and when the partition cache overflows (``cache``). Per-key order holds."""
    import streams.publish as publish_module

    monkeypatch.setattr(publish_module, "_KEY_CACHE", cache)
    dest = CompiledDestination("k", 0, "k", "ndjson", "operations", "x", 300, ("x",))
    producer = RecordingProducer()
    publisher = Publisher(producer, [dest], DEAD, {"k": 5, DEAD: 1})
    keys = ["%016x" % (i * 0x9E3779B1) for i in range(12)] + ["not-hex", "é" * 8, "z" * 2000]
    for batch in range(3):  # 10 keys, 4 more (a cache of 12 overflows), then a long one
        out = Output(("k",))
        some = keys[: (10, 14, 15)[batch]]
        events = [(k, orjson.dumps([k, batch, i]), 1000 * i) for i, k in enumerate(some * 2)]
        events[3:3] = [(None, orjson.dumps([None, batch, n]), 7) for n in range(2)]
        if batch == 2:  # a batch of known keys only: no None, nothing new
            events = [e for e in events if e[0] is not None]
        out.per_destination[0].extend(events)
        publish(publisher, out)
    seen: dict[str | None, list[tuple[int, int, int]]] = defaultdict(list)
    for partition, key, value in producer.records("k"):
        assert key is None
        for row in value.split(b"\n"):
            k, batch, i = orjson.loads(row)
            seen[k].append((partition, batch, i))
    for k in keys:
        assert {p for p, _, _ in seen[k]} == {key_partition(k.encode(), 5)}, k
        assert [(b, i) for _, b, i in seen[k]] == sorted((b, i) for _, b, i in seen[k])
    assert sorted(p for p, b, _ in seen[None] if b == 0) == [0, 0]  # sticky: first batch 0
    assert {p for p, b, _ in seen[None] if b == 1} == {1}  # and the next batch the next


def test_a_full_builder_is_submitted_and_a_new_one_started() -> None:
    dest = CompiledDestination("p", 0, "p", "record", "analytics", "v", 3600, ("v",))
    producer = RecordingProducer(batch_size=200)  # a handful of records per builder
    publisher = Publisher(producer, [dest], DEAD, {"p": 2, DEAD: 1})
    out = Output(("p",))
    keys = [b"%016x" % (i * 0x1111) for i in range(40)]
    out.per_destination[0].extend((k, b'{"v":"%s"}' % k, 0) for k in keys)
    out.per_destination[0].append((None, b'{"v":null}', 0))
    assert publish(publisher, out) == 41
    records = producer.records("p")
    assert len([s for s in producer.sent if s[0] == "p"]) > 2
    assert sorted(v for _, _, v in records) == sorted(e[1] for e in out.per_destination[0])
    for partition, key, _ in records:
        assert key is None or partition == key_partition(key, 2)


def test_dead_letters_carry_coordinates_only(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    producer = RecordingProducer()
    out = pipeline.new_output()
    pipeline.process_records([(b"junk\n" + line(1, time.time()), "logs.raw", 2, 41)], out)
    publish(publisher_for(pipeline, producer), out)
    assert [orjson.loads(v) for _, _, v in producer.records(DEAD)] == [
        {"stage": "parse", "reason": "parse.no_match", "topic": "logs.raw", "partition": 2,
         "offset": 41, "line": 1}
    ]  # fmt: skip


@pytest.mark.parametrize("framing", ["record", "ndjson"])
def test_record_timestamps_never_lie_in_the_future(
    default_config: dict[str, Any], framing: str
) -> None:
    """Kafka deletes a segment by time only once its *largest* record timestamp is
    older than retention.ms. A line dated 2999 used to stamp its record (and in NDJSON
    framing its whole batch's record) 2999: the segment, every visitor's events in it,
    outlived the declared retention by centuries (rule 14). Timestamps are capped at
    now + FUTURE_SKEW_SECONDS; the event body keeps the coarsened time; a present-day
    record keeps its own timestamp. Keyed (product) and unkeyed (ops) destinations."""
    config = copy.deepcopy(default_config)
    for name in ("ops", "product"):
        config["destinations"][name]["framing"] = framing
    geo = GeoLookup.from_config(config["enrich"]["geo"])
    pipeline = Pipeline.from_normalized(config, keyring=DerivedKeyRing(TEST_KEY, 86400), geo=geo)
    now = time.time()
    out = pipeline.new_output()
    far = calendar.timegm((2999, 10, 10, 13, 55, 36))
    pipeline.process_records([(line(1, now) + b"\n" + line(2, far), "logs.raw", 0, 7)], out)
    assert not out.rejections  # the far-future line is accepted and published
    producer = RecordingProducer()
    publish(publisher_for(pipeline, producer), out)
    latest = (time.time() + FUTURE_SKEW_SECONDS) * 1000
    ops = topic_of(pipeline, "ops")
    stamps = [s for t, s in producer.timestamps if t in (ops, topic_of(pipeline, "product"))]
    assert stamps and max(stamps) <= latest
    assert any(e.startswith(b'{"time":"2999-') for e in producer.lines(ops))  # body as it was
    if framing == "record":  # the present-day line's record keeps its 5-minute bucket
        assert min(s for t, s in producer.timestamps if t == ops) == (now - now % 300) * 1000


@pytest.mark.parametrize("framing", ["record", "ndjson"])
def test_a_capped_record_timestamp_is_no_finer_than_its_destinations_bucket(
    default_config: dict[str, Any], framing: str
) -> None:
    """A line dated past the clock got the worker's clock, to the second, as its record
    timestamp: a log server whose clock or zone is off dates every line ahead, and each
    of its records then said when the request was read, next to the visitor key, finer
    than the 5 min (ops) and 1 h (product) of rule 8 (an audit). The cap is floored to
    the destination's bucket."""
    config = copy.deepcopy(default_config)
    for name in ("ops", "product"):
        config["destinations"][name]["framing"] = framing
    pipeline = Pipeline.from_normalized(config, keyring=DerivedKeyRing(TEST_KEY, 86400))
    out = pipeline.new_output()
    pipeline.process_records([(line(1, time.time() + 7200), "logs.raw", 0, 7)], out)
    assert not out.rejections
    producer = RecordingProducer()
    publish(publisher_for(pipeline, producer), out)
    stamps = dict(producer.timestamps)
    assert stamps[topic_of(pipeline, "ops")] % 300_000 == 0
    assert stamps[topic_of(pipeline, "product")] % 3_600_000 == 0
    assert max(stamps.values()) <= (time.time() + FUTURE_SKEW_SECONDS) * 1000
