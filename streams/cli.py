"""The ``logfog`` command. Every expected failure is one clear line and exit status 2.

Subcommands that need Kafka import their modules lazily, so ``logfog anonymize`` and
``logfog check-config`` start fast and work without a broker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import resource
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, cast

import orjson

from streams import __version__
from streams.compressed import (
    MAGIC_BYTES,
    CompressedLogError,
    Damaged,
    Decompressed,
    Replay,
    decompressed,
    readable,
    sniff,
)
from streams.records import without_bom

EXIT_USAGE = 2
DEFAULT_CONFIG = "config/logfog.yaml"
CONFIG_HELP = "config file, YAML or TOML (default: %(default)s, from the current directory)"
#: --loglevel of the worker and aggregator: what Faust (and logging) accept, checked by
#: argparse (a bad one was a TypeError stack from Faust's logging setup, exit 1).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
EXIT_NOT_SHIPPED = 3  # logfog ship: the broker did not acknowledge every record
#: Bytes ``logfog anonymize`` reads at a time: about 2,000 log lines, a batch.
READ_BYTES = 1 << 19
#: The rejection records' name on stdout and in --out (config refuses it as a destination).
REJECTED = "rejected"  # in streams.config.RESERVED_DESTINATIONS
_REJECTED_PREFIX = b'{"destination":"rejected","event":'


class UserError(Exception):
    """An expected failure: printed as one line, no traceback."""


class Terminated(BaseException):
    """SIGTERM during ``logfog anonymize``: it stops as on Ctrl-C (its temporary
    outputs removed), with exit status 143. A BaseException, like KeyboardInterrupt:
    the pipeline's ``except Exception`` (a poison line) must not take it for a bug."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _expected_errors() -> tuple[type[BaseException], ...]:
    from streams.config import ConfigError
    from streams.enrich.geo import GeoDatabaseError
    from streams.keys import KeyError_
    from streams.keyshare import KeyShareError
    from streams.parse import FormatError
    from streams.security import KafkaSecurityError

    errors: list[type[BaseException]] = [
        ConfigError,
        KafkaSecurityError,
        GeoDatabaseError,
        KeyError_,
        KeyShareError,
        FormatError,
        UserError,
        CompressedLogError,  # zstd; damaged; logfog ship --follow of a compressed file
        FileNotFoundError,  # e.g. logfog ship FILE without --follow
        IsADirectoryError,  # logfog ship DIR
        PermissionError,  # logfog ship of a file we may not read
    ]
    try:
        # BrokerUnreachable, TopicNotFound (ship), TopicPolicyError, create failures...
        from streams.admin import AdminError

        errors.append(AdminError)
    except ImportError:  # pragma: no cover - kafka extras missing
        pass
    return tuple(errors)


class LineReader:
    r"""The lines of a binary stream in batches, without their line ends (``\n`` or
    ``\r\n``; an unterminated last line as it is), bytes as they are (decoding is the
    parser's job).

    A line longer than ``max_bytes`` is cut to ``max_bytes + 1`` bytes (still too
    long: one ``parse.too_long``, as ``logfog ship`` cuts it) and the rest of it is
    read and thrown away: a line is never held whole (``/dev/zero`` used up memory).
    Splitting blocks is also faster than reading line by line.

    >>> import io
    >>> r = LineReader(io.BytesIO(b"a\r\n\n" + b"x" * 9 + b"\r\nb\r"), max_bytes=3)
    >>> r.batch()
    ([b'a', b'', b'xxxx'], 17)
    >>> r.batch(), r.batch()
    (([b'b\r'], 0), ([], 0))
    >>> r = LineReader(io.BytesIO(b"x" * 9 + b"\nab\n"), max_bytes=3, block=4)
    >>> r.batch(), r.batch()  # the line's end is three blocks on
    (([b'xxxx'], 12), ([b'ab'], 1))

    A byte order mark starting the stream is removed first (a long first line after
    it is still cut to ``max_bytes + 1``, so still too long):

    >>> LineReader(io.BytesIO(b"\xef\xbb\xbf" + b"x" * 9), max_bytes=3).batch()
    ([b'xxxx'], 12)

    however the reads cut it (a pipe's ``read1`` may give a byte at a time):

    >>> LineReader(io.BytesIO(b"\xef\xbb\xbf" + b"x" * 9 + b"\ny"), max_bytes=3, block=1).batch()
    ([b'xxxx'], 13)
    >>> LineReader(io.BytesIO(b"\xef\xbb"), max_bytes=3, block=1).batch()  # no BOM: a line
    ([b'\xef\xbb'], 2)
    """

    def __init__(self, source: IO[bytes], max_bytes: int, block: int = READ_BYTES) -> None:
        # read1: what a pipe has now, up to a block, so that "tail -f access.log |
        # logfog anonymize -" shows each line as it comes (read waits for a full block).
        self._read = getattr(source, "read1", source.read)
        self._block = block
        self._keep = max_bytes + 1
        self._tail = b""  # the start of a line whose end is not read yet
        self._cut = False  # the tail was cut: the rest of its line is thrown away
        #: The stream's first bytes while they may still be a BOM (None: past them).
        self._head: bytes | None = b""

    def batch(self) -> tuple[list[bytes], int]:
        """The next lines (none at the end of the stream) and the bytes read for them."""
        keep = self._keep
        done = 0
        while True:
            block = self._read(self._block)
            if not block:
                if self._head:  # the stream was a BOM's first bytes: they are its line
                    self._tail, self._head = self._head[:keep], None
                lines = [self._tail] if self._tail else []
                self._tail, self._cut = b"", False
                return lines, done
            done += len(block)
            if self._head is not None:  # a BOM starting the stream is no part of its first
                # line, nor of its length: removed before a long line is cut (a review),
                # and held for while a pipe's reads give it in pieces
                start = without_bom(self._head + block)
                if start is None:
                    self._head += block
                    continue
                block, self._head = start, None
            lines = block.split(b"\n")
            tail = lines.pop()
            if not lines:  # no line ends here
                if not self._cut:
                    self._tail += tail
                    self._cut = len(self._tail) > keep
                    self._tail = self._tail[:keep]
                continue
            if not self._cut:
                lines[0] = self._tail + lines[0]
            if b"\r\n" in block or lines[0].endswith(b"\r"):
                lines = [x[:-1] if x.endswith(b"\r") else x for x in lines]
            if self._cut:  # a line cut in an earlier block (cut, a \r is its own)
                lines[0] = self._tail
            if max(map(len, lines)) > keep:
                lines = [x[:keep] for x in lines]
            self._tail, self._cut = tail[:keep], len(tail) > keep
            return lines, done


