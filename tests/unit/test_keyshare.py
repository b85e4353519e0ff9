"""Shared key ring without a broker: record sealing, master rotation, destruction rules."""

from __future__ import annotations

import logging
import secrets

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.keyshare import (
    ORIGINAL,
    EpochBook,
    KeyShareError,
    MasterKeys,
    Opened,
    RecordCodec,
    RecordError,
    SharedKeyRing,
    default_lead_seconds,
    key_id_of,
    parse_record_key,
    record_key,
    record_time,
    topic_spec,
)

OLD, NEW, OTHER = (secrets.token_bytes(32) for _ in range(3))
KEY = secrets.token_bytes(32)


def codec(
    masters: MasterKeys, context: str = "logfog.keys", epoch_seconds: int = 86400
) -> RecordCodec:
    return RecordCodec(masters, context, epoch_seconds)


def test_round_trip_and_format() -> None:
    c = codec(MasterKeys(OLD))
    value = c.seal(20245, KEY)
    assert value[0] == 1 and value[1:5] == key_id_of(OLD)
    assert len(value) == 1 + 4 + 12 + 32 + 8 + 16
    assert KEY not in value and OLD not in value
    opened = c.open(20245, value)
    assert opened.key == KEY and opened.origin == ORIGINAL and opened.key_id == key_id_of(OLD)
    assert c.seal(20245, KEY) != value  # fresh nonce every time
    copy = c.open(20245, c.seal(20245, KEY, origin=17))
    assert copy.origin == 17 and copy.key == KEY
    assert record_key(20245) == b"20245" and parse_record_key(b"20245") == 20245
    assert (
        parse_record_key(None) is None
        and parse_record_key(b"") is None
        and parse_record_key(b"1e3") is None
    )


@pytest.mark.parametrize("position", [0, 1, 4, 5, 16, 17, 40, 57, 72])
def test_any_flipped_byte_is_rejected(position: int) -> None:
    c = codec(MasterKeys(OLD))
    value = bytearray(c.seal(5, KEY))
    value[position] ^= 0x01
    with pytest.raises(RecordError) as caught:
        c.open(5, bytes(value))
    assert KEY.hex() not in str(caught.value) and bytes(value).hex() not in str(caught.value)


def test_associated_data_binds_epoch_context_and_epoch_length() -> None:
    value = codec(MasterKeys(OLD)).seal(5, KEY)
    with pytest.raises(RecordError, match="not authentic"):
        codec(MasterKeys(OLD)).open(6, value)  # swapped onto another epoch
    with pytest.raises(RecordError, match="not authentic"):
        codec(MasterKeys(OLD), context="other-cluster").open(5, value)
    with pytest.raises(RecordError, match="not authentic"):
        codec(MasterKeys(OLD), epoch_seconds=3600).open(5, value)
    with pytest.raises(RecordError, match="wrong length"):
        codec(MasterKeys(OLD)).open(5, value[:-1])
    with pytest.raises(RecordError, match="wrong length"):
        codec(MasterKeys(OLD)).open(5, b"")


def test_wrong_master_key_is_rejected_and_raw_master_never_wraps() -> None:
    c = codec(MasterKeys(OLD))
    value = c.seal(5, KEY)
    with pytest.raises(RecordError, match="unknown master key-id"):
        codec(MasterKeys(OTHER)).open(5, value)
    # A forger who copies the key-id but not the key still fails authentication.
    forged = value[:1] + key_id_of(OLD) + codec(MasterKeys(OTHER)).seal(5, KEY)[5:]
    with pytest.raises(RecordError, match="not authentic"):
        codec(MasterKeys(OLD)).open(5, forged)
    # The raw master key is not the AES key (HKDF stands between them).
    with pytest.raises(InvalidTag):
        AESGCM(OLD).decrypt(value[5:17], value[17:], c._aad(key_id_of(OLD), 5))


def test_unknown_version_and_short_master_key() -> None:
    value = bytearray(codec(MasterKeys(OLD)).seal(5, KEY))
    value[0] = 2
    with pytest.raises(RecordError, match="unknown record version 2"):
        codec(MasterKeys(OLD)).open(5, bytes(value))
    with pytest.raises(KeyShareError, match="at least 256 bits") as caught:
        MasterKeys(b"x" * 16)
    assert "x" * 16 not in str(caught.value)
    with pytest.raises(RecordError):
        codec(MasterKeys(OLD)).seal(5, b"short")


