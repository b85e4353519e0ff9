"""Log shipper: raw access-log lines from a file or stdin into a Kafka topic.

Why batched framing: the stream processor's cost is per Kafka record (Faust spends
roughly 100 us per event before any work of ours), so many lines per record is the
main throughput lever. A record value is ``lines_per_record`` lines joined by
``b"\\n"`` (no trailing newline), key ``None``, to the topic's partitions in turn
(:mod:`streams.round_robin`: the raw partitions' event times move together, so the
aggregator's windows close on time); ``lines_per_record=1`` gives one line per record.
Consumers count lines as ``value.count(b"\\n") + 1``.

Lines are bytes and are never decoded (access logs contain invalid UTF-8); only the
line terminator (``\\n`` or ``\\r\\n``) is stripped, and a UTF-8 byte order mark that
starts a file or stdin (``streams.records.BOM``). Empty lines are shipped as lines,
because the pipeline counts them. Logs of this module carry counts, never payloads.

Oversize lines: a line longer than the worker's ``input.max_line_bytes`` is shipped
cut to one byte more than that, which the worker dead-letters as ``parse.too_long``
(what it would do with the whole line), and counted in :class:`ShipResult`. Shipped
whole, a line over ~1 MiB is a record Apache Kafka refuses (``message.max.bytes``):
the line would be lost to the pipeline, with no dead letter. Only that much of a line
is ever held while its end is awaited (:class:`LineSplitter`'s ``keep``): a writer
that never ends its line cannot fill the shipper's memory.

Follow mode behaves like ``tail -F``: it survives rename rotation (the new file at
the path is read from its start, and the old one is read on until it has been silent
for ``rotate_wait_s``, since the writer appends to it until it reopens the path) and
copytruncate (a size below the read position means "truncated": read again from 0).
Bytes written between a copytruncate's copy and its truncate are lost; that is
inherent to copytruncate. A line is shipped only once its newline is read, or once its
file has ended (EOF without follow, a rotated file after the rotate wait).
SIGINT/SIGTERM (or the ``stop`` event) end shipping with a final flush;
:class:`ShipResult` then holds what the broker acknowledged, and counts an unterminated
last line, not shipped, in ``unfinished_lines`` (its writer may be in the middle of it).

Compressed input (``access.log.1.gz``, ``.bz2``, ``.xz``; a file or stdin, told by its
first bytes as ``logfog anonymize`` tells it: :mod:`streams.compressed`) is shipped
decompressed, and cannot be followed (a compressed file is rewritten whole, never
appended to). Damage in it (a truncated download) ends the reading: the lines before it
are shipped, and :class:`ShipResult` says why it ended (``damaged``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import logging
import os
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, cast

from streams.admin import AdminError, describe_topics
from streams.compressed import (
    MAGIC_BYTES,
    CompressedLogError,
    Damaged,
    Decompressed,
    Replay,
    decompressed,
    readable,
    undecided,
)
from streams.records import without_bom
from streams.security import PLAINTEXT, KafkaSecurity, kafka_python_settings

log = logging.getLogger(__name__)

DEFAULT_LINES_PER_RECORD = 500
# Apache Kafka's default message.max.bytes is 1 MiB (+ overhead); stay below it.
DEFAULT_MAX_RECORD_BYTES = 900_000
#: The worker's default ``input.max_line_bytes``: longer lines are shipped cut.
DEFAULT_MAX_LINE_BYTES = 65536
READ_CHUNK = 1 << 20
#: First back-off before records the broker did not take are sent again (doubling).
RETRY_BACKOFF_S = 1.0
MAX_RETRY_BACKOFF_S = 30.0
#: Without --follow, rounds of resending before the shipper gives up (exit 3).
FILE_RETRIES = 5
#: How long a file renamed away by rotation is still read after its last growth: the
#: writer appends to it until it reopens the path (Fluent Bit's Rotate_Wait).
DEFAULT_ROTATE_WAIT_S = 5.0


class TopicNotFound(AdminError):
    """The target topic does not exist (the shipper never auto-creates topics)."""

    def __init__(self, topic: str, bootstrap: str) -> None:
        self.topic = topic
        super().__init__(
            f"topic {topic!r} does not exist on {bootstrap}; create it first "
            "(logfog topics) - the shipper does not auto-create topics"
        )


# --------------------------------------------------------------------------- framing


def strip_eol(line: bytes) -> bytes:
    r"""Remove one trailing ``\n`` or ``\r\n`` (nothing else).

    >>> strip_eol(b"GET / 200\r\n"), strip_eol(b"x\n"), strip_eol(b"  \n"), strip_eol(b"\xff")
    (b'GET / 200', b'x', b'  ', b'\xff')
    """
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


class Framer:
    r"""Incremental framer: lines in, record values out.

    A record holds at most ``lines_per_record`` lines and at most
    ``max_record_bytes`` bytes (joined size), except that a line longer than
    ``max_record_bytes`` goes alone into its own record. Used directly by the
    shipper so that a partial record can be flushed when input goes idle.

    With ``max_line_bytes``, a longer line is cut to ``max_line_bytes + 1`` bytes (the
    worker then rejects it as too long, as it would the whole line), counted in
    ``cut_lines``.

    >>> f = Framer(2, 100)
    >>> f.add(b"a"), f.add(b""), f.add(b"c"), f.flush(), f.flush()
    ([], [b'a\n'], [], [b'c'], [])
    >>> f = Framer(5, 100, max_line_bytes=3)
    >>> f.add(b"abcdef"), f.add(b"abc"), f.flush(), f.cut_lines
    ([], [], [b'abcd\nabc'], 1)
    """

    __slots__ = (
        "_lines",
        "_size",
        "cut_lines",
        "lines_per_record",
        "max_line_bytes",
        "max_record_bytes",
    )

    def __init__(
        self, lines_per_record: int, max_record_bytes: int, max_line_bytes: int | None = None
    ) -> None:
        if lines_per_record < 1:
            raise ValueError("lines_per_record must be >= 1")
        if max_record_bytes < 1:
            raise ValueError("max_record_bytes must be >= 1")
        if max_line_bytes is not None and max_line_bytes < 0:
            raise ValueError("max_line_bytes must be >= 0")
        self.lines_per_record = lines_per_record
        self.max_record_bytes = max_record_bytes
        self.max_line_bytes = max_line_bytes
        self.cut_lines = 0
        self._lines: list[bytes] = []
        self._size = 0  # joined size of self._lines

    @property
    def pending_lines(self) -> int:
        """Lines buffered but not yet emitted."""
        return len(self._lines)

    def add(self, line: bytes) -> list[bytes]:
        """Add one line (without terminator); return records completed by it."""
        out: list[bytes] = []
        n = len(line)
        if self.max_line_bytes is not None and n > self.max_line_bytes:
            line = line[: self.max_line_bytes + 1]
            n = len(line)
            self.cut_lines += 1
        if self._lines and self._size + 1 + n > self.max_record_bytes:
            out.append(b"\n".join(self._lines))
            self._lines, self._size = [], 0
        if self._lines:
            self._size += 1 + n
        else:
            self._size = n
        self._lines.append(line)
        if len(self._lines) >= self.lines_per_record or self._size >= self.max_record_bytes:
            out.append(b"\n".join(self._lines))
            self._lines, self._size = [], 0
        return out

    def flush(self) -> list[bytes]:
        """Emit the partial record, if any."""
        if not self._lines:
            return []
        rec = b"\n".join(self._lines)
        self._lines, self._size = [], 0
        return [rec]


def frame_lines(
    lines: Iterable[bytes],
    lines_per_record: int = DEFAULT_LINES_PER_RECORD,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[bytes]:
    r"""Group lines (without terminators) into newline-joined record values.

    Pure function of its input; see :class:`Framer` for the limits.

    >>> list(frame_lines([b"a", b"b", b"c"], 2, 100))
    [b'a\nb', b'c']
    >>> list(frame_lines([b"ab", b"cd", b"0123456789", b"e"], 10, 5))
    [b'ab\ncd', b'0123456789', b'e']
    >>> list(frame_lines([], 3, 10))
    []
    """
    framer = Framer(lines_per_record, max_record_bytes)
    for line in lines:
        yield from framer.add(line)
    yield from framer.flush()


def count_lines(record: bytes) -> int:
    r"""Number of log lines in a record value (inverse of the framing).

    >>> count_lines(b"a\nb"), count_lines(b""), count_lines(b"\n")
    (2, 1, 2)
    """
    return record.count(b"\n") + 1


class LineSplitter:
    r"""Split a byte stream into lines, keeping an incomplete last line pending.

    >>> s = LineSplitter()
    >>> s.feed(b"a\r\nb"), s.feed(b"c\n\n"), s.feed(b"tail"), s.finish(), s.finish()
    ([b'a'], [b'bc', b''], [], b'tail', None)

    ``at_start``: the bytes fed are a file's or stream's start, so a
    :data:`~streams.records.BOM` there is dropped (however the reads cut it:
    :func:`~streams.records.without_bom`):

    >>> s = LineSplitter(at_start=True)
    >>> s.feed(b"\xef\xbb"), s.feed(b"\xbfa\n\xef\xbb\xbfb\n")
    ([], [b'a', b'\xef\xbb\xbfb'])

    ``keep``: at most this many bytes of a pending line are held; the rest of a longer
    one is read and dropped, so a stream without newlines (``/dev/zero``, a writer gone
    wrong) cannot fill the memory. The shipper keeps ``max_line_bytes + 1``: the cut
    line is still too long, and the worker dead-letters it as the whole would be. A
    cut line keeps a ``\r`` it ends on (stripped, the line could fit). ``size`` is the
    pending line's whole length, dropped bytes included:

    >>> s = LineSplitter(keep=3)
    >>> s.feed(b"a"), s.feed(b"b\r"), s.feed(b"cd"), s.size, s.feed(b"e\nxy\r\n"), s.size
    ([], [], [], 5, [b'ab\r', b'xy'], 0)
    """

    __slots__ = ("_head", "_keep", "_kept", "_pending", "size")

    def __init__(self, at_start: bool = False, keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError("keep must be >= 1")  # a cut line must still be a line
        self._pending: list[bytes] = []
        #: The stream's first bytes while they may still be a BOM (None: past them).
        self._head: bytes | None = b"" if at_start else None
        self._keep = keep
        self._kept = 0  # bytes in _pending
        #: The pending line's length in bytes, what was dropped of it included.
        self.size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the lines they complete (terminators stripped)."""
        if self._head is not None:
            stripped = without_bom(self._head + chunk)
            if stripped is None:  # a BOM's start, or nothing yet: wait for more
                self._head += chunk
                return []
            chunk, self._head = stripped, None
        if b"\n" not in chunk:
            self._hold(chunk)
            return []
        parts = chunk.split(b"\n")
        keep = self._keep
        cut = keep is not None and self.size + len(parts[0]) > keep
        if self._pending:
            self._pending.append(parts[0])
            parts[0] = b"".join(self._pending)
            self._pending, self._kept = [], 0
        self.size = 0
        self._hold(parts.pop())
        lines = [p[:-1] if p.endswith(b"\r") else p for p in parts]
        if cut:
            lines[0] = parts[0][:keep]
        return lines

    def _hold(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self._keep is not None:
            room = self._keep - self._kept
            if len(chunk) > room:
                if room <= 0:
                    return
                chunk = chunk[:room]
        self._pending.append(chunk)
        self._kept += len(chunk)

    def finish(self) -> bytes | None:
        """Return the pending incomplete line (as a line) or None; reset."""
        if self._head:  # the stream ended on a BOM's first bytes: they are its line
            self._hold(self._head)
        self._head = None
        if not self._pending:
            self.size = 0
            return None
        cut = self.size > self._kept
        line = b"".join(self._pending)
        self._pending, self._kept, self.size = [], 0, 0
        return line[:-1] if line.endswith(b"\r") and not cut else line


# --------------------------------------------------------------------------- sources

LineBatches = Generator[list[bytes] | None, None, None]  # None = idle tick (flush opportunity)


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


@dataclass(slots=True)
class _Rotated:
    """A file renamed away by rotation, still read until its writer has been done with
    it (silent) for the rotate wait."""

    file: io.FileIO
    splitter: LineSplitter
    last_growth: float  # time.monotonic() of the last bytes read from it


def check_source(path: str | Path, *, follow: bool) -> None:
    """Refuse a source that cannot be read as a log, with the OSError naming it: a
    missing file (``FileNotFoundError``; following, it is waited for instead), a
    directory (``IsADirectoryError``) or a file we may not read (``PermissionError``);
    or with a :class:`~streams.compressed.CompressedLogError`, a regular file compressed
    with zstd, or with anything when following (:func:`_compression`). A FIFO or device
    is read as it is (``stat``, never ``open``: a FIFO's open waits for its writer)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if follow:
            return
        raise
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not os.access(path, os.R_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb", buffering=0) as f:
            _compression(f, path, follow=follow)


def _compression(f: io.FileIO, path: str | Path, *, follow: bool) -> str | None:
    """The compression a regular file's first bytes name (None: none, or not a regular
    file: a FIFO's bytes cannot be looked at without taking them). Refuses one logfog
    cannot read, and any with ``follow``: a compressed file does not grow line by line
    (its writer rewrites it whole), so following one can only ship it again."""
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        return None
    kind = readable(os.pread(f.fileno(), MAGIC_BYTES, 0), str(path), "ship")
    if kind is not None and follow:
        raise CompressedLogError(
            f"{path}: compressed with {kind}: a compressed file cannot be followed "
            "(it does not grow line by line); ship it without --follow"
        )
    return kind


def follow_file(
    path: Path,
    *,
    follow: bool,
    stop: threading.Event,
    from_end: bool = False,
    poll_interval_s: float = 0.2,
    chunk_size: int = READ_CHUNK,
    rotate_wait_s: float = DEFAULT_ROTATE_WAIT_S,
    on_unfinished: Callable[[int], None] | None = None,
    keep: int | None = None,
) -> LineBatches:
    """Yield lists of lines read from ``path``; ``None`` when idle (follow mode).

    Without ``follow`` it ends at EOF, where an unterminated last line is a line (the
    file has ended); a compressed file is read decompressed (:func:`_read_decompressed`).
    With ``follow`` it refuses a compressed file (:func:`_compression`), and polls like
    ``tail -F``:

    - rename rotation (the path now names a different inode): the new file is read
      from its start, and the old one is still read until nothing was added to it for
      ``rotate_wait_s``: the writer appends to it until it reopens the path (logrotate's
      postrotate runs after the new file is created). Each poll reads it before the new
      file. An unterminated line in it stays pending until its newline arrives; when
      the wait ends, the writer is done with the file, and the line is shipped as it is;
    - copytruncate (size < read position): reading restarts at offset 0. A pending
      unterminated line is kept: the writer (O_APPEND) writes the rest of it at the
      start of the truncated file;
    - a missing path is waited for (idle ticks meanwhile; a file that appears later is
      read from its start), else FileNotFoundError.

    A path that names a FIFO or device is read as :func:`read_fd` reads stdin, to its
    end, with or without ``follow``.

    ``stop`` ends following: an unterminated line then is not shipped (its writer may
    be in the middle of it; cut, it would be a different line), and ``on_unfinished``
    gets its length in bytes.
    """
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - reassigned on rotation
    except FileNotFoundError:
        if not follow:
            raise
        log.info("shipper: %s does not exist yet; waiting for it", path.name)
        while True:
            yield None
            if stop.wait(poll_interval_s):
                return
            try:
                f = open(path, "rb", buffering=0)  # noqa: SIM115
                break
            except FileNotFoundError:
                continue
        from_end = False  # written after we started: all of it is new
    rotated: list[_Rotated] = []
    ended = False  # the input really ended (no follow): its unterminated tail is a line
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            # A FIFO or device (a named pipe, /dev/stdin, bash's <(...)): a pipe, which
            # can be neither sought nor rotated (tell() raised "Illegal seek").
            yield from read_fd(f.fileno(), stop=stop, poll_interval_s=poll_interval_s,
                               chunk_size=chunk_size, on_unfinished=on_unfinished,
                               keep=keep, name=str(path))  # fmt: skip
            return
        kind = _compression(f, path, follow=follow)  # checked again: it may have changed
        if kind is not None:
            source = decompressed(f, kind)
            yield from _read_decompressed(source, str(path), stop=stop, chunk_size=chunk_size,
                                          on_unfinished=on_unfinished, keep=keep)  # fmt: skip
            return
        ident = _file_id(os.fstat(f.fileno()))
        if from_end:
            f.seek(0, os.SEEK_END)
        splitter = LineSplitter(f.tell() == 0, keep)  # a BOM is dropped at the start
        while not stop.is_set():
            grew = False
            for old in list(rotated):  # first: its lines were written before the new file's
                while chunk := old.file.read(chunk_size):
                    grew = True
                    old.last_growth = time.monotonic()
                    lines = old.splitter.feed(chunk)
                    if lines:
                        yield lines
                if time.monotonic() - old.last_growth >= rotate_wait_s:
                    tail = old.splitter.finish()  # the writer has moved on: it is complete
                    if tail is not None:
                        yield [tail]
                    old.file.close()
                    rotated.remove(old)
                    log.info("shipper: done with the rotated %s", path.name)
            chunk = f.read(chunk_size)
            if chunk:
                lines = splitter.feed(chunk)
                if lines:
                    yield lines
                continue
            if not follow:
                ended = True
                break
            # At EOF: look for truncation, then rotation, else idle.
            if os.fstat(f.fileno()).st_size < f.tell():
                log.info("shipper: %s was truncated; reading from its start", path.name)
                f.seek(0)
                continue
            try:
                new_ident: tuple[int, int] | None = _file_id(os.stat(path))
            except FileNotFoundError:
                new_ident = None  # renamed, not created yet: the old file is still the log
            if new_ident is not None and new_ident != ident:
                try:
                    new_f = open(path, "rb", buffering=0)  # noqa: SIM115
                except FileNotFoundError:
                    continue
                rotated.append(_Rotated(f, splitter, time.monotonic()))
                f, splitter = new_f, LineSplitter(True, keep)
                ident = _file_id(os.fstat(f.fileno()))
                log.info("shipper: %s was rotated; following the new file", path.name)
                continue
            if grew:
                continue
            yield None
            stop.wait(poll_interval_s)
        if ended:
            tail = splitter.finish()
            if tail is not None:
                yield [tail]
        else:
            for unfinished in (*(old.splitter for old in rotated), splitter):
                size = unfinished.size
                if unfinished.finish() is not None and on_unfinished is not None:
                    on_unfinished(size)
    finally:
        f.close()
        for old in rotated:
            old.file.close()


def read_fd(
    fd: int,
    *,
    stop: threading.Event,
    poll_interval_s: float = 0.2,
    chunk_size: int = READ_CHUNK,
    on_unfinished: Callable[[int], None] | None = None,
    keep: int | None = None,
    name: str = "stdin",
) -> LineBatches:
    """Yield lines from a pipe/tty/file descriptor (stdin) until EOF or ``stop``.

    Uses ``select`` with a timeout so a stop request is noticed even while the
    writer is silent, and so partial records can be flushed when input is idle. An
    unterminated last line is a line at EOF; at ``stop`` it is not shipped, and
    ``on_unfinished`` gets its length (as in :func:`follow_file`).

    Input that starts with a gzip, bzip2 or xz magic is read decompressed (see
    :func:`_read_decompressed`; ``name`` names it in messages).
    """
    splitter = LineSplitter(True, keep)
    head: bytes | None = b""  # the first bytes while they may start a magic (None: plain)
    ended = False
    while not stop.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], poll_interval_s)
        except InterruptedError:  # pragma: no cover - PEP 475 retries normally
            continue
        if not ready:
            yield None
            continue
        chunk = data = os.read(fd, chunk_size)
        if head is not None:
            head += chunk
            if chunk and undecided(head):
                continue
            kind = readable(head, name, "ship")
            if kind is not None:
                stream = Replay(head, _FdReader(fd, stop, poll_interval_s))
                yield from _read_decompressed(decompressed(cast(IO[bytes], stream), kind), name,
                                              stop=stop, chunk_size=chunk_size,
                                              on_unfinished=on_unfinished, keep=keep)  # fmt: skip
                return
            data, head = head, None
        if not chunk:
            ended = True
        lines = splitter.feed(data)
        if lines:
            yield lines
        if ended:
            break
    if head:  # stopped while telling: the first bytes of a line (no magic holds a newline)
        splitter.feed(head)
    size = splitter.size
    tail = splitter.finish()
    if tail is not None:
        if ended:  # EOF: the writer is done, its last line is complete
            yield [tail]
        elif on_unfinished is not None:  # stopped: the writer may be in the middle of it
            on_unfinished(size)


class _Stopped(Exception):
    """``stop`` was set while :class:`_FdReader` waited for input."""


class _FdReader(io.RawIOBase):
    """A descriptor's bytes as a stream for a decompressor to read, each read waiting
    with ``select`` so that a stop is noticed while the writer is silent (it raises
    :class:`_Stopped`: a decompressor would take an end of file for a truncation)."""

    def __init__(self, fd: int, stop: threading.Event, poll_interval_s: float) -> None:
        super().__init__()
        self._fd = fd
        self._stop = stop
        self._poll_interval_s = poll_interval_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not select.select([self._fd], [], [], self._poll_interval_s)[0]:
            if self._stop.is_set():
                raise _Stopped
        return os.readv(self._fd, [buffer])


def _read_decompressed(
    source: Decompressed,
    name: str,
    *,
    stop: threading.Event,
    chunk_size: int = READ_CHUNK,
    on_unfinished: Callable[[int], None] | None = None,
    keep: int | None = None,
) -> LineBatches:
    """Yield the lines of a compressed input (closed at the end), as :func:`read_fd`
    does; a :data:`~streams.records.BOM` starting the decompressed bytes is dropped.
    There are no idle ticks: a compressed file is a finished log, and a decompressor
    cannot be asked what has come so far without waiting for it.

    At damage (a truncated download, bad data) it raises :class:`Damaged`, naming
    ``name`` and no byte, once the lines before it have been yielded; a line the
    damage cut short is not one (shipped, it would be a different line).
    """
    splitter = LineSplitter(True, keep)
    # read1: what has been decompressed so far (read would wait for chunk_size bytes).
    read = getattr(source.stream, "read1", source.stream.read)
    ended = False
    try:
        while not stop.is_set():
            try:
                chunk = read(chunk_size)
            except _Stopped:
                break
            except source.damaged:
                raise Damaged(name, source.kind) from None  # its message may quote bytes
            if not chunk:
                ended = True
                break
            lines = splitter.feed(chunk)
            if lines:
                yield lines
    finally:
        source.close()
    size = splitter.size
    tail = splitter.finish()
    if tail is not None:
        if ended:
            yield [tail]
        elif on_unfinished is not None:
            on_unfinished(size)


# --------------------------------------------------------------------------- shipping


@dataclass
class ShipResult:
    """What the broker acknowledged (lines, records, value bytes) plus failures."""

    lines: int = 0
    records: int = 0
    bytes: int = 0
    failed_records: int = 0
    failed_lines: int = 0
    seconds: float = 0.0
    #: Lines longer than ``max_line_bytes``, shipped cut (the worker dead-letters them).
    cut_lines: int = 0
    #: Unterminated lines left at a stop (follow, stdin), not shipped: the writer may
    #: have been in the middle of them.
    unfinished_lines: int = 0
    unfinished_bytes: int = 0
    #: Records sent again after the broker did not take them (an outage).
    resent_records: int = 0
    #: Shipping stopped before the end of the input: the broker took nothing through
    #: every retry (without --follow; a follower waits for it).
    gave_up: bool = False
    #: Shipping stopped at damage in a compressed input (a truncated download): what
    #: it is, naming the input (never its bytes); the lines before it are shipped.
    damaged: str = ""
    #: The signal (SIGINT, SIGTERM) that stopped the reading of an input that has an
    #: end (no --follow) before that end: the rest of it is not shipped. A follower is
    #: stopped that way as its normal end, and reports none.
    interrupted_by: int = 0

    @property
    def ok(self) -> bool:
        """True when every produced record was acknowledged."""
        return self.failed_records == 0


def available_compression() -> str | None:
    """Best compression both kafka-python (shipper) and aiokafka (Faust) can handle.

    Why both: records are consumed by Faust through aiokafka; a codec only the
    producer has would make the workers fail. Preference lz4 > zstd > gzip.

    >>> available_compression() in ("lz4", "zstd", "gzip")
    True
    """
    from kafka import codec as kcodec

    try:
        from aiokafka import codec as acodec
    except ImportError:  # pragma: no cover - aiokafka comes with faust
        acodec = kcodec
    if kcodec.has_lz4() and acodec.has_lz4():
        return "lz4"
    if kcodec.has_zstd() and acodec.has_zstd():
        return "zstd"
    return "gzip"


def checksums_in_c() -> bool:
    """Whether kafka-python computes record-batch checksums (CRC32C) with the C module
    ``crc32c``, a dependency: without it, in pure Python at about 3.7 MB/s, the shipper
    sent 4-11x fewer lines a second.

    >>> checksums_in_c()
    True
    """
    from kafka.record import util

    # kafka-python's own name for the C function (None without the module); a later
    # version without it reads as "not in C": a warning, never a failed shipment.
    return getattr(util, "crc32c_c", None) is not None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, received: list[int]) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``stop.set()`` (main thread only); ``received`` gets
    the signal numbers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _damage_ends_reading(result: ShipResult) -> Iterator[None]:
    """Damage in a compressed input ends the reading, as its end would: what was read
    before it is still shipped, and ``result.damaged`` says why it ended early."""
    try:
        yield
    except Damaged as error:
        result.damaged = str(error)  # reported once, by the summary


def _make_bar(progress: bool) -> Any:
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(unit=" lines", unit_scale=True, file=sys.stderr, dynamic_ncols=True)


def _close_producer(producer: Any, timeout_s: float) -> None:
    """Close kafka-python's producer within about ``timeout_s``, its errors suppressed.

    Its ``close()`` flushes first: with records the broker never acknowledged (a broker
    that stopped answering) that raises KafkaTimeoutError before the sender thread is
    stopped and the producer marked closed, and its ``__del__`` closed it again when it
    was collected: Python printed "Exception ignored in: KafkaProducer.__del__" and a
    traceback. Then the sender is stopped without sending (what it held is counted as
    not shipped) and the producer marked closed: nothing is left for ``__del__``."""
    try:
        producer.close(timeout=timeout_s)
    except Exception:
        with contextlib.suppress(Exception):
            sender = producer._sender  # kafka-python's own attributes: no public way
            sender.force_close()
            sender.join(timeout_s)
        with contextlib.suppress(Exception):
            producer._closed = True


def ship(
    source: str | Path,
    bootstrap: str,
    topic: str,
    *,
    lines_per_record: int = DEFAULT_LINES_PER_RECORD,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_line_bytes: int | None = DEFAULT_MAX_LINE_BYTES,
    compression: str | None = "auto",
    follow: bool = False,
    progress: bool = True,
    from_end: bool = False,
    poll_interval_s: float = 0.2,
    stop: threading.Event | None = None,
    timeout_s: float = 10.0,
    linger_ms: int = 20,
    on_progress: Callable[[ShipResult], None] | None = None,
    security: KafkaSecurity = PLAINTEXT,
    rotate_wait_s: float = DEFAULT_ROTATE_WAIT_S,
    retry_backoff_s: float = RETRY_BACKOFF_S,
) -> ShipResult:
    """Ship lines from ``source`` (a path, or ``"-"`` for stdin) to ``topic``.

    Returns the acknowledged counts after a final flush. A record the broker did not
    take for a reason that passes (an outage longer than the producer's own retries)
    is sent again after a back-off from ``retry_backoff_s`` (doubling, at most
    MAX_RETRY_BACKOFF_S), in order, and nothing new is read meanwhile: following, until
    it is taken or ``stop``; else for at most FILE_RETRIES rounds, and no longer once
    what was sent is unacknowledged after ``timeout_s``: shipping then stops
    (``gave_up``). Records still unacknowledged at the end count as failed (the
    command exits 3); so do records refused for good (too large). ``compression`` is
    ``"auto"`` (see :func:`available_compression`), a codec name, or None.
    ``max_line_bytes`` is the worker's ``input.max_line_bytes``: longer lines are
    shipped cut (see the module; None ships them whole). ``rotate_wait_s``: how long
    a file renamed away by rotation is still read after it last grew (follow mode).
    ``stop`` ends shipping from another thread; in the main thread SIGINT/SIGTERM
    do the same. The topic must exist (:class:`TopicNotFound` otherwise) because
    kafka-python's producer would auto-create it with the broker's defaults.
    A compressed source (gzip, bzip2 or xz, by its first bytes) is shipped
    decompressed; damage in it ends the reading, as its end would (``damaged``).
    Raises :class:`streams.admin.BrokerUnreachable` if the broker does not answer, and
    before any connection the OSError of a source that cannot be read, or the
    :class:`~streams.compressed.CompressedLogError` of a file compressed with zstd or
    followed (:func:`check_source`; for stdin, once its first bytes are read).
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, KafkaTimeoutError

    from streams.round_robin import RoundRobinPartitioner

    started = time.monotonic()
    if str(source) != "-":
        check_source(source, follow=follow)  # before any connection
    framer = Framer(lines_per_record, max_record_bytes, max_line_bytes)  # bad limits: now
    # A line is held at most cut, as shipped: an endless one does not fill the memory.
    keep = None if max_line_bytes is None else max_line_bytes + 1
    if topic not in describe_topics(bootstrap, [topic], timeout_s=timeout_s, security=security):
        raise TopicNotFound(topic, bootstrap)
    codec = available_compression() if compression == "auto" else compression
    if not checksums_in_c():
        log.warning("shipper: the crc32c module is missing, record checksums run in pure "
                    "Python: shipping is several times slower (pip install crc32c)")  # fmt: skip
    stop = stop or threading.Event()
    result = ShipResult()
    # The producer's callbacks run on its I/O thread: everything below under ``lock``.
    lock = threading.Lock()
    #: Records handed to the producer, by sequence number: (value, lines). An entry
    #: leaves on its acknowledgement or failure; what is left at the end was not
    #: acknowledged in time.
    in_flight: dict[int, tuple[bytes, int]] = {}
    #: Records that failed for a reason that passes (the broker away longer than the
    #: producer's own retries): sent again, in order, before anything new is read.
    to_resend: dict[int, tuple[bytes, int]] = {}
    numbers = itertools.count()
    closing = threading.Event()  # what the producer's close drops is no error to log

    def acked(number: int) -> Callable[[Any], None]:
        def cb(_meta: Any) -> None:
            with lock:
                entry = in_flight.pop(number, None)
                if entry is not None:
                    result.lines += entry[1]
                    result.records += 1
                    result.bytes += len(entry[0])

        return cb

    def failed(number: int) -> Callable[[Exception], None]:
        def eb(exc: Exception) -> None:
            with lock:
                entry = in_flight.pop(number, None)
                if entry is None:
                    return
                # Dropped by the producer's close (counted below), or failed for a
                # reason that passes: held for resending.
                if closing.is_set() or (isinstance(exc, KafkaError) and exc.retriable):
                    to_resend[number] = entry
                    return
                # Refused for good (e.g. too large): resending cannot help.
                result.failed_records += 1
                result.failed_lines += entry[1]
            log.error("shipper: a record of %d lines failed: %s", entry[1], type(exc).__name__)

        return eb

    def produce(number: int, record: bytes, n_lines: int) -> None:
        with lock:
            in_flight[number] = (record, n_lines)
        try:
            future = producer.send(topic, value=record)
        except KafkaError as exc:  # refused before sending (too large), or blocked too long
            failed(number)(exc)
            return
        future.add_callback(acked(number))
        future.add_errback(failed(number))

    def send(records: list[bytes]) -> None:
        for record in records:
            produce(next(numbers), record, count_lines(record))

    def deliver() -> bool:
        """Wait until the broker has every record sent so far; resend, in order and
        after a back-off, those that failed for a reason that passes. Reading waits
        meanwhile, so an outage costs a follower no line. Following, it waits until
        ``stop``; else it gives up after FILE_RETRIES rounds, or as soon as records
        are still unacknowledged after the timeout. True: nothing left to wait for."""
        delay = retry_backoff_s
        rounds = 0
        while True:
            with contextlib.suppress(KafkaTimeoutError):  # still in flight: looked at below
                producer.flush(timeout=timeout_s)
            with lock:
                again = sorted(to_resend.items())
                to_resend.clear()
                waiting = bool(in_flight)
            if not again and not waiting:
                return True
            out_of_rounds = not follow and (not again or rounds >= FILE_RETRIES)
            if stop.is_set() or out_of_rounds:
                with lock:
                    to_resend.update(again)  # counted as failed at the end
                return False
            if not again:  # the producer is still retrying them itself
                stop.wait(poll_interval_s)
                continue
            rounds += 1
            log.warning("shipper: the broker did not take %d records; resending them in "
                        "%.1f s (reading paused)", len(again), delay)  # fmt: skip
            if stop.wait(delay):
                with lock:
                    to_resend.update(again)
                return False
            delay = min(2 * delay, MAX_RETRY_BACKOFF_S)
            for number, (record, n_lines) in again:
                produce(number, record, n_lines)
            result.resent_records += len(again)

    producer = KafkaProducer(
        **kafka_python_settings(security),
        bootstrap_servers=bootstrap,
        client_id="logfog-shipper",
        acks="all",
        partitioner=RoundRobinPartitioner(),
        compression_type=codec,
        linger_ms=linger_ms,
        batch_size=1 << 20,
        max_request_size=max(8 << 20, 2 * max_record_bytes),
        max_block_ms=int(timeout_s * 1000),
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    bar = _make_bar(progress)

    def unfinished(size: int) -> None:
        result.unfinished_lines += 1
        result.unfinished_bytes += size

    signals: list[int] = []
    try:
        with _stop_on_signals(stop, signals):
            batches: LineBatches
            if str(source) == "-":
                batches = read_fd(sys.stdin.fileno(), stop=stop, poll_interval_s=poll_interval_s,
                                  on_unfinished=unfinished, keep=keep)  # fmt: skip
            else:
                batches = follow_file(
                    Path(source),
                    follow=follow,
                    stop=stop,
                    from_end=from_end,
                    poll_interval_s=poll_interval_s,
                    rotate_wait_s=rotate_wait_s,
                    on_unfinished=unfinished,
                    keep=keep,
                )
            with contextlib.closing(batches), _damage_ends_reading(result):
                for lines in batches:
                    if lines is None:  # idle: don't let a partial record wait forever
                        send(framer.flush())
                        if on_progress is not None:
                            on_progress(result)
                    else:
                        for line in lines:
                            send(framer.add(line))
                        if bar is not None:
                            bar.update(len(lines))
                    if to_resend and not deliver():
                        # Stopped during an outage, or (no --follow) out of retries: the
                        # rest of the input is not read.
                        result.gave_up = not stop.is_set()
                        break
            # The reading ended at a signal, not at the input's end (a signal after
            # it was read only waits less for acknowledgements).
            if signals and not follow and not result.damaged:
                result.interrupted_by = signals[0]
            if result.gave_up:
                for record in framer.flush():  # read, never sent: not shipped
                    result.failed_records += 1
                    result.failed_lines += count_lines(record)
            else:
                send(framer.flush())
                deliver()
    finally:
        closing.set()
        _close_producer(producer, timeout_s)
        if bar is not None:
            bar.close()
    with lock:  # never acknowledged (in time), or never resent: not shipped
        for _record, n_lines in [*in_flight.values(), *to_resend.values()]:
            result.failed_records += 1
            result.failed_lines += n_lines
        in_flight.clear()
        to_resend.clear()
    result.seconds = time.monotonic() - started
    result.cut_lines = framer.cut_lines
    log.debug(  # the command prints its summary; a log line would say it twice
        "shipper: %d lines in %d records (%d bytes) to %s; %d lines cut; %d records failed",
        result.lines,
        result.records,
        result.bytes,
        topic,
        result.cut_lines,
        result.failed_records,
    )
    return result