def _open_input(path: str) -> Decompressed:
    """stdin, or the file at ``path``, decompressed when it starts as a gzip, bzip2 or
    xz file does (``access.log.2.gz``, ``zcat``'s input piped as it is), whatever its
    name. Named "stdin" in messages."""
    if path == "-":
        try:
            start = sniff(sys.stdin.buffer)
        except OSError as error:
            raise UserError(f"stdin: {error.strerror}") from None
        kind = readable(start, "stdin", "anonymize")
        # Buffered: read1 and peek over the replayed bytes, as a file opened with open().
        replayed = io.BufferedReader(Replay(start, sys.stdin.buffer))
        return decompressed(cast(IO[bytes], replayed), kind)
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by Decompressed.close
    except OSError as error:
        raise UserError(f"{path}: {error.strerror}") from None
    try:
        kind = readable(file.peek(MAGIC_BYTES)[:MAGIC_BYTES], path, "anonymize")
    except OSError as error:
        file.close()
        raise UserError(f"{path}: {error.strerror}") from None
    except CompressedLogError:
        file.close()
        raise
    return decompressed(file, kind)


def _load_pipeline(config_path: str) -> Any:
    from streams.config import load_file
    from streams.pipeline import Pipeline

    config, warnings = load_file(config_path)
    for warning in warnings:
        logging.getLogger("logfog").warning("%s", warning, extra={"event": "config.warning"})
    return Pipeline.from_normalized(config)


