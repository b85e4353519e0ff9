"""Random epoch keys shared by all workers of a cluster through one Kafka topic.

Why: privacy rule 5 wants pseudonym keys that are random (nobody can recompute them
from a secret) yet identical on every worker of a cluster (the same visitor must get
the same pseudonym whichever worker handles the request), and destroyed after the
epoch plus a grace period. ``EphemeralKeyRing`` is random but per process;
``DerivedKeyRing`` is shared but recomputable forever by whoever holds the secret.
:class:`SharedKeyRing` is both random and shared: one worker makes a 256-bit key for
an epoch, publishes it encrypted on a single-partition topic, and every worker
adopts it from there.

Record format (topic ``logfog.keys``, 1 partition)::

    key   = epoch as ASCII decimal, e.g. b"20245"
    value = version (1 byte, 0x01) | key-id (4 bytes) | nonce (12 bytes) | AES-256-GCM
            ciphertext of (epoch key, 32 bytes | origin offset, 8 bytes signed)
    value = None                    -> tombstone: the epoch's key is destroyed

Wrapping: the AES key is HKDF-SHA256(master key, info "wrap"); the raw master key is
never used as a cipher key. The key-id is another HKDF output (a fingerprint that
tells which master key sealed a record without revealing anything about it). The
associated data binds version, key-id, context (cluster name, default: the topic
name), epoch length and epoch number, so a record cannot be replayed for another
epoch, another cluster or a ring with another epoch length.

Agreement (every worker ends with the same key for an epoch): the partition's log
order decides. The FIRST record for an epoch in the partition wins, for every reader.
A worker that needs a key it has not seen produces a candidate (one record per
request, flushed), then waits until its background consumer has read up to its own
record's offset, and adopts whatever record came first. End offsets are never
trusted (the local Tansu broker reports wrong high watermarks for multi-record
batches). A winner this worker cannot decrypt (wrong or retired master key) means
"no key" (``None``): the ring never substitutes a key of its own, so two workers can
never pseudonymize the same epoch with two different keys. ``start()`` refuses to run
when the topic holds key records but none of them is readable (a wrong
``LOGFOG_MASTER_KEY`` fails loudly instead of silently producing other pseudonyms).
Topic settings keep the winner uncompacted while its epoch is live
(``min.compaction.lag.ms``, see :func:`topic_spec`).

Destruction: "now" is the WALL CLOCK (injectable for tests). Event times are not
trusted for destruction: a single log line dated in the future would otherwise
tombstone the live keys of the whole cluster. Once ``now >= (epoch + 1) *
epoch_seconds + grace_seconds`` the worker that notices publishes a tombstone
(``value=None``), drops the key from memory and never creates or adopts a key for
that epoch again; others drop it on the tombstone or by their own clock. Replays of
old logs through a shared ring therefore get ``None`` for epochs whose grace is over
(those keys are destroyed, by design); reproducible batch replays use the
``ephemeral`` ring, which ages keys by event time. The next epoch's key is prepared
``lead_seconds`` (default: 5 min, at most a tenth of the epoch) before it starts, and
no key is ever created earlier than that (``max_ahead_seconds`` may not exceed it):
the topic's retention counts on it (:func:`topic_spec`).

On the topic, a destroyed key lives on only until Kafka deletes its record: every key
record of an epoch is time-stamped ``lead`` before the epoch starts (copies made later
during a master key rotation too), and the topic's retention is ``lead + epoch + grace
+ margin`` from that time stamp, so whoever holds ``LOGFOG_MASTER_KEY`` and can read
the topic can decrypt a destroyed key for at most ``margin + segment.ms`` (plus the
broker's retention check interval, 5 min by default) after its destruction.

Master key rotation (key-id in every record):

1. Roll out all workers with ``current=OLD, accepted=[NEW]``: they can read NEW
   records but still write OLD ones (every worker can read every winner).
2. Roll out all workers with ``current=NEW, accepted=[OLD]``. Each worker that adopts
   a live epoch key sealed under another master key re-publishes the same key under
   NEW, marked with the offset of the winner it copies (``origin``).
3. Once every live epoch has such a copy (any step-2 worker does it within a poll
   interval after catching up; to be safe wait ``lead + grace``), drop OLD. A worker
   holding only NEW sees an unreadable winner followed by a readable copy whose
   origin is that winner's offset, and adopts the copy: the same key, so agreement
   holds. Without step-3 copies, simply wait until every epoch sealed under OLD is
   past its grace (about two epochs) before dropping OLD.

Trust: anyone who can WRITE the keys topic can destroy keys early (tombstones) or
block an epoch (a garbage first record): restrict producing to the workers with ACLs.
Reading the topic without a master key reveals nothing but epoch numbers and timing.
Python cannot wipe ``bytes``: "dropped from memory" means no reference is kept.
Keys never appear in logs, reprs or exception messages of this module.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from streams.admin import TopicSpec
from streams.keys import MIN_KEY_BYTES, DestroyListeners, EpochListener, load_secret
from streams.security import PLAINTEXT, KafkaSecurity, kafka_python_settings

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "logfog.keys"
MASTER_KEY_SOURCE = "env:LOGFOG_MASTER_KEY"
#: Optional, accept-only master key during a rotation (see the module docstring).
ACCEPTED_MASTER_KEY_SOURCE = "env:LOGFOG_MASTER_KEY_ACCEPTED"
VERSION = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES
_PLAIN_BYTES = MIN_KEY_BYTES + 8
_TAG_BYTES = 16
ORIGINAL = -1  # origin offset of a freshly made key (not a copy)


class KeyShareError(RuntimeError):
    """The shared key ring cannot work (topic missing, wrong master key, broker down).

    Messages name topics, epochs and key-ids only, never key material or payloads.
    """


class KeyShareUnavailable(KeyShareError):
    """No agreed key for an epoch within the timeout (transient: broker slow or down).

    Raised by ``key_for`` instead of returning ``None`` because ``None`` means
    "destroyed". The pipeline lets it through (``streams.pipeline.is_unavailable``) and
    the worker holds the batch until keys are available: no line is dead-lettered.
    """


class RecordError(ValueError):
    """A key record is malformed or not authentic (message: reason only)."""


# -- master keys and the record codec -------------------------------------------------


def _hkdf(master: bytes, info: bytes, length: int) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"logfog-keyshare-v1", info=info
    ).derive(master)


def key_id_of(master: bytes) -> bytes:
    """The 4-byte key-id (fingerprint) of a master key.

    >>> key_id_of(b"m" * 32).hex() == key_id_of(b"m" * 32).hex() != key_id_of(b"n" * 32).hex()
    True
    """
    return _hkdf(master, b"logfog-keyshare key-id", KEY_ID_BYTES)


class MasterKeys:
    """The master key that seals new records, plus older/newer ones still accepted.

    Only HKDF-derived wrapping keys are kept; the raw master keys are not stored.

    >>> m = MasterKeys(b"a" * 32, accepted=[b"b" * 32])
    >>> m.current_id == key_id_of(b"a" * 32), len(m.known_ids)
    (True, 2)
    >>> "61616161" in repr(m)  # key-ids only, never key material
    False
    """

    def __init__(self, current: bytes, accepted: Iterable[bytes] = ()) -> None:
        for secret in (current, *accepted):
            if len(secret) < MIN_KEY_BYTES:
                raise KeyShareError(f"a master key must hold at least {MIN_KEY_BYTES * 8} bits")
        self.current_id = key_id_of(current)
        self._ciphers: dict[bytes, AESGCM] = {}
        for secret in (current, *accepted):
            self._ciphers.setdefault(
                key_id_of(secret), AESGCM(_hkdf(secret, b"logfog-keyshare wrap", 32))
            )

    @classmethod
    def from_sources(
        cls, current: str = MASTER_KEY_SOURCE, accepted: Sequence[str] | None = None
    ) -> MasterKeys:
        """Load keys named ``env:NAME`` / ``file:PATH`` (see ``streams.keys.load_secret``).

        ``accepted=None`` reads ``LOGFOG_MASTER_KEY_ACCEPTED`` when it is set.
        """
        if accepted is None:
            name = ACCEPTED_MASTER_KEY_SOURCE.partition(":")[2]
            accepted = [ACCEPTED_MASTER_KEY_SOURCE] if os.environ.get(name) else []
        return cls(load_secret(current), [load_secret(s) for s in accepted])

    @property
    def known_ids(self) -> list[bytes]:
        return list(self._ciphers)

    def cipher(self, key_id: bytes) -> AESGCM | None:
        return self._ciphers.get(key_id)

    def __repr__(self) -> str:
        others = [k.hex() for k in self._ciphers if k != self.current_id]
        return f"MasterKeys(current={self.current_id.hex()}, accepted={others})"


@dataclass(frozen=True)
class Opened:
    """A decrypted key record. ``origin`` is ``ORIGINAL`` or the offset it copies."""

    key: bytes = field(repr=False)
    origin: int
    key_id: bytes


def record_key(epoch: int) -> bytes:
    """The Kafka record key of an epoch.

    >>> record_key(20245), parse_record_key(b"20245"), parse_record_key(b"x1")
    (b'20245', 20245, None)
    """
    return str(epoch).encode("ascii")


def parse_record_key(raw: bytes | None) -> int | None:
    if raw is None or not 0 < len(raw) <= 20:
        return None
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


class RecordCodec:
    """Seal and open key records (AES-256-GCM under an HKDF-derived wrapping key).

    >>> codec = RecordCodec(MasterKeys(b"m" * 32), context="logfog.keys", epoch_seconds=86400)
    >>> value = codec.seal(7, b"k" * 32)
    >>> len(value), codec.open(7, value).key == b"k" * 32
    (73, True)
    >>> codec.open(8, value)
    Traceback (most recent call last):
    ...
    streams.keyshare.RecordError: not authentic (tampered, other epoch or context)
    """

    def __init__(self, masters: MasterKeys, context: str, epoch_seconds: int) -> None:
        self.masters = masters
        self.context = context
        self.epoch_seconds = epoch_seconds

    def _aad(self, key_id: bytes, epoch: int) -> bytes:
        return b"\x00".join(
            [
                b"logfog-keyshare",
                bytes([VERSION]) + key_id,
                self.context.encode(),
                str(self.epoch_seconds).encode(),
                str(epoch).encode(),
            ]
        )

    def seal(self, epoch: int, key: bytes, origin: int = ORIGINAL) -> bytes:
        """Encrypt ``key`` for ``epoch`` under the current master key."""
        if len(key) != MIN_KEY_BYTES:
            raise RecordError(f"an epoch key must be {MIN_KEY_BYTES} bytes")
        key_id = self.masters.current_id
        cipher = self.masters.cipher(key_id)
        assert cipher is not None
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = key + origin.to_bytes(8, "big", signed=True)
        sealed = cipher.encrypt(nonce, plain, self._aad(key_id, epoch))
        return bytes([VERSION]) + key_id + nonce + sealed

    def open(self, epoch: int, value: bytes) -> Opened:
        """Decrypt a record of ``epoch``; :class:`RecordError` if it is not authentic."""
        if len(value) != _HEADER + _PLAIN_BYTES + _TAG_BYTES:
            raise RecordError("malformed record (wrong length)")
        if value[0] != VERSION:
            raise RecordError(f"unknown record version {value[0]}")
        key_id = value[1 : 1 + KEY_ID_BYTES]
        cipher = self.masters.cipher(key_id)
        if cipher is None:
            raise RecordError(f"sealed under unknown master key-id {key_id.hex()}")
        nonce = value[1 + KEY_ID_BYTES : _HEADER]
        try:
            plain = cipher.decrypt(nonce, value[_HEADER:], self._aad(key_id, epoch))
        except InvalidTag:
            raise RecordError("not authentic (tampered, other epoch or context)") from None
        origin = int.from_bytes(plain[MIN_KEY_BYTES:], "big", signed=True)
        return Opened(plain[:MIN_KEY_BYTES], origin, key_id)


# -- the pure bookkeeping ---------------------------------------------------------------


@dataclass
class EpochState:
    """What one reader knows about one epoch (``key`` never shows in reprs)."""

    winner_offset: int | None = None
    key: bytes | None = field(default=None, repr=False)
    winner_key_id: bytes | None = None
    current_copy_seen: bool = False
    tombstoned: bool = False


class EpochBook:
    """Agreement and destruction rules, without Kafka (so they can be unit tested).

    Feed it the partition's records in offset order (:meth:`observe_key`,
    :meth:`observe_tombstone`) and the clock (:meth:`expire`). Not thread-safe: the
    ring calls it under its own lock.

    >>> book = EpochBook(epoch_seconds=10, grace_seconds=5)
    >>> book.observe_key(1, 0, Opened(b"a" * 32, ORIGINAL, b"id01"), now=12)
    >>> book.observe_key(1, 1, Opened(b"b" * 32, ORIGINAL, b"id01"), now=12)  # later: loses
    >>> book.key(1) == b"a" * 32, book.limit(1)
    (True, 25)
    >>> book.expire(now=25)  # epochs to tombstone
    [1]
    >>> book.key(1), book.is_destroyed(1, now=0)
    (None, True)
    """

    def __init__(
        self,
        epoch_seconds: int,
        grace_seconds: float,
        max_ahead_seconds: float | None = None,
        current_key_id: bytes | None = None,
    ) -> None:
        if epoch_seconds <= 0 or grace_seconds < 0:
            raise ValueError("epoch_seconds must be > 0 and grace_seconds >= 0")
        self.epoch_seconds = epoch_seconds
        self.grace_seconds = grace_seconds
        self.max_ahead_seconds = (
            float(epoch_seconds) if max_ahead_seconds is None else max_ahead_seconds
        )
        self.current_key_id = current_key_id
        self.states: dict[int, EpochState] = {}
        self.destroyed: set[int] = set()
        self.unreadable_records = 0

    def limit(self, epoch: int) -> float:
        """When the epoch's key must be gone: epoch end + grace."""
        return (epoch + 1) * self.epoch_seconds + self.grace_seconds

    def is_destroyed(self, epoch: int, now: float) -> bool:
        return epoch in self.destroyed or now >= self.limit(epoch)

    def may_create(self, epoch: int, now: float) -> bool:
        """A candidate may be produced: not destroyed, not decided, not too far ahead."""
        if (
            self.is_destroyed(epoch, now)
            or epoch * self.epoch_seconds - now > self.max_ahead_seconds
        ):
            return False
        state = self.states.get(epoch)
        return state is None or state.winner_offset is None

    def key(self, epoch: int) -> bytes | None:
        state = self.states.get(epoch)
        return None if state is None else state.key

    def decided(self, epoch: int) -> bool:
        state = self.states.get(epoch)
        return epoch in self.destroyed or (state is not None and state.winner_offset is not None)

    def observe_key(self, epoch: int, offset: int, opened: Opened | None, now: float) -> None:
        """A key record at ``offset``; ``opened`` is None when it could not be read.

        The first record wins. A later readable record only counts if it is a copy of
        the winner (``origin == winner offset``, made during a master key rotation).
        """
        if opened is None:
            self.unreadable_records += 1
        if self.is_destroyed(epoch, now):
            # Never adopt for a past epoch; remember the record so that, if no tombstone
            # follows in the log, one gets published and compaction can remove it.
            stale = self.states.setdefault(epoch, EpochState())
            if stale.winner_offset is None:
                stale.winner_offset = offset
            stale.key = None
            self.destroyed.add(epoch)
            return
        state = self.states.setdefault(epoch, EpochState())
        if state.winner_offset is None:
            state.winner_offset = offset
            if opened is not None:
                state.key = opened.key
                state.winner_key_id = opened.key_id
        elif state.key is None and opened is not None and opened.origin == state.winner_offset:
            state.key = opened.key
        if opened is not None and opened.key_id == self.current_key_id and state.key is not None:
            same = hmac.compare_digest(opened.key, state.key)
            state.current_copy_seen = state.current_copy_seen or same

    def observe_tombstone(self, epoch: int) -> None:
        """Another worker (or this one) destroyed the epoch: forget the key for good."""
        state = self.states.setdefault(epoch, EpochState())
        state.key = None
        state.tombstoned = True
        self.destroyed.add(epoch)

    def expire(self, now: float) -> list[int]:
        """Destroy every epoch past its limit; return those still needing a tombstone."""
        due: list[int] = []
        for epoch, state in self.states.items():
            if now >= self.limit(epoch) or epoch in self.destroyed:
                state.key = None
                self.destroyed.add(epoch)
                if not state.tombstoned and state.winner_offset is not None:
                    due.append(epoch)
        return sorted(due)

    def prune(self, now: float, keep_seconds: float) -> None:
        """Forget bookkeeping of epochs long past (the clock alone refuses them now)."""
        old = [e for e in self.states if now >= self.limit(e) + keep_seconds]
        for epoch in old:
            del self.states[epoch]

    def needs_copy(self, now: float) -> list[tuple[int, bytes, int]]:
        """Live epochs whose winner is sealed under another master key and has no copy
        under the current one yet: ``(epoch, key, winner offset)`` (rotation step 2)."""
        out = []
        for epoch, s in sorted(self.states.items()):
            if (
                s.key is not None
                and s.winner_offset is not None
                and s.winner_key_id != self.current_key_id
                and not s.current_copy_seen
                and not self.is_destroyed(epoch, now)
            ):
                out.append((epoch, s.key, s.winner_offset))
        return out

    def live(self, now: float) -> dict[int, bytes]:
        return {
            e: s.key
            for e, s in self.states.items()
            if s.key is not None and not self.is_destroyed(e, now)
        }

    def unreadable_epochs(self, now: float) -> list[int]:
        return sorted(
            e
            for e, s in self.states.items()
            if s.winner_offset is not None and s.key is None and not self.is_destroyed(e, now)
        )


