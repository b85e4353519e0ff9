"""Following a log (streams.shipper.follow_file, read_fd): rotation, truncation, stop.

What matters: every line the writer finishes is shipped once and whole, in order; a
line the writer may still be writing is never shipped cut.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import streams.shipper as shipper
from streams.shipper import FILE_RETRIES, follow_file, read_fd
from tests.support.kafka_python import DOWN, OK, REFUSED, ScriptedProducer, use_producer

Step = Callable[[int], None]


def follow(
    path: Path, step: Step, *, ticks: int = 20, rotate_wait_s: float = 5.0
) -> tuple[list[bytes], list[int]]:
    """Lines ``follow_file`` yields while ``step(idle_tick)`` acts on each idle tick;
    stops after ``ticks`` idle ticks. Returns (lines, unfinished sizes)."""
    stop = threading.Event()
    got: list[bytes] = []
    unfinished: list[int] = []
    idle = 0
    for batch in follow_file(path, follow=True, stop=stop, poll_interval_s=0.01,
                             rotate_wait_s=rotate_wait_s, on_unfinished=unfinished.append):  # fmt: skip
        if batch is None:
            idle += 1
            step(idle)
            if idle >= ticks:
                stop.set()
            continue
        got.extend(batch)
    return got, unfinished


def test_follow_keeps_lines_written_to_the_rotated_file_after_the_new_one_appears(
    tmp_path: Path,
) -> None:
    """Rename rotation (logrotate's default `create`): the log is renamed, a new file is
    created, and only then is the writer told to reopen (postrotate). Until it does, it
    appends to the renamed file. follow_file used to switch as soon as the path named a
    new inode: it drained the old file once, shipped its unterminated tail as a whole
    line, and never read the old file again. The half line written at that moment was
    shipped cut in two (the first part as a line, the rest never), and every line the
    writer added to the old file before reopening was lost without a trace."""
    path = tmp_path / "access.log"
    writer = open(path, "ab", buffering=0)  # noqa: SIM115 - the web server's descriptor
    writer.write(b"one\ntw")  # mid-line when logrotate runs
    stop = threading.Event()
    got: list[bytes] = []
    lines = follow_file(path, follow=True, stop=stop, poll_interval_s=0.01)
    try:
        assert next(lines) == [b"one"]
        assert next(lines) is None  # idle at the end of the file
        path.rename(tmp_path / "access.log.1")  # logrotate: rename, then create
        path.write_bytes(b"")
        idle = 0
        for batch in lines:
            if batch is None:
                idle += 1
                if idle == 1:
                    writer.write(b"o\nthree\n")  # still the old descriptor (no reopen yet)
                    writer.close()
                    writer = open(path, "ab", buffering=0)  # noqa: SIM115 - reopened
                    writer.write(b"four\n")
                if idle >= 20:
                    stop.set()
                continue
            got.extend(batch)
    finally:
        writer.close()
    assert [b"one", *got] == [b"one", b"two", b"three", b"four"]


def test_a_rotated_files_unterminated_tail_is_shipped_once_its_writer_is_done(
    tmp_path: Path,
) -> None:
    """After the rotate wait the writer has moved on: the rotated file has ended, and
    its unterminated last line is a line (as at the end of a file without --follow)."""
    path = tmp_path / "access.log"
    path.write_bytes(b"a\nhalf")

    def rotate(idle: int) -> None:
        if idle == 1:
            path.rename(tmp_path / "access.log.1")
            path.write_bytes(b"b\n")

    got, unfinished = follow(path, rotate, ticks=60, rotate_wait_s=0.1)
    # The new file is not held back for the wait (raw records are unordered anyway).
    assert got == [b"a", b"b", b"half"] and unfinished == []


def test_stop_does_not_ship_a_line_without_its_newline(tmp_path: Path) -> None:
    """A stop used to ship the unterminated last line as a whole line: cut in two if
    the writer was in the middle of it. It is left out and its size reported."""
    path = tmp_path / "access.log"
    path.write_bytes(b"a\nb\nstill being writ")
    got, unfinished = follow(path, lambda idle: None, ticks=3)
    assert got == [b"a", b"b"] and unfinished == [len(b"still being writ")]


def test_copytruncate_joins_a_half_line_with_its_rest(tmp_path: Path) -> None:
    """The writer (O_APPEND) writes the rest of its line at the start of the truncated
    file: the pending half is kept, not shipped as a line of its own."""
    path = tmp_path / "access.log"
    path.write_bytes(b"a\nhal")

    def truncate(idle: int) -> None:
        if idle == 1:
            with open(path, "r+b") as f:
                f.truncate(0)
        if idle == 3:
            with open(path, "ab") as f:
                f.write(b"f\nc\n")

    got, unfinished = follow(path, truncate, ticks=10)
    assert got == [b"a", b"half", b"c"] and unfinished == []


def test_stdin_ships_its_last_line_at_eof_but_not_at_a_stop() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"x\ny")
        stop = threading.Event()
        unfinished: list[int] = []
        got: list[bytes] = []
        for batch in read_fd(read, stop=stop, poll_interval_s=0.01,
                             on_unfinished=unfinished.append):  # fmt: skip
            if batch is None:
                stop.set()
                continue
            got.extend(batch)
        assert got == [b"x"] and unfinished == [1]
        os.write(write, b"\nz")
        os.close(write)
        write = -1
        got = [x for b in read_fd(read, stop=threading.Event()) if b is not None for x in b]
        assert got == [b"", b"z"]  # the rest of the y line, then z: the input ended
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_stdin_drops_a_bom_at_its_start_only() -> None:
    """A UTF-8 byte order mark starting the input is no part of its first line (it made
    the line parse.bad_ip); read_fd drops it there and nowhere else (audit formats)."""
    read, write = os.pipe()
    try:
        os.write(write, b"\xef\xbb")  # the BOM in two reads
        os.write(write, b"\xbfx\n\xef\xbb\xbfy\n")
        os.close(write)
        write = -1
        got = [x for b in read_fd(read, stop=threading.Event(), chunk_size=2) if b for x in b]
        assert got == [b"x", b"\xef\xbb\xbfy"]
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_a_bom_starting_the_file_rotation_created_is_dropped(tmp_path: Path) -> None:
    """After rename rotation the new file is read from its start: its BOM too is no
    part of its first line."""
    path = tmp_path / "access.log"
    path.write_bytes(b"one\n")

    def rotate(tick: int) -> None:
        if tick == 1:
            path.rename(tmp_path / "access.log.1")
            path.write_bytes(b"\xef\xbb\xbftwo\n")

    lines, _ = follow(path, rotate, rotate_wait_s=0.05)
    assert lines == [b"one", b"two"]


def stop_after(ticks: int) -> tuple[threading.Event, Callable[[Any], None]]:
    """A stop event and an ``on_progress`` that sets it after ``ticks`` idle ticks."""
    stop = threading.Event()
    seen = {"n": 0}

    def progress(result: Any) -> None:
        seen["n"] += 1
        if seen["n"] >= ticks:
            stop.set()

    return stop, progress


def test_ship_counts_the_unterminated_line_left_at_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_producer(monkeypatch, ScriptedProducer)
    log = tmp_path / "access.log"
    log.write_bytes(b"a\nb\nhal")
    stop, progress = stop_after(3)
    result = shipper.ship(log, "127.0.0.1:9", "logs.raw", follow=True, progress=False,
                          poll_interval_s=0.01, stop=stop, on_progress=progress)  # fmt: skip
    assert ScriptedProducer.instances[-1].acked == [b"a\nb"]
    assert (result.lines, result.unfinished_lines, result.unfinished_bytes) == (2, 1, 3)
    assert result.ok


# --------------------------------------------------------------------------- outages


class OutageThenUp(ScriptedProducer):
    """The first three records expire (the broker was away longer than the delivery
    timeout), as a real producer's do; afterwards every record is acknowledged."""

    def outcome(self, n: int, value: bytes) -> str:
        return DOWN if n < 3 else OK


def test_a_following_shipper_does_not_drop_lines_during_a_broker_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker holds its batch through an outage ("no line is dead-lettered for an
    outage"); `logfog ship --follow` did not: a record the producer could not deliver
    (the broker was away longer than the delivery timeout) was counted as failed and
    shipping went on with the next lines. The lines are on disk, yet a long-running
    follower lost every line of the outage for good (the exit status 3 it would report
    came only when it stopped, and re-shipping the file duplicates everything else)."""
    use_producer(monkeypatch, OutageThenUp)
    log = tmp_path / "access.log"
    lines = [f"line {n}".encode() for n in range(1, 7)]
    log.write_bytes(b"".join(x + b"\n" for x in lines))
    stop, progress = stop_after(10)
    result = shipper.ship(log, "127.0.0.1:9", "logs.raw", lines_per_record=1, follow=True,
                          progress=False, poll_interval_s=0.01, stop=stop,
                          on_progress=progress)  # fmt: skip
    producer = ScriptedProducer.instances[-1]
    assert sorted(producer.acked) == sorted(lines), (
        f"lost: {sorted(set(lines) - set(producer.acked))}"
    )
    assert result.failed_lines == 0
    assert producer.acked[3:] == lines[:3]  # resent in order
    assert (result.lines, result.resent_records, result.ok) == (6, 3, True)


class DownFromTheFourth(ScriptedProducer):
    """Up for three records, then away for good."""

    def outcome(self, n: int, value: bytes) -> str:
        return OK if n < 3 else DOWN


def test_a_follower_stopped_during_an_outage_reads_no_further_and_counts_what_is_unsent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading pauses while the broker is away; the stop ends the retrying, and the
    records never taken are the failed ones (exit 3), nothing else."""
    use_producer(monkeypatch, DownFromTheFourth)
    monkeypatch.setattr(ScriptedProducer, "instances", [])  # this test's producer only
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(b"%d\n" % n for n in range(5)))
    stop = threading.Event()

    def stop_once_retried() -> None:
        # Not a fixed delay: under a loaded CI run 0.3 s passed before any retry.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stop.is_set():
            instances = ScriptedProducer.instances
            if instances and instances[-1].sends > 6:
                break
            time.sleep(0.01)
        stop.set()

    threading.Thread(target=stop_once_retried, daemon=True).start()
    result = shipper.ship(log, "127.0.0.1:9", "logs.raw", lines_per_record=1, follow=True,
                          progress=False, poll_interval_s=0.01, stop=stop,
                          retry_backoff_s=0.01)  # fmt: skip
    producer = ScriptedProducer.instances[-1]
    assert producer.acked == [b"0", b"1", b"2"] and producer.sends > 5  # retried meanwhile
    assert (result.lines, result.failed_records, result.failed_lines) == (3, 2, 2)
    assert not result.gave_up  # stopped, not given up


def test_without_follow_the_shipper_gives_up_after_its_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bounded retry, then shipping stops: the summary and exit 3 say so."""
    use_producer(monkeypatch, DownFromTheFourth)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(b"%d\n" % n for n in range(5)))
    result = shipper.ship(log, "127.0.0.1:9", "logs.raw", lines_per_record=1, progress=False,
                          retry_backoff_s=0.01)  # fmt: skip
    producer = ScriptedProducer.instances[-1]
    assert producer.sends == 5 + 2 * FILE_RETRIES
    assert (result.lines, result.failed_records, result.failed_lines) == (3, 2, 2)
    assert result.gave_up and result.resent_records == 2 * FILE_RETRIES


class RefusesTheSecond(ScriptedProducer):
    def outcome(self, n: int, value: bytes) -> str:
        return REFUSED if value == b"1" else OK


def test_a_record_refused_for_good_is_failed_at_once_and_shipping_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_producer(monkeypatch, RefusesTheSecond)
    log = tmp_path / "access.log"
    log.write_bytes(b"0\n1\n2\n")
    result = shipper.ship(log, "127.0.0.1:9", "logs.raw", lines_per_record=1, progress=False)
    assert ScriptedProducer.instances[-1].acked == [b"0", b"2"]
    assert (result.failed_records, result.resent_records, result.gave_up) == (1, 0, False)


def test_a_named_pipe_is_read_as_stdin_is(tmp_path: Path) -> None:
    """``logfog ship /dev/fd/3`` or a named pipe: a FIFO cannot be sought ("OSError:
    Illegal seek" before), so it is read as stdin is, to its writer's end, its last
    line shipped at EOF and a gzip stream decompressed."""
    import gzip

    for payload in (b"a\nb\nlast", gzip.compress(b"a\nb\nlast")):
        path = tmp_path / "fifo"
        os.mkfifo(path)
        writer = threading.Thread(target=path.write_bytes, args=(payload,))
        writer.start()
        batches = follow_file(path, follow=False, stop=threading.Event(), poll_interval_s=0.01)
        assert [line for batch in batches if batch for line in batch] == [b"a", b"b", b"last"]
        writer.join()
        path.unlink()


# --------------------------------------------------------------------------- long lines


class HeldAtMost(shipper.LineSplitter):
    """A LineSplitter that records the most bytes it ever held of a pending line."""

    most = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = super().feed(chunk)
        HeldAtMost.most = max(HeldAtMost.most, sum(map(len, self._pending)))
        return lines


@pytest.mark.parametrize("source", ["file", "stdin", "gzip"])
def test_an_endless_line_is_held_cut_not_whole(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that never ends its line (``/dev/zero``, a broken logger) held the whole
    line in memory until its newline: now at most ``max_line_bytes + 1`` bytes of it,
    shipped cut as before (the worker dead-letters it as too long), and an unterminated
    one left at a stop is counted at its whole size."""
    import gzip

    use_producer(monkeypatch, ScriptedProducer)
    monkeypatch.setattr(shipper, "LineSplitter", HeldAtMost)
    HeldAtMost.most = 0
    data = b"a\n" + b"z" * 3_000_000 + b"\nb\n"
    log = tmp_path / "access.log"
    log.write_bytes(gzip.compress(data) if source == "gzip" else data)
    if source == "stdin":
        monkeypatch.setattr("sys.stdin", open(log, "rb"))  # noqa: SIM115
    result = shipper.ship("-" if source == "stdin" else log, "127.0.0.1:9", "logs.raw",
                          progress=False, max_line_bytes=10)  # fmt: skip
    sent = [line for r in ScriptedProducer.instances[-1].acked for line in r.split(b"\n")]
    assert sent == [b"a", b"z" * 11, b"b"] and result.cut_lines == 1
    assert HeldAtMost.most <= 11


def test_an_endless_unterminated_line_at_a_stop_counts_its_whole_size(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n" + b"z" * 2_500_000)
    stop = threading.Event()
    unfinished: list[int] = []
    got: list[bytes] = []
    for batch in follow_file(log, follow=True, stop=stop, poll_interval_s=0.01, keep=11,
                             on_unfinished=unfinished.append):  # fmt: skip
        if batch is None:
            stop.set()
            continue
        got.extend(batch)
    assert got == [b"a"] and unfinished == [2_500_000]


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("follow", "signum"), [(False, signal.SIGINT), (False, signal.SIGTERM),
                                                (True, signal.SIGINT)])  # fmt: skip
def test_a_signal_before_the_end_of_the_input_is_reported_and_exits_128_plus_it(
    follow: bool, signum: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``logfog ship`` stopped by Ctrl-C or SIGTERM with input left unread exited 0, so
    ``logfog ship access.log.1.gz && rm access.log.1.gz`` removed a log it had shipped
    in part (a README audit). A follower ends that way normally: exit 0."""
    from streams import cli

    use_producer(monkeypatch, ScriptedProducer)
    read, write = os.pipe()
    os.write(write, b"a\nb\n")  # the writer stays: the input has not ended
    monkeypatch.setattr("sys.stdin", os.fdopen(read, "rb"))
    if follow:
        log = tmp_path / "access.log"
        log.write_bytes(b"a\nb\n")
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signum))
    timer.start()
    try:
        args = ["ship", str(log) if follow else "-", "--bootstrap", "127.0.0.1:9"]
        status = cli.main([*args, "--follow"] if follow else args)
    finally:
        timer.cancel()
        os.close(write)
    assert ScriptedProducer.instances[-1].acked == [b"a\nb"]
    assert status == (0 if follow else 128 + signum)


def test_ship_reads_the_default_config_when_it_exists_and_rotate_wait_needs_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every other command reads config/logfog.yaml by default; ship ignored it and
    shipped to 127.0.0.1:9092's logs.raw whatever the config said (a README audit)."""
    import yaml

    from streams import cli

    use_producer(monkeypatch, ScriptedProducer)
    monkeypatch.setattr(shipper, "describe_topics", lambda *a, **k: {"edge.raw": object()})
    config = yaml.safe_load(Path("config/logfog.yaml").read_text())
    config["kafka"]["raw"]["topic"] = "edge.raw"
    config["input"]["max_line_bytes"] = 3
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "logfog.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "access.log").write_bytes(b"a\nbcdef\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ship", "access.log", "--bootstrap", "127.0.0.1:9"]) == 0
    assert ScriptedProducer.instances[-1].acked == [b"a\nbcde"]  # cut to 3 + 1
    assert "to edge.raw" in capsys.readouterr().err
    assert cli.main(["ship", "access.log", "--rotate-wait", "1"]) == 2
    assert "--rotate-wait is for --follow" in capsys.readouterr().err
