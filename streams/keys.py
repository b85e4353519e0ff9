"""Where pseudonym keys come from: one key per epoch, never from ``config/``.

A pseudonym is a keyed hash of (site, value) under the key of the epoch the request
falls in (``actions/pseudonymize.py``). Three key rings:

- ``ephemeral`` (default for ``logfog anonymize``): a random 256-bit key per epoch,
  made on first use, held only in memory, and forgotten once the epoch plus the grace
  period is over. Nobody, not even the operator, can recompute those pseudonyms later.
- ``env:NAME`` / ``file:PATH``: a master secret (>= 256 bits, hex or base64 in the
  variable, raw or hex/base64 in the file); epoch keys are derived from it with keyed
  BLAKE2b. Pseudonyms are stable across runs and machines, so whoever holds the
  secret can recompute them: for reproducible batch jobs only. The streaming worker
  uses random epoch keys shared through Kafka instead (``streams/keyshare.py``).

>>> ring = EphemeralKeyRing(epoch_seconds=86400, grace_seconds=3600)
>>> k1 = ring.key_for(0, now=10)
>>> len(k1), ring.key_for(0, now=20) == k1, ring.key_for(1, now=86400 + 5) != k1
(32, True, True)
>>> ring.key_for(0, now=86400 + 3601) is None  # epoch 0 and its grace are over: destroyed
True

Whatever memoizes pseudonyms of an epoch (``actions/pseudonymize.py``) registers with
:meth:`KeyRing.on_destroy`: the ring tells it the moment it drops an epoch's key, so
no memo can recompute that epoch's pseudonyms after the key is gone (rule 5).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from streams.records import FUTURE_SKEW_SECONDS

MIN_KEY_BYTES = 32
_BLAKE2B_KEY_BYTES = 64


class KeyError_(ValueError):
    """A key source is missing or unusable; the message never contains key material."""


class EpochListener(Protocol):
    def forget(self, epoch: int) -> None:
        """The key of ``epoch`` is destroyed: drop everything derived from it."""


class KeyRing(Protocol):
    epoch_seconds: int

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        """The key of ``epoch`` or ``None`` if it no longer (or never will) exist."""

    def on_destroy(self, listener: EpochListener) -> None:
        """Call ``listener.forget(epoch)`` whenever this ring drops an epoch's key."""


class DestroyListeners:
    """Listeners told when a ring drops an epoch's key (held weakly: a pipeline that is
    thrown away takes its memos with it). ``notify`` may run on any thread.

    >>> class Memo(dict):
    ...     def forget(self, epoch): self.pop(epoch, None)
    >>> listeners, memo = DestroyListeners(), Memo({1: "x", 2: "y"})
    >>> listeners.add(memo); listeners.notify([1]); memo
    {2: 'y'}
    """

    def __init__(self) -> None:
        # Weak references by identity (a WeakSet would compare two empty memos equal).
        self._refs: list[weakref.ReferenceType[EpochListener]] = []
        self._lock = threading.Lock()

    def add(self, listener: EpochListener) -> None:
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None] + [weakref.ref(listener)]

    def notify(self, epochs: list[int]) -> None:
        if not epochs:
            return
        with self._lock:
            listeners = [r() for r in self._refs]
        for listener in listeners:
            if listener is not None:
                for epoch in epochs:
                    listener.forget(epoch)


