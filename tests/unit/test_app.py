"""The worker's per-chunk work (streams.app.work_chunk) without a broker: a real
pipeline, the real publisher, a recording producer that fails on demand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from streams.app import WorkerState, work_chunk
from streams.keys import DerivedKeyRing
from streams.keyshare import KeyShareUnavailable
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.publish import Publisher
from tests.conftest import TEST_KEY
from tests.support.producer import RecordingProducer

RAW, DEAD = "logs.raw", "logs.dead"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def line(n: int) -> bytes:
    """A combined-log line whose response size (ops ``bytes``) is ``n``: traceable."""
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return f'198.51.100.{n % 250 + 1} - - [{stamp}] "GET /p HTTP/1.1" 200 {n} "-" "{UA}"'.encode()


def record(offset: int, *ids: int, junk: bool = False) -> tuple[bytes, str, int, int]:
    lines = [line(n) for n in ids] + ([b"junk"] if junk else [])
    return b"\n".join(lines), RAW, 0, offset


class Worker:
    """What the anonymize agent holds, minus Faust."""

    def __init__(self, pipeline: Pipeline, producer: RecordingProducer) -> None:
        self.pipeline = pipeline
        self.producer = producer
        counts = {d.topic: 2 for d in pipeline.destinations} | {DEAD: 1}
        self.publisher = Publisher(producer, pipeline.destinations, DEAD, counts)
        self.state = WorkerState()
        self.metrics = Metrics(pipeline)
        self.out = pipeline.new_output()

    def run(self, records: list[Any], timeout: float = 10.0) -> None:
        chunk = work_chunk(self.pipeline, self.publisher, records, self.out, self.state,
                           self.metrics)  # fmt: skip
        asyncio.run(asyncio.wait_for(chunk, timeout))

    def ops_ids(self) -> list[int]:
        return sorted(orjson.loads(e)["bytes"] for e in self.producer.lines(self.topic("ops")))

    def dead(self) -> list[tuple[str, int, int]]:
        letters = [orjson.loads(v) for v in self.producer.lines(DEAD)]
        return sorted((d["reason"], d["offset"], d["line"]) for d in letters)

    def topic(self, name: str) -> str:
        return next(d.topic for d in self.pipeline.destinations if d.name == name)


def test_a_chunk_is_published_and_counted(make_pipeline: Callable[..., Pipeline]) -> None:
    w = Worker(make_pipeline(), RecordingProducer())
    w.run([record(0, 1, 2), record(1, 3, junk=True)])
    assert w.ops_ids() == [1, 2, 3]
    assert w.dead() == [("parse.no_match", 1, 2)]
    assert w.pipeline.stats.events["ops"] == 3 and w.pipeline.stats.lines == 4


def test_broker_errors_are_retried_until_the_broker_takes_the_chunk(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    down = {"n": 2}

    def flaky(topic: str, partition: int, records: Any) -> BaseException | None:
        if down["n"]:
            down["n"] -= 1
            return KafkaTimeoutError()
        return None

    w = Worker(make_pipeline(), RecordingProducer(fail=flaky))
    w.run([record(0, 1, 2)])
    assert w.ops_ids() == [1, 2]
    assert w.state.publish_failures == 2 and w.metrics.value("logfog_publish_failures_total") == 2


@pytest.mark.parametrize("error", [MessageSizeTooLargeError(), TypeError("a bug of ours")])
def test_an_error_retrying_cannot_fix_costs_only_the_poison_records_lines(
    make_pipeline: Callable[..., Pipeline], error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """Used to be retried forever: the worker stalled on the chunk. Now the chunk is
    published record by record and the poison record's lines are dead-lettered."""

    def poison(topic: str, partition: int, records: Any) -> BaseException | None:
        if any(b'"bytes":666,' in value for _, value in records):
            return error
        return None

    w = Worker(make_pipeline(), RecordingProducer(fail=poison))
    w.run([record(10, 1, 2), record(11, 3, 666, junk=True), record(12, 4)])
    # Events published before the failure are published again (at-least-once): each
    # good line at least once, the poison record's lines as dead letters only.
    assert set(w.ops_ids()) == {1, 2, 4} and 666 not in w.ops_ids()
    assert w.dead() == [("parse.no_match", 11, 3), ("publish.error", 11, 1),
                        ("publish.error", 11, 2)]  # fmt: skip
    stats = w.pipeline.stats
    assert stats.lines == 6 and stats.events["ops"] == 3
    assert dict(stats.rejected) == {"parse.no_match": 1, "publish.error": 2}
    assert type(error).__name__ in caplog.text and "198.51.100" not in caplog.text


