"""Load and validate a logfog config (YAML or TOML): every problem at once, with its place.

The schema is declared once, below, as data. The same declaration validates files,
fills in defaults, and generates the JSON Schema published for editors
(``logfog schema``, ``config/logfog.schema.json``). Field rules are validated against
each action's own option declarations (``streams/actions``).

>>> errors = validate({"destinations": {"ops": {"topic": "t", "fields": {
...     "route": {"from": "request.target", "action": "url_policy", "allow_qery": []}}}}})
>>> print(errors[0])
destinations.ops.fields.route: unknown option 'allow_qery' (did you mean 'allow_query'?)
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml

from streams.actions import REGISTRY
from streams.actions.base import (
    INTERNAL_DESTINATION,
    REQUIRED,
    ActionSpec,
    BuildContext,
    Option,
)
from streams.admin import topic_name_problem
from streams.durations import DURATION_JSON, parse_duration
from streams.fields import BUCKETED, BUCKETED_ACTIONS, NOT_IN_ANALYTICS, SENSITIVE, SOURCES
from streams.parse import NAMED_FORMATS, FormatError, compile_one
from streams.parse.jsonlines import DEFAULT_FIELDS as JSON_DEFAULT_FIELDS
from streams.parse.jsonlines import ROLES as JSON_ROLES
from streams.parse.jsonlines import key_path
from streams.parse.logformat import NGINX_STORED, nginx_unstored
from streams.security import MECHANISMS, PROTOCOLS


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` lists them all, one per line.
    ``warnings`` are those found beside them (``str()`` leaves them out): check-config
    shows them too, so that one round shows everything to fix."""

    def __init__(self, source: str, problems: list[str], warnings: list[str] | None = None) -> None:
        self.source = source
        self.problems = problems
        self.warnings = list(warnings or [])
        count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
        super().__init__(f"{source}: {count}\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Key:
    """A config key: its type, default and checks. ``kind`` list = list of strings."""

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Any = None  # Callable[[Any], str | None]
    #: Smallest allowed integer: counts and sizes the runtime cannot take below it.
    minimum: int | None = None
    #: Largest allowed integer; an integer key without one takes at most
    #: :data:`INT32_MAX` (see there).
    maximum: int | None = None
    #: Never quote the value in a message (a password given the wrong type).
    secret: bool = False
    #: What ``check`` refuses, in JSON Schema keywords (``minimum``, ``pattern``,
    #: ``items``...), for the schema published for editors, where JSON Schema can say it.
    json: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Section:
    keys: Mapping[str, Key | Section | MapOf]
    doc: str = ""


@dataclass(frozen=True, slots=True)
class MapOf:
    """A mapping of user-chosen names to sections (destinations, field rules).
    ``min_items`` and ``json`` (JSON Schema keywords, e.g. ``propertyNames``) are for
    the published schema; :func:`normalize` refuses the same in its own words."""

    item: Section | None
    doc: str = ""
    min_items: int = 0
    json: Mapping[str, Any] | None = None


def _duration(limit: int | None = None, what: str = "", positive: bool = False) -> Any:
    def check(value: Any) -> str | None:
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            return str(error)
        if positive and seconds <= 0:
            return "must be longer than 0s"
        if limit is not None and seconds > limit:
            return f"{value} is longer than the {what} limit of {limit // 86400}d"
        return None

    return check


def _duration_key(default: str, doc: str, check: Any) -> Key:
    """A duration key (text like ``5m``): its syntax is in the JSON Schema too."""
    return Key(str, default, doc, check=check, json=DURATION_JSON)


#: The JSON Schema of what ``admin.topic_name_problem`` refuses.
TOPIC_JSON: Final = {"pattern": r"^(?!\.\.?$)[A-Za-z0-9._-]{1,249}$"}
#: ``env:NAME`` or ``file:PATH`` with something after the colon (kafka.security).
REFERENCE_JSON: Final = {"pattern": r"^(env|file):[\s\S]"}


def _cidrs(value: list[Any]) -> str | None:
    import ipaddress

    bad = []
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            bad.append(f"{item!r} is not a network (CIDR)")
    return "; ".join(bad) or None


def _format(value: Any) -> str | None:
    specs = [value] if isinstance(value, str) else value
    if not specs or not all(isinstance(s, str) for s in specs):
        return "must be a format name or a list of them"
    for spec in specs:
        try:
            compile_one(spec)
        except FormatError as error:
            return str(error)
    return None


#: The aggregate outputs a k can be set for (``aggregates.k_by_output``).
K_OUTPUTS: Final = ("ops", "product")


def _windows(value: list[Any]) -> str | None:
    from streams.aggregate.spec import OUTPUT_WINDOWS

    if not value:
        return "name at least one (or set aggregates.enabled: false)"
    for name in value:
        if name not in OUTPUT_WINDOWS:
            return f"unknown output window {name!r} (one of {', '.join(OUTPUT_WINDOWS)})"
    if len(set(value)) != len(value):
        return "names an output window twice"
    return None


def _k_by_output(value: Mapping[str, Any]) -> str | None:
    for name, k in value.items():
        if name not in K_OUTPUTS:
            return f"unknown output {name!r} (outputs: {', '.join(K_OUTPUTS)})"
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            return f"{name}: k must be an integer of at least 2"
    return None


def _key_source(value: str) -> str | None:
    """Never quotes the value: the likeliest mistake here is the master key itself, which
    check-config would print and the worker log."""
    from streams.keys import env_name_problem

    kind, colon, rest = value.partition(":")
    if value in ("auto", "shared", "ephemeral"):
        return None
    if colon and kind == "env":
        return env_name_problem(rest)
    if colon and kind == "file":
        return None if rest else "file: needs a path (file:PATH)"
    return "must be auto, shared, ephemeral, env:NAME or file:PATH (the value is not shown)"


#: What ``_key_source`` refuses, but for an env: name that would decode as a key.
KEY_SOURCE_JSON: Final = {
    "pattern": r"^(auto|shared|ephemeral|env:[A-Za-z_][A-Za-z0-9_]*|file:[\s\S]+)$"
}


def _geo_database(kind: str) -> Any:
    def check(value: str | None) -> str | None:
        # A builtin: name that does not exist, or of the wrong kind, used to pass
        # check-config and fail only when a command opened the databases.
        if value is None or not value.startswith("builtin:"):
            return None
        from streams.enrich.geo import builtin_problem

        return builtin_problem(kind, value)

    return check


def _json_key_ok(key: Any) -> bool:
    """A key, dotted for nesting (no empty part), or a non-empty list of non-empty keys."""
    if isinstance(key, str):
        return all(key.split("."))
    return isinstance(key, list) and bool(key) and all(isinstance(k, str) and k for k in key)


def _json_fields(value: Mapping[str, Any]) -> str | None:
    for role, key in value.items():
        if role not in JSON_ROLES:
            return f"unknown role {role!r} (known: {', '.join(sorted(JSON_ROLES))})"
        if not _json_key_ok(key):
            return (
                f"{role}: must be a JSON key (dotted for nesting) or a list of keys "
                f"(one per level, dots kept), not {key!r}"
            )
    # host and protocol are published as text (only leak-swept), so they must not read
    # another field's key: {host: http_cookie} would publish the cookie (an audit).
    # Compared as paths: [http_cookie] and "a.b" / [a, b] name the same key.
    keys = {**JSON_DEFAULT_FIELDS, **value}
    paths = {role: key_path(key) for role, key in keys.items()}
    for role in _JSON_TEXT_ROLES:
        others = sorted(r for r, p in paths.items() if p == paths.get(role) and r != role)
        if others:
            return f"{role}: reads {keys[role]!r}, the key of {', '.join(others)}"
    return None


#: ``input.json_fields`` in the JSON Schema: roles, and keys as :func:`_json_key_ok`.
_JSON_FIELDS_SCHEMA: Final = {
    "propertyNames": {"enum": sorted(JSON_ROLES)},
    "additionalProperties": {
        "oneOf": [
            {"type": "string", "pattern": "^[^.]+([.][^.]+)*$"},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        ]
    },
}


_JSON_TEXT_ROLES: Final = ("host", "protocol")

#: One format as ``_format`` takes it, for the JSON Schema (the LogFormat itself unchecked).
FORMAT_JSON: Final = {
    "type": "string",
    "anyOf": [{"enum": list(NAMED_FORMATS)}, {"pattern": "^(apache|nginx):"}],
}


DAY = 86400
#: The largest ``input.max_line_bytes``. ``logfog ship`` sends a longer line cut to one
#: byte more than it, alone in a record at worst; that record must stay within what a
#: Kafka broker takes by default (``message.max.bytes``, about 1 MiB) and within the
#: shipper's own record size (``shipper.DEFAULT_MAX_RECORD_BYTES``, 900,000 bytes). A
#: line shipped whole and refused is lost to the pipeline, with no dead letter.
MAX_LINE_BYTES_LIMIT = 512 * 1024

#: The largest value of an integer key without a ``maximum`` of its own: what Kafka's
#: INT32 fields (partitions) take. Python's integers are unbounded, and a cache size of
#: 2**70 reached ``functools.lru_cache`` as a traceback (a config fuzz).
INT32_MAX: Final = 2**31 - 1

#: Kafka's replication factor is an INT16 in CreateTopics.
INT16_MAX: Final = 2**15 - 1


def _max_line_bytes(value: int) -> str | None:
    if value > MAX_LINE_BYTES_LIMIT:
        return (
            f"must be at most {MAX_LINE_BYTES_LIMIT} (512 KiB: a line cut to it must fit in "
            f"one Kafka record), not {value}"
        )
    return None


#: The privacy defaults of docs/privacy-requirements.md that a setting of the
#: aggregates or keys sections can loosen. Tightening is free; loosening needs the
#: section's ``unsafe: true`` and is then logged at startup (the rules' "explicit,
#: logged opt-in").
MIN_K = 10  # rule 9: every published cell counts at least k = 10 distinct visitors
MAX_EPOCH = DAY  # rule 5: epoch keys, daily by default (a key links a visitor's requests)
MAX_GRACE = 3600  # rule 5: destroyed after the epoch plus a *short* grace (default 1h)
#: Rule 14, per topic kind; "operations" and "analytics" are also the destination kinds'
#: limits. Aggregates: 25 months, which never span more than 762 days (two years and 31
#: days, one of them a 29 February).
RETENTION_LIMITS = {"raw": 3 * DAY, "operations": 30 * DAY, "analytics": 30 * DAY,
                    "dead_letter": 30 * DAY, "aggregates": 762 * DAY}  # fmt: skip
#: Rule 9's contribution cap: a visitor's events counted per window, by default...
DEFAULT_MAX_EVENTS_PER_VISITOR = 100
#: ...and at most, even with ``aggregates.unsafe: true`` (100 times the default).
MAX_EVENTS_PER_VISITOR = 10_000


def _topic(
    default_topic: str,
    retention: str,
    limit_kind: str,
    partitions: int = 4,
    what: str = "Kafka topic name",
) -> Section:
    return Section(
        {
            "topic": Key(str, default_topic, what, check=topic_name_problem, json=TOPIC_JSON),
            "partitions": Key(int, partitions, "partitions (bounds worker parallelism)", minimum=1),
            "retention": _duration_key(
                retention,
                f"retention, at most {RETENTION_LIMITS[limit_kind] // DAY}d",
                _duration(RETENTION_LIMITS[limit_kind], limit_kind, positive=True),
            ),
            "replication": REPLICATION,
        }
    )


def _one_partition(value: int) -> str | None:
    # The merge agent publishes a window once it holds the partials of every input
    # partition (merge.py WindowMerger.add), and every merger checkpoints under one key
    # (runtime.MERGER_KEY): partials spread over several partitions reach different
    # mergers, and no window is ever published.
    if value == 1:
        return None
    return (
        f"must be 1, not {value}: one merge agent must receive the partials of every input "
        "partition (with more, no window is ever published)"
    )


def _replication(value: int | None) -> str | None:
    return None if value is None or value >= 1 else "must be at least 1"


REPLICATION: Final = Key(
    (int, type(None)),
    None,
    "replication factor (default: kafka.replication)",
    check=_replication,
    maximum=INT16_MAX,
    json={"minimum": 1},
)


def _reference(value: str | None) -> str | None:
    if value is not None and value.startswith(("env:", "file:")) and not value.split(":", 1)[1]:
        return "env:/file: needs a name"
    return None


KAFKA_SECURITY = Section(
    {
        "protocol": Key(str, "PLAINTEXT", "how clients connect; production: SASL_SSL",
                        choices=PROTOCOLS),
        "ca_file": Key((str, type(None)), None, "PEM CA bundle for the brokers' certificates "
                       "(default: the system trust store)"),
        "cert_file": Key((str, type(None)), None, "PEM client certificate (mutual TLS)"),
        "key_file": Key((str, type(None)), None, "PEM private key of cert_file"),
        "check_hostname": Key(bool, True, "verify the broker certificate's host name"),
        "sasl_mechanism": Key((str, type(None)), None, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                              check=lambda v: None if v is None or v in MECHANISMS else
                              f"{v!r} is not {', '.join(MECHANISMS[:-1])} or {MECHANISMS[-1]}",
                              json={"enum": [*MECHANISMS, None]}),
        "username": Key((str, type(None)), None, "SASL user: env:NAME, file:PATH or the name",
                        check=_reference, json={"not": {"enum": ["env:", "file:"]}}),
        # security.problems refuses a literal password (and says so without quoting it).
        "password": Key((str, type(None)), None, "SASL password: env:NAME or file:PATH only "
                        "(a literal password is refused)", check=_reference, secret=True,
                        json=REFERENCE_JSON),
    },
    "TLS and SASL for every Kafka client (worker, aggregator, topics, shipper, key ring)",
)  # fmt: skip


#: Destination kinds; the first is the default.
_KINDS: Final = ("operations", "analytics")

#: Output names of ``logfog anonymize`` besides the destinations (files with --out,
#: the "destination" of stdout lines).
RESERVED_DESTINATIONS = ("rejected", "aggregates")
#: A destination name is the file name ``NAME.ndjson`` of ``logfog anonymize -o DIR``
#: (a name like ``../../evil`` wrote outside DIR): no path, no hidden file, and short
#: enough for the temporary ``.NAME.ndjson.<pid>-<hex>.tmp`` to fit in 255 bytes.
DESTINATION_NAME_JSON: Final = {"pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"}
_DESTINATION_NAME: Final = re.compile(DESTINATION_NAME_JSON["pattern"])


SCHEMA = Section(
    {
        "version": Key(int, 1, "config format version", choices=(1,)),
        "site": Key(
            str, "", "site name: pseudonym scope and same-site test when logs have no vhost"
        ),
        "input": Section(
            {
                "format": Key(
                    (str, list),
                    ["combined", "common"],
                    f"{', '.join(NAMED_FORMATS)}, 'apache:<LogFormat>', 'nginx:<log_format>', "
                    "or a list (first match wins)",
                    check=_format,
                    json={
                        "anyOf": [
                            FORMAT_JSON,
                            {"type": "array", "items": FORMAT_JSON, "minItems": 1},
                        ]
                    },
                ),
                "json_fields": Key(
                    dict,
                    {},
                    "for json: source role -> JSON key, dotted for nesting (request.uri), or "
                    "a list of keys, one per level, each as it is (a key holding a dot: "
                    "[source.ip]; nested: [attributes, url.path])",
                    check=_json_fields,
                    json=_JSON_FIELDS_SCHEMA,
                ),
                "trusted_proxies": Key(
                    list, [], "networks whose X-Forwarded-For is believed", check=_cidrs
                ),
                "max_line_bytes": Key(
                    int,
                    65536,
                    "longer lines are rejected (parse.too_long); at most "
                    f"{MAX_LINE_BYTES_LIMIT} (512 KiB: logfog ship sends a longer line cut, in "
                    "one Kafka record)",
                    minimum=1,
                    check=_max_line_bytes,
                    json={"maximum": MAX_LINE_BYTES_LIMIT},
                ),
                "invalid_utf8": Key(
                    str,
                    "replace",
                    "'replace' bad bytes or 'reject' the line",
                    choices=("replace", "reject"),
                ),
            },
            "how raw lines are parsed",
        ),
        "enrich": Section(
            {
                "geo": Section(
                    {
                        "city": Key(
                            (str, type(None)),
                            None,
                            "City (or DB-IP City) mmdb path, or builtin:dbip-city-lite",
                            check=_geo_database("city"),
                        ),
                        "country": Key(
                            (str, type(None)),
                            None,
                            "Country mmdb path",
                            check=_geo_database("country"),
                        ),
                        "asn": Key(
                            (str, type(None)), None, "ASN mmdb path", check=_geo_database("asn")
                        ),
                    }
                ),
                "cache_size": Key(
                    int, 65536, "entries per lookup cache (bounded memory; 0: none)", minimum=0
                ),
            },
            "in-memory lookups from the full IP and user agent",
        ),
        "keys": Section(
            {
                "source": Key(
                    str,
                    "auto",
                    "auto (worker: shared, file command: ephemeral), shared (random epoch keys "
                    "shared through Kafka, sealed under env LOGFOG_MASTER_KEY), ephemeral, "
                    "env:NAME or file:PATH (never a key in config)",
                    check=_key_source,
                    secret=True,
                    json=KEY_SOURCE_JSON,
                ),
                "topic": Key(
                    str,
                    "logfog.keys",
                    "Kafka topic of the shared epoch keys",
                    check=topic_name_problem,
                    json=TOPIC_JSON,
                ),
                "epoch": _duration_key("1d", "pseudonym key lifetime", _duration(positive=True)),
                "grace": _duration_key(
                    "1h", "how long an epoch key outlives its epoch", _duration()
                ),
                "unsafe": Key(
                    bool,
                    False,
                    "allow what breaks rule 5 or the visitor counts (logged at startup): "
                    "logfog worker with ephemeral (per worker), env: or file: (never "
                    "destroyed) keys; an epoch longer than 1d or a grace longer than 1h; "
                    "an epoch that is not a multiple of the aggregate windows",
                ),
            },
            "pseudonym keys",
        ),
        "kafka": Section(
            {
                "bootstrap": Key(
                    str, "127.0.0.1:9092", "bootstrap servers (env LOGFOG_BOOTSTRAP overrides)"
                ),
                "group": Key(str, "logfog", "consumer group / Faust app id"),
                "security": KAFKA_SECURITY,
                "replication": Key(
                    int,
                    1,
                    "replication factor of every topic whose own 'replication' is not set "
                    "(logfog.keys and the internal aggregation topics included); 3 in production",
                    check=_replication,
                    maximum=INT16_MAX,
                    json={"minimum": 1},
                ),
                "create_topics": Key(
                    bool,
                    True,
                    "true: workers create missing topics at start; false: they only verify "
                    "(topics managed by an operator, e.g. Strimzi) and refuse to start when "
                    "one is missing",
                ),
                "compression": Key(
                    str,
                    "none",
                    "codec of every record the worker and aggregator write (events, "
                    "aggregates, internal and state topics): lz4 saves network and broker "
                    "disk on a real cluster, on one machine none is faster. Only codecs "
                    "both of logfog's clients read (kafka-python reads the checkpoints back). "
                    "Raw records are read in any codec",
                    choices=("none", "gzip", "lz4"),
                ),
                "raw": _topic("logs.raw", "3d", "raw"),
                "dead_letter": _topic("logs.dead", "7d", "dead_letter", partitions=1),
            },
            "topics for the streaming worker",
        ),
        "aggregates": Section(
            {
                "enabled": Key(bool, False, "compute k-gated windowed aggregates in the worker"),
                "unsafe": Key(
                    bool,
                    False,
                    "allow k or k_by_output below 10, the minimum group size of privacy "
                    "rule 9, or a max_events_per_visitor above its default (logged at "
                    "startup)",
                ),
                "k": Key(
                    int,
                    10,
                    "minimum distinct visitors per published cell",
                    check=lambda v: None if v >= 2 else "must be at least 2",
                    json={"minimum": 2},
                ),
                "windows": Key(
                    list,
                    ["ops/5m", "product/1h", "product/1d"],
                    "the aggregate outputs and windows to publish. Rows of one window can be "
                    "differenced against a longer window's or another output's over the same "
                    "time (README, Privacy guarantees, known limits): publish one of them to "
                    "rule that out. Regions and cities are published in each output's longest "
                    "window only",
                    check=_windows,
                    json={
                        "items": {"enum": ["ops/5m", "product/1h", "product/1d"]},
                        "minItems": 1,
                        "uniqueItems": True,
                    },
                ),
                "k_by_output": Key(
                    dict,
                    {},
                    "per-output k, e.g. {product: 20}; outputs: ops, product",
                    check=_k_by_output,
                    json={
                        "properties": {
                            name: {"type": "integer", "minimum": 2} for name in K_OUTPUTS
                        },
                        "additionalProperties": False,
                    },
                ),
                "allowed_lateness": _duration_key(
                    "10m", "events later than this are counted late", _duration()
                ),
                "run_in": Key(
                    str,
                    "process",
                    "'process': every logfog worker runs a 'logfog aggregator' child "
                    "process (another core; restarted and stopped with the worker); "
                    "'worker': in the worker's own process (one core for everything); "
                    "'aggregator': only 'logfog aggregator' processes you run yourself "
                    "(scaled and restarted on their own, never holding pseudonym keys)",
                    choices=("process", "worker", "aggregator"),
                ),
                "max_events_per_visitor": Key(
                    int,
                    DEFAULT_MAX_EVENTS_PER_VISITOR,
                    "contribution cap per visitor and window (privacy rule 9): above "
                    f"{DEFAULT_MAX_EVENTS_PER_VISITOR} needs aggregates.unsafe: true (logged "
                    f"at startup), at most {MAX_EVENTS_PER_VISITOR}.",
                    check=lambda v: (
                        None
                        if v <= MAX_EVENTS_PER_VISITOR
                        else f"must be at most {MAX_EVENTS_PER_VISITOR}"
                    ),
                    minimum=1,
                    json={"maximum": MAX_EVENTS_PER_VISITOR},
                ),
                "max_cells": Key(
                    int, 10_000, "distinct values per dimension and window", minimum=1
                ),
                "max_combinations": Key(
                    int,
                    250_000,
                    "distinct combinations of all dimensions' values per open window and "
                    "output, about 1.3 KB each: the state's memory bound; events of "
                    "further combinations are counted in every dimension's __other__",
                    minimum=1,
                ),
                "snapshot_interval": _duration_key(
                    "10s",
                    "minimum gap between window checkpoints (grows with state size)",
                    _duration(),
                ),
                "source_idle": _duration_key(
                    "60s",
                    "a raw partition that sent no row for this long stops holding windows "
                    "open (event time follows the slowest raw partition); make it longer "
                    "than a worker's failover (LOGFOG_SESSION_TIMEOUT plus a restart)",
                    _duration(positive=True),
                ),
                # Rule 8 buckets analytics to at least 1h and rule 14 keeps operations
                # data at most 30d: rows of shorter windows (ops, 5m) are operations
                # data, published apart with a short retention (an audit, D10).
                "output": _topic(
                    "logs.aggregates",
                    "760d",
                    "aggregates",
                    partitions=1,
                    what="Kafka topic of the aggregates of windows of 1h or longer "
                    "(analytics: product 1h and 1d)",
                ),
                "ops_output": _topic(
                    "logs.aggregates.ops",
                    "7d",
                    "operations",
                    partitions=1,
                    what="Kafka topic of the aggregates of windows shorter than 1h "
                    "(operations data: ops 5m)",
                ),
                "input": _topic("logfog.agg.input", "1d", "operations"),
                "partials": Section(
                    {
                        **_topic("logfog.agg.partials", "1d", "operations").keys,
                        "partitions": Key(
                            int,
                            1,
                            "partitions: must be 1 (one merge agent sees every "
                            "input partition's partials)",
                            check=_one_partition,
                            json={"const": 1},
                        ),
                    }
                ),
                "state": _topic("logfog.agg.state", "3d", "operations", partitions=1),
            },
            "windowed aggregates with a minimum group size (internal topics hold pseudonyms: "
            "short retention)",
        ),
        "destinations": MapOf(
            Section(
                {
                    "kind": Key(
                        str,
                        _KINDS[0],
                        "operations or analytics: sets the privacy floors",
                        choices=_KINDS,
                    ),
                    "topic": Key(
                        str, REQUIRED, "Kafka topic", check=topic_name_problem, json=TOPIC_JSON
                    ),
                    "partitions": Key(int, 4, "partitions", minimum=1),
                    "retention": _duration_key(
                        "7d",
                        f"retention, at most {RETENTION_LIMITS['operations'] // DAY}d "
                        f"(operations) or {RETENTION_LIMITS['analytics'] // DAY}d (analytics)",
                        _duration(positive=True),  # the limit of its kind: _check_retention
                    ),
                    "replication": REPLICATION,
                    "framing": Key(
                        str,
                        "record",
                        "'record' (one event per Kafka record) or 'ndjson' (batches)",
                        choices=("record", "ndjson"),
                    ),
                    "key": Key((str, type(None)), None, "output field used as the Kafka key"),
                    "fields": MapOf(
                        None,
                        "output field name -> rule",
                        min_items=1,
                        json={"propertyNames": {"minLength": 1}},
                    ),
                }
            ),
            "output streams, each built only from the fields its rules name",
            min_items=1,
            json={
                "propertyNames": {
                    **DESTINATION_NAME_JSON,
                    "not": {"anyOf": [{"enum": list(RESERVED_DESTINATIONS)}, {"pattern": "^_"}]},
                }
            },
        ),
    }
)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", bool: "true/false", list: "a list",
             dict: "a mapping", float: "a number", type(None): "null"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return hint


def _validate_section(
    data: Any, section: Section, path: str, errors: list[str], out: dict[str, Any]
) -> None:
    if not isinstance(data, dict):
        errors.append(f"{path or '<top>'}: must be a mapping")
        data = {}
    for name in data:
        if name not in section.keys:
            errors.append(
                f"{_join(path, str(name))}: unknown key{_unknown(str(name), list(section.keys))}"
            )
    for name, spec in section.keys.items():
        where = _join(path, name)
        if isinstance(spec, Section):
            sub: dict[str, Any] = {}
            _validate_section(data.get(name, {}), spec, where, errors, sub)
            out[name] = sub
        elif isinstance(spec, MapOf):
            out[name] = data.get(name, {})
        elif name not in data:
            if spec.default is REQUIRED:
                errors.append(f"{where}: required")
            # A copy: a normalized config may be changed by its user; the next
            # normalize must still see the declared default.
            out[name] = copy.deepcopy(spec.default)
        else:
            out[name] = _check_value(data[name], spec, where, errors)


def _check_value(value: Any, spec: Key | Option, where: str, errors: list[str]) -> Any:
    if not _type_ok(value, spec.kind):
        shown = type(value).__name__ if getattr(spec, "secret", False) else repr(value)
        errors.append(f"{where}: must be {_type_name(spec.kind)}, not {shown}")
        return value
    minimum = getattr(spec, "minimum", None)
    if spec.choices is not None and value not in spec.choices:
        choices = list(map(str, spec.choices))
        wanted = choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
        errors.append(f"{where}: {value!r} is not {wanted}")
    elif minimum is not None and value < minimum:
        errors.append(f"{where}: must be at least {minimum}, not {value!r}")
    elif isinstance(spec, Key) and type(value) is int and value > (spec.maximum or INT32_MAX):
        errors.append(f"{where}: must be at most {spec.maximum or INT32_MAX}, not {value!r}")
    elif spec.check is not None:
        problem = spec.check(value)
        if problem:
            errors.append(f"{where}: {problem}")
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _validate_rule(
    rule: Any,
    path: str,
    kind: str,
    site: str,
    errors: list[str],
    warnings: list[str],
    internal: bool = False,
) -> dict[str, Any] | None:
    """One field rule, checked and normalized (None: refused, errors appended).
    ``internal``: the rule belongs to the internal aggregation stream, which never
    leaves the cluster (the only place ``scope: client`` is allowed)."""
    if not isinstance(rule, dict):
        errors.append(f"{path}: a rule is a mapping like {{from: ..., action: ...}}")
        return None
    action_name = rule.get("action")
    spec = REGISTRY.get(action_name) if isinstance(action_name, str) else None
    ok = True
    if spec is None:
        # Still check the rest of the rule below: one mistake must not hide another.
        hint = _unknown(str(action_name), list(REGISTRY)) if action_name else ""
        errors.append(
            f"{path}: "
            + (f"unknown action {action_name!r}{hint}" if action_name else "'action' is required")
            + ("" if hint else f"; actions: {', '.join(sorted(REGISTRY))}")
        )
        ok = False
    sources = rule.get("from")
    source_list = [sources] if isinstance(sources, str) else sources
    if sources is None:
        errors.append(f"{path}: 'from' is required")
        ok = False
    elif not isinstance(source_list, list) or not all(isinstance(s, str) for s in source_list):
        errors.append(f"{path}.from: must be a field name or a list of them")
        ok = False
    elif not source_list:
        errors.append(f"{path}.from: names no field (give a field name or a list of them)")
        ok = False
    else:
        if spec is not None and len(source_list) > 1 and not spec.multi:
            errors.append(f"{path}.from: {action_name} takes one field, not {len(source_list)}")
            ok = False
        for s in source_list:
            if s not in SOURCES:
                errors.append(f"{path}.from: unknown field {s!r}{_unknown(s, list(SOURCES))}")
                ok = False
            elif spec is not None and spec.accepts is not None and s not in spec.accepts:
                errors.append(
                    f"{path}.from: {action_name} cannot read {s} "
                    f"(it reads: {', '.join(sorted(spec.accepts))})"
                )
                ok = False
    if spec is None:
        return None
    unsafe = rule.get("unsafe", False)
    if not isinstance(unsafe, bool):
        errors.append(f"{path}.unsafe: must be true/false")
        unsafe = False
    options: dict[str, Any] = {}
    known = {o.name: o for o in spec.options}
    for name in rule:
        if name in ("from", "action", "unsafe"):
            continue
        if name not in known:
            errors.append(f"{path}: unknown option {name!r}{_unknown(name, list(known))}")
            ok = False
    for name, option in known.items():
        if name in rule:
            before = len(errors)
            options[name] = _check_value(rule[name], option, f"{path}.{name}", errors)
            ok = ok and len(errors) == before
        elif option.required:
            errors.append(f"{path}.{name}: required by {action_name}")
            ok = False
        else:
            options[name] = copy.deepcopy(option.default)
    if not ok:
        return None
    assert source_list is not None
    if action_name == "pseudonymize" and options["scope"] == "client" and not internal:
        # No unsafe override: a published pseudonym linking sites is scope: global's
        # case (refused unless unsafe); client scope exists for the internal stream only.
        errors.append(
            f"{path}.scope: 'client' is for logfog's internal aggregation stream only: a "
            "published pseudonym must not link one visitor across sites (rule 5); use "
            "scope: site"
        )
        return None
    warned = len(warnings)
    if action_name == "keep":
        exposed = [s for s in source_list if s in SENSITIVE]
        if exposed and not unsafe:
            errors.append(
                f"{path}: keep would publish {exposed[0]} as it is (raw personal data); "
                "use a transforming action, or set unsafe: true to override"
            )
            return None
        if exposed:
            warnings.append(f"{path}: UNSAFE: publishes {exposed[0]} unchanged (unsafe: true)")
    context = BuildContext(
        destination_kind=kind, site=site, unsafe=unsafe, sources=tuple(source_list)
    )
    if spec.refuse is not None:  # whatever unsafe says, and before "or set unsafe: true"
        problems = spec.refuse(options, context)
        if problems:
            errors.extend(f"{path}: {p}" for p in problems)
            return None
    problems = _source_problems(spec.name, options, source_list, kind)
    if problems and not unsafe:
        errors.extend(f"{path}: {p} (or set unsafe: true to override)" for p in problems)
        return None
    warnings.extend(f"{path}: UNSAFE: {p}" for p in problems)
    if spec.validate is not None:
        # Judged as if unsafe were false (an action passes anything unsafe), so that
        # what unsafe: true overrides is a warning here, which check-config shows and
        # every command logs: the single list of them.
        problems = spec.validate(options, replace(context, unsafe=False))
        if problems and unsafe:
            warnings.extend(f"{path}: UNSAFE: {_OVERRIDE_HINT.sub('', p)}" for p in problems)
        elif problems:
            errors.extend(f"{path}: {p}" for p in problems)
            return None
    if unsafe and len(warnings) == warned:
        warnings.append(
            f"{path}: unsafe: true overrides no privacy check of this rule; remove it (with "
            "it, a later edit of the rule would pass unchecked)"
        )
    # After the check above: an ignored option is no privacy check that unsafe overrides.
    warnings.extend(_ignored_options(spec.name, rule, options, path))
    return {"action": action_name, "from": source_list, "unsafe": unsafe, "options": options}


def _ignored_options(
    action: str, rule: Mapping[str, Any], options: Mapping[str, Any], path: str
) -> list[str]:
    """Options a rule gives that its other options leave without effect. Valid, so not
    errors; but whoever reads the rule believes them in force (an audit: bins beside
    ``to: status_class``, an allow_query beside ``keep_query: false``). Only options
    the rule gives itself: a default is nobody's claim.

    >>> _ignored_options("generalize", {"to": "status_class", "bins": [100]},
    ...                  {"to": "status_class", "bins": [100]}, "d.fields.s")
    ['d.fields.s.bins: has no effect: to: status_class does not bin (bins are the edges \
of to: bins only); remove bins']
    """
    if action == "generalize" and rule.get("bins") and options["to"] != "bins":
        return [
            f"{path}.bins: has no effect: to: {options['to']} does not bin (bins are the "
            "edges of to: bins only); remove bins"
        ]
    if action == "url_policy" and rule.get("allow_query") and not options["keep_query"]:
        return [
            f"{path}.allow_query: has no effect: keep_query: false drops the whole query; "
            "remove allow_query, or set keep_query: true to keep the keys it lists"
        ]
    if action == "referrer_policy" and rule.get("allow_query") and options["same_site"] == "domain":
        return [
            f"{path}.allow_query: has no effect: same_site: domain publishes a same-site "
            "referrer as its domain, with no path or query (allow_query filters the query "
            "of same-site paths only); remove allow_query, or set same_site: path"
        ]
    return []


#: How an action's message says that unsafe: true would allow it: not in a warning.
_OVERRIDE_HINT: Final = re.compile(
    r" \((?:or )?set unsafe: true to override\)$|; needs unsafe: true$"
)


def _source_problems(
    action: str, options: Mapping[str, Any], sources: list[str], kind: str
) -> list[str]:
    """Sources this action would publish below a privacy floor (rules 4 and 8)."""
    problems = []
    if action not in BUCKETED_ACTIONS:
        for source in sources:
            if source in BUCKETED:
                floor = "1h" if kind == "analytics" else "1m"
                problems.append(
                    f"{action} would publish {source} to the second, finer than {floor}, "
                    f"the limit for {kind} output (rule 8); use coarsen_time"
                )
    if kind == "analytics" and action != "drop":
        # What the rule publishes: generalize to a geo level reads that level instead.
        retarget = REGISTRY[action].retarget
        for source in sources:
            published = retarget(options, source) if retarget is not None else source
            reason = NOT_IN_ANALYTICS.get(published)
            if reason is None:
                continue
            what = published if published == source else f"{published} (from {source})"
            hint = (
                "generalize it to country" if published in ("geo.region", "geo.city") else "drop it"
            )
            problems.append(
                f"{action} would publish {what} in an analytics destination: {reason}; {hint}"
            )
    return problems


def _key_problem(rule: Mapping[str, Any]) -> str | None:
    """Why a field may not be a destination's Kafka key (rule 2: keys carry no raw IP or
    identifier; keys are not swept or shown like values, and outlive nothing less)."""
    if rule["action"] == "drop":
        return "is dropped, so there is no value to key by"
    if rule["unsafe"]:
        return (
            "comes from a rule with unsafe: true; a Kafka key must never carry a raw IP or "
            "identifier (rule 2): key by a pseudonymized field"
        )
    return None


#: logfog's own topics, by their place in the config.
OWN_TOPICS = ("kafka.raw", "kafka.dead_letter", "keys", "aggregates.output",
              "aggregates.ops_output", "aggregates.input", "aggregates.partials",
              "aggregates.state")  # fmt: skip


def _own_topics(config: Mapping[str, Any], errors: list[str]) -> dict[str, str]:
    """topic -> its place (``kafka.raw.topic``...) for logfog's own topics, whether or
    not aggregation is on; two places naming one topic are an error. A destination on
    one of them would mix its events into raw lines, dead letters, keys or aggregation
    state, and ``topics create`` (like the worker's start) refuses a topic twice.

    >>> errors = []
    >>> own = _own_topics({"kafka": {"raw": {"topic": "a"}, "dead_letter": {"topic": "a"}}},
    ...                   errors)
    >>> own, errors
    ({'a': 'kafka.raw.topic'}, ["kafka.dead_letter.topic: 'a' is already kafka.raw.topic"])
    """
    own: dict[str, str] = {}
    for place in OWN_TOPICS:
        section: Any = config
        for part in place.split("."):
            section = section.get(part) if isinstance(section, Mapping) else None
        topic = section.get("topic") if isinstance(section, Mapping) else None
        if not isinstance(topic, str):
            continue  # absent or mistyped: the schema check says so
        if topic in own:
            errors.append(f"{place}.topic: {topic!r} is already {own[topic]}")
        else:
            own[topic] = f"{place}.topic"
    return own


def validate(data: Any, warnings: list[str] | None = None) -> list[str]:
    """All problems in ``data`` (a parsed config), as ``place: message`` strings."""
    errors: list[str] = []
    normalize(data, errors, [] if warnings is None else warnings)
    return errors


def normalize(data: Any, errors: list[str], warnings: list[str]) -> dict[str, Any]:
    """Validate, fill defaults, and return the normalized config (meaningful if no errors)."""
    out: dict[str, Any] = {}
    _validate_section(data, SCHEMA, "", errors, out)
    _check_input(out["input"], errors, warnings)
    _check_kafka_security(out["kafka"]["security"], errors, warnings)
    destinations = out.get("destinations") or {}
    if not isinstance(destinations, dict):
        errors.append("destinations: must be a mapping of names to destinations")
        destinations = {}
    if not destinations:
        errors.append("destinations: at least one destination is required")
    dest_schema = SCHEMA.keys["destinations"]
    assert isinstance(dest_schema, MapOf) and dest_schema.item is not None
    normalized: dict[str, Any] = {}
    topics: dict[str, str] = {}
    own = _own_topics(out, errors)
    for name, dest in destinations.items():
        where = f"destinations.{name}"
        if str(name) in RESERVED_DESTINATIONS or str(name).startswith("_"):
            errors.append(
                f"{where}: the name is reserved for logfog's own outputs "
                f"({', '.join(RESERVED_DESTINATIONS)}, and names starting with '_')"
            )
        elif not _DESTINATION_NAME.fullmatch(str(name)):
            errors.append(
                f"{where}: {str(name)!r} is not a safe name (it names the file NAME.ndjson of "
                "logfog anonymize -o): up to 200 letters, digits, '_', '.' and '-', starting "
                "with a letter or digit, without '..'"
            )
        d: dict[str, Any] = {}
        _validate_section(dest, dest_schema.item, where, errors, d)
        topic = d.get("topic")
        if isinstance(topic, str):
            if topic in topics:
                errors.append(
                    f"{where}.topic: {topic!r} is already used by destinations.{topics[topic]}"
                )
            elif topic in own:
                errors.append(f"{where}.topic: {topic!r} is logfog's own {own[topic]}; a "
                              "destination needs a topic of its own")  # fmt: skip
            topics[topic] = name
        fields = d.get("fields") or {}
        if not isinstance(fields, dict):  # e.g. a list of rules: they need their names
            errors.append(f"{where}.fields: must be a mapping of output field names to rules, "
                          f"not {_type_name(type(fields))}")  # fmt: skip
            fields = {}
        elif not fields:
            errors.append(f"{where}.fields: at least one field rule is required")
        # A kind of the wrong type or value is reported above; the rules are still
        # checked, against the default kind (a list or mapping here raised TypeError).
        kind = d["kind"] if d["kind"] in _KINDS else _KINDS[0]
        rules: dict[str, Any] = {}
        if "" in fields:  # published as {"": ...}
            errors.append(f"{where}.fields: an output field name must not be empty")
        for field_name, rule in fields.items():
            checked = _validate_rule(
                rule, f"{where}.fields.{field_name}", kind, out.get("site", ""), errors,
                warnings,
            )  # fmt: skip
            if checked is not None:
                rules[str(field_name)] = checked
        d["fields"] = rules
        key = d.get("key")  # not a string: reported above (a list raised TypeError here)
        if isinstance(key, str) and key not in fields:
            errors.append(f"{where}.key: {key!r} is not one of this destination's fields")
        elif isinstance(key, str) and key in rules:
            problem = _key_problem(rules[key])
            if problem:
                errors.append(f"{where}.key: {key!r} {problem}")
        errors.extend(_geo_problems(rules, out.get("enrich", {}).get("geo", {}), where))
        normalized[str(name)] = d
    out["destinations"] = normalized
    _check_keys(out, errors, warnings)
    _check_privacy_defaults(out, errors, warnings)
    _check_retention(normalized, errors)
    _check_ignored_settings(data, out, errors, warnings)
    if out.get("aggregates", {}).get("enabled") and not errors:
        # The internal, visitor-keyed stream that feeds aggregation: built by the same
        # rules machinery (default deny, sweep), never published outside the cluster.
        geo = out.get("enrich", {}).get("geo", {})
        has_geo = any(geo.get(kind) for kind in ("city", "country"))
        internal = aggregate_input_destination(out["aggregates"]["input"], has_geo)
        sub_errors: list[str] = []
        d = {}
        _validate_section(internal, dest_schema.item, AGGREGATE_INPUT, sub_errors, d)
        d["fields"] = {
            name: _validate_rule(
                rule,
                f"{AGGREGATE_INPUT}.{name}",
                "operations",
                out.get("site", ""),
                sub_errors,
                warnings,
                internal=True,
            )
            for name, rule in internal["fields"].items()
        }
        errors.extend(sub_errors)
        normalized[AGGREGATE_INPUT] = d
    return out


def _check_input(section: Mapping[str, Any], errors: list[str], warnings: list[str]) -> None:
    """Input settings that are valid but likely mistakes (values refused are left to
    their message): nginx variables the parser throws away (a misspelled one among
    them), json_fields without the json format, and a trusted proxy network of every
    address."""
    import ipaddress

    bad = {e.split(":", 1)[0] for e in errors}
    formats = section["format"]
    if "input.format" not in bad:
        for i, spec in enumerate([formats] if isinstance(formats, str) else formats):
            unstored = nginx_unstored(spec[6:]) if spec.startswith("nginx:") else []
            if unstored:
                where = "input.format" if isinstance(formats, str) else f"input.format[{i}]"
                names = ", ".join(f"${name}{_did_you_mean(name)}" for name in unstored)
                warnings.append(
                    f"{where}: nginx variables matched but not stored (logfog does not read "
                    f"them; a misspelled one leaves its field null): {names}"
                )
    # Only the json format reads lines by key: a mapping beside text formats alone looks
    # like it configures their parsing, and nothing reads it.
    if (
        section["json_fields"]
        and not {"input.format", "input.json_fields"} & bad
        and "json" not in ([formats] if isinstance(formats, str) else formats)
    ):
        warnings.append(
            "input.json_fields: has no effect: input.format has no json (the keys it maps "
            "are read from JSON lines only); remove it, or add json to input.format"
        )
    if "input.trusted_proxies" not in bad:
        for item in section["trusted_proxies"]:
            if ipaddress.ip_network(str(item), strict=False).prefixlen == 0:
                warnings.append(
                    f"input.trusted_proxies: {item!r} is every address: any client can "
                    "choose the address logged for it (its X-Forwarded-For is believed); "
                    "name only your proxies' networks"
                )


def _did_you_mean(name: str) -> str:
    # Closer than difflib's default: $request_length is no typo of $request_method.
    close = difflib.get_close_matches(name, NGINX_STORED, n=1, cutoff=0.85)
    return f" (did you mean ${close[0]}?)" if close else ""


def _check_kafka_security(
    section: Mapping[str, Any], errors: list[str], warnings: list[str]
) -> None:
    """The cross-key rules of kafka.security over its well-typed keys. They used to be
    skipped whenever any key had an error, so a typo in check_hostname hid that
    SASL_SSL lacked its mechanism, user and password until the next round."""
    from streams import security

    prefix = "kafka.security."
    bad = {e.split(":", 1)[0].removeprefix(prefix) for e in errors if e.startswith(prefix)}
    # A bad key counts as unset (a bad protocol as unknown: security.problems then skips
    # the rules that depend on it), and a rule about a bad key says nothing new.
    usable = {name: None if name in bad else value for name, value in section.items()}
    errors.extend(message for keys, message in security.problems_by_key(usable) if not keys & bad)
    warnings.extend(security.warnings(usable))


#: Which geo databases yield each geo source field (any one of them will do).
GEO_DATABASES = {"geo.country": ("city", "country"), "geo.continent": ("city", "country"),
                 "geo.region": ("city",), "geo.city": ("city",), "geo.timezone": ("city",),
                 "geo.asn": ("asn", "city")}  # fmt: skip


def _geo_problems(rules: Mapping[str, Any], geo: Mapping[str, Any], where: str) -> list[str]:
    """Rules reading geo fields that no configured database can fill (always null)."""
    problems = []
    for field_name, rule in rules.items():
        if rule["action"] == "drop":
            continue
        retarget = REGISTRY[rule["action"]].retarget
        for source in rule["from"]:
            read = retarget(rule["options"], source) if retarget is not None else source
            kinds = GEO_DATABASES.get(read, ())
            if kinds and not any(geo.get(kind) for kind in kinds):
                need = " or ".join(f"enrich.geo.{kind}" for kind in kinds)
                problems.append(
                    f"{where}.fields.{field_name}.from: {read} needs {need} (always null without)"
                )
    return problems


#: Name of the internal destination feeding the aggregator (not a user destination).
AGGREGATE_INPUT = INTERNAL_DESTINATION


def _check_keys(config: Mapping[str, Any], errors: list[str], warnings: list[str]) -> None:
    """The key epoch against the aggregate windows (visitor counts)."""
    from streams.aggregate.spec import DEFAULT_SPECS, published_specs
    from streams.durations import format_duration

    keys = config.get("keys") or {}
    if not config.get("aggregates", {}).get("enabled") or not isinstance(keys.get("epoch"), str):
        return
    try:
        epoch = parse_duration(keys["epoch"])
    except ValueError:
        return  # reported by the schema check
    # Unknown names are reported by their own check: judge the defaults meanwhile.
    windows = published_specs(config["aggregates"].get("windows")) or DEFAULT_SPECS
    window = max(spec.window_seconds for spec in windows)
    if epoch <= 0 or epoch % window == 0:
        return
    # Aggregates count distinct visitors by pseudonym: a window that spans two key
    # epochs counts a returning visitor once per epoch.
    times = -(-window // epoch) + (0 if window % epoch == 0 else 1)
    problem = (
        f"keys.epoch: {keys['epoch']} with aggregates enabled: the "
        f"{format_duration(window)} windows count distinct visitors by pseudonym, and a "
        f"new key every {keys['epoch']} counts one visitor up to {times} times in a "
        f"window; use a multiple of {format_duration(window)}"
    )
    _opt_in([problem], "keys", keys, errors, warnings)


def _check_privacy_defaults(
    config: Mapping[str, Any], errors: list[str], warnings: list[str]
) -> None:
    """Settings past a privacy default (MIN_K, DEFAULT_MAX_EVENTS_PER_VISITOR, MAX_EPOCH,
    MAX_GRACE): an error, or with the section's ``unsafe: true`` a warning, which every
    command logs at startup. Values the schema refused are left to its message."""
    from streams.durations import format_duration

    aggregates = config.get("aggregates") or {}
    small: list[tuple[str, Any]] = [("aggregates.k", aggregates.get("k"))]
    k_by_output = aggregates.get("k_by_output")
    if isinstance(k_by_output, dict):
        small += [(f"aggregates.k_by_output.{name}", k) for name, k in k_by_output.items()]
    problems = [
        f"{place}: {k} is below {MIN_K}, the minimum group size of privacy rule 9 (smaller "
        "cells single out visitors)"
        for place, k in small
        if isinstance(k, int) and not isinstance(k, bool) and 2 <= k < MIN_K
    ]
    cap = aggregates.get("max_events_per_visitor")
    if (
        isinstance(cap, int)
        and not isinstance(cap, bool)
        and DEFAULT_MAX_EVENTS_PER_VISITOR < cap <= MAX_EVENTS_PER_VISITOR
    ):
        problems.append(
            f"aggregates.max_events_per_visitor: {cap} is above "
            f"{DEFAULT_MAX_EVENTS_PER_VISITOR}, the contribution cap of privacy rule 9 (one "
            "heavy visitor decides a cell's requests and bytes)"
        )
    _opt_in(problems, "aggregates", aggregates, errors, warnings)
    keys = config.get("keys") or {}
    problems = []
    for name, limit, why in (
        ("epoch", MAX_EPOCH, "the daily keys of privacy rule 5 (one key links a visitor's "
                             "requests for its whole epoch)"),
        ("grace", MAX_GRACE, "the short grace of privacy rule 5 (keys outlive their epoch "
                             "by it)"),
    ):  # fmt: skip
        try:
            seconds = parse_duration(keys[name]) if isinstance(keys.get(name), str) else 0
        except ValueError:
            continue  # reported by the schema check
        if seconds > limit:
            problems.append(
                f"keys.{name}: {keys[name]} is longer than {format_duration(limit)}, {why}"
            )
    _opt_in(problems, "keys", keys, errors, warnings)


def _given(data: Any, section: str) -> list[str]:
    """The keys the user wrote in a top-level section (defaults fill in the rest, and a
    default is nobody's claim)."""
    part = data.get(section) if isinstance(data, Mapping) else None
    return [str(name) for name in part] if isinstance(part, Mapping) else []


def _check_ignored_settings(
    data: Any, config: Mapping[str, Any], errors: list[str], warnings: list[str]
) -> None:
    """Settings of the aggregates and keys sections that other settings leave without
    effect: valid, but a reader of the config believes them in force (``k: 20`` with
    aggregation off publishes nothing at k = 20). Only keys the config gives; values the
    schema refused are left to its message.

    Rule options are :func:`_ignored_options`', input's :func:`_check_input`'s."""
    from streams.aggregate.spec import OUTPUT_WINDOWS, published_specs

    bad = {e.split(":", 1)[0] for e in errors}
    aggregates, given = config["aggregates"], _given(data, "aggregates")
    enabled = aggregates["enabled"] if "aggregates.enabled" not in bad else None
    if enabled is False:
        # unsafe left out: it still turns a k below 10 from an error into a warning.
        idle = [f"aggregates.{n}" for n in given if n not in ("enabled", "unsafe")]
        if idle:
            warnings.append(
                f"{', '.join(idle)}: {'has' if len(idle) == 1 else 'have'} no effect: "
                "aggregates.enabled is false, so nothing is aggregated; set enabled: true, "
                f"or remove {'it' if len(idle) == 1 else 'them'}"
            )
    elif enabled and "aggregates.windows" not in bad:
        published = published_specs(aggregates["windows"])
        outputs = sorted({spec.name for spec in published})
        by_output = aggregates["k_by_output"] if "aggregates.k_by_output" not in bad else {}
        for name in by_output:
            if name not in outputs:
                its = ", ".join(w for w in OUTPUT_WINDOWS if w.startswith(f"{name}/"))
                warnings.append(
                    f"aggregates.k_by_output.{name}: has no effect: aggregates.windows "
                    f"publishes no {name} window; remove it, or name one in "
                    f"aggregates.windows ({its})"
                )
        if "k" in given and all(name in by_output for name in outputs):
            warnings.append(
                "aggregates.k: has no effect: aggregates.k_by_output sets the k of every "
                f"published output ({', '.join(outputs)}); remove aggregates.k"
            )
        # Rows go to output (windows of 1h or more) or ops_output (shorter): a topic no
        # published window writes is never created nor written (streams.topics).
        for place, operations, what in (
            ("output", False, "of 1h or longer"),
            ("ops_output", True, "shorter than 1h"),
        ):
            if place in given and not any(s.operations == operations for s in published):
                warnings.append(
                    f"aggregates.{place}: has no effect: aggregates.windows publishes no "
                    f"window {what}, so nothing is written to this topic; remove it"
                )
    keys, given = config["keys"], _given(data, "keys")
    source = keys["source"]
    if "keys.source" not in bad and source not in ("auto", "shared"):
        # Never quoted: keys.source is secret (the likeliest mistake is the key itself).
        kind = "ephemeral" if source == "ephemeral" else "an env: or file: secret"
        if "topic" in given:
            warnings.append(
                f"keys.topic: has no effect: keys.source is {kind}, and only auto or "
                "shared keys go through this topic; remove it"
            )
        if "grace" in given and source != "ephemeral":
            warnings.append(
                "keys.grace: has no effect: keys derived from an env: or file: secret are "
                "never destroyed, so no grace ends them; remove it"
            )


def _check_retention(destinations: Mapping[str, Any], errors: list[str]) -> None:
    """Each destination's retention against the limit of its kind (rule 14,
    ``RETENTION_LIMITS``). Values the schema refused are left to its message."""
    for name, dest in destinations.items():
        kind, retention = dest.get("kind"), dest.get("retention")
        if not isinstance(retention, str):
            continue
        if kind not in ("operations", "analytics"):  # refused by the schema
            kind = "operations"
        try:
            seconds = parse_duration(retention)
        except ValueError:
            continue
        if seconds > RETENTION_LIMITS[kind]:
            errors.append(
                f"destinations.{name}.retention: {retention} is longer than the {kind} "
                f"limit of {RETENTION_LIMITS[kind] // DAY}d"
            )


def _opt_in(
    problems: list[str],
    section: str,
    values: Mapping[str, Any],
    errors: list[str],
    warnings: list[str],
) -> None:
    if values.get("unsafe") is True:
        warnings.extend(f"UNSAFE ({section}.unsafe: true): {p}" for p in problems)
    else:
        errors.extend(f"{p} (or {section}.unsafe: true)" for p in problems)


def pseudonymizes(config: Mapping[str, Any]) -> bool:
    """True if any rule pseudonymizes (and so the worker needs shared epoch keys)."""
    return any(
        rule["action"] == "pseudonymize"
        for dest in config["destinations"].values()
        for rule in dest["fields"].values()
    )


def worker_key_problems(config: Mapping[str, Any], warnings: list[str]) -> list[str]:
    """What ``logfog worker`` refuses in a normalized config's keys (rule 5).

    Workers of one cluster must compute the same pseudonym for the same visitor, and
    keys must be destroyed after epoch + grace: only shared keys do both. ``ephemeral``
    makes keys per worker (a visitor gets one pseudonym per worker), ``env:``/``file:``
    derive them from a secret (recomputable forever). ``keys.unsafe: true`` allows them
    (development), with a warning.

    >>> cfg = {"keys": {"source": "ephemeral", "unsafe": False}, "destinations": {"p": {
    ...     "fields": {"v": {"action": "pseudonymize"}}}}}
    >>> print(worker_key_problems(cfg, [])[0])  # doctest: +ELLIPSIS
    keys.source: 'ephemeral' in logfog worker: every worker makes its own keys...
    """
    keys = config["keys"]
    source = keys["source"]
    if source in ("auto", "shared") or not pseudonymizes(config):
        return []
    if source == "ephemeral":
        why = (
            "every worker makes its own keys, so one visitor gets a different pseudonym "
            "on each worker"
        )
    else:
        why = (
            "keys derived from a secret are never destroyed: whoever holds it can "
            "recompute every pseudonym, forever (rule 5)"
        )
    problem = f"keys.source: {source!r} in logfog worker: {why}; use auto or shared"
    errors: list[str] = []
    _opt_in([problem], "keys", keys, errors, warnings)  # unsafe: for development only
    return errors


def aggregate_input_destination(topic: Mapping[str, Any], has_geo: bool) -> dict[str, Any]:
    """The fields the aggregator needs, at the coarsest useful precision."""
    keep = "keep"
    destination: dict[str, Any] = {
        "kind": "operations",
        "topic": topic["topic"],
        "partitions": topic["partitions"],
        "retention": topic["retention"],
        "replication": topic["replication"],
        # NDJSON per partition of the visitor key: all of a visitor's events still go to
        # one partition, in a few large records (Faust's cost is per record).
        "framing": "ndjson",
        "key": "visitor",
        "fields": {
            "time": {"from": "request.time", "action": "coarsen_time", "bucket": "5m",
                     "format": "epoch"},
            # One pseudonym per client across sites: no aggregate is broken down by
            # site, so per-site pseudonyms made one client on k sites k visitors, a
            # published group by itself, with k times the contribution cap.
            "visitor": {"from": ["client.ip", "agent.original"], "action": "pseudonymize",
                        "scope": "client"},
            "route": {"from": "request.target", "action": "url_policy", "allow_query": []},
            "status_class": {"from": "response.status", "action": "generalize",
                             "to": "status_class"},
            "method": {"from": "request.method", "action": keep},
            "country": {"from": "geo.country", "action": keep},
            "region": {"from": "geo.region", "action": keep},
            "city": {"from": "geo.city", "action": keep},
            "browser": {"from": "agent.browser", "action": keep},
            "os": {"from": "agent.os", "action": keep},
            "device": {"from": "agent.device", "action": keep},
            "referrer": {"from": "request.referrer", "action": "referrer_policy",
                         "same_site": "domain"},
            "language": {"from": "request.language", "action": keep},
            "bytes": {"from": "response.bytes", "action": keep},
            "duration_ms": {"from": "response.duration_ms", "action": keep},
            "bot": {"from": "agent.is_bot", "action": keep},
        },
    }  # fmt: skip
    if not has_geo:
        for name in ("country", "region", "city"):
            del destination["fields"][name]
    return destination


def load_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """Read, validate and normalize a config file. Raises :class:`ConfigError`."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(source, [f"cannot read: {error.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:  # e.g. saved as Latin-1: was a traceback
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            source,
            [f"line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save it as UTF-8"],
        ) from None
    try:
        data = tomllib.loads(text) if source.endswith(".toml") else _load_yaml(source, text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            source,
            [
                f"{where}not valid {'TOML' if source.endswith('.toml') else 'YAML'}: "
                f"{getattr(error, 'problem', None) or error}"
            ],
        ) from None
    errors: list[str] = []
    warnings: list[str] = []
    config = normalize(data or {}, errors, warnings)
    if errors:
        raise ConfigError(source, errors, warnings)
    return config, warnings


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, noting every key given twice in one mapping. PyYAML keeps the
    last of them, so a second ``kafka:`` section or a second field of the same name
    silently replaced the first; tomllib refuses them, and so does logfog for YAML."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, int, str]] = []  # line, column, problem

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor": keys given beside a merge override it, by design
            key = self.construct_object(key_node, deep=True)
            mark = key_node.start_mark
            try:
                if key in first:
                    self.duplicates.append((mark.line, mark.column,
                        f"line {mark.line + 1}, column {mark.column + 1}: duplicate key "
                        f"{key!r} (first on line {first[key]})"))  # fmt: skip
                else:
                    first[key] = mark.line + 1
            except TypeError:
                continue  # an unhashable key: PyYAML's own error follows
        return super().construct_mapping(node, deep)


def _load_yaml(source: str, text: str) -> Any:
    loader = _YamlLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:  # in file order (outer mappings are built before inner ones)
        raise ConfigError(source, [problem for *_, problem in sorted(loader.duplicates)])
    return data


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the config, generated from the declarations above.

    It refuses what check-config refuses for static reasons that JSON Schema can state
    (types of list items, bounds, reserved names, the syntax of topics, durations and
    references, the sources an action reads) and never what check-config accepts.
    Cross-key rules (security, privacy floors, unique topics) stay with check-config.
    """

    def key_schema(key: Key | Option) -> dict[str, Any]:
        kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
        names = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "object",
                 float: "number", type(None): "null"}  # fmt: skip
        types = [names[k] for k in kinds]
        schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if key.doc:
            schema["description"] = key.doc
        if key.default is not REQUIRED:
            schema["default"] = key.default
        if key.choices is not None:
            schema["enum"] = list(key.choices)
        if getattr(key, "minimum", None) is not None:
            schema["minimum"] = getattr(key, "minimum", None)
        if int in kinds and isinstance(key, Key):
            schema["maximum"] = key.maximum or INT32_MAX
        if list in kinds:
            schema["items"] = {"type": "string"}  # kind list: a list of strings
        schema.update(key.json or {})
        return schema

    def section_schema(section: Section) -> dict[str, Any]:
        props: dict[str, Any] = {}
        required = []
        for name, spec in section.keys.items():
            if isinstance(spec, Section):
                props[name] = section_schema(spec)
            elif isinstance(spec, MapOf):
                item = section_schema(spec.item) if spec.item else {"$ref": "#/$defs/rule"}
                props[name] = {
                    "type": "object",
                    "description": spec.doc,
                    "additionalProperties": item,
                }
                if spec.min_items:
                    props[name]["minProperties"] = spec.min_items
                    required.append(name)
                props[name].update(spec.json or {})
            else:
                props[name] = key_schema(spec)
                if spec.default is REQUIRED:
                    required.append(name)
        out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if section.doc:
            out["description"] = section.doc
        if required:
            out["required"] = required
        return out

    def from_schema(spec: ActionSpec, sources: Iterable[str]) -> dict[str, Any]:
        """A field name or a list of them: one for single-field actions."""
        names = {"enum": sorted(sources)}
        many: dict[str, Any] = {"type": "array", "items": names, "minItems": 1}
        if not spec.multi:
            many["maxItems"] = 1
        return {"oneOf": [names, many]}

    rule_variants = []
    for spec in REGISTRY.values():
        props: dict[str, Any] = {
            "action": {"const": spec.name, "description": spec.doc},
            "from": from_schema(spec, spec.accepts or SOURCES),
            "unsafe": {"type": "boolean", "default": False,
                       "description": "allow publishing personal data (logged at startup)"},
        }  # fmt: skip
        for option in spec.options:
            props[option.name] = key_schema(option)
        variant: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "required": ["from", "action"],
            "additionalProperties": False,
        }
        if spec.reads_by is not None:
            # The sources per option value, unless unsafe: true (then validate warns);
            # with it, those the value applies to at all (refuse refuses the others).
            option_name, reads = spec.reads_by
            default = next(o.default for o in spec.options if o.name == option_name)
            by_unsafe = [(False, reads), (None, spec.applies_by or {})]
            variant["allOf"] = [
                {
                    "if": {
                        "properties": {
                            option_name: {"const": value},
                            **({} if unsafe is None else {"unsafe": {"const": unsafe}}),
                        },
                        **({} if value == default else {"required": [option_name]}),
                    },
                    "then": {"properties": {"from": from_schema(spec, sources[value])}},
                }
                for unsafe, sources in by_unsafe
                for value in sources
            ]
        rule_variants.append(variant)
    schema = section_schema(SCHEMA)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "logfog configuration"
    schema["$defs"] = {"rule": {"oneOf": rule_variants}}
    return schema