#: Distinct byte values a 32-byte random key has at least (it has about 30 on average;
#: fewer than 16 has a probability below 1e-12). Fewer: typed, repeated or padded text.
MIN_DISTINCT_KEY_BYTES = 16
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _decode_secret(raw: bytes, where: str) -> bytes:
    """A key from hex (only if every character is a hex digit: a short hex key is not
    read again as base64, which would make it look longer), strict base64, or raw
    binary bytes; at least 256 bits that look random.

    >>> len(_decode_secret(b"00112233445566778899aabbccddeeff" * 2, "k"))
    32
    >>> def why(text):
    ...     try:
    ...         _decode_secret(text, "k")
    ...     except KeyError_ as error:
    ...         return str(error).split(" (")[0]
    >>> why(b"ab" * 22)
    'k: the key must hold at least 256 bits, hex or base64 encoded'
    >>> why(b"password" * 6)
    'k: the key does not look random'
    """
    text = raw.strip()
    decoded: bytes | None = None
    if text and set(text) <= _HEX_DIGITS:
        decoded = binascii.unhexlify(text) if len(text) % 2 == 0 else None
    else:
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            if len(raw) >= MIN_KEY_BYTES and not raw.isascii():
                decoded = raw  # a raw binary key file
    if decoded is None or len(decoded) < MIN_KEY_BYTES:
        raise KeyError_(
            f"{where}: the key must hold at least {MIN_KEY_BYTES * 8} bits, hex or base64 "
            "encoded (make one with: logfog keygen)"
        )
    if len(set(decoded)) < MIN_DISTINCT_KEY_BYTES:
        raise KeyError_(f"{where}: the key does not look random (make one with: logfog keygen)")
    return decoded


#: What may follow ``env:``: a shell-style variable name. Anything else is a mistake, and
#: the likeliest one is the key itself pasted in, so messages never quote it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name_problem(name: str) -> str | None:
    """Why ``name`` (what follows ``env:``) is not a variable name, or None. The message
    never contains ``name``: a hex key that starts with a letter is a valid name too, so a
    name that would decode as a key is refused as well.

    >>> env_name_problem("LOGFOG_MASTER_KEY") is None
    True
    >>> key = generate_key()
    >>> [key in (env_name_problem(n) or "") for n in (key, "a" + key[1:], "")]
    [False, False, False]
    >>> env_name_problem("f" + key[1:])  # doctest: +ELLIPSIS
    'env: must be followed by an environment variable name ...'
    """
    if not name:
        return "env: needs a variable name (env:NAME)"
    looks_like_key = True
    try:
        _decode_secret(name.encode(), "env")
    except KeyError_:
        looks_like_key = False
    if looks_like_key or not _ENV_NAME.fullmatch(name):
        return (
            "env: must be followed by an environment variable name ([A-Za-z_][A-Za-z0-9_]*), "
            "not a key (what follows it is not shown)"
        )
    return None


def load_secret(source: str) -> bytes:
    """Read a secret named ``env:NAME`` or ``file:PATH``. Messages never quote ``source``
    beyond a valid variable name or a path: it may be a key given in the wrong place."""
    kind, _, name = source.partition(":")
    if kind == "env":
        problem = env_name_problem(name)
        if problem:
            raise KeyError_(f"key source: {problem}")
        value = os.environ.get(name)
        if not value:
            raise KeyError_(f"environment variable {name} is not set (make a key: logfog keygen)")
        return _decode_secret(value.encode(), f"environment variable {name}")
    if kind == "file":
        try:
            data = Path(name).read_bytes()
        except OSError as error:
            raise KeyError_(f"key file {name}: {error.strerror}") from None
        return _decode_secret(data, f"key file {name}")
    raise KeyError_(
        "key source: not 'env:NAME', 'file:PATH' or 'ephemeral' (not shown: it may be a key)"
    )


class DerivedKeyRing:
    """Epoch keys derived from a master secret: stable, recomputable by its holder."""

    def __init__(self, master: bytes, epoch_seconds: int) -> None:
        self.epoch_seconds = epoch_seconds
        # BLAKE2b takes keys of up to 64 bytes; a longer secret (a raw key file of 4 KB
        # is accepted) is hashed down to that, as HMAC does (it made every line a
        # rules.error before; an audit).
        if len(master) > _BLAKE2B_KEY_BYTES:
            master = hashlib.blake2b(master, person=b"logfog-master").digest()
        self._master = master
        self._cache: dict[int, bytes] = {}

    def on_destroy(self, listener: EpochListener) -> None:
        """Derived keys are never destroyed (the secret recomputes them): nothing to tell."""

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        key = self._cache.get(epoch)
        if key is None:
            key = hashlib.blake2b(
                epoch.to_bytes(8, "big", signed=True), key=self._master, person=b"logfog-epoch"
            ).digest()[:32]
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[epoch] = key
        return key