class KeysDown:
    """A shared key ring during a key-topic outage: ``KeyShareUnavailable`` until
    ``up`` is set."""

    epoch_seconds = 86400

    def on_destroy(self, listener: object) -> None:
        """Never destroys a key (derived, as in tests): nothing to tell."""

    def __init__(self) -> None:
        self.up = False
        self._ring = DerivedKeyRing(TEST_KEY, self.epoch_seconds)

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        if not self.up:
            raise KeyShareUnavailable(f"no agreed key for epoch {epoch} (backing off)")
        return self._ring.key_for(epoch)


def test_unavailable_keys_hold_the_chunk_until_keys_are_back(
    make_pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """Used to dead-letter every line as rules.error, publish and commit: an outage of
    the key topic lost every ops and product event while it lasted."""
    ring = KeysDown()
    w = Worker(make_pipeline(keyring=ring), RecordingProducer())

    async def scenario() -> None:
        chunk = asyncio.create_task(work_chunk(
            w.pipeline, w.publisher, [record(0, 1, 2)], w.out, w.state, w.metrics
        ))  # fmt: skip
        await asyncio.sleep(0.5)
        assert not chunk.done() and not w.producer.sent  # held: nothing published
        ring.up = True
        await asyncio.wait_for(chunk, 5)

    with caplog.at_level(logging.WARNING, logger="logfog.worker"):
        asyncio.run(scenario())
    assert w.ops_ids() == [1, 2] and not w.dead()
    assert len(w.producer.lines(w.topic("product"))) == 2
    held = [r for r in caplog.records if "epoch keys unavailable" in r.getMessage()]
    assert 2 <= len(held) <= 3  # once per backoff step (0.2 s, 0.4 s, ...)
    assert "KeyShareUnavailable" in held[0].getMessage()
    assert w.pipeline.stats.lines == 2 and not w.pipeline.stats.rejected


def test_a_stop_waits_for_the_work_in_flight_and_refuses_new_work() -> None:
    from streams.app import InFlight

    async def scenario() -> list[str]:
        gate, seen = InFlight(), []
        assert gate.begin()

        async def finish() -> None:
            await asyncio.sleep(0.2)
            seen.append("chunk done")
            gate.end()

        worker = asyncio.create_task(finish())
        await gate.stop()
        seen.append("stopped")
        await worker
        assert gate.stopping and not gate.begin()
        await asyncio.wait_for(gate.stop(), 1)  # idle: returns at once
        return seen

    assert asyncio.run(scenario()) == ["chunk done", "stopped"]


def aggregation(make_pipeline: Callable[..., Pipeline]) -> Any:
    from streams.aggregate.runtime import AggregationRuntime, specs_from_config

    pipeline = make_pipeline()
    runtime = AggregationRuntime(
        specs_from_config(pipeline.config["aggregates"]), partitions=1, snapshot_interval=10.0,
        layout=pipeline.aggregate_layout,
    )  # fmt: skip
    runtime.aggregator(0, lambda key: None)
    return pipeline, runtime


def message(topic: str, offset: int, value: bytes | None) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(topic=topic, partition=0, offset=offset, value=value)


def test_unreadable_aggregation_records_are_skipped_logged_and_counted(
    make_pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """Valid JSON of the wrong shape crashed the merge agent; Faust restarted it and it
    read the same record again, forever. Now: skipped, by coordinates, counted."""
    from streams.app import add_input_record, merge_record

    pipeline, runtime = aggregation(make_pipeline)
    metrics = Metrics(pipeline)
    # k (10) visitors: a window below k publishes nothing, and the last check below
    # needs rows.
    visitors = [line(n) for n in range(12)]
    rows = b"\n".join(pipeline.test(visitors).values("_aggregate"))
    add_input_record(runtime, message("agg.input", 7, b'{"not": json'), metrics)
    add_input_record(runtime, message("agg.input", 8, rows), metrics)
    assert runtime.events == 12  # the good record after the bad one is applied
    for offset, value in enumerate([b'{"a":1}', b"[1,2]", b"null", b"\x00", None]):
        assert merge_record(runtime, message("agg.partials", offset, value), metrics) == []
    skipped = metrics.value("logfog_records_skipped_total", {"topic": "agg.partials"})
    assert skipped == 5
    assert metrics.value("logfog_records_skipped_total", {"topic": "agg.input"}) == 1
    assert "agg.input/0@7: unreadable record skipped (JSONDecodeError)" in caplog.text
    assert "agg.partials/0@0: unreadable record skipped (KeyError)" in caplog.text
    assert '{"not"' not in caplog.text and '{"a"' not in caplog.text  # no payload
    # and a real partial still merges
    for _ in range(2):  # idle and caught up (offsets 7 and 8 applied): the clock closes
        runtime.advance(int(time.time()) + 3 * 86400, {0: 9})
    closed = runtime.close_ready()
    assert closed
    merged = [r for p, partial in closed for r in merge_record(
        runtime, message("agg.partials", 9, partial.to_bytes()), metrics)]  # fmt: skip
    assert merged
    assert metrics.value("logfog_records_skipped_total", {"topic": "agg.partials"}) == 5


def test_the_worker_reports_a_missing_geo_database_before_waiting_for_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With shared keys (the default) run_worker opened the geo database only after the
    broker was up: with the broker down too it waited forever and never said the
    database was missing (README: a missing geo database is one line and exit 2). Both
    key paths, shared and not, must say so before any waiting."""
    import yaml

    import streams.app
    from streams.cli import main
    from streams.keys import generate_key

    def no_broker(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("waited for the broker before checking the geo database")

    monkeypatch.setattr(streams.app, "wait_for_broker", no_broker)
    monkeypatch.setenv("LOGFOG_MASTER_KEY", generate_key())
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))
    root = Path(__file__).resolve().parents[2]
    for keys in ({"source": "auto"}, {"source": "ephemeral", "unsafe": True}):
        cfg = yaml.safe_load((root / "config" / "logfog.yaml").read_text())
        cfg["enrich"]["geo"] = {"city": str(tmp_path / "missing.mmdb")}
        cfg["aggregates"]["run_in"] = "worker"  # no child process in this test
        cfg["keys"].update(keys)
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        args = ["worker", "-c", str(path), "--bootstrap", "127.0.0.1:1", "--web-port", "16066"]
        assert main(args) == 2, keys
        err = capsys.readouterr().err
        assert "city database: file not found" in err and "missing.mmdb" in err, err


@pytest.mark.parametrize("role", ["worker", "aggregator"])
def test_the_apps_subscribe_only_to_topics_logfog_creates(
    role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/README: "there are no changelog or assignor topics besides the ones
    above". Faust's LeaderAssignor still subscribed every app to
    "<group>-__assignor-__leader": a topic that topics.yaml and `topics create` never
    make, that only the local broker auto-creates, and that the KafkaUser ACLs
    (prefixes "logs." and "logfog.") do not cover for the worker."""
    from streams.app import NoLines, create_app
    from streams.config import load_file
    from streams.topics import topic_specs

    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))
    config, _ = load_file(Path(__file__).resolve().parents[2] / "config" / "logfog.yaml")
    partitions = {s.name: s.partitions for s in topic_specs(config)}
    lines: Any = NoLines() if role == "aggregator" else Pipeline.from_normalized(config)
    app = create_app(config, lines, bootstrap="127.0.0.1:1", web_port=16098,
                     topic_partitions=partitions, role=role)  # fmt: skip
    assignor = app._leader_assignor
    subscribed: list[str] = []

    async def enable_leader_topic() -> None:  # Faust's would declare it on the broker
        subscribed.append(assignor._leader_topic_name)

    monkeypatch.setattr(assignor, "_enable_leader_topic", enable_leader_topic)
    asyncio.run(assignor.on_start())  # what the app's start runs
    assert not set(subscribed) - set(partitions), f"subscribed to {subscribed}"