def cmd_anonymize(args: argparse.Namespace) -> int:
    # Killed by SIGTERM (kill, a container stopped), a run left its temporary outputs.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _anonymize(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _anonymize(args: argparse.Namespace) -> int:
    from streams.gctune import tune_for_throughput
    from streams.pipeline import dead_letter

    pipeline = _load_pipeline(args.config)
    tune_for_throughput()
    names = pipeline.names
    public = pipeline.public_names  # the internal aggregation input is not output
    if args.only and args.only not in (*public, REJECTED):
        raise UserError(
            f"--only: no destination {args.only!r} (have: {', '.join((*public, REJECTED))})"
        )
    sinks: dict[str, IO[bytes]] = {}
    rejected_sink: IO[bytes] | None = None
    internal = len(public) < len(names)
    # --only with --out: only DIR/<only>.ndjson (no aggregates, no other destination).
    aggregates = _FileAggregates(pipeline) if args.out and internal and not args.only else None
    log = _open_input(args.file)  # a missing input leaves no empty outputs behind
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():  # mkdir said only "File exists"
            raise UserError(f"--out: {out_dir}: not a directory (--out names a directory "
                            "for one file per destination)")  # fmt: skip
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--out: {_os_error(error)}") from None
    if args.summary_json:
        # Checked before the run (it may be in --out), not after all output was written.
        _check_writable(Path(args.summary_json), "--summary-json")
    outputs = _AtomicOutputs()
    if out_dir is not None:
        try:
            for name in public:
                if not args.only or args.only == name:
                    sinks[name] = outputs.open(out_dir / f"{name}.ndjson")
            if not args.only or args.only == REJECTED:
                rejected_sink = outputs.open(out_dir / "rejected.ndjson")
            if aggregates is not None:
                sinks["aggregates"] = outputs.open(out_dir / "aggregates.ndjson")
        except BaseException as error:  # a file we may not write, Ctrl-C, SIGTERM
            outputs.discard()
            if isinstance(error, OSError):
                raise UserError(f"--out: {_os_error(error)}") from None
            raise
    write_out = _stdout_writer()
    total = None if args.file == "-" else os.path.getsize(args.file)
    progress = _progress(total, enabled=sys.stderr.isatty() and not args.quiet)
    started = time.perf_counter()
    out = pipeline.new_output()
    reader = LineReader(log.stream, pipeline.config["input"]["max_line_bytes"])
    # Compressed, the bytes read outgrow the file's size: its position is the progress.
    position = log.file.tell if log.file is not None and log.file.seekable() else None
    try:
        while True:
            try:
                batch, read = reader.batch()
            except log.damaged:  # a truncated download: EOFError (messages may quote bytes)
                raise Damaged("stdin" if args.file == "-" else args.file, log.kind) from None
            if not batch:
                break
            pipeline.process_lines(batch, out, first_line=pipeline.stats.lines + 1)
            pipeline.count_published(out)
            for name, events in zip(names, out.per_destination, strict=True):
                if name not in public:
                    if aggregates is not None:
                        sinks["aggregates"].write(aggregates.add(events))
                elif args.out:
                    if name in sinks:  # not with --only another name
                        sinks[name].write(b"".join([e[1] + b"\n" for e in events]))
                elif not args.only or args.only == name:
                    if args.only:
                        write_out(b"".join([e[1] + b"\n" for e in events]))
                    else:
                        prefix = b'{"destination":' + orjson.dumps(name) + b',"event":'
                        write_out(b"".join([prefix + e[1] + b"}\n" for e in events]))
            if rejected_sink is not None:
                rejected_sink.write(b"".join(dead_letter(r) + b"\n" for r in out.rejections))
            elif args.only == REJECTED:
                write_out(b"".join(dead_letter(r) + b"\n" for r in out.rejections))
            elif not args.only:
                write_out(b"".join(_REJECTED_PREFIX + dead_letter(r) + b"}\n"
                                   for r in out.rejections))  # fmt: skip
            if progress is not None:  # the bytes read, line ends as they were (CRLF: 2)
                progress.update(read if position is None else position() - progress.n)
            out.clear()
        if aggregates is not None:
            sinks["aggregates"].write(aggregates.finish())
        # Closing writes what is still buffered (a small run: everything), so a full
        # disk may show only here: inside the try, like any other write.
        outputs.commit()
    except BrokenPipeError:
        raise
    except OSError as error:  # a full disk, a file removed under us: not a bug of ours
        raise UserError(f"anonymize: {_os_error(error)}") from None
    finally:
        outputs.discard()  # after an error: no partial file under a final name
        if progress is not None:
            progress.close()
        log.close()
    elapsed = time.perf_counter() - started
    stats = pipeline.stats.as_dict()
    # The aggregation input is internal: its rows are not output (aggregates.ndjson is).
    # With --only, the other destinations' events were made, not written: not published.
    written = [n for n in public if not args.only or args.only == n]
    stats["published"] = {n: stats["published"].get(n, 0) for n in written}  # 0s too
    summary = {**stats, "seconds": round(elapsed, 3),
               "lines_per_second": round(pipeline.stats.lines / elapsed) if elapsed else None,
               "peak_rss_mb": _peak_rss_mb()}  # fmt: skip
    if aggregates is not None:
        summary["aggregates_late"] = aggregates.late
    if not args.quiet:
        _print_summary(summary)
    if args.summary_json:
        summary_file = _AtomicOutputs()
        try:
            summary_file.open(Path(args.summary_json)).write(
                orjson.dumps(summary, option=orjson.OPT_INDENT_2)
            )
            summary_file.commit()
        except OSError as error:
            raise UserError(f"--summary-json: {_os_error(error)}") from None
        finally:
            summary_file.discard()
    return 0


