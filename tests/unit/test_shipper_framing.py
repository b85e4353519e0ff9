"""Framing of log lines into Kafka record values (streams.shipper).

Why these matter: the pipeline counts lines exactly, so framing must be lossless
(join/split round trip), keep empty lines and invalid UTF-8 untouched, and respect
the size limits (an oversized line goes alone, never merged; cut only to the worker's
max_line_bytes + 1, so that the worker still dead-letters it as too long).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.shipper import (
    Framer,
    LineSplitter,
    count_lines,
    follow_file,
    frame_lines,
    strip_eol,
)

lines_st = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=60)


def test_one_line_per_record_is_identity() -> None:
    lines = [b"a", b"", b"\xff\xfe bad utf8", b"d"]
    assert list(frame_lines(lines, 1, 1000)) == lines


def test_batches_of_three_exact_records() -> None:
    lines = [str(i).encode() for i in range(7)]
    assert list(frame_lines(lines, 3, 1000)) == [b"0\n1\n2", b"3\n4\n5", b"6"]


def test_empty_lines_survive_and_are_counted() -> None:
    recs = list(frame_lines([b"", b"", b""], 2, 1000))
    assert recs == [b"\n", b""]
    assert sum(count_lines(r) for r in recs) == 3


def test_oversized_line_goes_alone() -> None:
    big = b"x" * 50
    recs = list(frame_lines([b"a", b"b", big, b"c"], 100, 10))
    assert recs == [b"a\nb", big, b"c"]


def test_size_limit_splits_before_exceeding() -> None:
    # 4-byte lines, joined: 4, 9, 14 -> max 10 allows two per record.
    recs = list(frame_lines([b"aaaa"] * 5, 100, 10))
    assert recs == [b"aaaa\naaaa"] * 2 + [b"aaaa"]


def test_framer_flush_emits_partial_once() -> None:
    f = Framer(10, 1000)
    assert f.add(b"a") == []
    assert f.pending_lines == 1
    assert f.flush() == [b"a"]
    assert f.flush() == []


@pytest.mark.parametrize(("n", "size"), [(0, 10), (1, 0)])
def test_framer_rejects_bad_limits(n: int, size: int) -> None:
    with pytest.raises(ValueError):
        Framer(n, size)


@given(lines=lines_st, per=st.integers(1, 10), max_bytes=st.integers(1, 120))
def test_framing_round_trip_and_limits(lines: list[bytes], per: int, max_bytes: int) -> None:
    recs = list(frame_lines(lines, per, max_bytes))
    back = [line for r in recs for line in r.split(b"\n")]
    assert back == lines
    for r in recs:
        n = count_lines(r)
        assert n <= per
        assert len(r) <= max_bytes or n == 1


def test_lines_over_max_line_bytes_are_cut_to_one_byte_more_and_counted() -> None:
    """Shipped whole, a line over ~1 MiB made a record Kafka refuses: lost, no dead
    letter. Cut to max_line_bytes + 1, the worker dead-letters it as parse.too_long."""
    f = Framer(10, 1 << 20, max_line_bytes=5)
    assert f.add(b"abc") == [] and f.add(b"x" * (2 << 20)) == [] and f.add(b"abcdef") == []
    assert f.add(b"12345") == []
    assert f.flush() == [b"abc\nxxxxxx\nabcdef\n12345"] and f.cut_lines == 2


def test_the_largest_max_line_bytes_a_config_allows_ships_a_cut_line_in_one_record() -> None:
    """input.max_line_bytes had no upper bound: above about 1 MiB the shipper shipped
    long lines whole, in records a default broker refuses ("not shipped", exit 3, no
    parse.too_long dead letter). At the config's limit, a cut line fits one record."""
    from streams.config import MAX_LINE_BYTES_LIMIT, validate
    from streams.shipper import DEFAULT_MAX_RECORD_BYTES

    refused = validate({"input": {"max_line_bytes": MAX_LINE_BYTES_LIMIT + 1}})
    assert any(e.startswith("input.max_line_bytes: must be at most") for e in refused)
    f = Framer(500, DEFAULT_MAX_RECORD_BYTES, max_line_bytes=MAX_LINE_BYTES_LIMIT)
    records = f.add(b"a") + f.add(b"x" * (2 << 20)) + f.add(b"b") + f.flush()
    assert f.cut_lines == 1 and max(map(len, records)) <= DEFAULT_MAX_RECORD_BYTES < 1 << 20
    assert [len(line) for r in records for line in r.split(b"\n")] == [
        1, MAX_LINE_BYTES_LIMIT + 1, 1]  # fmt: skip


@given(lines=lines_st, per=st.integers(1, 10), max_line=st.integers(0, 30))
def test_cutting_keeps_every_line_and_only_shortens_long_ones(
    lines: list[bytes], per: int, max_line: int
) -> None:
    framer = Framer(per, 120, max_line_bytes=max_line)
    recs = [r for line in lines for r in framer.add(line)] + framer.flush()
    back = [line for r in recs for line in r.split(b"\n")]
    assert len(back) == len(lines)
    for sent, line in zip(back, lines, strict=True):
        assert sent == (line if len(line) <= max_line else line[: max_line + 1])
    assert framer.cut_lines == sum(len(line) > max_line for line in lines)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"a\n", b"a"),
        (b"a\r\n", b"a"),
        (b"a", b"a"),
        (b"\n", b""),
        (b"a\r", b"a\r"),
        (b" \n", b" "),
    ],
)
def test_strip_eol(raw: bytes, want: bytes) -> None:
    assert strip_eol(raw) == want