# -- topic ------------------------------------------------------------------------------


def default_lead_seconds(epoch_seconds: float) -> float:
    """How long before its epoch a key is prepared (and at most created): 5 min, or a
    tenth of a short epoch.

    >>> default_lead_seconds(86400), default_lead_seconds(60)
    (300.0, 6.0)
    """
    return min(300.0, epoch_seconds / 10)


def record_time(epoch: int, epoch_seconds: int, lead_seconds: float) -> float:
    """The time stamp of every key record of ``epoch``: ``lead`` before it starts.

    Retention counts from record time stamps, so a copy re-sealed late in the epoch
    (master key rotation) is deleted with the original, not an epoch later.

    >>> record_time(3, 10, 2.5)
    27.5
    """
    return epoch * epoch_seconds - lead_seconds


def topic_spec(
    name: str = DEFAULT_TOPIC,
    epoch_seconds: int = 86400,
    grace_seconds: int = 3600,
    margin_seconds: int = 600,
    replication_factor: int = 1,
    lead_seconds: float | None = None,
) -> TopicSpec:
    """The keys topic: 1 partition (log order decides), ``compact,delete``.

    Every key record of an epoch is time-stamped ``lead`` before the epoch starts
    (:func:`record_time`; no key is created earlier) and its key is live until epoch
    end + grace: ``lead + epoch + grace`` after that time stamp.
    ``min.compaction.lag.ms`` keeps the winner uncompacted that long (compaction keeps
    the LATEST record per key, which would change who "came first" for a new reader);
    retention deletes the records ``margin`` later. Kafka deletes whole segments, the
    newest record of a segment decides, and it checks every
    ``log.retention.check.interval.ms`` (broker setting, 5 min by default): with
    ``segment.ms`` = ``margin`` (at most 1 h), a destroyed key's record is gone at most
    ``2 * margin`` + that interval after the destruction (25 min with the defaults).
    Tombstones are kept ``margin`` long for workers catching up.

    >>> spec = topic_spec(epoch_seconds=86400, grace_seconds=3600, margin_seconds=600)
    >>> spec.retention_ms // 60000, int(spec.config["min.compaction.lag.ms"]) // 60000
    (1515, 1505)
    >>> spec.config["segment.ms"]
    '600000'
    """
    lead = default_lead_seconds(epoch_seconds) if lead_seconds is None else lead_seconds
    live_ms = int((lead + epoch_seconds + grace_seconds) * 1000)
    margin_ms = max(1000, margin_seconds * 1000)
    return TopicSpec(
        name,
        1,
        live_ms + margin_ms,
        cleanup_policy="compact,delete",
        replication_factor=replication_factor,
        config={
            "min.compaction.lag.ms": str(live_ms),
            "delete.retention.ms": str(margin_ms),
            "segment.ms": str(min(3_600_000, margin_ms)),
            # Retention counts from the record's own (planned) time stamp; the broker's
            # append time would keep a key copied late an epoch past its destruction.
            "message.timestamp.type": "CreateTime",
        },
        # Less of either removes a live epoch's winning record: a worker starting then
        # agrees on another key than the running ones (two pseudonyms for one visitor).
        at_least=frozenset({"retention.ms", "min.compaction.lag.ms"}),
        exact=frozenset({"message.timestamp.type"}),
    )