def test_rotation_key_id_selection() -> None:
    before = codec(MasterKeys(OLD))  # everybody today
    step1 = codec(MasterKeys(OLD, accepted=[NEW]))  # reads NEW, still writes OLD
    step2 = codec(MasterKeys(NEW, accepted=[OLD]))  # writes NEW, still reads OLD
    after = codec(MasterKeys(NEW))  # OLD retired
    old_record = before.seal(9, KEY)
    assert step1.seal(9, KEY)[1:5] == key_id_of(OLD)
    new_record = step2.seal(9, KEY)
    assert new_record[1:5] == key_id_of(NEW)
    for reader in (step1, step2):
        assert reader.open(9, old_record).key == KEY and reader.open(9, new_record).key == KEY
    assert reader.open(9, old_record).key_id == key_id_of(OLD)
    assert after.open(9, new_record).key == KEY
    with pytest.raises(RecordError, match=key_id_of(OLD).hex()):
        after.open(9, old_record)
    with pytest.raises(RecordError, match="unknown master key-id"):
        before.open(9, new_record)
    masters = MasterKeys(NEW, accepted=[OLD, NEW])
    assert masters.current_id == key_id_of(NEW) and len(masters.known_ids) == 2
    assert NEW.hex() not in repr(masters) and OLD.hex() not in repr(masters)


def test_master_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGFOG_MASTER_KEY", NEW.hex())
    monkeypatch.delenv("LOGFOG_MASTER_KEY_ACCEPTED", raising=False)
    assert MasterKeys.from_sources().known_ids == [key_id_of(NEW)]
    monkeypatch.setenv("LOGFOG_MASTER_KEY_ACCEPTED", OLD.hex())
    m = MasterKeys.from_sources()
    assert m.current_id == key_id_of(NEW) and set(m.known_ids) == {key_id_of(NEW), key_id_of(OLD)}


# -- EpochBook: agreement and destruction with an injected clock ------------------------

A, B = b"a" * 32, b"b" * 32
ID = b"id01"


def opened(key: bytes, origin: int = ORIGINAL, key_id: bytes = ID) -> Opened:
    return Opened(key, origin, key_id)


def test_first_record_wins() -> None:
    book = EpochBook(10, 5, current_key_id=ID)
    assert not book.decided(3) and book.may_create(3, now=31)
    book.observe_key(3, 7, opened(A), now=31)
    book.observe_key(3, 8, opened(B), now=31)
    assert book.key(3) == A and book.decided(3) and not book.may_create(3, now=31)


def test_unreadable_winner_means_no_key_not_own_key() -> None:
    book = EpochBook(10, 5, current_key_id=ID)
    book.observe_key(3, 7, None, now=31)  # someone else's master key
    book.observe_key(3, 8, opened(B), now=31)  # a later original: must not be adopted
    assert book.key(3) is None and book.unreadable_epochs(now=31) == [3]
    assert book.unreadable_records == 1
    book.observe_key(3, 9, opened(A, origin=6), now=31)  # a copy of another record: no
    assert book.key(3) is None
    book.observe_key(3, 10, opened(A, origin=7), now=31)  # a copy of the winner: yes
    assert book.key(3) == A and book.unreadable_epochs(now=31) == []


def test_destruction_at_epoch_end_plus_grace() -> None:
    book = EpochBook(10, 5, current_key_id=ID)
    book.observe_key(3, 0, opened(A), now=31)
    assert book.limit(3) == 45
    assert book.expire(now=44.999) == [] and book.key(3) == A and book.live(44.999) == {3: A}
    assert book.expire(now=45) == [3]  # this worker noticed: it publishes the tombstone
    assert book.key(3) is None and book.live(45) == {} and book.is_destroyed(3, now=0)
    # Never adopted or re-created again, even if a record shows up or the clock is off.
    book.observe_key(3, 1, opened(B), now=0)
    assert book.key(3) is None and not book.may_create(3, now=0)


def test_tombstone_from_another_worker_destroys_early_and_for_good() -> None:
    book = EpochBook(10, 5, current_key_id=ID)
    book.observe_key(3, 0, opened(A), now=31)
    book.observe_tombstone(3)
    assert book.key(3) is None and book.is_destroyed(3, now=31)
    assert book.expire(now=50) == []  # already tombstoned: nothing more to publish
    book.observe_key(3, 2, opened(B), now=31)
    assert book.key(3) is None and not book.may_create(3, now=31)


def test_records_of_past_epochs_are_never_adopted_but_get_a_tombstone() -> None:
    book = EpochBook(10, 5, current_key_id=ID)
    book.observe_key(1, 0, opened(A), now=100)  # a fresh worker reads an old backlog
    assert book.key(1) is None and not book.may_create(1, now=100)
    assert book.expire(now=100) == [1]
    book.observe_key(2, 1, opened(A), now=100)
    book.observe_tombstone(2)
    assert book.expire(now=100) == [1]


def test_creation_window() -> None:
    book = EpochBook(10, 5, max_ahead_seconds=10)
    assert book.may_create(3, now=31)  # current
    assert book.may_create(2, now=31)  # past, within grace (late events)
    assert not book.may_create(1, now=31)  # past grace
    assert book.may_create(4, now=31)  # next: up to one epoch ahead
    assert not book.may_create(5, now=31)  # bogus future timestamps make no keys


def test_needs_copy_under_a_new_master_key() -> None:
    book = EpochBook(10, 5, current_key_id=b"NEW!")
    book.observe_key(3, 4, opened(A, key_id=b"OLD!"), now=31)
    book.observe_key(4, 5, opened(B, key_id=b"NEW!"), now=31)
    assert book.needs_copy(now=31) == [(3, A, 4)]
    book.observe_key(3, 6, opened(A, origin=4, key_id=b"NEW!"), now=31)
    assert book.needs_copy(now=31) == []
    assert book.needs_copy(now=45) == []