def test_sigusr1_and_sigusr2_neither_dump_locals_nor_start_a_debugger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """mode's Worker answered SIGUSR1 by printing every stack with its local variables
    to stderr (raw lines from the agent's frames, in the container log) and SIGUSR2
    with pdb on the event loop (a worker with stdin open stopped; an audit). logfog's
    worker class logs that it ignores both."""
    import types

    from streams.app import worker_class

    called: list[str] = []
    worker = types.SimpleNamespace(
        add_future=lambda coroutine: called.append(f"add_future {coroutine}"),
        _cry=lambda: "dump stacks with locals",
        _enter_debugger=lambda: called.append("pdb"),
    )
    cls = worker_class()
    with caplog.at_level(logging.WARNING, logger="logfog"):
        cls._on_sigusr1(worker)
        cls._on_sigusr2(worker)
    assert called == []
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "SIGUSR1 ignored",
        "SIGUSR2 ignored",
    ]


def _worker_config(tmp_path: Path, geo_dbs: dict[str, str], **aggregates: Any) -> Path:
    import yaml

    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "config" / "logfog.yaml").read_text())
    data["enrich"]["geo"] = {"city": geo_dbs["city"], "asn": geo_dbs["asn"]}
    data["aggregates"].update(aggregates)
    path = tmp_path / "logfog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _no_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: str) -> None:
    """A worker or aggregator with a key and a data directory that fails the test with
    ``failure`` if it gets as far as the broker wait or starting its child."""
    import streams.app
    from streams.keys import generate_key

    def reached(*_a: Any, **_k: Any) -> Any:
        raise AssertionError(failure)

    monkeypatch.setattr(streams.app, "_when_broker_is_up", reached)
    monkeypatch.setattr(streams.app, "aggregator_child", reached)
    monkeypatch.setenv("LOGFOG_MASTER_KEY", generate_key())
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))