# -- the Kafka-backed ring ----------------------------------------------------------------


class SharedKeyRing:
    """A :class:`streams.keys.KeyRing` whose random epoch keys are shared via Kafka.

    Use as a context manager (or call :meth:`start` / :meth:`close`)::

        with SharedKeyRing(bootstrap, MasterKeys.from_sources(), epoch_seconds=86400) as ring:
            key = ring.key_for(epoch)   # dict lookup once known

    ``key_for`` returns the agreed key, ``None`` when the epoch is destroyed (or its
    agreed key is unreadable here, or it starts more than ``max_ahead_seconds``, by
    default ``lead_seconds``, from now), and
    raises :class:`KeyShareUnavailable` when no agreement was reached within
    ``wait_s`` (then it fails fast for ``retry_after_s`` so a dead broker does not
    stall every line). The ``now`` argument (event time) is ignored: see the module
    docstring for why the wall clock decides.
    """

    def __init__(
        self,
        bootstrap: str,
        masters: MasterKeys,
        epoch_seconds: int = 86400,
        grace_seconds: int = 3600,
        *,
        topic: str = DEFAULT_TOPIC,
        context: str | None = None,
        lead_seconds: float | None = None,
        max_ahead_seconds: float | None = None,
        wait_s: float = 5.0,
        retry_after_s: float = 5.0,
        start_timeout_s: float = 15.0,
        poll_ms: int = 100,
        idle_ms: int = 1000,
        clock: Callable[[], float] = time.time,
        check_master_key: bool = True,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.security = security
        self.epoch_seconds = epoch_seconds
        self.grace_seconds = grace_seconds
        self.bootstrap = bootstrap
        self.topic = topic
        self.lead_seconds = (
            default_lead_seconds(epoch_seconds) if lead_seconds is None else lead_seconds
        )
        if max_ahead_seconds is None:
            max_ahead_seconds = self.lead_seconds
        elif max_ahead_seconds > self.lead_seconds:
            # The topic deletes key records lead + epoch + grace + margin after their
            # time stamp (topic_spec): a key made earlier could vanish while still live,
            # and a worker starting then would make a second key for the same epoch.
            raise ValueError("max_ahead_seconds must not exceed lead_seconds")
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.start_timeout_s = start_timeout_s
        self.check_master_key = check_master_key
        self._poll_ms = poll_ms
        self._idle_s = idle_ms / 1000
        self._wake = threading.Event()  # ends an idle wait: a candidate to read back
        self._clock = clock
        self._codec = RecordCodec(masters, context or topic, epoch_seconds)
        self._book = EpochBook(epoch_seconds, grace_seconds, max_ahead_seconds, masters.current_id)
        self._cond = threading.Condition()
        self._live: dict[int, tuple[bytes, float]] = {}  # hot path: epoch -> (key, limit)
        self._listeners = DestroyListeners()
        self._pending: dict[int, int | None] = {}  # epoch -> own candidate offset (None: sending)
        self._consumed = -1  # highest offset processed by the consumer thread
        self._caught_up = False
        self._failed_until = 0.0
        self._warned: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_error: str | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._send_lock = threading.Lock()
        self.counters = {
            "records": 0,
            "unreadable": 0,
            "candidates": 0,
            "tombstones_seen": 0,
            "tombstones_published": 0,
            "copies_published": 0,
        }

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> SharedKeyRing:
        """Connect, read the topic from the beginning, check the master key.

        Raises :class:`KeyShareError` when the topic is missing (it is never
        auto-created here: create it with ``ensure_topics([topic_spec(...)])``), is not
        single-partition, the backlog cannot be read within ``start_timeout_s``, or
        (``check_master_key``) the topic holds key records none of which is readable.
        """
        if self._thread is not None:
            return self
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        from streams.admin import describe_topics

        info = describe_topics(self.bootstrap, [self.topic], security=self.security).get(self.topic)
        if info is None:
            raise KeyShareError(
                f"key topic {self.topic} does not exist; create it first "
                "(streams.admin.ensure_topics with streams.keyshare.topic_spec)"
            )
        if info.partitions != 1:
            raise KeyShareError(
                f"key topic {self.topic} has {info.partitions} partitions; agreement needs 1"
            )
        self._producer = KafkaProducer(
            **kafka_python_settings(self.security),
            bootstrap_servers=self.bootstrap,
            client_id="logfog-keyshare",
            acks="all",
            linger_ms=0,
            max_in_flight_requests_per_connection=1,
            max_block_ms=int(self.wait_s * 1000),
            request_timeout_ms=max(1000, int(self.wait_s * 1000)),
        )
        self._consumer = KafkaConsumer(
            **kafka_python_settings(self.security),
            bootstrap_servers=self.bootstrap,
            client_id="logfog-keyshare",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            fetch_max_wait_ms=self._poll_ms,
        )
        tp = self._tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        self._consumer.seek_to_beginning(tp)
        # A lower bound only (single-record batches make it right, but don't rely on it).
        floor = int(self._consumer.end_offsets([tp]).get(tp) or 0)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(floor,), name=f"keyshare-{self.topic}", daemon=True
        )
        self._thread.start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._caught_up or self._thread_error is not None, self.start_timeout_s
            )
            ready = self._caught_up
            # Key records only: a tombstone (kept about a day) holds no key to read.
            counts = self.counters
            readable = counts["records"] - counts["tombstones_seen"] - counts["unreadable"]
            bad_key = self.check_master_key and self.counters["unreadable"] and readable <= 0
        if not ready or bad_key:
            self.close()
            if bad_key:
                raise KeyShareError(
                    f"key topic {self.topic} holds key records but none is readable with "
                    "this master key (wrong LOGFOG_MASTER_KEY, or a rotation step skipped)"
                )
            raise KeyShareError(f"could not read key topic {self.topic} within the timeout")
        log.info("keyshare: ready on %s (%s)", self.topic, self._describe_short())
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the consumer thread and close the clients; forget all keys. Idempotent."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=timeout_s)
        self._consumer = self._producer = None
        with self._cond:
            forgotten = sorted(self._live)
            self._live = {}
            self._book.states.clear()
            self._pending.clear()
            self._cond.notify_all()
        self._listeners.notify(forgotten)

    def __enter__(self) -> SharedKeyRing:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- KeyRing ------------------------------------------------------------------
    def on_destroy(self, listener: EpochListener) -> None:
        """``listener.forget(epoch)`` runs (on the consumer thread, or the caller's) as
        soon as an epoch's key leaves this ring: by the clock, a tombstone or close."""
        self._listeners.add(listener)

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        """The agreed key of ``epoch`` (``now`` is ignored; the wall clock decides)."""
        entry = self._live.get(epoch)
        if entry is not None and self._clock() < entry[1]:
            return entry[0]
        return self._key_for_slow(epoch)

    def _key_for_slow(self, epoch: int) -> bytes | None:
        deadline = time.monotonic() + self.wait_s
        produce = False
        with self._cond:
            now = self._clock()
            if self._book.is_destroyed(epoch, now):
                self._refresh_live(now)
                return None
            if self._book.decided(epoch):
                return self._decided_key(epoch)
            if not self._book.may_create(epoch, now):
                self._warn_once("too-far-ahead", epoch)
                return None
            if self._thread is None:
                raise KeyShareError("the shared key ring is not running (call start())")
            if epoch not in self._pending:
                if now < self._failed_until:
                    raise KeyShareUnavailable(f"no agreed key for epoch {epoch} (backing off)")
                self._pending[epoch] = None
                produce = True
        if produce:
            try:
                offset = self._produce(record_key(epoch), self._new_candidate(epoch))
            except Exception as error:
                with self._cond:
                    self._pending.pop(epoch, None)
                    self._failed_until = self._clock() + self.retry_after_s
                    self._cond.notify_all()
                raise KeyShareUnavailable(
                    f"cannot publish a key candidate for epoch {epoch} ({type(error).__name__})"
                ) from None
            self.counters["candidates"] += 1
            with self._cond:
                self._pending[epoch] = offset
                self._cond.notify_all()
            self._wake.set()
        with self._cond:
            self._cond.wait_for(lambda: self._settled(epoch), max(0.0, deadline - time.monotonic()))
            if self._settled(epoch):
                return self._decided_key(epoch)
            self._failed_until = self._clock() + self.retry_after_s
        raise KeyShareUnavailable(
            f"no agreed key for epoch {epoch} within {self.wait_s:.1f} s "
            f"(key topic {self.topic} not consumed up to the candidate)"
        )

    def _new_candidate(self, epoch: int) -> bytes:
        return self._codec.seal(epoch, secrets.token_bytes(MIN_KEY_BYTES))

    def _settled(self, epoch: int) -> bool:
        """Called under the lock: our candidate (or the epoch's end) has been read."""
        if epoch in self._book.destroyed or self._stop.is_set():
            return True
        offset = self._pending.get(epoch)
        if offset is not None:
            return self._consumed >= offset
        return epoch not in self._pending and self._book.decided(epoch)

    def _decided_key(self, epoch: int) -> bytes | None:
        key = self._book.key(epoch)
        if key is None and epoch not in self._book.destroyed and self._book.decided(epoch):
            self._warn_once("unreadable", epoch)
        return key

    def _warn_once(self, what: str, epoch: int) -> None:
        if (what, epoch) in self._warned:
            return
        self._warned.add((what, epoch))
        if what == "unreadable":
            log.error(
                "keyshare: the agreed key of epoch %s on %s is not readable with this "
                "master key; pseudonyms of that epoch will be empty",
                epoch,
                self.topic,
            )
        else:
            log.warning("keyshare: epoch %s is too far ahead of the clock; no key made", epoch)

    # -- Kafka side ---------------------------------------------------------------
    def _produce(self, key: bytes, value: bytes | None) -> int:
        """One record per request, flushed, so the broker sees single-record batches.

        Key records carry their epoch's :func:`record_time` (retention counts from it);
        tombstones carry the current time (kept ``margin`` for readers catching up).
        """
        stamp = None
        epoch = parse_record_key(key)
        if value is not None and epoch is not None:
            when = min(self._clock(), record_time(epoch, self.epoch_seconds, self.lead_seconds))
            stamp = int(when * 1000)
        with self._send_lock:
            producer = self._producer
            if producer is None:
                raise KeyShareError("the shared key ring is closed")
            future = producer.send(
                self.topic, key=key, value=value, partition=0, timestamp_ms=stamp
            )
            producer.flush(timeout=self.wait_s)
            return int(future.get(timeout=self.wait_s).offset)

    def _run(self, floor: int) -> None:
        """Consumer thread: apply records in offset order, expire, prepare, copy."""
        while not self._stop.is_set():
            try:
                batch = self._consumer.poll(timeout_ms=self._poll_ms)
                records = [m for msgs in batch.values() for m in msgs]
                records.sort(key=lambda m: m.offset)
                with self._cond:
                    now = self._clock()
                    for m in records:
                        self._apply(m.offset, m.key, m.value, now)
                    # The position, not only the last record read: retention may have
                    # deleted every record (all workers down for an epoch and more), and
                    # then there is no record at floor - 1 to read.
                    if not records and (
                        self._consumed + 1 >= floor or self._consumer.position(self._tp) >= floor
                    ):
                        self._caught_up = True
                    self._cond.notify_all()
                if self._caught_up and not records:
                    self._maintain()
                    self._idle()
            except Exception as error:  # keep serving known keys; never log payloads
                if self._stop.is_set():
                    break
                log.warning("keyshare: consumer loop error %s; retrying", type(error).__name__)
                with self._cond:
                    self._thread_error = type(error).__name__
                    self._cond.notify_all()
                self._stop.wait(1.0)

    def _idle(self) -> None:
        """Wait up to ``idle_ms`` before the next poll when nothing is awaited.

        A kafka-python poll costs about 3 ms of CPU here: ten a second took 3.5% of a
        core (and the worker's GIL) from the hot path, one a second 0.3%. A candidate
        to read back (ours, from ``key_for`` or ``_maintain``) is polled for at once:
        ``_key_for_slow`` sets ``_wake``. Other workers' records are seen within about
        ``idle_ms``; agreement does not depend on it (the first candidate read wins,
        and we read up to our own candidate's offset before deciding).
        """
        with self._cond:
            if self._pending:
                return
        self._wake.wait(self._idle_s)
        self._wake.clear()

    def _apply(self, offset: int, raw_key: bytes | None, value: bytes | None, now: float) -> None:
        self._consumed = max(self._consumed, offset)
        epoch = parse_record_key(raw_key)
        if epoch is None:
            return
        self.counters["records"] += 1
        if value is None:
            self.counters["tombstones_seen"] += 1
            self._book.observe_tombstone(epoch)
        else:
            try:
                opened: Opened | None = self._codec.open(epoch, value)
            except RecordError as error:
                self.counters["unreadable"] += 1
                log.warning("keyshare: key record of epoch %s not readable: %s", epoch, error)
                opened = None
            self._book.observe_key(epoch, offset, opened, now)
        self._refresh_live(now)

    def _refresh_live(self, now: float) -> None:
        """Publish the hot-path view (a new dict: readers never see a half update).

        Epochs that left the view are announced to the listeners (pseudonym memos)
        after the new view is in place, so a listener that asks again gets ``None``.
        """
        old = self._live
        self._live = {e: (k, self._book.limit(e)) for e, k in self._book.live(now).items()}
        self._listeners.notify([e for e in old if e not in self._live])

    def _maintain(self) -> None:
        """Destroy expired epochs (tombstones), prepare the next key, copy on rotation."""
        with self._cond:
            now = self._clock()
            due = self._book.expire(now)
            self._refresh_live(now)
            copies = self._book.needs_copy(now)
            nxt = int(now // self.epoch_seconds) + 1
            prepare = (
                now >= nxt * self.epoch_seconds - self.lead_seconds
                and nxt not in self._pending
                and self._book.may_create(nxt, now)
            )
            if prepare:
                self._pending[nxt] = None
        for epoch in due:
            self._produce(record_key(epoch), None)
            with self._cond:
                state = self._book.states.get(epoch)
                if state is not None:
                    state.tombstoned = True  # our own tombstone will also be read back
            self.counters["tombstones_published"] += 1
            log.info("keyshare: destroyed the key of epoch %s (tombstone published)", epoch)
        for epoch, key, winner in copies:
            self._produce(record_key(epoch), self._codec.seal(epoch, key, origin=winner))
            with self._cond:
                copied = self._book.states.get(epoch)
                if copied is not None:
                    copied.current_copy_seen = True
            self.counters["copies_published"] += 1
            log.info("keyshare: re-published epoch %s under the current master key", epoch)
        if prepare:
            try:
                offset = self._produce(record_key(nxt), self._new_candidate(nxt))
            except Exception:
                with self._cond:
                    self._pending.pop(nxt, None)
                raise
            self.counters["candidates"] += 1
            with self._cond:
                self._pending[nxt] = offset
        with self._cond:
            self._book.prune(self._clock(), keep_seconds=self.epoch_seconds + self.grace_seconds)
            for epoch in [e for e, o in self._pending.items() if o is not None]:
                if self._consumed >= (self._pending[epoch] or 0):
                    del self._pending[epoch]

    # -- introspection ------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """State for logs and metrics: epochs and counts only, never key material.

        ``live_epochs`` hold a key here; ``unreadable_epochs`` have an agreed key this
        worker cannot decrypt; ``destroyed`` counts epochs destroyed or refused.
        """
        with self._cond:
            now = self._clock()
            return {
                "topic": self.topic,
                "epoch_seconds": self.epoch_seconds,
                "grace_seconds": self.grace_seconds,
                "master_key_id": self._codec.masters.current_id.hex(),
                "live_epochs": sorted(self._book.live(now)),
                "unreadable_epochs": self._book.unreadable_epochs(now),
                "destroyed": len(self._book.destroyed),
                "pending": sorted(self._pending),
                "consumed_offset": self._consumed,
                **self.counters,
            }

    def _describe_short(self) -> str:
        d = self.describe()
        return f"live epochs {d['live_epochs']}, destroyed {d['destroyed']}, records {d['records']}"

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return (
            f"SharedKeyRing(topic={self.topic!r}, epoch_seconds={self.epoch_seconds}, "
            f"live={sorted(self._live)}, {state})"
        )


def shared_keyring(
    bootstrap: str,
    epoch_seconds: int,
    grace_seconds: int,
    *,
    topic: str = DEFAULT_TOPIC,
    master: str = MASTER_KEY_SOURCE,
    accepted: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> SharedKeyRing:
    """A started ring with master keys from the environment (for the worker and CLI)."""
    ring = SharedKeyRing(
        bootstrap,
        MasterKeys.from_sources(master, accepted),
        epoch_seconds,
        grace_seconds,
        topic=topic,
        security=security,
        **dict(options or {}),
    )
    return ring.start()