class _AtomicOutputs:
    """Output files written under temporary names in their own directory and renamed
    to their names only once every one of them was written and closed: an error (a
    full disk, Ctrl-C) leaves no partial file under a final name, and the files of an
    earlier run as they were. The temporary files honour the umask, like open()."""

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path, IO[bytes]]] = []  # (final, temporary, file)

    def open(self, final: Path) -> IO[bytes]:
        # A symlink is followed (renaming over it would replace the link, not write its
        # target); a path that exists and is no regular file (/dev/stdout, a pipe) is
        # written in place: nothing can be renamed over it.
        target = Path(os.path.realpath(final))
        try:
            if target.exists() and not target.is_file():
                file = open(target, "wb")  # noqa: SIM115 - closed by commit or discard
                self._files.append((target, target, file))
                return file
            temporary = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
            file = open(temporary, "xb")  # noqa: SIM115 - closed by commit or discard
        except OSError as error:  # name the file the user asked for, not ours
            raise OSError(error.errno, error.strerror, str(final)) from None
        self._files.append((target, temporary, file))
        return file

    def commit(self) -> None:
        """Close every file (a full disk may show only now), then rename each."""
        for _final, _temporary, file in self._files:
            file.close()
        while self._files:
            final, temporary, _file = self._files[0]
            if temporary != final:
                os.replace(temporary, final)
            self._files.pop(0)

    def discard(self) -> None:
        """Close and remove every file not committed; quietly (an error is reported)."""
        for final, temporary, file in self._files:
            with contextlib.suppress(OSError):
                file.close()
            if temporary != final:  # never a device or pipe written in place
                with contextlib.suppress(OSError):
                    temporary.unlink()
        self._files.clear()


def _os_error(error: OSError) -> str:
    """``path: reason`` of an OSError, without Python's ``[Errno N]`` noise."""
    reason = error.strerror or type(error).__name__
    return f"{error.filename}: {reason}" if error.filename is not None else reason


def _check_writable(path: Path, option: str) -> None:
    """Fail now, with one line, if ``path`` cannot be written when the run ends: a
    regular file is written beside it and renamed over it (its directory must be
    writable), anything else that exists (a device, a pipe) in place."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise UserError(f"{option}: {path}: is a directory")
    if not target.parent.is_dir():
        raise UserError(f"{option}: {target.parent}: no such directory")
    in_place = target.exists() and not target.is_file()
    if not os.access(target if in_place else target.parent, os.W_OK):
        raise UserError(f"{option}: {path}: permission denied")


class _FileAggregates:
    """The worker's aggregation, in process, for a file: one partition, all windows
    closed at the end of input. Writes the same k-gated rows the worker publishes."""

    def __init__(self, pipeline: Any) -> None:
        from streams.aggregate.runtime import AggregationRuntime, specs_from_config

        self._runtime = AggregationRuntime(
            specs_from_config(pipeline.config["aggregates"]), partitions=1, snapshot_interval=1e9,
            layout=pipeline.aggregate_layout,
        )  # fmt: skip
        self._aggregator = self._runtime.aggregator(0, lambda key: None)
        self._time_at = self._aggregator.layout.index("time")
        self._offset = 0
        self._max_time = 0

    def add(self, events: list[Any]) -> bytes:
        time_at = self._time_at
        for _key, value, _ts in events:
            # Decoded from the bytes, as the worker's aggregation stage reads them.
            row = orjson.loads(value)
            self._offset += 1
            self._aggregator.add_rows((row,), self._offset)
            self._max_time = max(self._max_time, int(row[time_at] or 0))
        return self._rows()

    def finish(self) -> bytes:
        self._aggregator.advance_to(self._max_time + 10 * 86400)
        return self._rows()

    @property
    def late(self) -> int:
        """Events left out of every aggregate as late: dated more than
        ``aggregates.allowed_lateness`` before newer lines already read (a log out of
        time order, or two concatenated)."""
        return int(self._runtime.merger.stats["late"])

    def _rows(self) -> bytes:
        rows = []
        for _p, partial in self._runtime.close_ready():
            rows.extend(self._runtime.merge(partial))
        return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="anonymizing", file=sys.stderr)


def _print_summary(summary: dict[str, Any]) -> None:
    err = sys.stderr
    print(f"lines read     {summary['lines']:>12,}", file=err)
    for name, count in summary["published"].items():
        print(f"published      {count:>12,}  {name}", file=err)
    rejected = summary["rejected"]
    print(f"rejected       {sum(rejected.values()):>12,}", file=err)
    for reason, count in sorted(rejected.items()):
        print(f"{'':15}{count:>12,}  {reason}", file=err)  # as the published lines
    leaks = summary["leaks_removed"]
    print(f"leaks removed  {sum(leaks.values()):>12,}" + (f"  {leaks}" if leaks else ""), file=err)
    if summary["pseudonyms_empty"]:
        # Key destroyed (line older than its epoch + grace) or time in the future.
        print(f"no pseudonym   {summary['pseudonyms_empty']:>12,}  (published as null: "
              "key destroyed, or time in the future)", file=err)  # fmt: skip
    if summary.get("aggregates_late"):
        print(f"late for aggs  {summary['aggregates_late']:>12,}  (left out of every "
              "aggregate: dated more than aggregates.allowed_lateness before lines read "
              "earlier; sort the log by time)", file=err)  # fmt: skip
    if summary["invalid_utf8_replaced"]:
        print(f"bad UTF-8 fixed{summary['invalid_utf8_replaced']:>12,}", file=err)
    rate = summary["lines_per_second"]
    print(f"lines/s        {rate or 0:>12,}  ({summary['seconds']} s, peak RSS "
          f"{summary['peak_rss_mb']} MB)", file=err)  # fmt: skip


def cmd_check_config(args: argparse.Namespace) -> int:
    from streams.config import AGGREGATE_INPUT, ConfigError, load_file

    try:
        config, warnings = load_file(args.config)
    except ConfigError as error:
        # The warnings too, after the errors: whoever fixes the errors wants everything
        # at once, not a second round for the warnings. Exit 2 still.
        print(f"logfog: {error}", file=sys.stderr)
        for warning in error.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_USAGE
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    dests = ", ".join(
        # The aggregation input is logfog's own stream, not a destination the config
        # names: said so, rather than by its reserved name "_aggregate".
        f"aggregation input -> {d['topic']} ({len(d['fields'])} fields, internal)"
        if n == AGGREGATE_INPUT
        else f"{n} -> {d['topic']} ({len(d['fields'])} field{'' if len(d['fields']) == 1 else 's'})"
        for n, d in config["destinations"].items()
    )
    _write_out("check-config", f"{args.config}: OK: {dests}\n")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from streams.config import json_schema, reference_markdown

    if args.markdown:
        _write_out("schema", reference_markdown())
    else:
        _write_out("schema", orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from streams.keys import generate_key

    _write_out("keygen", generate_key() + "\n")
    return 0


def _write_out(command: str, text: str | bytes) -> None:
    """``text`` on stdout, now: a failure (``keygen > keyfile`` on a full disk) is the
    command's, one line. Printed, it was a traceback and exit 1, or an "Exception
    ignored" and exit 120 when stdout was flushed at exit, after a "success"."""
    out = sys.stdout
    data = text.encode(out.encoding, out.errors or "strict") if isinstance(text, str) else text
    try:
        _stdout_writer()(data)
    except BrokenPipeError:
        raise
    except OSError as error:
        raise UserError(f"{command}: stdout: {_os_error(error)}") from None


