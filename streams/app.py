"""The streaming worker: with ``streams.faust_fetcher``, the only code that imports Faust.

One agent reads the raw topic, takes events in batches without acknowledging them,
runs the pure pipeline over every line of every record, publishes the batch through
the aiokafka producer (``streams.publish``) and acknowledges the source events only
after the broker has acknowledged every output record. A crash or ``kill -9`` at any
point therefore replays at most the unacknowledged batches: at-least-once, duplicates
bounded by the commit interval plus one batch.

Failure rules (``work_chunk``):
- a bad line is a dead letter (reason code, coordinates), never an exception;
- a failing rule is a ``rules.error`` dead letter (the pipeline catches it);
- no epoch key can be agreed (key topic or broker down): no fault of the lines, so
  the batch is held, unacknowledged, and run again with backoff until keys are back;
- a broker that will not take our records: the batch is retried with backoff and
  nothing is acknowledged meanwhile; the agent never dies over it;
- a publish error that retrying cannot fix (a record the broker refuses for good, a
  bug of ours): the batch is published record by record, and the lines of a record
  that still fails are ``publish.error`` dead letters; never a retry loop;
- SIGTERM: the agent takes nothing new, finishes the chunk in flight (publish, ack)
  and commits before Faust stops the consumer (``InFlight``); exit 0. The rest of
  the take was never published: the next owner reads it, no duplicates.

Web endpoints (Faust's web server): ``/healthz``, ``/readyz``, ``/metrics``
(Prometheus), ``/status`` (a small live page) and ``/status.json``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("logfog.worker")

# Faust events per take (each may carry many lines). 2000 -> 5000: +9%, +9% and +32%
# at one line per record (interleaved pairs). A take is worked in CHUNK_BYTES steps, and
# the stream buffer, not the take, bounds what the worker holds.
BATCH_EVENTS = 5000
BATCH_WITHIN = 0.05  # seconds to wait for a batch to fill
CHUNK_BYTES = 1 << 20  # raw bytes per pipeline step within a take (about 5,000 lines)
RETRY_MAX_SECONDS = 10.0
#: The ``aggregates.run_in`` values under which ``logfog aggregator`` processes count:
#: started by hand ("aggregator") or by every worker as its child ("process").
AGGREGATOR_RUNS_IN = ("aggregator", "process")
# Raw input the stream buffer may hold. Faust bounds it in events (stream_buffer_maxsize):
# a few MB at one line per record, but ~1.5 GB of 500-line records, so the agent sizes
# it from the records it sees. Measured: a 3M-line backlog of 500-line records took
# the worker to ~1 GB RSS before.
BUFFER_BYTES = 128 << 20


def buffer_events(mean_record_bytes: float, most: int, budget: int = BUFFER_BYTES) -> int:
    """How many records of ``mean_record_bytes`` the stream buffer may hold: ``budget``
    bytes' worth, at most ``most`` (Faust's setting), at least 64.

    >>> buffer_events(250, 16384)  # one line per record: Faust's own bound
    16384
    >>> buffer_events(120_000, 16384)  # 500 lines per record: ~128 MB
    1118
    >>> buffer_events(0, 16384), buffer_events(10**9, 16384)
    (16384, 64)
    """
    return max(64, min(most, int(budget // max(mean_record_bytes, 1.0))))


def fit_buffer(stream: Any, taken: list[Any], most: int) -> None:
    """Bound ``stream``'s buffer by bytes, from the mean size of the records just taken
    (Faust bounds it in records: of ~1 MB records, a backlog filled it with gigabytes).
    ``most``: Faust's setting, not the buffer's current size: an agent Faust restarts
    would find the buffer already resized and could never grow it back."""
    from streams import faust_fetcher

    mean_bytes = sum(len(e.message.value or b"") for e in taken) / len(taken)
    faust_fetcher.resize_buffer(stream.channel.queue, buffer_events(mean_bytes, most))


def chunk_by_size(events: list[Any], limit: int) -> list[list[Any]]:
    """Split a take into runs of events whose values add up to about ``limit`` bytes
    (a run ends at the first event that reaches it; an event is never split).

    >>> from types import SimpleNamespace as E
    >>> evs = [E(message=E(value=None if n is None else b"x" * n)) for n in (3, 3, 3, None, 9, 1)]
    >>> [[len(e.message.value or b"") for e in run] for run in chunk_by_size(evs, 5)]
    [[3, 3], [3, 0, 9], [1]]
    """
    runs: list[list[Any]] = []
    run: list[Any] = []
    size = 0
    for event in events:
        run.append(event)
        size += len(event.message.value or b"")
        if size >= limit:
            runs.append(run)
            run, size = [], 0
    if run:
        runs.append(run)
    return runs


#: LOGFOG_SESSION_TIMEOUT's default, seconds: quick group joins on the local broker.
DEFAULT_SESSION_TIMEOUT_S = 6.0
#: LOGFOG_STOP_TIMEOUT's default, seconds: a stop that takes longer exits 3.
DEFAULT_STOP_TIMEOUT_S = 25.0
#: LOGFOG_WEB_BIND's default: the status pages have no authentication.
DEFAULT_WEB_BIND = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ProcessEnv:
    """The environment a worker or aggregator reads, parsed and checked once at start
    (:func:`process_env`): a typo is one line and exit 2 before the broker wait, not a
    traceback after it, nor an exception inside the SIGTERM handler."""

    session_timeout_s: float  # LOGFOG_SESSION_TIMEOUT
    stop_timeout_s: float  # LOGFOG_STOP_TIMEOUT
    web_bind: str  # LOGFOG_WEB_BIND
    data_dir: str  # LOGFOG_DATA_DIR, else <tmp>/logfog/<kafka.group>; exists, writable


def process_env(config: Mapping[str, Any]) -> ProcessEnv:
    """Read and check ``LOGFOG_SESSION_TIMEOUT`` (seconds, at least 1; default 6),
    ``LOGFOG_STOP_TIMEOUT`` (seconds, 0 or more; default 25), ``LOGFOG_WEB_BIND`` (an
    address or host name this host can listen on; default 127.0.0.1) and
    ``LOGFOG_DATA_DIR`` (created if missing; must be a writable directory). Unset or
    empty: the default. Raises ``streams.cli.UserError`` naming the variable."""
    from streams.cli import UserError

    data_dir = os.environ.get("LOGFOG_DATA_DIR") or str(
        Path(tempfile.gettempdir()) / "logfog" / config["kafka"]["group"]
    )
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"LOGFOG_DATA_DIR: {data_dir}: {error.strerror}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise UserError(f"LOGFOG_DATA_DIR: {data_dir}: not writable")
    return ProcessEnv(
        session_timeout_s=_env_seconds("LOGFOG_SESSION_TIMEOUT", DEFAULT_SESSION_TIMEOUT_S, 1.0),
        stop_timeout_s=_env_seconds("LOGFOG_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT_S, 0.0),
        web_bind=_env_bind("LOGFOG_WEB_BIND", DEFAULT_WEB_BIND),
        data_dir=data_dir,
    )


def _env_seconds(name: str, default: float, least: float) -> float:
    """A number of seconds of at least ``least`` from the environment (unset: default)."""
    from streams.cli import UserError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < least:
        raise UserError(f"{name}: {text!r} is not a number of seconds (at least {least:g})")
    return value


def _env_bind(name: str, default: str) -> str:
    """An address (or host name) to listen on from the environment, tried now: the web
    server would fail on it only once the broker is up and the app starts."""
    from streams.cli import UserError

    host = os.environ.get(name, "").strip() or default
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)  # port 0: any free port, released at once
    except (OSError, UnicodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "no address"
        raise UserError(f"{name}: {host!r} is no address to listen on here ({reason})") from None
    return host


def check_web_port(host: str, port: int, what: str, options: str) -> None:
    """Fail now, in one line, if the web server cannot listen on ``port`` of ``host``
    (``LOGFOG_WEB_BIND``). Faust binds it only after the broker wait and the topic
    checks: a port in use was an OSError stack and exit 1 there, and the aggregator
    child's a restart loop while the worker reported ready. Probed as asyncio binds
    (``SO_REUSEADDR``, every address of the host) and released at once: a process that
    takes the port between this check and Faust's own bind still fails there."""
    from streams.cli import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):  # pragma: no cover - process_env checked the host
        return
    for family, kind, proto, _name, address in dict.fromkeys(infos):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:  # pragma: no cover - a family this host lacks: asyncio skips it
            continue
        with probe:
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
            except OSError as error:
                in_use = error.errno == errno.EADDRINUSE
                reason = "already in use" if in_use else error.strerror or type(error).__name__
                raise UserError(f"{what} {port} on {host}: {reason} (give another with "
                                f"{options})") from None  # fmt: skip


