"""Shipping a compressed log (streams.shipper with streams.compressed): rotated logs
(``access.log.1.gz``, ``.bz2``, ``.xz``) and ``zcat``'s input piped as it is.

``logfog ship`` shipped their compressed bytes as lines: garbage records, every one
parse.no_match in the worker. What matters: the lines shipped are the decompressed
file's, whatever it is named; a damaged one ships the lines before the damage and says
so, naming no byte of it; a compressed file is never followed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import streams.shipper as shipper
from streams.compressed import CompressedLogError, Damaged
from streams.records import BOM
from streams.shipper import check_source, follow_file, read_fd
from tests.support.kafka_python import ScriptedProducer, use_producer

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}
LINES = [b"203.0.113.%d - - [10/Oct/2000:13:55:36 -0700] \"GET /%d HTTP/1.1\" 200 5" % (n % 250, n)
         for n in range(3000)]  # fmt: skip
PLAIN = b"".join(line + (b"\r\n" if n % 2 else b"\n") for n, line in enumerate(LINES))


def lines_of(batches: Iterator[list[bytes] | None]) -> list[bytes]:
    return [line for batch in batches if batch is not None for line in batch]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("chunk_size", [7, 1 << 20])
def test_a_compressed_file_is_shipped_as_its_lines_whatever_its_name(
    tmp_path: Path, codec: str, chunk_size: int
) -> None:
    """Its first bytes decide, not its name; a BOM starting the decompressed log is no
    part of its first line, and an unterminated last line is a line, as in a plain file."""
    path = tmp_path / "access.log.1"
    path.write_bytes(CODECS[codec](BOM + PLAIN + b"last"))
    got = lines_of(follow_file(path, follow=False, stop=threading.Event(), chunk_size=chunk_size))
    assert got == [*LINES, b"last"]


def test_concatenated_gzip_files_are_one_log(tmp_path: Path) -> None:
    """``cat access.log.2.gz access.log.1.gz > both.gz``: gzip reads every member."""
    path = tmp_path / "both.gz"
    path.write_bytes(gzip.compress(b"a\nb\n") + gzip.compress(b"c\n"))
    assert lines_of(follow_file(path, follow=False, stop=threading.Event())) == [b"a", b"b", b"c"]


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_stdin_is_shipped_as_its_lines(codec: str) -> None:
    """``ssh host cat access.log.1.gz | logfog ship -``, the pipe giving a few bytes a
    read: the magic is told across reads, and no byte of it is lost."""
    read, write = os.pipe()
    data = CODECS[codec](BOM + b"".join(line + b"\n" for line in LINES[:300]))

    def writer() -> None:
        for i in range(0, len(data), 100):
            os.write(write, data[i : i + 100])
        os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got = lines_of(read_fd(read, stop=threading.Event(), poll_interval_s=0.01, chunk_size=1))
    finally:
        thread.join()
        os.close(read)
    assert got == LINES[:300]


@pytest.mark.parametrize(
    "data", [b"", b"\x1f", b"\x1f\n", b"\xfd7zX\n", b"BZ not bzip2\n", BOM + b"x\n"]
)
def test_stdin_that_only_starts_like_a_magic_is_shipped_as_it_is(data: bytes) -> None:
    read, write = os.pipe()
    for byte in data:  # one byte a read
        os.write(write, bytes([byte]))
    os.close(write)
    try:
        got = lines_of(read_fd(read, stop=threading.Event(), poll_interval_s=0.01, chunk_size=1))
    finally:
        os.close(read)
    assert got == data.removeprefix(BOM).splitlines()


def test_a_stop_is_noticed_while_a_compressed_stdin_is_silent() -> None:
    """A decompressor waits for its input: a stop must not wait for the writer. The
    line being written at the stop is not shipped, but counted."""
    read, write = os.pipe()
    compressor = zlib.compressobj(wbits=31)  # gzip, flushed: the rest is still to come
    os.write(write, compressor.compress(b"a\nb\nhal") + compressor.flush(zlib.Z_SYNC_FLUSH))
    stop = threading.Event()
    unfinished: list[int] = []
    got: list[bytes] = []
    try:
        for batch in read_fd(read, stop=stop, poll_interval_s=0.01,
                             on_unfinished=unfinished.append):  # fmt: skip
            assert batch is not None
            got.extend(batch)
            stop.set()  # the writer stays silent, its pipe open
    finally:
        os.close(read)
        os.close(write)
    assert got == [b"a", b"b"] and unfinished == [3]


@pytest.mark.parametrize("codec", CODECS)
def test_a_truncated_compressed_file_yields_the_lines_before_the_damage(
    tmp_path: Path, codec: str
) -> None:
    path = tmp_path / "access.log.1"
    compressed = CODECS[codec](PLAIN)
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    got: list[bytes] = []
    with pytest.raises(Damaged) as damaged:
        for batch in follow_file(path, follow=False, stop=threading.Event(), chunk_size=4096):
            got.extend(batch or [])
    assert str(damaged.value) == f"{path}: damaged or truncated {codec} data"
    assert damaged.value.__suppress_context__  # the decompressor's message may quote bytes
    assert got == LINES[: len(got)]  # whole lines only, in order


@pytest.mark.parametrize("follow", [False, True])
def test_a_file_compressed_with_zstd_is_refused_before_anything_connects(
    tmp_path: Path, follow: bool
) -> None:
    path = tmp_path / "access.log.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    with pytest.raises(CompressedLogError, match="compressed with zstd, which logfog cannot"):
        check_source(path, follow=follow)


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_file_cannot_be_followed(tmp_path: Path, codec: str) -> None:
    """It is rewritten whole, never appended to: following one could only ship it
    again. Refused before anything connects, and by follow_file itself."""
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(CODECS[codec](b"a\n"))
    check_source(path, follow=False)
    message = f"{path}: compressed with {codec}: a compressed file cannot be followed"
    with pytest.raises(CompressedLogError, match=message):
        check_source(path, follow=True)
    with pytest.raises(CompressedLogError, match=message):
        next(follow_file(path, follow=True, stop=threading.Event()))


def test_ship_counts_what_it_shipped_before_the_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_producer(monkeypatch, ScriptedProducer)
    path = tmp_path / "access.log.1.gz"
    compressed = gzip.compress(PLAIN)
    path.write_bytes(compressed[: len(compressed) // 2])
    result = shipper.ship(path, "127.0.0.1:9", "logs.raw", lines_per_record=100, progress=False)
    shipped = [line for record in ScriptedProducer.instances[-1].acked
               for line in record.split(b"\n")]  # fmt: skip
    assert 0 < len(shipped) < len(LINES) and shipped == LINES[: len(shipped)]
    assert (result.lines, result.failed_records, result.ok) == (len(shipped), 0, True)
    assert result.damaged == f"{path}: damaged or truncated gzip data"


def test_stdin_compressed_with_zstd_is_refused_once_its_first_bytes_are_read() -> None:
    read, write = os.pipe()
    os.write(write, b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    os.close(write)
    try:
        with pytest.raises(CompressedLogError, match=r"^stdin: compressed with zstd, .*\(\.\.\. \| "
                           r"zstd -dc \| logfog ship - \.\.\.\)$"):  # fmt: skip
            lines_of(read_fd(read, stop=threading.Event(), poll_interval_s=0.01))
    finally:
        os.close(read)