#: How far past the wall clock an event time may be and still count as "now".
FUTURE_TOLERANCE_SECONDS = FUTURE_SKEW_SECONDS


class EphemeralKeyRing:
    """Random per-epoch keys, in memory only, destroyed after epoch end + grace.

    "Now" is the newest event time seen (or the caller's clock): replaying an old log
    file ages keys by the log's own time, so the grace period means the same thing.
    An event time beyond the wall clock + ``future_tolerance_seconds`` is not believed:
    it gets no key and does not move "now" (one line dated 2099 would otherwise destroy
    every earlier epoch's key, and every later line's pseudonym with it).

    >>> ring = EphemeralKeyRing(86400, 3600, clock=lambda: 10 * 86400.0)
    >>> ring.key_for(20, now=20 * 86400 + 5) is None  # ten days ahead: no key
    True
    >>> ring.key_for(9, now=9 * 86400 + 5) is None  # and today's key still exists
    False
    """

    def __init__(
        self,
        epoch_seconds: int,
        grace_seconds: int = 3600,
        *,
        clock: Callable[[], float] = time.time,
        future_tolerance_seconds: float = FUTURE_TOLERANCE_SECONDS,
    ) -> None:
        self.epoch_seconds = epoch_seconds
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._future_tolerance = future_tolerance_seconds
        self._keys: dict[int, bytes] = {}
        self._newest = float("-inf")
        self._lock = threading.Lock()
        self._listeners = DestroyListeners()

    def on_destroy(self, listener: EpochListener) -> None:
        self._listeners.add(listener)

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        if now is None:
            now = (epoch + 1) * self.epoch_seconds - 1
        if now > self._newest:
            if max(now, epoch * self.epoch_seconds) > self._clock() + self._future_tolerance:
                return None  # from the future: no key, and "now" stays where it was
            self._expire(now)
        if (epoch + 1) * self.epoch_seconds + self.grace_seconds <= self._newest:
            return None  # the epoch is over: its key is gone or must never be made
        key = self._keys.get(epoch)
        if key is None:
            with self._lock:
                # Asked again under the lock: another thread may have moved "now" past
                # this epoch's grace (and destroyed its key) since the check above.
                if (epoch + 1) * self.epoch_seconds + self.grace_seconds <= self._newest:
                    return None
                key = self._keys.setdefault(epoch, secrets.token_bytes(MIN_KEY_BYTES))
        return key

    def _expire(self, now: float) -> None:
        """Make ``now`` the newest time and destroy the keys it puts past their grace.

        Under the lock that inserts take: a ring shared by threads would otherwise change
        size while it is iterated here, or move "now" back (another thread's newer time
        written over). Listeners are told outside it."""
        with self._lock:
            if now <= self._newest:
                return  # another thread went further
            self._newest = now
            limit = now - self.grace_seconds
            expired = [e for e in self._keys if (e + 1) * self.epoch_seconds <= limit]
            for epoch in expired:
                del self._keys[epoch]
        self._listeners.notify(expired)

    @property
    def live_epochs(self) -> list[int]:
        with self._lock:
            return sorted(self._keys)


def keyring_from_config(source: str, epoch_seconds: int, grace_seconds: int) -> KeyRing:
    """The key ring for a batch job (``logfog anonymize``); the worker builds shared ones."""
    if source in ("ephemeral", "auto"):
        return EphemeralKeyRing(epoch_seconds, grace_seconds)
    if source == "shared":
        raise KeyError_("keys.source 'shared' needs the streaming worker (logfog worker)")
    return DerivedKeyRing(load_secret(source), epoch_seconds)


def generate_key() -> str:
    """A new 256-bit secret, hex encoded, for ``LOGFOG_MASTER_KEY`` or a key file."""
    return secrets.token_hex(MIN_KEY_BYTES)