def faust_settings(
    config: Mapping[str, Any],
    bootstrap: str,
    web_port: int,
    security: Any = None,
    env: ProcessEnv | None = None,
) -> dict[str, Any]:
    """Faust settings tuned for fast group joins (see bench/NOTES-faust.md).

    ``security`` (``streams.security.KafkaSecurity``; default: resolved from the
    config's ``kafka.security``) becomes Faust's ``broker_credentials``; ``env`` (default:
    :func:`process_env`) gives the session timeout, web bind address and data dir.

    The short session/rebalance timeouts suit the local broker and tests; on a
    production cluster set ``LOGFOG_SESSION_TIMEOUT`` higher (e.g. 30) to ride out
    GC or CPU pauses without spurious rebalances.
    """
    from streams.logjson import faust_logging_config

    env = env or process_env(config)
    session = env.session_timeout_s
    return {
        "broker": [f"kafka://{b.strip()}" for b in bootstrap.split(",")],
        "broker_credentials": broker_credentials(security or _security(config)),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "web_enabled": True,
        "web_port": web_port,
        # The status page has no authentication: loopback unless told otherwise (the
        # container image sets 0.0.0.0 for probes and scraping; see streams/status.py).
        "web_bind": env.web_bind,
        "web_in_thread": False,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": session,
        "broker_heartbeat_interval": max(0.5, session / 12),
        "broker_rebalance_timeout": session,
        "stream_recovery_delay": 0.0,
        "broker_commit_every": 10_000,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 16_384,
        "broker_max_poll_records": 5_000,
        "producer_linger": 0.005,
        "producer_max_batch_size": 1 << 20,
        # Window checkpoints can be several MB (the state topic allows 64 MB records).
        "producer_max_request_size": 64 << 20,
        "producer_acks": -1,
        "producer_compression_type": _compression(config["kafka"]["compression"]),
        # The anonymize agent's stop is InFlight's (one chunk, then commit). Faust's
        # wait_empty would also wait for the aggregation's events, acknowledged only
        # with a checkpoint, that is, until the stop watchdog.
        "stream_wait_empty": False,
        "topic_allow_declare": False,  # topics are created by logfog itself, explicitly
        # No "<group>-__assignor-__leader" topic: Faust's LeaderAssignor subscribes every
        # app to it, though logfog elects no leader (no on_leader tasks), and it is a
        # topic that `topics create` and deploy/ never make and the ACLs do not cover.
        "topic_disable_leader": True,
        "datadir": env.data_dir,
        # JSON lines unless --log-format text (None: Faust's own text format).
        "logging_config": faust_logging_config(),
    }


def _compression(codec: str) -> str | None:
    """aiokafka's ``compression_type`` for ``kafka.compression``.

    >>> _compression("none"), _compression("lz4")
    (None, 'lz4')
    """
    return None if codec == "none" else codec


def broker_credentials(security: Any) -> Any:
    """Faust's credentials object for ``security`` (None: PLAINTEXT)."""
    from streams.security import faust_credentials

    described = faust_credentials(security)
    if described is None:
        return None
    import faust.auth

    kind, kwargs = described
    return getattr(faust.auth, kind)(**kwargs)


def _security(config: Mapping[str, Any]) -> Any:
    from streams.security import from_config

    return from_config(config)


class WorkerState:
    """What the web views show; updated by the agent once per batch."""

    def __init__(self) -> None:
        self.started = time.time()
        self.ready = False
        self.batches = 0
        self.records_in = 0
        self.records_out = 0
        self.last_batch_at: float | None = None
        self.publish_failures = 0
        self.rates: list[tuple[float, int]] = []  # (time, lines so far) for the page
        self.aggregation: Any = None  # AggregationRuntime, when aggregates are enabled
        self.aggregator: Any = None  # the aggregator child's Supervisor (run_in: process)

    def note(self, lines: int) -> None:
        now = time.time()
        self.rates.append((now, lines))
        cutoff = now - 300
        while self.rates and self.rates[0][0] < cutoff:
            self.rates.pop(0)


class InFlight:
    """The anonymize agent's work in flight, so that a stop (SIGTERM) can finish it.

    The agent calls ``begin`` before a take and ``end`` after it; ``stop`` (from the
    app's ``on_stop``, before Faust stops the consumer and cancels the agents) refuses
    new takes, lets the agent finish the chunk it is in (process, publish, ack) and
    commit, then returns. What is left of the take is not acknowledged: the next owner
    reads it, and since it was never published, that is no duplicate. A chunk that
    cannot finish (broker or keys gone) is ended by the stop watchdog.
    """

    def __init__(self) -> None:
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> bool:
        if self.stopping:
            return False
        self._idle.clear()
        return True

    def end(self) -> None:
        self._idle.set()

    async def stop(self) -> None:
        self.stopping = True
        if not self._idle.is_set():
            log.info("stopping: finishing the chunk in flight")
        await self._idle.wait()