def _stdout_writer() -> Callable[[bytes], object]:
    """A function writing bytes to stdout whole and at once, raising what failed.

    Not through ``sys.stdout.buffer``: buffered, what is left when the command ends is
    written at exit, where a failure cannot be the command's; unbuffered (``python -u``,
    PYTHONUNBUFFERED=1 as in deploy/Dockerfile) it is a raw file, whose write() may
    write a part (a nearly full disk) and say so only in the count it returns.
    """
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # no file (a test's capture): written as it is
        return sys.stdout.buffer.write

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


def _bootstrap(args: argparse.Namespace, config: dict[str, Any] | None) -> str:
    if getattr(args, "bootstrap", None):
        return str(args.bootstrap)
    if os.environ.get("LOGFOG_BOOTSTRAP"):
        return os.environ["LOGFOG_BOOTSTRAP"]
    return str(config["kafka"]["bootstrap"]) if config else "127.0.0.1:9092"


def cmd_topics(args: argparse.Namespace) -> int:
    """``create`` (idempotent; ``--fix`` sets retention/segment/cleanup configs of
    existing topics) or ``verify`` (creates nothing). Exit 2 when a topic is missing
    (verify) or would keep records longer than the config declares."""
    from streams.admin import MISSING_VERIFY, TopicPolicyError, ensure_topics_detailed
    from streams.config import load_file
    from streams.security import from_config
    from streams.topics import topic_specs

    config, _ = load_file(args.config)
    bootstrap = _bootstrap(args, config)
    outcomes = ensure_topics_detailed(
        bootstrap, topic_specs(config), create=args.action == "create",
        fix=args.fix, security=from_config(config), missing_hint=MISSING_VERIFY,
    )  # fmt: skip
    for outcome in outcomes:
        print(outcome.detail)
    bad = [o.name for o in outcomes if o.status == "violates"]
    if bad:
        raise TopicPolicyError([f"{', '.join(bad)} would keep records longer than declared"],
                               fixable=not args.fix)  # fmt: skip
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from streams.config import load_file
    from streams.security import PLAINTEXT, from_config
    from streams.shipper import DEFAULT_MAX_LINE_BYTES, DEFAULT_ROTATE_WAIT_S, ship

    if args.rotate_wait is not None and not args.follow:
        raise UserError("--rotate-wait is for --follow (how long a rotated file is read on)")
    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
    config = load_file(path)[0] if path else None
    topic = args.topic or (config["kafka"]["raw"]["topic"] if config else "logs.raw")
    max_line = config["input"]["max_line_bytes"] if config else DEFAULT_MAX_LINE_BYTES
    result = ship(
        args.file, _bootstrap(args, config), topic, lines_per_record=args.lines_per_record,
        follow=args.follow, progress=sys.stderr.isatty(), max_line_bytes=max_line,
        compression=None if args.compression == "none" else args.compression,
        security=from_config(config) if config else PLAINTEXT,
        rotate_wait_s=DEFAULT_ROTATE_WAIT_S if args.rotate_wait is None else args.rotate_wait,
    )  # fmt: skip
    print(ship_summary(result, topic, max_line), file=sys.stderr)
    if result.damaged:  # bad input, like a missing file: shipping it again cannot help
        return EXIT_USAGE
    if result.interrupted_by:  # `ship x && rm x` must not remove a log shipped in part
        return 128 + result.interrupted_by
    return EXIT_NOT_SHIPPED if result.failed_records or result.gave_up else 0


