"""Compressed logs (``access.log.2.gz``, ``zcat``'s input piped as it is): told by
their first bytes, never their name, and read decompressed with the standard library
(gzip, bzip2, xz). ``logfog anonymize`` and ``logfog ship`` both read them here: read as
they are, every line of one was parse.no_match (an audit), or shipped as garbage.

Messages name the file and the compression, never its bytes: a decompressor's own
message may quote them (``Not a gzipped file (b'...')``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Any, Final, cast

#: The magic bytes starting a compressed file. zstd is not in Python's standard library.
MAGIC: Final = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
                b"\x28\xb5\x2f\xfd": "zstd"}  # fmt: skip
#: The longest of them (xz's): what is sniffed.
MAGIC_BYTES: Final = max(map(len, MAGIC))


class CompressedLogError(Exception):
    """A compressed log that cannot be read as asked (zstd; a compressed file followed).
    The message names the file, never its bytes."""


class Damaged(CompressedLogError):
    """A compressed log that ends early (a truncated download) or holds bad data."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name}: damaged or truncated {kind} data")


def undecided(start: bytes) -> bool:
    """Whether ``start``, a stream's first bytes, may still grow into a magic (more must
    be read to tell).

    >>> undecided(b""), undecided(b"\\xfd7z"), undecided(b"\\x1f\\x8b"), undecided(b"1.2")
    (True, True, False, False)
    """
    return any(len(m) > len(start) and m.startswith(start) for m in MAGIC)


def kind_of(start: bytes) -> str | None:
    """The compression ``start`` (a stream's first bytes) names; None: not compressed.

    >>> kind_of(b"BZh91AY"), kind_of(b"\\x1f\\x8b\\x08"), kind_of(b"BZ"), kind_of(b"")
    ('bzip2', 'gzip', None, None)
    """
    return next((kind for magic, kind in MAGIC.items() if start.startswith(magic)), None)


def readable(start: bytes, name: str, command: str) -> str | None:
    """:func:`kind_of`, refusing a compression logfog cannot read (how to read it
    instead: ``logfog COMMAND -`` behind the decompressor).

    >>> readable(b"\\x28\\xb5\\x2f\\xfd", "a.zst", "ship")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.compressed.CompressedLogError: a.zst: ... (zstd -dc FILE | logfog ship - ...)
    """
    kind = kind_of(start)
    if kind != "zstd":
        return kind
    how = (
        f"zstd -dc FILE | logfog {command} - ..."
        if name != "stdin"
        else f"... | zstd -dc | logfog {command} - ..."
    )
    raise CompressedLogError(
        f"{name}: compressed with {kind}, which logfog cannot read: decompress it ({how})"
    )


class Replay(io.RawIOBase):
    """A stream that gives ``start`` (bytes already read from ``rest``) and then the
    rest of ``rest``, each read taking what ``rest`` has now (``read1``): what
    :func:`sniff` read of stdin is not lost, and ``tail -f log | logfog anonymize -``
    still shows each line as it comes. Closing it leaves ``rest`` open.

    >>> replay = io.BufferedReader(Replay(b"ab", io.BytesIO(b"c\\nd\\n")))
    >>> replay.read1(1), replay.read()
    (b'a', b'bc\\nd\\n')
    """

    def __init__(self, start: bytes, rest: IO[bytes] | io.RawIOBase) -> None:
        super().__init__()
        self._start = start
        self._read = getattr(rest, "read1", rest.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._start[: len(buffer)] if self._start else self._read(len(buffer))
        self._start = self._start[len(data) :]
        buffer[: len(data)] = data
        return len(data)


def sniff(stream: IO[bytes]) -> bytes:
    """The first bytes of a stream that cannot be peeked at (a pipe): read until they
    start a compression magic, can no longer start one, or the stream ends. A text log
    is not held back for bytes it may never send (a first line typed on a terminal).

    >>> sniff(io.BytesIO(b"\\x1f\\x8b\\x08rest")), sniff(io.BytesIO(b"x\\n"))
    (b'\\x1f\\x8b\\x08res', b'x\\n')
    """
    read = getattr(stream, "read1", stream.read)
    start = b""
    while undecided(start):
        more = read(MAGIC_BYTES - len(start))
        if not more:
            break
        start += more
    return start


@dataclass(frozen=True, slots=True)
class Decompressed:
    """A log to read: ``stream`` yields its lines' bytes; for a compressed file,
    ``file`` is the file itself (its position is the progress), ``kind`` its
    compression and ``damaged`` what a damaged or truncated one raises. Closing it
    never closes stdin (``stream`` reads it through :class:`Replay`)."""

    stream: IO[bytes]
    file: IO[bytes] | None = None
    kind: str = ""
    damaged: tuple[type[BaseException], ...] = ()

    def close(self) -> None:
        self.stream.close()
        if self.file is not None:
            self.file.close()


def decompressed(file: IO[bytes], kind: str | None) -> Decompressed:
    """``file`` (at its start) read through the decompressor of ``kind`` (from
    :func:`readable`; None: as it is).

    >>> import gzip
    >>> log = decompressed(io.BytesIO(gzip.compress(b"a\\n")), "gzip")
    >>> log.stream.read(), log.kind
    (b'a\\n', 'gzip')
    """
    if kind is None:
        return Decompressed(file)
    if kind == "gzip":
        import gzip
        import zlib

        stream = cast(IO[bytes], gzip.GzipFile(fileobj=file, mode="rb"))  # a BufferedIOBase
        return Decompressed(stream, file, kind, (EOFError, zlib.error, gzip.BadGzipFile))
    if kind == "bzip2":
        import bz2

        # bz2 reports bad data as a bare OSError ("Invalid data stream"): a failed read
        # of the file itself reads as damage too, and is, to whoever reads it.
        return Decompressed(bz2.BZ2File(file), file, kind, (EOFError, OSError))
    if kind == "xz":
        import lzma

        return Decompressed(lzma.LZMAFile(file), file, kind, (EOFError, lzma.LZMAError))
    raise ValueError(f"not a compression logfog reads: {kind!r}")  # readable() refused it