@given(lines=lines_st, cut=st.integers(1, 7))
def test_splitter_any_chunking(lines: list[bytes], cut: int) -> None:
    lines = [line.rstrip(b"\r") for line in lines]
    data = b"".join(line + b"\r\n" for line in lines)
    s = LineSplitter()
    out: list[bytes] = []
    for i in range(0, len(data), cut):
        out.extend(s.feed(data[i : i + cut]))
    assert s.finish() is None
    assert out == lines


@given(
    data=st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\n")),
    cut=st.integers(1, 40),
    keep=st.integers(1, 30),
)
def test_a_bounded_splitter_holds_at_most_keep_bytes_and_cuts_only_what_it_held(
    data: bytes, cut: int, keep: int
) -> None:
    """The pending line never grows past ``keep`` (an endless line used up memory),
    every line still comes out, and a line differs from the unbounded splitter's only
    where its end came in a later read than its first ``keep + 1`` bytes: then it is
    its first ``keep`` bytes, a ``\r`` there kept (the line is too long either way)."""
    bounded, whole = LineSplitter(keep=keep), LineSplitter()
    out: list[bytes] = []
    want: list[bytes] = []
    for i in range(0, len(data), cut):
        out.extend(bounded.feed(data[i : i + cut]))
        want.extend(whole.feed(data[i : i + cut]))
        assert sum(map(len, bounded._pending)) <= keep
    last = bounded.finish()
    if (tail := whole.finish()) is not None:
        want.append(tail)
    out.extend([last] if last is not None else [])
    raw = data.split(b"\n")
    if raw[-1] == b"":  # after the last newline: no line
        raw.pop()
    assert len(out) == len(want) == len(raw)
    for got, line, unbounded in zip(out, raw, want, strict=True):
        assert got == unbounded or (len(line) > keep and got == line[:keep])


def test_an_endless_line_is_held_cut_and_its_size_counted() -> None:
    s = LineSplitter(keep=4)
    for _ in range(1000):
        assert s.feed(b"y" * 1000) == []
    assert s.size == 1_000_000 and sum(map(len, s._pending)) == 4
    assert s.feed(b"y\r\nok\r\n") == [b"yyyy", b"ok"]
    assert s.size == 0


def test_splitter_unterminated_last_line() -> None:
    s = LineSplitter()
    assert s.feed(b"a\nb") == [b"a"]
    assert s.finish() == b"b"


def test_follow_file_without_follow_reads_all(tmp_path: Path) -> None:
    p = tmp_path / "access.log"
    p.write_bytes(b"one\r\n\ntwo\n\xffthree")
    got = [
        line
        for batch in follow_file(p, follow=False, stop=threading.Event(), chunk_size=3)
        if batch is not None
        for line in batch
    ]
    assert got == [b"one", b"", b"two", b"\xffthree"]


def test_follow_waits_for_a_missing_file_and_reads_it_from_its_start(tmp_path: Path) -> None:
    """The docstring promised this; the first open() raised FileNotFoundError."""
    p = tmp_path / "later.log"
    stop = threading.Event()
    got: list[bytes] = []
    idle = 0
    for batch in follow_file(p, follow=True, stop=stop, from_end=True, poll_interval_s=0.01):
        if batch is None:
            idle += 1
            if idle == 5:
                p.write_bytes(b"first\nsecond\n")
            if len(got) == 2 or idle > 500:
                stop.set()
            continue
        got.extend(batch)
    assert got == [b"first", b"second"]  # from its start, although from_end was asked


def test_follow_ends_while_waiting_for_a_missing_file(tmp_path: Path) -> None:
    stop = threading.Event()
    batches = follow_file(tmp_path / "never.log", follow=True, stop=stop, poll_interval_s=0.01)
    assert next(batches) is None
    stop.set()
    assert list(batches) == []


def test_without_follow_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        next(follow_file(tmp_path / "none.log", follow=False, stop=threading.Event()))


BOM = b"\xef\xbb\xbf"
COMBINED = b'203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "curl/8"'


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 1 << 20])
def test_a_bom_starting_a_file_is_not_part_of_its_first_line(
    tmp_path: Path, chunk_size: int
) -> None:
    """A log written by a Windows tool starts with a UTF-8 byte order mark: it was
    shipped as the start of the first line, which the worker then rejected
    (parse.bad_ip: the address was "\\ufeff203.0.113.9"). Only the file's start is a
    BOM's place: one later is the line's own (audit formats, suspicion)."""
    p = tmp_path / "access.log"
    p.write_bytes(BOM + COMBINED + b"\n" + BOM + b"x\n")
    got = [
        line
        for batch in follow_file(p, follow=False, stop=threading.Event(), chunk_size=chunk_size)
        if batch is not None
        for line in batch
    ]
    assert got == [COMBINED, BOM + b"x"]


@given(lines=lines_st, cut=st.integers(1, 7))
def test_splitter_at_a_streams_start_drops_one_bom_whatever_the_chunks(
    lines: list[bytes], cut: int
) -> None:
    lines = [line.rstrip(b"\r") for line in lines]
    data = BOM + b"".join(line + b"\n" for line in lines)
    s = LineSplitter(at_start=True)
    out: list[bytes] = []
    for i in range(0, len(data), cut):
        out.extend(s.feed(data[i : i + cut]))
    assert s.finish() is None
    assert out == lines


@pytest.mark.parametrize("data", [b"\xef", b"\xef\xbb", b"\xef\xbbx", b"\xefx\n", b"x"])
def test_bytes_at_a_streams_start_that_are_no_bom_are_kept(data: bytes) -> None:
    s = LineSplitter(at_start=True)
    out = [*s.feed(data[:1]), *s.feed(data[1:])]
    tail = s.finish()
    assert [*out, *([tail] if tail is not None else [])] == [data.rstrip(b"\n")]