class NoLines:
    """The aggregator's stand-in for a pipeline: it reads no raw lines, so its line
    counters (``/metrics``, ``/status.json``) stay at zero."""

    def __init__(self) -> None:
        from streams.pipeline import Stats

        self.stats = Stats()
        self.names: tuple[str, ...] = ()
        self.geo = None


def create_app(
    config: Mapping[str, Any],
    pipeline: Any,
    *,
    bootstrap: str,
    web_port: int,
    topic_partitions: Mapping[str, int],
    role: str = "worker",
    security: Any = None,
    env: ProcessEnv | None = None,
) -> Any:
    """Build the Faust app, its agents and its web views (``env``: see
    :func:`faust_settings`).

    ``role`` "worker": the anonymizing agent, plus the aggregation agents when
    ``aggregates.run_in`` is "worker". ``role`` "aggregator" (``logfog aggregator``, run
    by hand with "aggregator" or by each worker with "process"): only the aggregation
    agents, in a consumer group of their own, with ``NoLines`` as the pipeline.
    """
    import faust
    from faust import web

    from streams.gctune import tune_for_throughput
    from streams.metrics import Metrics
    from streams.pipeline import aggregate_layout
    from streams.status import STATUS_PAGE, status_snapshot

    kafka = config["kafka"]
    group = kafka["group"] if role == "worker" else f"{kafka['group']}.aggregator"
    in_flight = InFlight()

    class App(faust.App):
        async def on_stop(self) -> None:
            # Before Faust stops the consumer and cancels the agents (its on_stop, then
            # its children): let the anonymize agent finish and commit its chunk.
            await in_flight.stop()
            await super().on_stop()

    security = security or _security(config)
    app = App(group, **faust_settings(config, bootstrap, web_port, security, env))
    state = WorkerState()
    metrics = Metrics(pipeline)
    app.logfog_state = state  # type: ignore[attr-defined]
    app.logfog_metrics = metrics  # type: ignore[attr-defined]

    if role == "worker":
        _add_anonymizer(app, config, pipeline, state, metrics, topic_partitions, in_flight)
    aggregates = config["aggregates"]
    runs_in = ("worker",) if role == "worker" else AGGREGATOR_RUNS_IN
    if aggregates["enabled"] and aggregates["run_in"] in runs_in:
        _add_aggregation(app, config, bootstrap, topic_partitions, state, metrics,
                         layout=aggregate_layout(config), security=security)  # fmt: skip

    if pipeline.geo is not None:

        @app.timer(15.0)
        async def reload_geo_databases() -> None:
            # Zero-downtime database updates: rename a new file over the old one; the
            # readers are swapped at the next check (GeoLookup stats at most once a minute).
            if pipeline.geo.reload_if_changed():
                log.info("geo databases reloaded: %s", pipeline.geo.database_types)

    consumes = kafka["raw"]["topic"] if role == "worker" else aggregates["input"]["topic"]

    @app.task
    async def on_started() -> None:
        tune_for_throughput()
        state.ready = True
        log.info("%s ready: consuming %s, web on port %d", role, consumes, web_port)

    @app.page("/healthz")
    async def healthz(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "ok", "uptime_s": round(time.time() - state.started, 1)})

    @app.page("/readyz")
    async def readyz(self: web.View, request: web.Request) -> web.Response:
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        ready = state.ready and pipeline is not None
        body = {"ready": ready, "assigned_partitions": assigned}
        return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_view(self: web.View, request: web.Request) -> web.Response:
        metrics.update_lag(app)
        return self.bytes(metrics.render(), content_type=metrics.content_type)

    @app.page("/status.json")
    async def status_json(self: web.View, request: web.Request) -> web.Response:
        metrics.update_lag(app)
        return self.json(status_snapshot(state, pipeline, metrics))

    @app.page("/status")
    async def status_page(self: web.View, request: web.Request) -> web.Response:
        return self.html(STATUS_PAGE)

    return app


def _add_anonymizer(
    app: Any,
    config: Mapping[str, Any],
    pipeline: Any,
    state: WorkerState,
    metrics: Any,
    topic_partitions: Mapping[str, int],
    in_flight: InFlight,
) -> None:
    """The agent that reads raw lines and publishes every destination (see module doc)."""
    from streams.faust_schema import RawBytesSchema
    from streams.faust_take import acknowledge, take_events
    from streams.publish import Publisher

    kafka = config["kafka"]
    raw_topic = app.topic(
        kafka["raw"]["topic"],
        partitions=kafka["raw"]["partitions"],
        schema=RawBytesSchema(),  # bytes as they are, without the registry's round trip
    )
    dead_topic = kafka["dead_letter"]["topic"]
    publisher_box: dict[str, Publisher] = {}

    def publisher() -> Publisher:
        if "p" not in publisher_box:
            # The aiokafka producer under Faust's (see publish.py for why).
            producer = app.producer._ensure_producer()
            publisher_box["p"] = Publisher(
                producer, pipeline.destinations, dead_topic, dict(topic_partitions)
            )
        return publisher_box["p"]

    @app.agent(raw_topic, name="logfog-anonymize")
    async def anonymize(stream: Any) -> None:
        out = pipeline.new_output()
        most_events = app.conf.stream_buffer_maxsize

        async def work_take(taken: list[Any]) -> None:
            fit_buffer(stream, taken, most_events)
            # A take of batched records can hold a million lines: work in steps of
            # about CHUNK_BYTES, so that one step's output stays small (memory, cache,
            # and the garbage collector's scans all grow with what a step holds).
            for events in chunk_by_size(taken, CHUNK_BYTES):
                if in_flight.stopping:
                    break  # a stop waits for one chunk, not a take of a million lines
                started = time.perf_counter()
                out.clear()
                lines_before = pipeline.stats.lines
                last_offsets = metrics.last_offsets
                records = []
                for event in events:
                    message = event.message
                    last_offsets[(message.topic, message.partition)] = message.offset
                    records.append(
                        (message.value, message.topic, message.partition, message.offset)
                    )
                # Framing: a record is lines joined by "\n", split exactly: a trailing
                # "\n" is an empty last line (dead-lettered as parse.empty), so every
                # line a shipper framed is counted, empty ones included.
                await work_chunk(pipeline, publisher(), records, out, state, metrics)
                # Only now may their offsets be committed. (Stream.ack would add only
                # monitor bookkeeping per event.)
                acknowledge(app, events)
                state.batches += 1
                state.records_in += len(events)
                state.last_batch_at = time.time()
                state.note(pipeline.stats.lines)
                metrics.observe_batch(
                    len(events), pipeline.stats.lines - lines_before,
                    time.perf_counter() - started,
                )  # fmt: skip
            out.clear()

        # Not stream.noack_take: it iterates every event through the stream first
        # (streams/faust_take.py: 10-12k -> 15-21k events/s for a bare agent).
        async for taken in take_events(stream, BATCH_EVENTS, BATCH_WITHIN):
            if not in_flight.begin():
                continue  # stopping: left unacknowledged, the next owner reads it
            try:
                await work_take(taken)
                # Commit per take, not per timer: a crash then replays at most the take
                # in flight (one OffsetCommit per take is negligible next to the take).
                await app.consumer.commit()
            finally:
                in_flight.end()