def ship_summary(result: Any, topic: str, max_line_bytes: int) -> str:
    """What ``logfog ship`` prints: what the broker acknowledged, lines shipped cut,
    and what it did not acknowledge.

    >>> from streams.shipper import ShipResult
    >>> print(ship_summary(ShipResult(lines=9, records=2, cut_lines=1, failed_records=1,
    ...                               failed_lines=4), "logs.raw", 65536))
    shipped 9 lines in 2 records to logs.raw
    1 line over 65,536 bytes shipped cut (the worker dead-letters it as parse.too_long)
    error: 1 record (4 lines) not acknowledged by the broker: not shipped
    >>> print(ship_summary(ShipResult(lines=300_000, records=600, seconds=1.7), "raw", 65536))
    shipped 300,000 lines in 600 records to raw in 1.7 s (176,471 lines/s)
    >>> print(ship_summary(ShipResult(lines=2, records=1, interrupted_by=2), "raw", 65536))
    shipped 2 lines in 1 record to raw
    error: stopped by SIGINT before the end of the input: the rest of it is not shipped
    >>> print(ship_summary(ShipResult(lines=2, records=1, damaged="a.gz: damaged or "
    ...                               "truncated gzip data"), "raw", 65536))  # doctest: +ELLIPSIS
    shipped 2 lines in 1 record to raw
    error: a.gz: damaged or truncated gzip data: shipping stopped there (the lines before it...
    """
    lines_word = "line" if result.lines == 1 else "lines"
    records_word = "record" if result.records == 1 else "records"
    shipped = (
        f"shipped {result.lines:,} {lines_word} in {result.records:,} {records_word} to {topic}"
    )
    if result.seconds > 0:  # the average rate (with --follow, waits for the file included)
        shipped += f" in {result.seconds:,.1f} s ({result.lines / result.seconds:,.0f} lines/s)"
    lines = [shipped]
    if result.cut_lines:
        one = result.cut_lines == 1
        lines.append(
            f"{result.cut_lines:,} {'line' if one else 'lines'} over {max_line_bytes:,} bytes "
            f"shipped cut (the worker dead-letters {'it' if one else 'them'} as parse.too_long)"
        )
    if result.unfinished_lines:
        one = result.unfinished_lines == 1
        lines.append(
            f"{result.unfinished_lines:,} unterminated {'line' if one else 'lines'} "
            f"({result.unfinished_bytes:,} bytes) at the stop not shipped (the writer may "
            f"have been in the middle of {'it' if one else 'them'})"
        )
    if result.resent_records:
        lines.append(f"{result.resent_records:,} sent again: the broker did not take them at first")
    if result.failed_records:
        records = "record" if result.failed_records == 1 else "records"
        failed = "line" if result.failed_lines == 1 else "lines"
        lines.append(
            f"error: {result.failed_records:,} {records} ({result.failed_lines:,} {failed}) "
            "not acknowledged by the broker: not shipped"
        )
    if result.gave_up:
        lines.append(
            "error: the broker took no record through every retry: shipping stopped before "
            "the end of the input"
        )
    if result.damaged:
        lines.append(
            f"error: {result.damaged}: shipping stopped there (the lines before it are "
            "shipped, a line it cut short is not)"
        )
    if result.interrupted_by:
        lines.append(
            f"error: stopped by {signal.Signals(result.interrupted_by).name} before the end "
            "of the input: the rest of it is not shipped"
        )
    return "\n".join(lines)


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import run_forever

    return run_forever(port=args.port)


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import run_worker

    child_port = args.aggregator_web_port
    if child_port is None:
        child_port = _env_port("LOGFOG_AGGREGATOR_WEB_PORT", None)
    return run_worker(args.config, bootstrap=args.bootstrap, web_port=_web_port(args),
                      loglevel=args.loglevel, aggregator_web_port=child_port)  # fmt: skip


