"""The whole job from raw bytes to output bytes: pure, synchronous, no Kafka.

``Pipeline.process_lines`` takes raw lines and fills an :class:`Output`: per
destination a list of ``(key, value, timestamp_ms)`` and a list of
:class:`~streams.records.Rejection`. Every line ends up in exactly one of the two
(``published`` may be several events, one per destination). The file command and the
Faust agents are thin loops around it; tests run it directly (``Pipeline.test``).

>>> from streams.pipeline import Pipeline
>>> p = Pipeline.from_config({"destinations": {"ops": {"topic": "logs.ops", "fields": {
...     "network": {"from": "client.ip", "action": "truncate_ip"},
...     "status": {"from": "response.status", "action": "keep"}}}}})
>>> out = p.test([b'203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5',
...               b'garbage'])
>>> out.events("ops")
[{'network': '203.0.113.0/24', 'status': 200}]
>>> [(r.reason, r.line) for r in out.rejections]
[('parse.no_match', 2)]
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.config import AGGREGATE_INPUT, ConfigError, normalize
from streams.durations import parse_duration
from streams.parse import build_parser
from streams.records import (
    PARSE_EMPTY,
    PARSE_ERROR,
    PARSE_NOT_UTF8,
    PARSE_TOO_LONG,
    PUBLISH_ERROR,
    RULES_ERROR,
    RejectedLine,
    Rejection,
)
from streams.rules import Compiled, aggregate_row_fields, compile_rules

log = logging.getLogger("logfog.pipeline")

Emitted = tuple[bytes | None, bytes, int]


@dataclass(slots=True)
class Stats:
    """Running totals; exported as metrics by the worker, printed by the file command."""

    lines: int = 0
    events: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    leaks: Counter[str] = field(default_factory=Counter)
    #: Rule-level counts (``pseudonym.empty``: a pseudonym published as null).
    counters: Counter[str] = field(default_factory=Counter)
    replaced_utf8: int = 0
    started: float = field(default_factory=time.perf_counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "published": dict(self.events),
            "rejected": dict(self.rejected),
            "leaks_removed": dict(self.leaks),
            "invalid_utf8_replaced": self.replaced_utf8,
            "pseudonyms_empty": self.counters["pseudonym.empty"],
        }


class Output:
    """What one call of ``process_lines`` produced, per destination index."""

    __slots__ = ("_names", "per_destination", "rejections")

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names
        self.per_destination: list[list[Emitted]] = [[] for _ in names]
        self.rejections: list[Rejection] = []

    def events(self, destination: str) -> list[dict[str, Any]]:
        """The events as published (decoded from the serialized values)."""
        return [orjson.loads(e[1]) for e in self.per_destination[self._names.index(destination)]]

    def values(self, destination: str) -> list[bytes]:
        return [e[1] for e in self.per_destination[self._names.index(destination)]]

    def clear(self) -> None:
        for events in self.per_destination:
            events.clear()
        self.rejections.clear()


def aggregate_layout(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Field order of the aggregation input's rows, from a normalized config alone (the
    aggregator process compiles no rules); None when aggregation is off.

    >>> from streams.config import normalize
    >>> ops = {"topic": "logs.ops", "fields": {"status": {"from": "response.status",
    ...                                                   "action": "keep"}}}
    >>> aggregate_layout(normalize({"aggregates": {"enabled": True},
    ...                             "destinations": {"ops": ops}}, [], []))[:4]
    ('time', 'visitor', 'route', 'status_class')
    """
    internal = config["destinations"].get(AGGREGATE_INPUT)
    return None if internal is None else aggregate_row_fields(internal)


def dead_letter(rejection: Rejection) -> bytes:
    """The dead-letter record for a rejection: coordinates and reason, never the line.

    >>> dead_letter(Rejection("parse", "parse.bad_ip", "logs.raw", 0, 41))
    b'{"stage":"parse","reason":"parse.bad_ip","topic":"logs.raw","partition":0,"offset":41}'
    """
    return orjson.dumps(rejection.as_dict())


def _restore(counter: Counter[str], saved: Counter[str]) -> None:
    # In place: the compiled rules hold the leak counter itself.
    counter.clear()
    counter.update(saved)