def _add_aggregation(
    app: Any,
    config: Mapping[str, Any],
    bootstrap: str,
    topic_partitions: Mapping[str, int],
    state: WorkerState,
    metrics: Any,
    layout: tuple[str, ...] | None,
    security: Any = None,
) -> None:
    """Stages 2 and 3 of the aggregation (streams/aggregate) as two more agents.

    Stage 2 reads the internal visitor-keyed stream, one PartialAggregator per assigned
    partition; closed windows go to the partials topic (keyed by source partition, so
    per-partition order holds). Exactness: events are acknowledged only after a
    checkpoint containing them is on the state topic; a restored aggregator skips
    offsets it already applied. Stage 3 (the single partials partition) merges, applies
    the minimum group size and publishes the rows: counts only, never pseudonyms.
    """
    from streams.aggregate.runtime import MERGER_KEY, AggregationRuntime, specs_from_config
    from streams.checkpoints import load_latest
    from streams.durations import parse_duration
    from streams.metrics import AggregationCollector
    from streams.topics import aggregate_output_topics

    agg = config["aggregates"]
    input_name, partials_name = agg["input"]["topic"], agg["partials"]["topic"]
    state_name, ops_name = agg["state"]["topic"], agg["ops_output"]["topic"]
    specs = specs_from_config(agg)
    # Rows by (output, window): windows under an hour to the operations aggregates
    # topic (short retention), the others to the analytics one (rules 8 and 14).
    output_topics = aggregate_output_topics(agg, specs)
    runtime = AggregationRuntime(
        specs,
        partitions=topic_partitions[input_name],
        snapshot_interval=float(parse_duration(agg["snapshot_interval"])),
        layout=layout,
        raw_partitions=topic_partitions.get(config["kafka"]["raw"]["topic"], 0),
        source_idle=float(parse_duration(agg["source_idle"])),
    )
    state.aggregation = runtime
    metrics.registry.register(AggregationCollector(runtime))
    loop_box: dict[str, Any] = {}

    def topic(name: str) -> Any:
        return app.topic(name, value_type=bytes, key_type=bytes, value_serializer="raw",
                         key_serializer="raw", partitions=topic_partitions[name])  # fmt: skip

    def producer() -> Any:
        return app.producer._ensure_producer()

    async def checkpoints(retry: bool = True) -> dict[str, bytes]:
        """All latest checkpoints, read fresh on every (re)assignment (another worker
        may have written newer ones); an incomplete read is retried, never used."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                return await loop.run_in_executor(
                    None,
                    lambda: load_latest(
                        bootstrap, state_name, security=security or _security(config)
                    ),
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not retry:
                    raise
                log.warning("aggregation: checkpoints not read (%s); retrying in %.1fs",
                            type(error).__name__, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def ensure_aggregators(partitions: set[int], retry: bool = True) -> None:
        missing = partitions - set(runtime.aggregators)
        if missing:
            saved = await checkpoints(retry)
            # Only what is still assigned: a partition revoked while the checkpoints
            # were read would keep an aggregator restored from what is now stale, and
            # would use it instead of its new owner's checkpoint when it came back.
            assigned = {tp.partition for tp in app.consumer.assignment()
                        if tp.topic == input_name}  # fmt: skip
            for p in sorted(missing & assigned - set(runtime.aggregators)):
                runtime.aggregator(p, saved.get)

    async def send_all(
        records: list[tuple[str, bytes | None, bytes]],
        timestamps: list[int] | None = None,
        ours: Callable[[str, bytes | None], bool] | None = None,
    ) -> None:
        """Send and wait for all, retrying with backoff: nothing is acknowledged before.
        ``timestamps`` (ms, per record, from the first): record timestamps instead of now.
        ``ours(topic, key)``: whether a record may still be written, asked before every
        attempt: a worker that retries through a broker outage while its partitions move
        must not write its stale checkpoint or partial over the new owner's."""
        delay = 0.2
        times = timestamps or []
        while True:
            if ours is not None:
                kept = [i for i, (t, key, _) in enumerate(records) if ours(t, key)]
                if len(kept) < len(records):
                    records = [records[i] for i in kept]
                    times = [times[i] for i in kept if i < len(times)]
                    if not records:
                        return
            try:
                futures = [
                    await producer().send(t, value, key=key,
                                          timestamp_ms=times[i] if i < len(times) else None)
                    for i, (t, key, value) in enumerate(records)
                ]  # fmt: skip
                if futures:
                    await asyncio.gather(*futures)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.publish_failures.inc()
                log.warning("aggregation publish failed (%s); retrying in %.1fs",
                            type(error).__name__, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def stage2_ours(topic: str, key: bytes | None) -> bool:
        """A stage-2 checkpoint ("partial/P") or partial (key "P") of a partition this
        worker still holds."""
        return key is not None and int(key.rsplit(b"/", 1)[-1]) in runtime.aggregators

    async def write_due(force: bool = False) -> set[int]:
        """Write the checkpoints that are due; return the partitions they cover."""
        due = runtime.due_snapshots(force=force)
        if due:
            await send_all([(state_name, k.encode(), v) for k, v in due.items()],
                           ours=stage2_ours)  # fmt: skip
            runtime.snapshots_written(due)
        written = {int(key.split("/", 1)[1]) for key in due if key.startswith("partial/")}
        return written & set(runtime.aggregators)

    async def publish_partials() -> None:
        closed = runtime.close_ready()
        if closed:
            # Partials keep the time they are written: retention deletes by record
            # timestamp, and a replayed backlog's windows (or a day window, on a 1-day
            # partials topic) would be deleted before the merger read them. Internal,
            # counts only: nothing outside the cluster sees these timestamps.
            await send_all([(partials_name, str(p).encode(), partial.to_bytes())
                            for p, partial in closed], ours=stage2_ours)  # fmt: skip

    pending: dict[int, list[Any]] = {}  # events added to state, not yet checkpointed
    # The agent and the timer each close windows, send partials and write checkpoints.
    # One at a time: a checkpoint written while closed windows' partials are still on
    # their way would hold neither (lost if the process died before they arrived), and
    # a partition's partials must reach the merger in window order.
    state_lock = asyncio.Lock()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        lost = [tp.partition for tp in revoked if tp.topic == input_name]
        if any(tp.topic == partials_name for tp in revoked):
            # Whoever gets the partials partition (maybe this worker again) restores
            # the merger from the latest checkpoint before merging: never from ours.
            runtime.drop_merger()
            loop_box.pop("restored", None)
            loop_box["revocations"] = loop_box.get("revocations", 0) + 1
        runtime.revoke(lost)
        for partition in lost:  # the new owner replays them from the last checkpoint
            pending.pop(partition, None)

    @app.agent(topic(input_name), name="logfog-aggregate")
    async def aggregate(stream: Any) -> None:
        most_events = app.conf.stream_buffer_maxsize
        async for taken in stream.noack_take(5000, within=0.2):
            fit_buffer(stream, taken, most_events)  # rows come in NDJSON records
            async with state_lock:
                await ensure_aggregators({e.message.partition for e in taken})
                # Events of a partition revoked meanwhile: its new owner replays them.
                events = [e for e in taken if e.message.partition in runtime.aggregators]
                last_offsets = metrics.last_offsets
                for event in events:
                    message = event.message
                    last_offsets[(message.topic, message.partition)] = message.offset
                    add_input_record(runtime, message, metrics)
                for event in events:
                    pending.setdefault(event.message.partition, []).append(event)
                await publish_partials()
                written = await write_due()
            if written:
                # Acknowledge only what a written checkpoint contains: the partitions
                # whose checkpoint was not due keep their events unacknowledged.
                for partition in written:
                    for event in pending.pop(partition, ()):
                        event.ack()
                await app.consumer.commit()

    @app.timer(2.0)
    async def advance_idle_partitions() -> None:
        async with state_lock:
            await _advance_idle_partitions()

    async def _advance_idle_partitions() -> None:
        try:
            assigned = [tp for tp in app.consumer.assignment() if tp.topic == input_name]
            await ensure_aggregators({tp.partition for tp in assigned}, retry=False)
            # Fresh end offsets, not the fetcher's cached ones (unknown before a fetch):
            # a partition with records still to apply must not close windows by clock.
            ends = await app.consumer.highwaters(*assigned) if assigned else {}
        except Exception as error:  # broker or checkpoints unreachable now: next tick
            log.warning("aggregation: could not load checkpoints or end offsets (%s)",
                        type(error).__name__)  # fmt: skip
            return
        runtime.advance(int(time.time()), {tp.partition: end for tp, end in ends.items()})
        await publish_partials()
        await write_due()

    def output_records(rows: list[dict[str, Any]]) -> list[tuple[str, bytes | None, bytes]]:
        # Rows are of configured outputs (a restored merger withholds others' outbox);
        # one of no known window would go to the short-kept topic, never the long one.
        return [(output_topics.get((r["output"], r["window"]), ops_name),
                 f"{r['output']}|{r['window']}|{r['dimension']}".encode(),
                 orjson.dumps(r)) for r in rows]  # fmt: skip

    async def publish_rows(merger: Any, rows: list[dict[str, Any]]) -> bool:
        """Checkpoint ``merger`` with the rows in its outbox, publish them, checkpoint it
        without: a new owner republishes a left-over outbox (revision + 1). False (and
        nothing more written) once the partials partition was revoked meanwhile: a
        checkpoint of a dropped merger must not overwrite the new owner's."""

        def ours(topic: str, key: bytes | None) -> bool:
            return runtime.merger is merger

        if rows:
            merger.outbox = rows
            await send_all([(state_name, MERGER_KEY.encode(), runtime.merger_snapshot(merger))],
                           ours=ours)  # fmt: skip
            if runtime.merger is not merger:
                return False
        # A published row's record timestamp is its window start, as coarse as the row:
        # the time the merger happened to run says nothing a consumer should know.
        if rows:
            await send_all(output_records(rows),
                           [window_start_ms(r["window_start"]) for r in rows], ours)  # fmt: skip
            if runtime.merger is not merger:
                return False  # the new owner republishes the outbox we checkpointed
        # Only once every row is in: sent with them, the outbox-free checkpoint could
        # land while the output topic still refused the rows, and a restart in the
        # meantime would have lost them.
        merger.outbox = []
        await send_all([(state_name, MERGER_KEY.encode(), runtime.merger_snapshot(merger))],
                       ours=ours)  # fmt: skip
        return runtime.merger is merger

    @app.agent(topic(partials_name), name="logfog-merge")
    async def merge(stream: Any) -> None:
        async for events in stream.noack_take(1000, within=0.5):
            if "restored" not in loop_box:  # the first batch since an assignment
                revocations = loop_box.get("revocations", 0)
                saved = (await checkpoints()).get(MERGER_KEY)
                if loop_box.get("revocations", 0) != revocations:
                    continue  # revoked while reading: read again if assigned again
                left_over = runtime.restore_merger(saved)
                if not await publish_rows(runtime.merger, left_over):
                    continue
                loop_box["restored"] = True
            merger = runtime.merger
            rows: list[dict[str, Any]] = []
            for event in events:
                message = event.message
                metrics.last_offsets[(message.topic, message.partition)] = message.offset
                rows.extend(merge_record(runtime, message, metrics))
            if not await publish_rows(merger, rows):
                continue  # revoked: the new owner replays these partials
            for event in events:
                event.ack()
            await app.consumer.commit()


def window_start_ms(iso: str) -> int:
    """Epoch milliseconds of an aggregate row's ``window_start``.

    >>> window_start_ms("2024-03-04T10:00:00Z")
    1709546400000
    """
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) * 1000