#: Values of the variables the worker and aggregator read that they cannot run with.
_BAD_ENVIRONMENT = [
    ("LOGFOG_SESSION_TIMEOUT", "30s"),
    ("LOGFOG_SESSION_TIMEOUT", "0"),
    ("LOGFOG_SESSION_TIMEOUT", "nan"),
    ("LOGFOG_STOP_TIMEOUT", "25s"),
    ("LOGFOG_STOP_TIMEOUT", "-1"),
    ("LOGFOG_STOP_TIMEOUT", "inf"),
    ("LOGFOG_WEB_BIND", "no-such-host.invalid"),
    ("LOGFOG_WEB_BIND", "192.0.2.1"),  # TEST-NET-1: no address of this host
    ("LOGFOG_DATA_DIR", "{file}/data"),
]


@pytest.mark.parametrize("command", ["worker", "aggregator"])
@pytest.mark.parametrize(("name", "value"), _BAD_ENVIRONMENT)
def test_a_bad_environment_variable_is_one_line_and_exit_2_before_the_broker_wait(
    name: str,
    value: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    geo_dbs: dict[str, str],
) -> None:
    """LOGFOG_SESSION_TIMEOUT was read with a bare float() in faust_settings, only after
    the broker wait and topic creation: "30s" was a ValueError traceback, exit 1. A bad
    LOGFOG_WEB_BIND failed in aiohttp (gaierror, exit 1) and a LOGFOG_DATA_DIR that is
    no directory in mkdir (a traceback), both at the same late point. LOGFOG_STOP_TIMEOUT
    was parsed inside the SIGTERM handler: with "25s" the handler raised before Faust's
    stop and the worker (and its aggregator child) kept running. All are read at start:
    one line naming the variable, exit 2, before the broker is waited for."""
    from streams.cli import main

    _no_start(monkeypatch, tmp_path, "waited for the broker before checking the environment")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(name, value.format(file=tmp_path / "file"))
    config = _worker_config(tmp_path, geo_dbs)
    code = main(["--log-format", "text", command, "-c", str(config), "--bootstrap",
                 "127.0.0.1:1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"logfog: {name}: ") and err.count("\n") == 1, err


def test_a_bad_session_timeout_is_an_expected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust_settings itself (create_app's) raises the one-line error, not a ValueError."""
    from streams.app import faust_settings
    from streams.cli import UserError
    from streams.config import load_file

    config, _ = load_file(Path(__file__).resolve().parents[2] / "config" / "logfog.yaml")
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOGFOG_SESSION_TIMEOUT", "30s")
    with pytest.raises(UserError, match="LOGFOG_SESSION_TIMEOUT: '30s' is not a number"):
        faust_settings(config, "127.0.0.1:1", 6066)


def test_the_environment_is_read_once_with_its_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.app import ProcessEnv, faust_settings, process_env
    from streams.config import load_file

    config, _ = load_file(Path(__file__).resolve().parents[2] / "config" / "logfog.yaml")
    for name in ("LOGFOG_SESSION_TIMEOUT", "LOGFOG_STOP_TIMEOUT", "LOGFOG_WEB_BIND"):
        monkeypatch.setenv(name, "")  # empty: the default, like the ports
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "new" / "data"))
    assert process_env(config) == ProcessEnv(6.0, 25.0, "127.0.0.1", str(tmp_path / "new/data"))
    assert (tmp_path / "new" / "data").is_dir()
    monkeypatch.setenv("LOGFOG_SESSION_TIMEOUT", "30")
    monkeypatch.setenv("LOGFOG_STOP_TIMEOUT", "0")
    monkeypatch.setenv("LOGFOG_WEB_BIND", "localhost")
    env = process_env(config)
    assert (env.session_timeout_s, env.stop_timeout_s, env.web_bind) == (30.0, 0.0, "localhost")
    settings = faust_settings(config, "127.0.0.1:1", 6066, env=env)
    assert settings["broker_session_timeout"] == 30.0 and settings["web_bind"] == "localhost"
    assert settings["datadir"] == str(tmp_path / "new" / "data")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--web-port", "65535"], "65535 + 1 is no port: set --aggregator-web-port"),
        (["--web-port", "7000", "--aggregator-web-port", "7000"], "is the worker's own"),
    ],
)
def test_the_aggregator_childs_port_is_a_port_of_its_own(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    geo_dbs: dict[str, str],
) -> None:
    """`worker --web-port 65535` started the aggregator child with --web-port 65536 (the
    default is the worker's + 1), which the child refused: its supervisor restarted it
    forever and the worker ran without aggregation. On the worker's own port it cannot
    listen either. Both are refused before anything starts."""
    import streams.app
    import streams.supervise
    from streams.cli import main
    from streams.keys import generate_key

    monkeypatch.setenv("LOGFOG_MASTER_KEY", generate_key())
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LOGFOG_AGGREGATOR_WEB_PORT", raising=False)
    ports: list[int] = []

    def child(config: Any, path: str, bootstrap: str, port: int, loglevel: str) -> Any:
        ports.append(port)
        raise AssertionError("the child was started")

    monkeypatch.setattr(streams.app, "aggregator_child", child)
    monkeypatch.setattr(streams.supervise, "refuse_inspection", lambda: True)
    config = _worker_config(tmp_path, geo_dbs, run_in="process")
    code = main(["worker", "-c", str(config), "--bootstrap", "127.0.0.1:1", *args])
    assert code == 2 and ports == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "taken_option", "message"),
    [
        ("worker", "--web-port", "logfog: web port {port} on 127.0.0.1: already in use "
         "(give another with --web-port or LOGFOG_WEB_PORT)\n"),
        ("worker", "--aggregator-web-port", "logfog: the aggregator child's web port {port} "
         "on 127.0.0.1: already in use (give another with --aggregator-web-port or "
         "LOGFOG_AGGREGATOR_WEB_PORT)\n"),
        ("aggregator", "--web-port", "logfog: web port {port} on 127.0.0.1: already in use "
         "(give another with --web-port or LOGFOG_WEB_PORT)\n"),
    ],
)  # fmt: skip
def test_a_web_port_in_use_is_one_line_and_exit_2_before_the_broker_wait(
    command: str,
    taken_option: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    geo_dbs: dict[str, str],
) -> None:
    """A web port in use was found only by Faust's bind, after the broker wait and the
    topic checks: an OSError stack ("Error: 'OSError'", the port never named) and exit
    1; the aggregator child's made it crash and restart forever while the worker
    reported ready. Both are tried at start: one line naming the port, exit 2."""
    import socket

    import streams.supervise
    from streams.cli import main

    _no_start(monkeypatch, tmp_path, "started before checking the web ports")
    monkeypatch.setattr(streams.supervise, "refuse_inspection", lambda: True)
    for name in ("LOGFOG_WEB_BIND", "LOGFOG_WEB_PORT", "LOGFOG_AGGREGATOR_WEB_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = _worker_config(tmp_path, geo_dbs, run_in="process")
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))  # reserved, not listening: the other port, bindable
        port, other = taken.getsockname()[1], free.getsockname()[1]
        free.close()
        ports = {"--web-port": other}
        if command == "worker":
            ports["--aggregator-web-port"] = other
        ports[taken_option] = port  # the worker's and the child's: one taken, one free
        args = [arg for option, value in ports.items() for arg in (option, str(value))]
        code = main([command, "-c", str(config), "--bootstrap", "127.0.0.1:1", *args])
    assert code == 2
    assert capsys.readouterr().err == message.format(port=port)