def _reads_by_cell(spec: ActionSpec) -> str:
    """What an action with ``reads_by`` reads, per option value, in the reference."""
    assert spec.reads_by is not None
    by, sources = spec.reads_by
    if spec.applies_by is None:
        return "; ".join(f"`{by}: {value}`: {', '.join(sorted(sources[value]))}"
                         for value in sources) + " (others only with `unsafe: true`)"  # fmt: skip
    cells = []
    for value, reads in sources.items():
        extra = sorted(spec.applies_by.get(value, frozenset()) - reads)
        more = f" (with `unsafe: true` also {', '.join(extra)})" if extra else ""
        cells.append(f"`{by}: {value}`: {', '.join(sorted(reads))}{more}")
    return "; ".join(cells) + " (no other field, even with `unsafe: true`)"


def reference_markdown() -> str:
    """The configuration reference for the README, generated from the same declarations.

    >>> "| `input.format` |" in reference_markdown()
    True
    """

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(section: Section, prefix: str) -> None:
        for name, spec in section.keys.items():
            path = f"{prefix}{name}"
            if isinstance(spec, Section):
                walk(spec, path + ".")
            elif isinstance(spec, MapOf):
                if spec.item is not None:
                    walk(spec.item, path + ".NAME.")
                else:
                    lines.append(f"| `{path}.FIELD` | rule | | {cell(spec.doc)} |")
            else:
                default = "required" if spec.default is REQUIRED else f"`{spec.default!r}`"
                kinds = _type_name(spec.kind)
                choices = f" One of: {', '.join(map(str, spec.choices))}." if spec.choices else ""
                minimum = (
                    spec.minimum if spec.minimum is not None else (spec.json or {}).get("minimum")
                )
                if minimum is not None:
                    choices += f" At least {minimum}."
                if spec.maximum is not None:
                    choices += f" At most {spec.maximum}."
                lines.append(f"| `{path}` | {kinds} | {default} | {cell(spec.doc)}{choices} |")

    walk(SCHEMA, "")
    lines += ["", "Field rules (`destinations.NAME.fields.FIELD`): `from` (a source field, or a",
              "list of them: several only for `pseudonymize`), `action`, optional `unsafe: true`,",
              "and the action's options:", "",
              "| action | reads | option | type | default | meaning |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for action in sorted(REGISTRY):
        spec_ = REGISTRY[action]
        reads = ", ".join(sorted(spec_.accepts)) if spec_.accepts else "any field"
        if spec_.reads_by is not None:
            reads = _reads_by_cell(spec_)
        lines.append(f"| `{action}` | {reads} | | | | {cell(spec_.doc)} |")
        for option in spec_.options:
            default = "required" if option.required else f"`{option.default!r}`"
            lines.append(f"| | | `{option.name}` | {_type_name(option.kind)} | {default} | "
                         f"{cell(option.doc)} |")  # fmt: skip
    lines += ["", "Source fields (`from:`):", "", "| field | kind | sensitive | meaning |",
              "|---|---|---|---|"]  # fmt: skip
    for source in SOURCES.values():
        lines.append(f"| `{source.name}` | {source.kind} | {'yes' if source.sensitive else ''} | "
                     f"{cell(source.doc)} |")  # fmt: skip
    return "\n".join(lines) + "\n"