def add_input_record(runtime: Any, message: Any, metrics: Any) -> None:
    """Apply one record of the aggregation input (NDJSON rows of one partition).

    A record that cannot be read or applied is skipped: logged by coordinates and
    exception type, counted in ``logfog_records_skipped_total``, and acknowledged with
    the rest. Raising would make Faust restart the agent, which would read the same
    record again, forever.
    """
    try:
        # One parse per record: orjson escapes newlines inside strings, so the lines
        # join into a JSON array exactly.
        rows = orjson.loads(b"[" + (message.value or b"").replace(b"\n", b",") + b"]")
    except Exception as error:
        _skipped(message, error, metrics)
        rows = []  # still applied: the partition must count as caught up
    try:
        runtime.add_rows(message.partition, message.offset, rows)
    except Exception as error:
        _skipped(message, error, metrics)


def merge_record(runtime: Any, message: Any, metrics: Any) -> list[dict[str, Any]]:
    """The rows one partial completes; a record that is no partial, or one the merger
    refuses, is skipped like an unreadable input record (``add_input_record``)."""
    from streams.aggregate.partial import Partial

    try:
        return list(runtime.merge(Partial.from_bytes(message.value or b"")))
    except Exception as error:
        _skipped(message, error, metrics)
        return []


def _skipped(message: Any, error: BaseException, metrics: Any) -> None:
    # Coordinates and the type only: the record and the message can hold pseudonyms.
    log.error("%s/%d@%d: unreadable record skipped (%s)", message.topic, message.partition,
              message.offset, type(error).__name__)  # fmt: skip
    metrics.records_skipped.labels(message.topic).inc()