@pytest.mark.parametrize("command", ["worker", "aggregator"])
def test_a_stop_while_waiting_for_the_broker_exits_0_and_stops_the_child(
    command: str, tmp_path: Path, geo_dbs: dict[str, str]
) -> None:
    """SIGTERM during the broker wait killed the worker (143, its child left to notice
    the parent gone); a running worker stops with 0: so does a waiting one now."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from streams.keys import generate_key

    config = _worker_config(tmp_path, geo_dbs, run_in="process" if command == "worker" else
                            "aggregator")  # fmt: skip
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    env = {**os.environ, "LOGFOG_MASTER_KEY": generate_key(), "LOGFOG_DATA_DIR": str(tmp_path)}
    log = tmp_path / "out.log"
    args = [sys.executable, "-m", "streams", "--log-format", "json", command, "-c", str(config),
            "--bootstrap", "127.0.0.1:1", "--web-port", str(ports[0])]  # fmt: skip
    if command == "worker":
        args += ["--aggregator-web-port", str(ports[1])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"not reachable yet" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        proc.kill()
    assert b"stopped by SIGTERM while waiting for the broker" in log.read_bytes()
    assert b"Traceback" not in log.read_bytes()

    def children() -> list[str]:  # processes started with this test's config
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(config).encode() in cmdline:
                found.append(pid)
        return found

    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not children()