def raised_at(error: BaseException) -> str:
    """``file:line`` where ``error`` was raised: with its type, all that is logged of an
    error, because exception messages often quote the value that failed.

    >>> try:
    ...     int("203.0.113.9")
    ... except ValueError as e:
    ...     raised_at(e).startswith("<doctest")
    True
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"


def is_unavailable(error: BaseException) -> bool:
    """True for infrastructure errors that retrying later fixes, never a line's fault:
    the shared key ring cannot agree an epoch key (``streams.keyshare.KeyShareError``,
    ``KeyShareUnavailable`` among them). Called on error paths only.
    """
    # Imported here: the file command never loads the Kafka key ring.
    from streams.keyshare import KeyShareError

    return isinstance(error, KeyShareError)


def open_geo(config: Mapping[str, Any]) -> Any:
    """The geo databases a normalized config's rules read (None if no rule reads geo.*).
    Raises GeoDatabaseError (missing file, wrong kind)."""
    uses_geo = any(
        s.startswith("geo.")
        for d in config["destinations"].values()
        for r in d["fields"].values()
        for s in r["from"]
    )
    if not uses_geo:
        return None
    from streams.enrich.geo import GeoLookup

    return GeoLookup.from_config(
        {**config["enrich"]["geo"], "cache_size": config["enrich"]["cache_size"]}
    )


class Pipeline:
    """A compiled config: parse, enrich, apply rules, serialize."""

    def __init__(
        self,
        config: Mapping[str, Any],
        compiled: Compiled,
        *,
        keyring: Any = None,
        geo: Any = None,
        leaks: Counter[str] | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.compiled = compiled
        self.keyring = keyring
        self.geo = geo
        self.destinations = compiled.destinations
        self.names = tuple(d.name for d in compiled.destinations)
        self.public_names = tuple(d.name for d in compiled.destinations if not d.internal)
        #: Field order of the aggregation input's rows (None: aggregation is off).
        self.aggregate_layout: tuple[str, ...] | None = next(
            (d.fields for d in compiled.destinations if d.internal), None
        )
        self.stats = Stats(
            leaks=Counter() if leaks is None else leaks,
            counters=Counter() if counters is None else counters,
        )
        inp = config["input"]
        self._parse = build_parser(inp["format"], inp["trusted_proxies"], inp["json_fields"])
        self._max_bytes: int = inp["max_line_bytes"]
        self._reject_bad_utf8 = inp["invalid_utf8"] == "reject"

    @classmethod
    def from_config(
        cls,
        raw_config: Mapping[str, Any],
        *,
        geo: Any = None,
        keyring: Any = None,
        warnings: list[str] | None = None,
    ) -> Pipeline:
        """Validate (if not yet normalized) and compile. Raises ConfigError, GeoDatabaseError,
        KeyError_ with readable messages."""
        errors: list[str] = []
        config = normalize(raw_config, errors, [] if warnings is None else warnings)
        if errors:
            raise ConfigError("config", errors)
        return cls.from_normalized(config, geo=geo, keyring=keyring)

    @classmethod
    def from_normalized(
        cls, config: Mapping[str, Any], *, geo: Any = None, keyring: Any = None
    ) -> Pipeline:
        from streams.enrich.agent import AgentParser
        from streams.enrich.language import primary_language
        from streams.keys import keyring_from_config

        uses = {r["action"] for d in config["destinations"].values() for r in d["fields"].values()}
        if keyring is None and "pseudonymize" in uses:
            keys = config["keys"]
            keyring = keyring_from_config(
                keys["source"], parse_duration(keys["epoch"]), parse_duration(keys["grace"])
            )
        if geo is None:
            geo = open_geo(config)
        leaks: Counter[str] = Counter()
        counters: Counter[str] = Counter()
        agents = AgentParser(cache_size=config["enrich"]["cache_size"])
        compiled = compile_rules(
            config,
            geo_lookup=geo.lookup if geo is not None else None,
            agent_parse=agents.parse,
            language=primary_language,
            keyring=keyring,
            leaks=leaks,
            counters=counters,
        )
        pipeline = cls(config, compiled, keyring=keyring, geo=geo, leaks=leaks, counters=counters)
        if geo is not None and compiled.needs_geo:
            geo.on_reload(pipeline.forget_clients)
        return pipeline

    def forget_clients(self) -> None:
        """Empty the per-client memo (after a geo database reload)."""
        self.compiled.forget_clients()

    def new_output(self) -> Output:
        return Output(self.names)

    def process_lines(
        self,
        lines: Iterable[bytes],
        out: Output,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        first_line: int = 1,
    ) -> int:
        """Process raw lines (no trailing newline) into ``out``; returns lines seen.

        Coordinates in rejections: ``topic/partition/offset`` when given (all lines of
        one Kafka record share its offset; ``line`` is the line within the record),
        else ``line`` counts from ``first_line``.
        """
        if not isinstance(lines, list):
            lines = list(lines)
        return self._run(((lines, topic, partition, offset, first_line),), out)

    def process_records(
        self, records: Iterable[tuple[bytes | None, str, int, int]], out: Output
    ) -> int:
        """Process Kafka records ``(value, topic, partition, offset)``; each value holds
        one or more lines joined by ``\\n`` (split exactly: an empty line is a line).

        One call per batch of records, so a record of a single line costs no more
        setup than any other line.
        """
        return self._run(
            (
                ((value or b"").split(b"\n"), topic, partition, offset, 1)
                for value, topic, partition, offset in records
            ),
            out,
        )

    def rerun_records(
        self, records: Iterable[tuple[bytes | None, str, int, int]], out: Output
    ) -> int:
        """``process_records`` for records a previous call already counted (their output
        was not published): the same output, every counter left as it was."""
        stats = self.stats
        lines, replaced = stats.lines, stats.replaced_utf8
        saved = [(c, c.copy()) for c in (stats.rejected, stats.leaks, stats.counters)]
        try:
            return self.process_records(records, out)
        finally:
            stats.lines, stats.replaced_utf8 = lines, replaced
            for counter, before in saved:
                _restore(counter, before)

    def fail_record(self, record: tuple[bytes | None, str, int, int], out: Output) -> None:
        """``out`` holds the output of ``record`` alone, which cannot be published: keep
        its dead letters, and dead-letter every other line (each made events) as
        ``publish.error``, so that every line of the record still has one outcome."""
        value, topic, partition, offset = record
        rejected_lines = {r.line for r in out.rejections}
        for events in out.per_destination:
            events.clear()
        count = 0
        for number in range(1, (value or b"").count(b"\n") + 2):
            if number not in rejected_lines:
                out.rejections.append(
                    Rejection("publish", PUBLISH_ERROR, topic, partition, offset, number)
                )
                count += 1
        self.stats.rejected[PUBLISH_ERROR] += count

    def _run(
        self,
        groups: Iterable[tuple[list[bytes], str | None, int | None, int | None, int]],
        out: Output,
    ) -> int:
        """``groups``: lines with the coordinates they share (a Kafka record's, or
        none for a file) and the number of the first; the per-line loop is flat.

        Raises what :func:`is_unavailable` accepts (no epoch key can be agreed: key
        topic or broker down) instead of dead-lettering: that is no fault of the line,
        and would turn an outage into lost events. ``out`` is then incomplete and the
        counters are as before the call: run the same input again later.
        """
        stats = self.stats
        rejected = stats.rejected
        # Restored if the run is abandoned (keys unavailable): the caller runs the same
        # records again, and must not count them twice. A few dict entries per call.
        saved = [(c, c.copy()) for c in (rejected, stats.leaks, stats.counters)]
        try:
            seen, replaced = self._run_groups(groups, out, rejected)
        except Exception as error:
            if not is_unavailable(error):
                raise
            for counter, before in saved:
                _restore(counter, before)
            raise
        self.stats.lines += seen
        self.stats.replaced_utf8 += replaced
        return seen

    def _run_groups(
        self,
        groups: Iterable[tuple[list[bytes], str | None, int | None, int | None, int]],
        out: Output,
        rejected: Counter[str],
    ) -> tuple[int, int]:
        parse = self._parse
        emit = self.compiled.emit
        appends = [events.append for events in out.per_destination]
        reject = out.rejections.append
        max_bytes = self._max_bytes
        reject_bad_utf8 = self._reject_bad_utf8
        seen = 0
        replaced = 0
        for lines, topic, partition, offset, first in groups:
            seen += len(lines)
            for number, raw in enumerate(lines, first):
                if len(raw) > max_bytes:
                    reject(
                        Rejection(
                            "parse", PARSE_TOO_LONG, topic, partition, offset, number, len(raw)
                        )
                    )
                    rejected[PARSE_TOO_LONG] += 1
                    continue
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    if reject_bad_utf8:
                        reject(Rejection("parse", PARSE_NOT_UTF8, topic, partition, offset, number))
                        rejected[PARSE_NOT_UTF8] += 1
                        continue
                    text = raw.decode(errors="replace")
                    replaced += 1
                try:
                    request = parse(text)
                except RejectedLine as rejection:
                    reason = PARSE_EMPTY if not text.strip() else rejection.reason
                    reject(Rejection("parse", reason, topic, partition, offset, number))
                    rejected[reason] += 1
                    continue
                except Exception as error:  # a parser bug: one poison line must not stop us
                    self._rule_failed(error, PARSE_ERROR, topic, partition, offset, number)
                    reject(Rejection("parse", PARSE_ERROR, topic, partition, offset, number))
                    rejected[PARSE_ERROR] += 1
                    continue
                try:
                    emit(request, *appends, partition, offset, number)
                except Exception as error:  # a bug in a rule must not stop the stream
                    if is_unavailable(error):
                        raise
                    self._rule_failed(error, RULES_ERROR, topic, partition, offset, number)
                    reject(Rejection("rules", RULES_ERROR, topic, partition, offset, number))
                    rejected[RULES_ERROR] += 1
        return seen, replaced

    def _rule_failed(
        self,
        error: BaseException,
        reason: str,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        line: int,
    ) -> None:
        # The exception's type and place, and where the line came from: never its text
        # (a message may quote the value that failed).
        where = f"line {line}" if topic is None else f"{topic}/{partition}@{offset} line {line}"
        log.error("%s: %s at %s (%s)", reason, type(error).__name__, raised_at(error), where)

    def count_published(self, out: Output) -> None:
        for d, events in zip(self.destinations, out.per_destination, strict=True):
            self.stats.events[d.name] += len(events)

    def test(self, lines: Iterable[bytes | str]) -> Output:
        """Run lines through the pipeline, no broker: for tests and the REPL."""
        out = self.new_output()
        self.process_lines((x.encode() if isinstance(x, str) else x for x in lines), out)
        self.count_published(out)
        return out