async def work_chunk(
    pipeline: Any,
    publisher: Any,
    records: list[tuple[bytes | None, str, int, int]],
    out: Any,
    state: WorkerState,
    metrics: Any,
) -> None:
    """Process and publish one chunk of raw records; return when every line of it is
    published or dead-lettered, so that the caller may acknowledge the records.

    - No epoch key can be agreed (key topic or broker down): the chunk is held, nothing
      published or acknowledged, and run again after a backoff (``_process_held``).
    - The broker does not take the output now: retried with backoff until it does.
    - Publishing fails in a way retrying cannot fix (a record the broker refuses for
      good, a bug of ours): ``_publish_each``. Never a retry loop: that stalled the
      worker on the chunk forever.
    """
    await _process_held(pipeline.process_records, records, out)
    try:
        await _publish_until_done(publisher, out, state, metrics)
    except Exception as error:
        _log_permanent(error, f"{len(records)} records, now published one by one")
        await _publish_each(pipeline, publisher, records, out, state, metrics)
        return
    pipeline.count_published(out)


async def _process_held(
    run: Any, records: list[tuple[bytes | None, str, int, int]], out: Any
) -> None:
    """``run(records, out)``, again and again with backoff while the pipeline reports
    that no epoch key can be agreed (``streams.pipeline.is_unavailable``). Those lines
    are no one's fault: dead-lettering them, as before, lost every event of an outage
    of the key topic. Nothing is published or acknowledged while we wait; a stop in the
    meantime is ended by the stop watchdog (``LOGFOG_STOP_TIMEOUT``, exit 3), and the
    next owner replays the records: nothing is lost."""
    from streams.pipeline import is_unavailable

    delay = 0.2
    while True:
        try:
            run(records, out)
            return
        except Exception as error:
            if not is_unavailable(error):
                raise
            out.clear()
            log.warning(
                "epoch keys unavailable (%s): holding %d records, nothing acknowledged; "
                "retrying in %.1fs", type(error).__name__, len(records), delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def _permanent_errors() -> tuple[type[BaseException], ...]:
    from aiokafka import errors

    # The broker refuses the request itself: the same bytes fail every time.
    return (
        errors.MessageSizeTooLargeError,
        errors.RecordTooLargeError,
        errors.RecordListTooLargeError,
        errors.InvalidMessageError,
        errors.CorruptRecordException,
        errors.InvalidTimestampError,
        errors.UnsupportedForMessageFormatError,
    )


def retryable(error: BaseException) -> bool:
    """Whether waiting can fix a publish error: the broker's errors (unreachable, no
    leader, timeouts, even authorization: an operator fixes those) and the network's,
    but not a record the broker refuses for good, nor any other exception (a bug of
    ours fails again on the same batch).

    >>> from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
    >>> retryable(KafkaTimeoutError()), retryable(ConnectionResetError()), retryable(TimeoutError())
    (True, True, True)
    >>> retryable(MessageSizeTooLargeError()), retryable(TypeError()), retryable(ValueError())
    (False, False, False)
    """
    from aiokafka.errors import KafkaError

    if isinstance(error, _permanent_errors()):
        return False
    return isinstance(error, KafkaError | TimeoutError | OSError)


def _log_permanent(error: BaseException, what: str) -> None:
    from streams.pipeline import raised_at

    # Type and place only, like rules errors: messages can quote what failed.
    log.error("publish failed for good (%s at %s): %s", type(error).__name__,
              raised_at(error), what)  # fmt: skip


async def _publish_until_done(
    publisher: Any, out: Any, state: WorkerState, metrics: Any, *, retry_all: bool = False
) -> None:
    """Publish a batch, retrying with backoff until the broker takes it.

    Nothing upstream is acknowledged before this returns, so waiting is always safe;
    but only errors that waiting can fix (``retryable``) are retried: any other is
    raised at once (with ``retry_all``, every error is retried: the last resort, when
    nothing else would keep the lines). Errors are logged by type only.
    """
    delay = 0.2
    while True:
        try:
            state.records_out += await publisher.publish(out)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            state.publish_failures += 1
            metrics.publish_failures.inc()
            if not (retry_all or retryable(error)):
                raise
            log.warning(
                "publish failed (%s); retrying in %.1fs, nothing acknowledged",
                type(error).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


async def _publish_each(
    pipeline: Any,
    publisher: Any,
    records: list[tuple[bytes | None, str, int, int]],
    out: Any,
    state: WorkerState,
    metrics: Any,
) -> None:
    """A chunk whose output cannot be published: run and publish its records one at a
    time, so that a poison record costs only its own lines. The lines of a record whose
    output still fails are dead-lettered as ``publish.error`` (coordinates, never the
    line); if even those dead letters cannot be published, they are retried until they
    are (nothing else keeps the lines). Events of the chunk that reached the broker
    before the failure are published again: duplicates, as after a crash."""
    for record in records:
        out.clear()
        await _process_held(pipeline.rerun_records, [record], out)
        try:
            await _publish_until_done(publisher, out, state, metrics)
        except Exception as error:
            where = f"{record[1]}/{record[2]}/{record[3]}"
            _log_permanent(error, f"record {where}: its lines dead-lettered (publish.error)")
            pipeline.fail_record(record, out)
            await _publish_until_done(publisher, out, state, metrics, retry_all=True)
        pipeline.count_published(out)
    out.clear()


EXIT_STOP_TIMEOUT = 3


def _stop_watchdog(timeout: float) -> None:
    """Bound the graceful stop to ``timeout`` seconds (``LOGFOG_STOP_TIMEOUT``, parsed
    at start: this runs in the signal handler, where an error would stop nothing). With
    the broker gone, Faust's final commit and producer flush wait forever; after the
    deadline the process exits anyway. Nothing is lost: whatever was not committed is
    replayed by the next owner (at-least-once)."""

    def expire() -> None:
        time.sleep(timeout)
        log.error("stop took over %.0fs (broker unreachable?): exiting; uncommitted batches "
                  "will be replayed", timeout)  # fmt: skip
        logging.shutdown()
        os._exit(EXIT_STOP_TIMEOUT)

    threading.Thread(target=expire, name="logfog-stop-watchdog", daemon=True).start()


def wait_for_broker(bootstrap: str, deadline_s: float | None = None, security: Any = None) -> None:
    """Block until the broker answers, logging clearly while it does not."""
    from streams.admin import BrokerUnreachable, describe_topics
    from streams.security import PLAINTEXT

    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            describe_topics(bootstrap, [], timeout_s=3.0, security=security or PLAINTEXT)
            return
        except BrokerUnreachable:
            waited = time.monotonic() - started
            if deadline_s is not None and waited > deadline_s:
                raise
            log.warning("broker %s not reachable yet (%.0fs); retrying", bootstrap, waited)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def prepare(config: Mapping[str, Any], bootstrap: str, security: Any = None) -> dict[str, int]:
    """Create (unless ``kafka.create_topics`` is false) and verify the topics; return
    partition counts by topic. Raises ``streams.admin.TopicPolicyError`` when a topic is
    missing and may not be created, or would keep records longer than declared."""
    from streams.admin import describe_topics, require_topics
    from streams.topics import topic_specs

    security = security or _security(config)
    specs = topic_specs(config)
    create = config["kafka"].get("create_topics", True)
    for outcome in require_topics(bootstrap, specs, create=create, security=security):
        if outcome.status != "differs":  # differences were logged as warnings
            log.info("%s", outcome.detail,
                     extra={"event": f"topic.{outcome.status}", "topic": outcome.name})  # fmt: skip
    described = describe_topics(bootstrap, [s.name for s in specs], security=security)
    return {name: info.partitions for name, info in described.items()}


def run_worker(
    config_path: str,
    *,
    bootstrap: str | None,
    web_port: int,
    loglevel: str = "info",
    aggregator_web_port: int | None = None,
) -> int:
    """``logfog worker``: load and compile everything, wait for the broker, run Faust.

    With ``aggregates.run_in: process`` (the default) the worker also starts a ``logfog
    aggregator`` child on ``aggregator_web_port`` (default: ``web_port`` + 1), restarts
    it when it dies, and stops it when it stops (streams/supervise.py)."""
    from streams.config import ConfigError, worker_key_problems
    from streams.pipeline import Pipeline, open_geo
    from streams.topics import pseudonymizes

    config, bootstrap = _load(config_path, bootstrap)
    env = process_env(config)  # a typo in the environment fails now, before any waiting
    security = _security(config)  # unreadable credentials fail now, before any waiting
    runs_child = config["aggregates"]["enabled"] and config["aggregates"]["run_in"] == "process"
    child_port = _child_web_port(web_port, aggregator_web_port) if runs_child else 0
    keys = config["keys"]
    warnings: list[str] = []
    problems = worker_key_problems(config, warnings)
    if problems:
        raise ConfigError(config_path, problems)
    for warning in warnings:
        log.warning("%s", warning, extra={"event": "config.warning"})
    # A missing or wrong geo database fails now, on both key paths: with the broker down
    # too, the worker would otherwise wait for it and never say what else is wrong.
    geo = open_geo(config)
    shared = keys["source"] in ("auto", "shared") and pseudonymizes(config)
    if shared:
        from streams.keyshare import MasterKeys

        MasterKeys.from_sources()  # a missing or short LOGFOG_MASTER_KEY fails now, clearly
    else:
        Pipeline.from_normalized(config, geo=geo)  # key errors surface before any waiting
    # A web port in use fails now, not in Faust after the broker wait (nor in a child
    # that its supervisor would restart forever).
    check_web_port(env.web_bind, web_port, "web port", "--web-port or LOGFOG_WEB_PORT")
    if runs_child:
        check_web_port(env.web_bind, child_port, "the aggregator child's web port",
                       "--aggregator-web-port or LOGFOG_AGGREGATOR_WEB_PORT")  # fmt: skip
    child = None
    if runs_child:
        from streams.supervise import refuse_inspection

        # The child must not read the secrets out of this process (see the function).
        if not refuse_inspection():
            log.warning("could not make the worker non-dumpable: its aggregator child can "
                        "read the worker's environment (/proc)")  # fmt: skip
        # Started before the waiting and compiling below: the two start up side by side.
        child = aggregator_child(config, config_path, bootstrap, child_port, loglevel).start()
    try:
        partitions = _when_broker_is_up(config, bootstrap, security)
        if partitions is None:
            return 0  # stopped while waiting: nothing was taken yet
        keyring = None
        if shared:
            from streams.durations import parse_duration
            from streams.keyshare import shared_keyring

            # Every worker must compute the same pseudonym for the same visitor: random
            # epoch keys agreed through Kafka (first record wins), destroyed after epoch
            # + grace.
            epoch, grace = parse_duration(keys["epoch"]), parse_duration(keys["grace"])
            keyring = shared_keyring(bootstrap, epoch, grace, topic=keys["topic"],
                                     security=security)  # fmt: skip
        pipeline = Pipeline.from_normalized(config, keyring=keyring, geo=geo)
        app = create_app(config, pipeline, bootstrap=bootstrap, web_port=web_port,
                         topic_partitions=partitions, security=security, env=env)  # fmt: skip
        if child is not None:
            from streams.metrics import ChildCollector

            app.logfog_state.aggregator = child
            app.logfog_metrics.registry.register(ChildCollector(child))
        on_stop = child.terminate if child else None
        return _run_faust(app, pipeline, loglevel, env.stop_timeout_s, on_stop_signal=on_stop)
    finally:
        if child is not None:
            child.stop(timeout=env.stop_timeout_s + 5)


def _child_web_port(web_port: int, aggregator_web_port: int | None) -> int:
    """The aggregator child's web port: ``aggregator_web_port``, else ``web_port`` + 1.
    Checked before anything starts: the child refuses a port that is none (65535 + 1)
    and cannot listen on the worker's own, and its supervisor would restart it forever
    while the worker ran without aggregation."""
    from streams.cli import UserError

    if aggregator_web_port is None:
        if web_port + 1 > 65535:
            raise UserError(
                f"the aggregator child's web port is --web-port + 1 by default, and "
                f"{web_port} + 1 is no port: set --aggregator-web-port "
                "(or LOGFOG_AGGREGATOR_WEB_PORT)"
            )
        return web_port + 1
    if aggregator_web_port == web_port:
        raise UserError(
            f"the aggregator child's web port ({aggregator_web_port}, --aggregator-web-port "
            "or LOGFOG_AGGREGATOR_WEB_PORT) is the worker's own --web-port: give it another"
        )
    return aggregator_web_port


def aggregator_child(
    config: Mapping[str, Any], config_path: str, bootstrap: str, web_port: int, loglevel: str
) -> Any:
    """The ``logfog aggregator`` a worker runs with ``aggregates.run_in: process``.

    Its environment lacks the pseudonym key secrets (it needs none): a process that
    holds pseudonyms never holds what recomputes them. Nor can it read them from the
    worker's ``/proc`` entries: the worker makes itself non-dumpable first
    (:func:`streams.supervise.refuse_inspection`; a child running as root still could).
    """
    from streams import logjson
    from streams.keyshare import ACCEPTED_MASTER_KEY_SOURCE, MASTER_KEY_SOURCE
    from streams.supervise import Supervisor

    secrets = {MASTER_KEY_SOURCE, ACCEPTED_MASTER_KEY_SOURCE, config["keys"]["source"]}
    hidden = {s.removeprefix("env:") for s in secrets if s.startswith("env:")}
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    argv = [sys.executable, "-m", "streams", "--log-format", logjson.current_format(),
            "aggregator", "-c", os.path.abspath(config_path), "--bootstrap", bootstrap,
            "--web-port", str(web_port), "--loglevel", loglevel]  # fmt: skip
    return Supervisor("aggregator", argv, env)


def run_aggregator(
    config_path: str, *, bootstrap: str | None, web_port: int, loglevel: str = "info"
) -> int:
    """``logfog aggregator``: only the aggregation agents (``aggregates.run_in:
    aggregator``). No rules, geo database or pseudonym keys: it reads the workers'
    internal rows (pseudonyms, never keys) and publishes k-gated counts."""
    from streams.config import ConfigError
    from streams.supervise import watch_parent

    config, bootstrap = _load(config_path, bootstrap)
    aggregates = config["aggregates"]
    if not aggregates["enabled"] or aggregates["run_in"] not in AGGREGATOR_RUNS_IN:
        raise ConfigError(config_path, [
            "aggregates: logfog aggregator needs enabled: true and run_in: aggregator "
            "or process (with run_in: worker the workers aggregate, and an aggregator "
            "would count every event a second time)"
        ])  # fmt: skip
    env = process_env(config)  # a typo in the environment fails now, before any waiting
    check_web_port(env.web_bind, web_port, "web port", "--web-port or LOGFOG_WEB_PORT")
    watch_parent()  # started by a worker (run_in: process): stop when it is gone
    security = _security(config)
    partitions = _when_broker_is_up(config, bootstrap, security)
    if partitions is None:
        return 0  # stopped while waiting: nothing was taken yet
    lines = NoLines()
    app = create_app(config, lines, bootstrap=bootstrap, web_port=web_port,
                     topic_partitions=partitions, role="aggregator",
                     security=security, env=env)  # fmt: skip
    return _run_faust(app, lines, loglevel, env.stop_timeout_s)


def _load(config_path: str, bootstrap: str | None) -> tuple[dict[str, Any], str]:
    """The config (its warnings logged) and the bootstrap: the option, else env
    LOGFOG_BOOTSTRAP, else the config's."""
    from streams.config import load_file

    config, warnings = load_file(config_path)
    for warning in warnings:
        log.warning("%s", warning, extra={"event": "config.warning"})
    chosen = bootstrap or os.environ.get("LOGFOG_BOOTSTRAP") or config["kafka"]["bootstrap"]
    return config, str(chosen)


class _StoppedWaiting(Exception):
    """SIGINT or SIGTERM while the worker or aggregator waited for the broker."""


def _when_broker_is_up(
    config: Mapping[str, Any], bootstrap: str, security: Any = None
) -> dict[str, int] | None:
    """Wait for the broker, then create/verify the topics: partitions by topic.

    None when SIGINT or SIGTERM ended the wait: the command then exits 0, as a running
    worker does (nothing was taken yet); those signals killed the process (143), its
    aggregator child left to notice its parent gone."""

    def stop(signum: int, frame: Any) -> None:
        raise _StoppedWaiting(signal.Signals(signum).name)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        wait_for_broker(bootstrap, security=security)
        return prepare(config, bootstrap, security)
    except _StoppedWaiting as stopped:
        log.info("stopped by %s while waiting for the broker", stopped.args[0])
        return None
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _ignore_sigusr1(worker: Any) -> None:
    """mode's Worker answers SIGUSR1 by printing every thread's and task's stack *with
    its local variables* to stderr, around the JSON log formatter: raw lines, addresses
    and the config in the container log. Operators send it to "reopen logs" (logrotate,
    nginx habits); logfog writes to stderr and has nothing to reopen."""
    log.warning("SIGUSR1 ignored: logfog has no log file to reopen and dumps no stacks")


def _ignore_sigusr2(worker: Any) -> None:
    """mode's Worker answers SIGUSR2 with ``pdb.set_trace()`` on the event loop: with
    stdin open (``docker run -i``, a terminal) the worker stops handling records and
    heartbeats, and hands a debugger over raw lines and keys to whoever holds stdin."""
    log.warning("SIGUSR2 ignored: no debugger in a worker (it holds raw lines and keys)")


def worker_class(
    on_stop_signal: Callable[[], None] | None = None,
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
) -> type[Any]:
    """Faust's Worker with logfog's signal handling (see the handlers above); a stop
    signal's stop is bounded to ``stop_timeout_s`` (``LOGFOG_STOP_TIMEOUT``, parsed at
    start; exit 3 after it)."""
    from faust.worker import Worker

    class BoundedStopWorker(Worker):
        """SIGTERM/SIGINT stop as usual, within a deadline (LOGFOG_STOP_TIMEOUT)."""

        def _on_sigterm(self) -> None:
            _stop_watchdog(stop_timeout_s)
            if on_stop_signal is not None:
                on_stop_signal()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            _stop_watchdog(stop_timeout_s)
            if on_stop_signal is not None:
                on_stop_signal()
            super()._on_sigint()

        _on_sigusr1 = _ignore_sigusr1
        _on_sigusr2 = _ignore_sigusr2

    return BoundedStopWorker


def _run_faust(
    app: Any, pipeline: Any, loglevel: str, stop_timeout_s: float, on_stop_signal: Any = None
) -> int:
    """Run a Faust worker for ``app`` until it is stopped; the exit status. A stop
    signal's stop is bounded to ``stop_timeout_s`` (exit 3 after it). ``on_stop_signal``:
    called first on SIGTERM/SIGINT (the child's stop then runs alongside ours, not
    after it)."""
    try:
        import mode.loop

        mode.loop.use("uvloop")  # measured 1.6-2.3x on the send paths (NOTES-faust.md)
    except Exception:  # pragma: no cover - uvloop missing: asyncio's loop works
        log.info("uvloop unavailable; using asyncio's event loop")
    from streams import faust_fetcher

    faust_fetcher.install()  # one line per record: 5.8k -> 13-15k lines/s (see the module)

    BoundedStopWorker = worker_class(on_stop_signal, stop_timeout_s)

    from streams.logjson import faust_logging_config

    worker = BoundedStopWorker(
        app,
        loglevel=loglevel,
        # Given here, not only in the app's settings: it carries --loglevel.
        logging_config=faust_logging_config(loglevel),
        quiet=True,
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
        if isinstance(pipeline, NoLines):  # an aggregator reads no lines: nothing to say
            log.info("stopped", extra={"event": "stopped"})
        else:  # counts only; JSON, not a Python repr, in either log format
            totals = orjson.dumps(pipeline.stats.as_dict()).decode()
            log.info("stopped: %s", totals, extra={"event": "stopped"})
        return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_worker(sys.argv[1], bootstrap=None, web_port=6066))