def cmd_aggregator(args: argparse.Namespace) -> int:
    from streams.app import run_aggregator

    return run_aggregator(args.config, bootstrap=args.bootstrap, web_port=_web_port(args),
                          loglevel=args.loglevel)  # fmt: skip


def _port(text: str) -> int:
    """argparse type of a TCP port."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return value


def _env_port(name: str, default: int | None) -> int | None:
    """A port from the environment, read only by the commands that use it: a typo in
    the variable used to stop every command (keygen, --help) with a traceback."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return _port(text)
    except argparse.ArgumentTypeError as error:
        raise UserError(f"{name}: {error}") from None


def _web_port(args: argparse.Namespace) -> int:
    """--web-port, else env LOGFOG_WEB_PORT, else the command's default."""
    if args.web_port is not None:
        return int(args.web_port)
    port = _env_port("LOGFOG_WEB_PORT", args.default_web_port)
    assert port is not None
    return port


def _faust_process_arguments(p: argparse.ArgumentParser, web_port: int) -> None:
    """The options of the long-running Faust processes (worker, aggregator)."""
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument("--bootstrap", help="host:port[,...] (default: config, or env LOGFOG_BOOTSTRAP)")
    p.add_argument("--web-port", type=_port,
                   help=f"metrics/status web port (default: env LOGFOG_WEB_PORT, "
                   f"else {web_port})")  # fmt: skip
    p.set_defaults(default_web_port=web_port)
    p.add_argument("--loglevel", type=str.lower, choices=LOG_LEVELS, default="info",
                   metavar="LEVEL", help="log level: debug, info, warning, error or critical "
                   "(any case; default: %(default)s)")  # fmt: skip


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1, checked before anything connects."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _non_negative_seconds(text: str) -> float:
    """argparse type: a duration in seconds, 0 or more (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logfog",
        description="Turn raw web access logs into non-identifying events.",
        epilog="Exit status: 0 ok, 1 internal error, 2 bad input (config, files, keys, broker), "
        "3 records the broker did not acknowledge (ship) or a stop that outlived "
        "LOGFOG_STOP_TIMEOUT (worker, aggregator), 130 interrupted (Ctrl-C), 143 stopped by "
        "SIGTERM (anonymize; ship before the end of its input: ship --follow ends so with 0).",
    )
    parser.add_argument("--version", action="version", version=f"logfog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=["json", "text"], default=None,
                        help="json (one object a line, never payloads; the default when "
                        "stderr is not a terminal) or text")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("anonymize", help="anonymize a log file (or stdin) to NDJSON",
                       description="Parse, enrich and anonymize FILE by the config's rules. "
                       "Without --out, events of every destination go to stdout wrapped as "
                       '{"destination": NAME, "event": {...}}, and so do the rejection records '
                       '(destination "rejected": stage, reason and line number, never the '
                       "line); with --only NAME, plain events of NAME (or plain rejection "
                       "records: --only rejected). With --out: DIR/<destination>.ndjson, "
                       "DIR/rejected.ndjson and DIR/aggregates.ndjson (aggregates: with --out "
                       "only); with --out and --only NAME, DIR/NAME.ndjson alone.")  # fmt: skip
    p.add_argument("file", metavar="FILE", help="log file, or - for stdin")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="write DIR/<destination>.ndjson, DIR/rejected.ndjson "
        "and DIR/aggregates.ndjson (with --only NAME: DIR/NAME.ndjson alone)",
    )
    p.add_argument(
        "--only",
        metavar="NAME",
        help="write only this destination's events (or 'rejected'): to stdout, or with "
        "--out to DIR/NAME.ndjson",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    p.set_defaults(func=cmd_anonymize)

    p = sub.add_parser("check-config", help="validate a config; list every problem",
                       description="Validate a config (YAML or TOML): every problem with "
                       "where it is, then the warnings; exit 2 if there is a problem.")  # fmt: skip
    p.add_argument("config", metavar="PATH")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("schema", help="print the config's JSON Schema (or --markdown reference)")
    p.add_argument("--markdown", action="store_true", help="the reference table for the README")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("keygen", help="print a new 256-bit secret (hex) for env:/file: key sources")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "worker", help="run the streaming worker (Faust)",
        description="Anonymize the raw topic into every destination. With "
        "aggregates.run_in: process (the default) the worker also runs a 'logfog aggregator' "
        "child process, restarts it when it dies and stops it when it stops.",
    )  # fmt: skip
    _faust_process_arguments(p, web_port=6066)
    p.add_argument("--aggregator-web-port", type=_port,
                   help="web port of the aggregator child (run_in: process; default: "
                   "env LOGFOG_AGGREGATOR_WEB_PORT, else --web-port + 1; never the "
                   "worker's own)")  # fmt: skip
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "aggregator",
        help="run only the windowed aggregation (aggregates.run_in: aggregator; with "
        "run_in: process every worker runs one itself)",
        description="Stages 2 and 3 of the aggregates in their own processes and consumer "
        "group, so that they scale and restart apart from the workers. Needs no rules, geo "
        "database or LOGFOG_MASTER_KEY.",
    )
    _faust_process_arguments(p, web_port=6067)
    p.set_defaults(func=cmd_aggregator)

    p = sub.add_parser(
        "topics", help="create (idempotent) or verify the config's topics",
        description="create: create missing topics with partitions, replication, retention "
        "and segment.ms from the config. verify: create nothing, report missing ones. Both "
        "exit 2 when an existing topic would keep records longer than the config declares.",
    )  # fmt: skip
    p.add_argument("action", choices=["create", "verify"])
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument("--bootstrap")
    p.add_argument(
        "--fix",
        action="store_true",
        help="set retention.ms, segment.ms and cleanup.policy of existing topics "
        "that would keep records too long (partitions and replicas never change)",
    )
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("ship", help="produce a log file (or stdin) into the raw topic",
                       description="Ship FILE's lines into the raw topic, many lines a "
                       "record. A FILE or stdin compressed with gzip, bzip2 or xz "
                       "(access.log.1.gz) is shipped decompressed: its first bytes decide, "
                       "not its name. Exit 2 when a compressed input is damaged or "
                       "truncated, after shipping the lines before the damage.")  # fmt: skip
    p.add_argument("file", metavar="FILE", help="log file, or - for stdin (plain, or "
                   "compressed with gzip, bzip2 or xz)")  # fmt: skip
    p.add_argument("-c", "--config", help="config (for bootstrap, raw topic, kafka.security "
                   "and input.max_line_bytes: longer lines are shipped cut, dead-lettered as "
                   f"parse.too_long by the worker; default: {DEFAULT_CONFIG} when it exists, "
                   "else 127.0.0.1:9092, logs.raw, no TLS, 65,536 bytes)")  # fmt: skip
    p.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: LOGFOG_BOOTSTRAP, then the config's)",
    )
    p.add_argument("--topic", help="topic to ship into (default: the config's kafka.raw.topic)")
    p.add_argument("--lines-per-record", type=_positive_int, default=500,
                   help="lines batched in one record (1: one line per record)")  # fmt: skip
    p.add_argument("--compression", choices=("auto", "lz4", "gzip", "none"), default="auto",
                   help="producer compression; auto: lz4 when this installation can "
                   "write it, else gzip")  # fmt: skip
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep reading as the file grows, across rotation (rename or copytruncate); "
        "a line is shipped once its newline is read: on stop, an unterminated last line "
        "is not shipped (the summary counts it). Not for a compressed file (refused: it "
        "does not grow line by line). With - (stdin, read until it ends anyway): a stop by "
        "Ctrl-C or SIGTERM is then the stream's normal end, exit 0 (else 130 or 143)",
    )
    p.add_argument("--rotate-wait", type=_non_negative_seconds, metavar="SECONDS",
                   help="with --follow: read a file renamed away by rotation until it has "
                   "been silent this long, for the lines its writer adds before reopening "
                   "the log (default 5)")  # fmt: skip
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser("broker", help="run the embedded local broker (Tansu) in the foreground")
    p.add_argument("--port", type=_port, default=9092, help="Kafka port (default 9092)")
    p.set_defaults(func=cmd_broker)
    return parser


#: Commands that reach Kafka through kafka-python, which logs every failed connection
#: attempt (about 20 lines before an unreachable broker's timeout). They report the
#: outcome themselves, in one line: kafka-python is heard only with -v.
_KAFKA_PYTHON_COMMANDS = ("topics", "ship")


def main(argv: Sequence[str] | None = None) -> int:
    from streams import logjson

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # a usage error (one line, exit 2), --help, --version
        if exit_.code is None:
            return 0
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    # The worker and aggregator hand the same format to Faust (app.faust_settings).
    logjson.configure(args.log_format or logjson.default_format(),
                      logging.DEBUG if args.verbose else logging.INFO)  # fmt: skip
    if args.command in _KAFKA_PYTHON_COMMANDS and not args.verbose:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args))
    except _expected_errors() as error:
        text = _os_error(error) if isinstance(error, OSError) else str(error)
        print(f"logfog: {text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # `logfog anonymize x | head`
        return 0