def test_prune_forgets_old_bookkeeping_only() -> None:
    book = EpochBook(10, 5)
    book.observe_key(3, 0, opened(A), now=31)
    book.observe_key(9, 1, opened(B), now=95)
    book.expire(now=95)
    book.prune(now=95, keep_seconds=20)
    assert 3 not in book.states and book.key(9) == B and book.is_destroyed(3, now=95)


# -- SharedKeyRing bookkeeping with an injected clock (no broker) ----------------------


def test_ring_hot_path_and_clock_based_destruction(caplog: pytest.LogCaptureFixture) -> None:
    clock = [31.0]
    masters = MasterKeys(OLD)
    ring = SharedKeyRing(
        "127.0.0.1:1", masters, epoch_seconds=10, grace_seconds=5, clock=lambda: clock[0]
    )
    c = codec(masters, epoch_seconds=10)
    with caplog.at_level(logging.DEBUG, logger="streams.keyshare"):
        ring._apply(0, record_key(3), c.seal(3, A), clock[0])
        ring._apply(1, record_key(3), c.seal(3, B), clock[0])
        ring._apply(2, record_key(4), b"garbage", clock[0])
        ring._apply(3, b"not-an-epoch", b"x", clock[0])
    assert ring.key_for(3) == A and ring.key_for(3, now=0) == A
    assert ring.key_for(4) is None  # agreed record unreadable: no key, no candidate
    d = ring.describe()
    assert d["live_epochs"] == [3] and d["unreadable_epochs"] == [4] and d["records"] == 3
    clock[0] = 45.0
    assert ring.key_for(3) is None  # the clock alone ends it, before any tombstone
    assert ring.key_for(3, now=31) is None  # an old event time does not revive it
    text = caplog.text + repr(ring) + repr(ring.describe()) + repr(ring._book.states)
    for secret in (A, B, OLD):
        assert secret.hex() not in text and repr(secret) not in text
    clock[0] = 49.5  # epoch 5 starts within the lead (1 s): it could be made
    with pytest.raises(KeyShareError, match="not running"):
        ring.key_for(5)


def test_topic_spec() -> None:
    spec = topic_spec("logfog.keys", epoch_seconds=86400, grace_seconds=3600, margin_seconds=600)
    cfg = spec.topic_configs()
    assert spec.partitions == 1 and cfg["cleanup.policy"] == "compact,delete"
    live_ms = (300 + 86400 + 3600) * 1000  # lead + epoch + grace
    assert cfg["min.compaction.lag.ms"] == str(live_ms)
    assert spec.retention_ms == live_ms + 600_000 and cfg["segment.ms"] == "600000"


@pytest.mark.parametrize(
    ("epoch_s", "grace_s", "margin_s"), [(86400, 3600, 600), (3600, 60, 600), (2, 1, 2)]
)
def test_topic_deletes_a_destroyed_key_soon_after_destruction(
    epoch_s: int, grace_s: int, margin_s: int
) -> None:
    """The audit's case: a key written 5 min before its epoch, destroyed at epoch start
    + 25 h, was deleted only ~49 h after. Retention counts from the record's time stamp;
    Kafka deletes a segment when its NEWEST record is past retention, and a segment
    spans at most segment.ms of records."""
    spec = topic_spec("k", epoch_seconds=epoch_s, grace_seconds=grace_s, margin_seconds=margin_s)
    cfg = spec.topic_configs()
    lag_s, segment_s = int(cfg["min.compaction.lag.ms"]) / 1000, int(cfg["segment.ms"]) / 1000
    retention_s = spec.retention_ms / 1000
    lead = default_lead_seconds(epoch_s)
    epoch = 20245
    stamp = record_time(epoch, epoch_s, lead)
    destroyed = (epoch + 1) * epoch_s + grace_s
    assert stamp + lag_s >= destroyed  # the winner is never compacted away while live
    assert stamp + retention_s > destroyed  # nor deleted (a late starter must find it)
    deleted_by = stamp + segment_s + retention_s
    assert deleted_by <= destroyed + 2 * margin_s
    if epoch_s == 86400:
        assert deleted_by - epoch * epoch_s <= 25 * 3600 + 20 * 60


def test_no_key_is_made_before_the_lead() -> None:
    """Retention assumes no key record older than its epoch's record time."""
    ring = SharedKeyRing("127.0.0.1:1", MasterKeys(OLD), epoch_seconds=100, grace_seconds=5,
                         lead_seconds=10, clock=lambda: 150.0)  # fmt: skip
    assert not ring._book.may_create(2, now=150.0 + 39)  # 11 s before epoch 2
    assert ring._book.may_create(2, now=150.0 + 41)
    with pytest.raises(ValueError, match="max_ahead_seconds"):
        SharedKeyRing("127.0.0.1:1", MasterKeys(OLD), 100, 5, lead_seconds=10,
                      max_ahead_seconds=100)  # fmt: skip
