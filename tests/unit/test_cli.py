"""The logfog command: outputs, summaries, and one clear line for every expected failure."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.cli import build_parser, main
from streams.records import BOM
from tests.support.kafka_python import SILENT, ScriptedProducer, use_producer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "samples" / "combined.log"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)  # fmt: skip


@pytest.fixture
def config(tmp_path: Path, geo_dbs: dict[str, str]) -> Path:
    data = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    data["enrich"]["geo"] = {"city": geo_dbs["city"], "asn": geo_dbs["asn"]}
    path = tmp_path / "logfog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in ("anonymize", "check-config", "schema", "keygen", "worker", "topics", "ship",
                    "broker"):  # fmt: skip
        assert command in text


def test_help_exit_statuses_include_the_stop_timeout_and_ctrl_c() -> None:
    """An audit (docs D7): ``--help`` listed exit 3 for ship only; worker and aggregator
    exit 3 too when a stop outlives LOGFOG_STOP_TIMEOUT, and Ctrl-C exits 130."""
    from streams.app import EXIT_STOP_TIMEOUT

    epilog = " ".join((build_parser().epilog or "").split())
    assert EXIT_STOP_TIMEOUT == 3
    three = epilog.split(f" {EXIT_STOP_TIMEOUT} ", 1)[1].split(", 130 ", 1)[0]
    assert "(ship)" in three and "LOGFOG_STOP_TIMEOUT (worker, aggregator)" in three, epilog
    assert ", 130 interrupted" in epilog, epilog


def test_anonymize_writes_destinations_rejections_and_aggregates(
    config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-o", str(out), "--summary-json",
                 str(tmp_path / "s.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    lines = SAMPLE.read_bytes().count(b"\n")
    assert summary["lines"] == lines
    assert summary["published"]["ops"] + sum(summary["rejected"].values()) == lines
    assert sorted(p.name for p in out.iterdir()) == [
        "aggregates.ndjson",
        "ops.ndjson",
        "product.ndjson",
        "rejected.ndjson",
    ]
    assert len((out / "ops.ndjson").read_bytes().splitlines()) == summary["published"]["ops"]
    assert "lines read" in result.stderr and "rejected" in result.stderr
    # a small sample: every published cell still holds at least k = 10 visitors
    rows = [orjson.loads(x) for x in (out / "aggregates.ndjson").read_bytes().splitlines()]
    assert rows and all((r["visitors"] or r.get("visitors_min", 0)) >= 10
                        for r in rows if r["kind"] == "cell")  # fmt: skip
    assert any(r["kind"] == "summary" for r in rows)


def test_aggregates_publish_only_the_windows_the_config_names(config: Path, tmp_path: Path) -> None:
    """``aggregates.windows``: one output and window, so that no published row can be
    differenced against a longer window's or another output's."""
    data = yaml.safe_load(config.read_text())
    data["aggregates"]["windows"] = ["product/1d"]
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(x) for x in (out / "aggregates.ndjson").read_bytes().splitlines()]
    assert rows and {(r["output"], r["window"]) for r in rows} == {("product", "1d")}


def test_only_and_stdin(config: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "streams", "anonymize", "-", "-c", str(config),
                             "--only", "ops", "-q"], input=SAMPLE.read_bytes(),
                            capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0
    events = [orjson.loads(x) for x in result.stdout.splitlines()]
    assert events and "network" in events[0] and result.stderr == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["anonymize", "missing.log"], "missing.log: No such file or directory"),
        (["anonymize", "-", "-c", "nope.yaml"], "nope.yaml: 1 problem\n"),
        (["check-config", "config/examples/missing.yaml"], "cannot read"),
        (["worker", "-c", "config/logfog.yaml"], "LOGFOG_MASTER_KEY is not set"),
    ],
)
def test_expected_failures_are_one_line_exit_2(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOGFOG_MASTER_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_aggregator_refuses_while_the_workers_aggregate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With run_in: worker the workers count; an aggregator would count every event twice."""
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    config["aggregates"]["run_in"] = "worker"
    path = tmp_path / "in-worker.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["aggregator", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "needs enabled: true and run_in: aggregator or process" in err
    assert "Traceback" not in err


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "destinations": {
                    "ops": {
                        "topic": "t",
                        "fields": {
                            "ip": {"from": "client.ip", "action": "keep"},
                            "route": {
                                "from": "request.target",
                                "action": "url_policy",
                                "allow_qery": [],
                            },
                        },
                    }
                }
            }
        )
    )
    result = run("check-config", str(bad))
    assert result.returncode == 2
    assert "keep would publish client.ip" in result.stderr
    assert "did you mean 'allow_query'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_shows_the_warnings_after_the_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an error in the config, check-config printed the errors only: the warnings
    it had found showed once the errors were fixed, a second round (an audit)."""
    path = tmp_path / "both.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": {"trusted_proxies": ["0.0.0.0/0"]},
                "destinations": {
                    "ops": {
                        "topic": "t",
                        "fields": {
                            "ip": {"from": "client.ip", "action": "keep"},
                            "route": {"from": "request.target", "action": "url_policy",
                                      "keep_query": False, "allow_query": ["page"]},
                        },
                    }
                },
            }
        )
    )  # fmt: skip
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and "Traceback" not in captured.err
    assert lines[:2] == [
        f"logfog: {path}: 1 problem",
        "  destinations.ops.fields.ip: keep would publish client.ip as it is (raw personal "
        "data); use a transforming action, or set unsafe: true to override",
    ]
    assert [x.split(":", 2)[:2] for x in lines[2:]] == [
        ["warning", " input.trusted_proxies"],
        ["warning", " destinations.ops.fields.route.allow_query"],
    ], lines


def test_check_config_names_the_aggregation_input_as_internal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config listed ``_aggregate -> logfog.agg.input (16 fields)`` among the
    destinations, a name the config never wrote (and may not: '_' is reserved). It is
    the internal aggregation input, and says so."""
    path = ROOT / "config" / "logfog.yaml"
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "_aggregate" not in out
    assert out.startswith(f"{path}: OK: ops -> logs.ops (10 fields), product -> logs.product (")
    assert out.endswith(", aggregation input -> logfog.agg.input (16 fields, internal)\n"), out


def test_missing_geo_database_is_one_clear_line(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    data["enrich"]["geo"] = {"city": str(tmp_path / "nope.mmdb")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("anonymize", str(SAMPLE), "-c", str(path), "-q")
    assert result.returncode == 2 and "nope.mmdb" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("key", "value"), [("topic", "logs ops"), ("retention", "0s")])
def test_topics_create_refuses_a_bad_topic_in_one_line_before_connecting(
    key: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both passed check-config; `topics create` then died with a ValueError traceback
    from TopicSpec (exit 1)."""
    data = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    data["destinations"]["ops"][key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["topics", "create", "-c", str(path), "--bootstrap", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and f"destinations.ops.{key}: " in err and "Traceback" not in err, err


@pytest.mark.parametrize("name", ["LOGFOG_WEB_PORT", "LOGFOG_AGGREGATOR_WEB_PORT"])
def test_a_bad_port_variable_is_one_line_only_for_the_commands_that_use_it(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both variables were parsed with int() while the parser was built: with a typo in
    either, every command (keygen, check-config, --help) died with a traceback."""
    import streams.app

    monkeypatch.delenv("LOGFOG_WEB_PORT", raising=False)
    monkeypatch.delenv("LOGFOG_AGGREGATOR_WEB_PORT", raising=False)
    monkeypatch.setenv(name, "6066x")
    assert main(["keygen"]) == 0
    assert len(capsys.readouterr().out.strip()) == 64
    assert main(["check-config", str(ROOT / "config" / "logfog.yaml")]) == 0
    capsys.readouterr()
    assert main(["worker", "-c", str(ROOT / "config" / "logfog.yaml")]) == 2
    assert capsys.readouterr().err == f"logfog: {name}: '6066x' is not a port (1-65535)\n"
    # Read lazily, the variables keep their place: after the flag, before the default.
    seen: list[tuple[int, int | None]] = []

    def run_worker(config: str, *, web_port: int, aggregator_web_port: int | None,
                   **kwargs: object) -> int:  # fmt: skip
        seen.append((web_port, aggregator_web_port))
        return 0

    monkeypatch.setattr(streams.app, "run_worker", run_worker)
    monkeypatch.setenv(name, "7000")
    main(["worker"])
    main(["worker", "--web-port", "8000", "--aggregator-web-port", "8001"])
    monkeypatch.delenv(name)
    main(["worker"])
    expected = (7000, None) if name == "LOGFOG_WEB_PORT" else (6066, 7000)
    assert seen == [expected, (8000, 8001), (6066, None)]


def test_a_config_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """load_file caught OSError only: a Latin-1 config was a UnicodeDecodeError traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nsite: caf\u00e9\n".encode("latin-1"))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 1 problem\n" in err and "Traceback" not in err
    assert "line 2: not UTF-8 text (byte 0xe9); save it as UTF-8" in err


#: Runs ``logfog`` with the broker timeouts cut to 1 s (the commands wait 10 s).
_SHORT_TIMEOUTS = """
import functools, sys
import streams.admin as admin, streams.shipper as shipper
admin.ensure_topics_detailed = functools.partial(admin.ensure_topics_detailed, timeout_s=1.0)
shipper.ship = functools.partial(shipper.ship, timeout_s=1.0)
from streams.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "command",
    [["topics", "verify", "-c", str(ROOT / "config" / "logfog.yaml")], ["ship", str(SAMPLE)]],
)
def test_an_unreachable_broker_is_one_line(command: list[str]) -> None:
    """README: "Expected failures get one line ... an unreachable broker". kafka-python
    logged every failed connection attempt first (about 20 lines in 10 s)."""
    result = subprocess.run(
        [sys.executable, "-c", _SHORT_TIMEOUTS, "--log-format", "json", *command,
         "--bootstrap", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1, f"{len(lines)} lines: {lines[:3]}"
    assert lines[0].startswith("logfog: Kafka broker at 127.0.0.1:1 is unreachable"), lines


def test_keygen_makes_256_bit_hex() -> None:
    result = run("keygen")
    assert len(bytes.fromhex(result.stdout.strip())) == 32


def test_readme_reference_is_generated_from_the_schema() -> None:
    from streams.config import reference_markdown

    assert reference_markdown() in (ROOT / "README.md").read_text(), (
        "regenerate: logfog schema --markdown"
    )


def test_ship_of_a_missing_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was a FileNotFoundError traceback (and only after connecting to the broker)."""
    missing = tmp_path / "missing.log"
    assert main(["ship", str(missing), "--bootstrap", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert f"logfog: {missing}: No such file or directory" in err and "Traceback" not in err


def test_every_admin_error_is_expected() -> None:
    from streams.admin import AdminError, BrokerUnreachable
    from streams.cli import _expected_errors
    from streams.shipper import TopicNotFound

    expected = _expected_errors()
    for error in (
        TopicNotFound("t", "b:1"),
        AdminError("cannot create topic t: error 37"),
        BrokerUnreachable("b:1", 1.0),
        FileNotFoundError(2, "No such file", "x"),
    ):
        assert isinstance(error, expected), type(error).__name__


@pytest.mark.parametrize(
    ("option", "target", "message"),
    [
        # mkdir said only "File exists"
        (
            "-o",
            "afile",
            "--out: {tmp}/afile: not a directory (--out names a directory for "
            "one file per destination)",
        ),
        ("-o", "afile/sub", "--out: {tmp}/afile/sub: Not a directory"),
        ("--summary-json", "nodir/s.json", "--summary-json: {tmp}/nodir: no such directory"),
        ("--summary-json", ".", "--summary-json: {tmp}: is a directory"),
    ],
)
def test_unusable_output_paths_are_one_line_exit_2_before_any_output(
    config: Path, tmp_path: Path, option: str, target: str, message: str
) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "out"
    extra = ["-o", str(out)] if option != "-o" else []
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-q", *extra,
                 option, str(tmp_path / target))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "logfog: " + message.format(tmp=tmp_path), result.stderr
    assert not out.exists() or not any(out.iterdir())  # checked first: no output for nothing


def test_the_summary_may_go_into_the_output_directory(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-q", "-o", str(out),
                 "--summary-json", str(out / "summary.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert orjson.loads((out / "summary.json").read_bytes())["lines"] > 0


def _anonymize_stdin(config: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "streams", "anonymize", "-", "-c", str(config),
                           *args], input=data, capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip


SECRET_LINE = b"198.51.100.77 garbage secret-token-abc\n"


def test_stdout_mode_writes_rejection_records_never_the_line(config: Path) -> None:
    data = SAMPLE.read_bytes() + SECRET_LINE
    result = _anonymize_stdin(config, data, "-q")
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(x) for x in result.stdout.splitlines()]
    rejected = [r["event"] for r in records if r["destination"] == "rejected"]
    assert {"stage": "parse", "reason": "parse.no_match", "line": data.count(b"\n")} in rejected
    published = sum(1 for r in records if r["destination"] == "ops")
    assert published + len(rejected) == data.count(b"\n")
    assert b"198.51.100.77" not in result.stdout and b"secret-token" not in result.stdout

    only = _anonymize_stdin(config, data, "-q", "--only", "rejected")
    assert [orjson.loads(x) for x in only.stdout.splitlines()] == rejected


def test_help_says_where_rejections_go() -> None:
    anonymize = build_parser()._subparsers._group_actions[0].choices["anonymize"]  # type: ignore[union-attr]
    text = " ".join(anonymize.format_help().split())
    assert 'destination "rejected"' in text and "--only rejected" in text


def test_summary_hides_the_internal_aggregation_input(config: Path, tmp_path: Path) -> None:
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-o", str(tmp_path / "out"),
                 "--summary-json", str(tmp_path / "s.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert set(summary["published"]) == {"ops", "product"}
    assert "_aggregate" not in result.stderr


@pytest.mark.parametrize(("only", "written"), [("ops", ["ops"]), ("rejected", [])])
def test_summary_with_only_counts_what_was_written(
    only: str, written: list[str], config: Path, tmp_path: Path
) -> None:
    """With ``--only ops`` the summary still said "published N product", though no
    product event was written (an audit)."""
    summary = tmp_path / "s.json"
    result = run("anonymize", str(SAMPLE), "-c", str(config), "--only", only,
                 "--summary-json", str(summary))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(orjson.loads(summary.read_bytes())["published"]) == written
    published = [x.split()[-1] for x in result.stderr.splitlines() if x.startswith("published")]
    assert published == written


def test_summary_of_an_empty_log_shows_zeros(config: Path, tmp_path: Path) -> None:
    """An empty input left the "published" lines out of the summary (an audit)."""
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    summary = tmp_path / "s.json"
    result = run("anonymize", str(empty), "-c", str(config), "-o", str(tmp_path / "out"),
                 "--summary-json", str(summary))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert orjson.loads(summary.read_bytes())["published"] == {"ops": 0, "product": 0}
    published = [x.split() for x in result.stderr.splitlines() if x.startswith("published")]
    assert published == [["published", "0", "ops"], ["published", "0", "product"]]


def test_summary_counts_lines_left_without_a_pseudonym(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = SAMPLE.read_bytes().splitlines()[:3]
    future = lines[0].replace(b"/2024:", b"/2099:")
    assert future != lines[0]
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join([*lines, future, *lines]) + b"\n")
    summary_path = tmp_path / "s.json"
    assert main(["anonymize", str(log), "-c", str(config), "-o", str(tmp_path / "out"),
                 "--summary-json", str(summary_path)]) == 0  # fmt: skip
    products = [
        orjson.loads(x) for x in (tmp_path / "out" / "product.ndjson").read_bytes().splitlines()
    ]
    assert sum(p["visitor"] is None for p in products) == 1
    assert orjson.loads(summary_path.read_bytes())["pseudonyms_empty"] == 1
    assert "no pseudonym" in capsys.readouterr().err


def test_ship_summary_counts_a_line_left_unterminated_at_the_stop() -> None:
    from streams.cli import ship_summary
    from streams.shipper import ShipResult

    text = ship_summary(ShipResult(lines=2, records=1, unfinished_lines=1, unfinished_bytes=12),
                        "logs.raw", 65536)  # fmt: skip
    assert "1 unterminated line (12 bytes) at the stop not shipped" in text
    assert "error" not in text  # not a failure: the writer had not finished it


@pytest.mark.parametrize("wait", ["-1", "nan", "soon"])
def test_ship_rotate_wait_must_be_seconds(wait: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["ship", "a.log", "--follow", "--rotate-wait", wait])
    assert exit.value.code == 2 and "--rotate-wait" in capsys.readouterr().err


def test_ship_help_gives_the_rotate_wait_default(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.shipper import DEFAULT_ROTATE_WAIT_S

    with pytest.raises(SystemExit):
        build_parser().parse_args(["ship", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_ROTATE_WAIT_S:g})" in help_text
    assert "an unterminated last line is not shipped" in help_text


class NeverAcked(ScriptedProducer):
    """kafka-python's producer while the broker takes nothing: ``send`` queues a record
    whose future never completes, and ``flush(timeout)`` raises KafkaTimeoutError."""

    def outcome(self, n: int, value: bytes) -> str:
        return SILENT


def test_ship_whose_records_are_not_acknowledged_in_time_exits_3_with_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logfog ship` promises exit 3 and a summary when the broker did not acknowledge
    every record; shipper.ship even counted records "never acknowledged within the
    timeout". But producer.flush(timeout) raises KafkaTimeoutError for exactly that
    case, which escaped ship() and main(): a traceback, exit 1, no summary."""
    from streams.cli import EXIT_NOT_SHIPPED

    use_producer(monkeypatch, NeverAcked)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(1, 6)))
    code = main(["ship", str(log), "--bootstrap", "127.0.0.1:9", "--topic", "logs.raw"])
    err = capsys.readouterr().err
    assert code == EXIT_NOT_SHIPPED
    assert "error: 1 record (5 lines) not acknowledged by the broker" in err
    assert "Traceback" not in err


def test_ship_summary_says_when_shipping_gave_up() -> None:
    from streams.cli import ship_summary
    from streams.shipper import ShipResult

    text = ship_summary(ShipResult(lines=3, records=3, failed_records=2, failed_lines=2,
                                   resent_records=10, gave_up=True), "logs.raw", 65536)  # fmt: skip
    assert "10 sent again: the broker did not take them at first" in text
    assert "shipping stopped before the end of the input" in text


@pytest.mark.parametrize("count", ["0", "-3", "many"])
def test_ship_with_lines_per_record_below_one_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], count: str
) -> None:
    """--lines-per-record 0 (or negative) was accepted by argparse and reached Framer only
    after the broker was asked and the producer created (and never closed): a ValueError
    traceback, exit 1, instead of one line and exit 2."""
    use_producer(monkeypatch, ScriptedProducer)
    before = len(ScriptedProducer.instances)
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n")
    code = main(["ship", str(log), "--bootstrap", "127.0.0.1:9", "--lines-per-record", count])
    err = capsys.readouterr().err
    assert code == 2 and "--lines-per-record" in err and "Traceback" not in err
    assert len(ScriptedProducer.instances) == before  # nothing connected


def test_main_returns_the_status_of_help_and_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_bom_at_the_start_of_the_log_is_no_part_of_its_first_line(
    config: Path, tmp_path: Path
) -> None:
    """A UTF-8 byte order mark starting a log (Windows tools write one) made its first
    line parse.bad_ip ("\\ufeff203.0.113.9"); one further on is the line's own and
    still rejected (audit formats)."""
    lines = SAMPLE.read_bytes().splitlines()[:3]
    log = tmp_path / "access.log"
    log.write_bytes(b"\xef\xbb\xbf" + b"\n".join([*lines, b"\xef\xbb\xbf" + lines[0]]) + b"\n")
    out = tmp_path / "out"
    assert main(["anonymize", str(log), "-c", str(config), "-o", str(out), "-q"]) == 0
    rejected = [orjson.loads(x) for x in (out / "rejected.ndjson").read_bytes().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(4, "parse.bad_ip")]
    assert len((out / "ops.ndjson").read_bytes().splitlines()) == 3


def test_the_progress_bar_reaches_the_files_size_on_crlf_logs(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar's total is the file's size in bytes, and each batch added len(line) + 1
    per line after "\\r\\n" (two bytes) was cut, so a CRLF log (IIS, or any log edited on
    Windows) ended short of its total (and an unterminated last line one byte over)."""
    import streams.cli as cli

    seen: dict[str, int] = {"done": 0}

    class Bar:
        def update(self, n: int) -> None:
            seen["done"] += n

        def close(self) -> None: ...

    def progress(total: int | None, enabled: bool) -> Bar:
        seen["total"] = total or 0
        return Bar()

    monkeypatch.setattr(cli, "_progress", progress)
    lines = SAMPLE.read_bytes().splitlines()
    log = tmp_path / "iis.log"
    # CRLF, some LF, and a last line without its end: every byte counts once.
    log.write_bytes(b"".join(x + (b"\n" if i % 5 == 0 else b"\r\n") for i, x in enumerate(lines))
                    + lines[0])  # fmt: skip
    summary = tmp_path / "s.json"
    code = cli.main(["anonymize", str(log), "-c", str(config), "-o", str(tmp_path / "out"), "-q",
                     "--summary-json", str(summary)])  # fmt: skip
    assert code == 0
    assert seen["done"] == seen["total"] == log.stat().st_size
    assert orjson.loads(summary.read_bytes())["lines"] == len(lines) + 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_when_outputs_are_closed_is_one_line_exit_2(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A full disk is an expected failure (one line, exit 2). But a small run's output
    sat in the file buffers until the ``finally`` closed them, and an ENOSPC from
    close() was raised outside the ``except OSError``: a traceback and exit 1, the
    remaining outputs not even closed, and partial files under the final names. The
    outputs are now written under temporary names, closed inside the try, and renamed
    only on success; an earlier run's files stay as they were."""
    import streams.cli as cli

    def open_on_a_full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode in ("wb", "xb") and Path(path).name.startswith((".ops.ndjson", "ops.ndjson")):
            Path(path).touch()  # the file exists, its bytes go nowhere
            return open("/dev/full", "wb")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(cli, "open", open_on_a_full_disk, raising=False)
    log = tmp_path / "small.log"  # all of its output fits in the buffers until close
    log.write_bytes(b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:3]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "ops.ndjson").write_bytes(b"an earlier run\n")
    code = cli.main(["anonymize", str(log), "-c", str(config), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == "logfog: anonymize: No space left on device"
    assert [p.name for p in out.iterdir()] == ["ops.ndjson"]  # no partial or temporary file
    assert (out / "ops.ndjson").read_bytes() == b"an earlier run\n"


def test_outputs_over_the_file_size_limit_are_one_line_exit_2_and_leave_nothing(
    config: Path, tmp_path: Path
) -> None:
    """The same through the operating system: writes past RLIMIT_FSIZE fail (EFBIG;
    Python ignores SIGXFSZ), here all of them, when the buffers are flushed at close."""
    import resource

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "streams", "anonymize", str(SAMPLE), "-c", str(config), "-o",
         str(out), "-q"], capture_output=True, text=True, cwd=ROOT, timeout=120,
        preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "logfog: anonymize: File too large"
    assert list(out.iterdir()) == []


def test_outputs_follow_symlinks_and_write_pipes_in_place(config: Path, tmp_path: Path) -> None:
    # Renaming a finished file over a symlink would replace the link and leave its
    # target empty (a review); a pipe (or /dev/stdout) cannot be renamed over at all.
    target = tmp_path / "real-summary.json"
    link = tmp_path / "summary.json"
    link.symlink_to(target)
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "ops.ndjson"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("anonymize", str(SAMPLE), "-c", str(config), "-q", "--summary-json", str(link),
                 "-o", str(out))  # fmt: skip
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and json.loads(target.read_text())["lines"] > 0
    assert received and received[0].count(b"\n") > 0
    assert not list(tmp_path.glob(".*.tmp")) and not list(out.glob(".*.tmp"))
    assert (out / "product.ndjson").is_file()


def test_broker_port_out_of_range_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logfog broker --port 70000` started Tansu, which failed: exit 1 ("internal
    error") after the broker's own usage text. Like every other port option it is a
    one-line usage error, exit 2, and nothing is started."""
    import streams.broker

    started: list[int] = []
    monkeypatch.setattr(streams.broker, "run_forever",
                        lambda port=9092, **_: started.append(port) or 1)  # fmt: skip
    assert main(["broker", "--port", "70000"]) == 2
    assert "'70000' is not a port (1-65535)" in capsys.readouterr().err
    assert started == [], "the broker was started with an impossible port"


@pytest.mark.parametrize(("command", "runner"),
                         [("worker", "run_worker"), ("aggregator", "run_aggregator")])  # fmt: skip
def test_a_bad_loglevel_is_a_usage_error(
    command: str, runner: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logfog worker --loglevel bogus` reached Faust's logging setup: a TypeError stack
    (in the worker and its aggregator child) and exit 1 after 5 s. argparse checks it:
    a usage error, exit 2, nothing started; any case, passed on lower-cased."""
    import streams.app

    seen: list[str] = []

    def run(*_a: Any, loglevel: str, **_k: Any) -> int:
        seen.append(loglevel)
        return 0

    monkeypatch.setattr(streams.app, runner, run)
    assert main([command, "--loglevel", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "argument --loglevel: invalid choice: 'bogus'" in err and "Traceback" not in err
    assert seen == []
    for level in ("DEBUG", "Info", "warning", "error", "CRITICAL"):
        assert main([command, "--loglevel", level]) == 0
    assert seen == ["debug", "info", "warning", "error", "critical"]
    # Every command with --loglevel checks it.
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    having = {name for name, sub in subparsers.choices.items()
              if any(a.choices for a in sub._actions if "--loglevel" in a.option_strings)}  # fmt: skip
    with_option = {name for name, sub in subparsers.choices.items()
                   if any("--loglevel" in a.option_strings for a in sub._actions)}  # fmt: skip
    assert having == with_option == {"worker", "aggregator"}


def test_broker_port_in_use_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logfog broker --port P` with P taken said so in one line but exited 1, the
    status of an internal error: a taken port is an expected failure, exit 2."""
    import socket

    import streams.broker

    monkeypatch.setattr(streams.broker, "resolve_binary", lambda: "/bin/false")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["broker", "--port", str(port)]) == 2
    assert capsys.readouterr().err == (
        f"logfog broker: port {port} on 127.0.0.1 is already in use\n"
    )


def test_topics_verify_does_not_blame_create_topics_false(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logfog topics verify` with a topic missing said "kafka.create_topics is false",
    though the config said true: that is the worker's reason; verify creates nothing
    whatever the config says, and must say so."""
    import contextlib

    import streams.admin

    @contextlib.contextmanager
    def no_client(*_a: Any, **_k: Any) -> Any:
        yield object()

    config = ROOT / "config" / "logfog.yaml"
    monkeypatch.setattr(streams.admin, "admin_client", no_client)
    monkeypatch.setattr(streams.admin, "_describe", lambda client, names: {})
    assert yaml.safe_load(config.read_text())["kafka"].get("create_topics", True) is True
    code = main(["topics", "verify", "-c", str(config), "--bootstrap", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and "is missing" in err
    assert "create_topics is false" not in err, err
    assert "verify creates nothing: create them with `logfog topics create`" in err, err


@pytest.mark.parametrize("only", ["ops", "rejected"])
def test_anonymize_only_with_out_writes_that_output_alone(
    only: str, config: Path, tmp_path: Path
) -> None:
    """`anonymize FILE -o DIR --only ops` checked --only's name and then ignored it: every
    destination (the product events with their visitor pseudonyms too), the rejections
    and the aggregates were written, exit 0. --only NAME writes NAME alone, to
    DIR/NAME.ndjson with --out, the same records as on stdout."""
    out = tmp_path / "out"
    code = main(["anonymize", str(SAMPLE), "-c", str(config), "-o", str(out), "--only", only,
                 "-q"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{only}.ndjson"]
    stdout = run("anonymize", str(SAMPLE), "-c", str(config), "--only", only, "-q")
    assert stdout.returncode == 0, stdout.stderr
    written = (out / f"{only}.ndjson").read_text()
    assert written and written == stdout.stdout


@pytest.mark.parametrize("follow", [[], ["--follow"]])
def test_ship_of_a_directory_is_one_line_and_exit_2_before_connecting(
    follow: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`logfog ship DIR` got past the missing-file check, connected, and died in
    follow_file's open() with an IsADirectoryError traceback, exit 1 (`anonymize DIR`
    says "Is a directory", exit 2). It is refused before any connection."""
    import streams.shipper

    def describe_topics(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("connected before checking the source")

    monkeypatch.setattr(streams.shipper, "describe_topics", describe_topics)
    code = main(["ship", str(tmp_path), "--bootstrap", "127.0.0.1:1", "--topic", "t", *follow])
    assert code == 2
    assert capsys.readouterr().err == f"logfog: {tmp_path}: Is a directory\n"


def test_lines_too_late_for_the_aggregates_are_reported(config: Path, tmp_path: Path) -> None:
    """Every output leaves out an event late for any one (one fate per event): a log
    whose second half is two hours older than its first (two rotated files in the
    wrong order) lost those lines from every aggregate, and the summary did not say so
    (a review)."""
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    lines = [
        f'203.0.{base + i}.9 - - [04/Mar/2024:{hour}:00:{i:02d} +0000] "GET /p HTTP/1.1" 200 5 '
        f'"-" "{ua}"'
        for hour, base in ((12, 1), (10, 101))
        for i in range(25)
    ]
    log = tmp_path / "late.log"
    log.write_text("\n".join(lines) + "\n")
    out, summary = tmp_path / "out", tmp_path / "s.json"
    result = run("anonymize", str(log), "-c", str(config), "-o", str(out),
                 "--summary-json", str(summary))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert orjson.loads(summary.read_bytes())["aggregates_late"] == 25
    assert "late for aggs" in result.stderr and "25" in result.stderr


def test_a_line_far_over_max_line_bytes_is_never_held_whole(config: Path, tmp_path: Path) -> None:
    """``head -c 200M /dev/zero | logfog anonymize - --only rejected`` read the whole line
    before comparing it with ``input.max_line_bytes``: a peak RSS of 462 MB, and
    ``/dev/zero`` would have used up memory (an audit). A line is cut where it
    outgrows the limit, the rest read and thrown away: one parse.too_long, and the
    next line is read as usual."""
    good = tmp_path / "good.log"
    good.write_bytes(b"\n" + SAMPLE.read_bytes().splitlines(keepends=True)[0])
    summary = tmp_path / "s.json"
    # Started by a shell: a child of this (large) process would inherit its peak RSS.
    feed = f"{{ head -c 150000000 /dev/zero; cat '{good}'; }} | \"$@\""
    result = subprocess.run(
        ["sh", "-c", feed, "sh", sys.executable, "-m", "streams", "anonymize", "-", "-c",
         str(config), "--only", "rejected", "-q", "--summary-json", str(summary)],
        capture_output=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = orjson.loads(summary.read_bytes())
    assert stats["peak_rss_mb"] < 140, stats["peak_rss_mb"]  # it held 150 MB and more
    assert stats["lines"] == 2 and stats["rejected"] == {"parse.too_long": 1}
    limit = yaml.safe_load(config.read_text())["input"]["max_line_bytes"]
    assert [orjson.loads(x) for x in result.stdout.splitlines()] == [
        {"stage": "parse", "reason": "parse.too_long", "line": 1, "length": limit + 1}
    ]


def test_a_bom_does_not_shorten_a_too_long_first_line(config: Path, tmp_path: Path) -> None:
    """A review: the BOM was removed after the cut, so a first line far over the limit
    came out 3 bytes under it and was parsed as if whole. It is removed first now."""
    limit = yaml.safe_load(config.read_text())["input"]["max_line_bytes"]
    log = tmp_path / "bom.log"
    log.write_bytes(BOM + b"x" * (limit * 2) + b"\n")
    result = run("anonymize", str(log), "-c", str(config), "--only", "rejected", "-q")
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(x) for x in result.stdout.splitlines()] == [
        {"stage": "parse", "reason": "parse.too_long", "line": 1, "length": limit + 1}
    ]


@pytest.mark.parametrize(
    "command",
    [["keygen"], ["schema"], ["check-config", "config/logfog.yaml"],
     ["anonymize", "tests/data/samples/combined.log", "--only", "ops", "-q"]],
)  # fmt: skip
@pytest.mark.parametrize("unbuffered", [False, True])
def test_stdout_on_a_full_disk_is_one_line_and_a_failure(
    command: list[str], unbuffered: bool, tmp_path: Path
) -> None:
    """``logfog schema > /dev/full`` was a traceback, exit 1; ``keygen > keyfile`` on a
    full disk exited 120 after an "Exception ignored" (stdout was flushed at exit,
    after the command "succeeded"; an audit). With PYTHONUNBUFFERED=1 (deploy's image)
    a write cut short went unreported: exit 0, a part of the output. Writes past
    RLIMIT_FSIZE fail like those on a full disk (EFBIG)."""
    import resource

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with (tmp_path / "out").open("wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "streams", *command], stdout=out, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, timeout=120, preexec_fn=limit_file_size, env=env,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("logfog: ") and result.stderr.endswith("File too large\n")
    assert result.stderr.count("\n") == 1, result.stderr


def test_sigterm_leaves_no_temporary_output_behind(config: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) removed the temporary outputs of ``anonymize -o DIR`` and exited
    130; SIGTERM (``kill``, a container stopped) killed it with them left behind as
    ``.ops.ndjson.<pid>-xxxx.tmp`` (an audit). It stops the same way, exit 143."""
    import signal
    import time

    out = tmp_path / "out"
    with subprocess.Popen(
        [sys.executable, "-m", "streams", "anonymize", "-", "-c", str(config), "-o", str(out),
         "-q"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    ) as child:  # fmt: skip
        assert child.stdin is not None and child.stderr is not None
        child.stdin.write(SAMPLE.read_bytes())  # and more to come: the run goes on
        child.stdin.flush()
        deadline = time.monotonic() + 60
        while len(list(out.glob(".*.tmp"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(out.glob(".*.tmp"))) == 4, "the outputs were not opened"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
        assert child.stderr.read() == b""
    assert list(out.iterdir()) == []


def test_check_config_shows_every_unsafe_warning_the_run_logs(tmp_path: Path) -> None:
    """check-config said just OK of ``truncate_ip`` with ``ipv4_prefix: 32, unsafe:
    true`` or ``coarsen_time`` with ``bucket: 10s, unsafe: true``, while anonymize
    logged "UNSAFE rule publishes personal data" (an audit): the rules compiler had
    warnings of its own. Both now show the config's, the same lines."""
    rules = {
        "net": {"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 32},
        "time": {"from": "request.time", "action": "coarsen_time", "bucket": "10s"},
        "ip": {"from": "client.ip", "action": "keep"},
        "route": {"from": "request.target", "action": "url_policy", "template": False},
        "status": {"from": "response.status", "action": "keep"},  # overrides nothing
    }
    path = tmp_path / "unsafe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "keys": {"epoch": "2d", "unsafe": True},
                "destinations": {
                    "ops": {
                        "topic": "t",
                        "fields": {n: {**r, "unsafe": True} for n, r in rules.items()},
                    }
                },
            }
        )
    )
    checked = run("check-config", str(path))
    assert checked.returncode == 0, checked.stderr
    shown = [x.removeprefix("warning: ") for x in checked.stderr.splitlines()]
    ran = run("--log-format", "text", "anonymize", str(SAMPLE), "-c", str(path), "-q",
              "--only", "ops")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    logged = [x.split("]: ", 1)[1] for x in ran.stderr.splitlines() if " WARNING " in x]
    assert shown == logged
    for name in (*rules, "keys.epoch"):
        assert sum(f"{name}: " in x for x in shown) == 1, (name, shown)


def test_check_config_shows_settings_without_effect_as_the_run_logs_them(tmp_path: Path) -> None:
    """``allow_query`` beside ``keep_query: false``, or ``bins`` beside ``to:
    status_class``, were accepted in silence (an audit): the config reads as if they
    applied. check-config shows them, and a run logs the same lines at startup."""
    data = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    fields = data["destinations"]["ops"]["fields"]
    fields["route"] = {"from": "request.target", "action": "url_policy", "keep_query": False,
                       "allow_query": ["page"]}  # fmt: skip
    fields["status"] = {"from": "response.status", "action": "generalize",
                        "to": "status_class", "bins": [400]}  # fmt: skip
    data["input"]["json_fields"] = {"client": "remote_addr"}
    path = tmp_path / "ignored.yaml"
    path.write_text(yaml.safe_dump(data))
    checked = run("check-config", str(path))
    assert checked.returncode == 0, checked.stderr
    shown = [x.removeprefix("warning: ") for x in checked.stderr.splitlines()]
    assert [x.split(": has no effect: ")[0] for x in shown] == [
        "input.json_fields",
        "destinations.ops.fields.route.allow_query",
        "destinations.ops.fields.status.bins",
    ], shown
    ran = run("--log-format", "text", "anonymize", str(SAMPLE), "-c", str(path), "-q",
              "--only", "ops")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert [x.split("]: ", 1)[1] for x in ran.stderr.splitlines() if " WARNING " in x] == shown


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma"])
def test_a_compressed_log_is_read_as_its_lines(codec: str, config: Path, tmp_path: Path) -> None:
    """``anonymize access.log.gz`` read the compressed bytes as lines: every one
    parse.no_match, exit 0 (an audit). A file starting with gzip, bzip2 or xz magic is
    read decompressed, whatever its name."""
    import importlib

    log = tmp_path / "access.log.1"
    log.write_bytes(importlib.import_module(codec).compress(SAMPLE.read_bytes()))
    plain = run("anonymize", str(SAMPLE), "-c", str(config), "-q", "--only", "ops")
    result = run("anonymize", str(log), "-c", str(config), "-q", "--only", "ops")
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain.stdout and plain.stdout.count("\n") > 10


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma"])
def test_compressed_stdin_is_read_as_its_lines(codec: str, config: Path) -> None:
    """``logfog anonymize -`` read a compressed stream's bytes as lines, every one
    parse.no_match (an audit), though a compressed FILE was read decompressed. stdin's
    magic bytes are sniffed the same way, and kept for a stream that is not compressed."""
    import importlib

    compressed = importlib.import_module(codec).compress(SAMPLE.read_bytes())
    command = [sys.executable, "-m", "streams", "anonymize", "-", "-c", str(config), "-q",
               "--only", "ops"]  # fmt: skip
    results = [
        subprocess.run(command, input=data, capture_output=True, cwd=ROOT, timeout=120)
        for data in (SAMPLE.read_bytes(), compressed)
    ]
    plain, decompressed = results
    assert decompressed.returncode == 0 and decompressed.stderr == b"", decompressed.stderr
    assert decompressed.stdout == plain.stdout and plain.stdout.count(b"\n") > 10


class _Trickle(io.RawIOBase):
    """A pipe whose writer sends one byte at a time."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[: min(1, len(self._data))] = self._data[:1]
        taken, self._data = self._data[:1], self._data[1:]
        return len(taken)


@pytest.mark.parametrize(
    ("data", "trickle"),
    [
        pytest.param(gzip.compress(b"a\nb\n"), True, id="gzip-sniffed-a-byte-a-read"),
        pytest.param(b"", True, id="empty"),
        pytest.param(b"x", True, id="shorter-than-any-magic"),
        pytest.param(b"\x1f not gzip\n", True, id="gzip-first-byte-only"),
        pytest.param(b"\xfd7zX but not xz\n", True, id="most-of-xz"),
        # A BOM is removed however a pipe's reads cut it: LineReader kept the bytes
        # of one given in pieces (LineReader holds them back, as the shipper does).
        pytest.param(BOM + b"BZ not bzip2\n", False, id="bom-then-bz"),
        pytest.param(BOM + b"BZ not bzip2\n", True, id="bom-a-byte-a-read"),
        pytest.param(BOM[:2], True, id="half-a-bom-is-a-line"),
    ],
)
def test_stdin_loses_no_byte_to_the_sniffing(
    data: bytes, trickle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever stdin starts with, its lines are what was sent (decompressed when it
    starts with a magic), even from a pipe that gives one byte a read."""
    from streams.cli import LineReader, _open_input

    raw = _Trickle(data) if trickle else io.BytesIO(data)
    stdin = io.TextIOWrapper(io.BufferedReader(raw, buffer_size=1))
    monkeypatch.setattr(sys, "stdin", stdin)
    log = _open_input("-")
    reader = LineReader(log.stream, max_bytes=1000)
    lines = []
    while batch := reader.batch()[0]:
        lines += batch
    log.close()
    assert not stdin.closed
    plain = gzip.decompress(data) if data.startswith(b"\x1f\x8b") else data
    assert lines == plain.removeprefix(BOM).splitlines()


def test_damaged_or_zstd_compressed_stdin_is_one_line_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for data, message in (
        (gzip.compress(SAMPLE.read_bytes())[:200], "damaged or truncated gzip data"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 20, "compressed with zstd, which logfog cannot read"),
    ):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["anonymize", "-", "-c", str(config), "-q", "--only", "ops"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"logfog: stdin: {message}") and err.count("\n") == 1, err


def test_a_damaged_or_zstd_compressed_log_is_one_line_exit_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated gzip file (EOFError) or one of zstd (not in the standard library)
    is an expected failure: one line naming the file, and no output left. bz2 reports
    bad data as a bare OSError: it read "anonymize: Invalid data stream"."""
    import gzip

    truncated = tmp_path / "cut.log.gz"
    truncated.write_bytes(gzip.compress(SAMPLE.read_bytes())[:200])
    bad_bzip2 = tmp_path / "bad.log.bz2"
    bad_bzip2.write_bytes(b"BZh9" + b"\0" * 40)
    zstd = tmp_path / "access.log.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    for log, message in (
        (truncated, "damaged or truncated gzip data"),
        (bad_bzip2, "damaged or truncated bzip2 data"),
        (zstd, "compressed with zstd"),
    ):
        out = tmp_path / "out"
        assert main(["anonymize", str(log), "-c", str(config), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"logfog: {log}: {message}") and err.count("\n") == 1, err
        assert not out.exists() or list(out.iterdir()) == []


def test_ship_of_a_damaged_compressed_log_prints_what_it_shipped_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated download (``access.log.1.gz`` cut short): the lines before the damage
    are shipped and counted, then one error line naming the file, never its bytes; exit
    2 (bad input: shipping it again cannot help). A file or stdin alike."""
    use_producer(monkeypatch, ScriptedProducer)
    data = SAMPLE.read_bytes()
    cut = gzip.compress(data * 20)[: len(gzip.compress(data * 20)) // 2]
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(cut)
    read, write = os.pipe()
    os.write(write, cut)
    os.close(write)
    with os.fdopen(read) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        for source, name in ((str(path), str(path)), ("-", "stdin")):
            code = main(["--log-format", "text", "ship", source, "--bootstrap", "127.0.0.1:9",
                         "--topic", "logs.raw"])  # fmt: skip
            err = capsys.readouterr().err
            shipped = ScriptedProducer.instances[-1].acked
            lines = sum(record.count(b"\n") + 1 for record in shipped)
            assert code == 2 and lines > 0, err
            records = f"{len(shipped)} record{'' if len(shipped) == 1 else 's'}"
            assert f"shipped {lines:,} lines in {records} to logs.raw" in err
            error = f"error: {name}: damaged or truncated gzip data: shipping stopped there"
            assert [x for x in err.splitlines() if "error" in x.lower()] == [
                error + " (the lines before it are shipped, a line it cut short is not)"
            ], err
            assert "Traceback" not in err and "HTTP/1" not in err


def test_ship_follow_of_a_compressed_log_is_one_line_exit_2_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compressed file is rewritten whole, never appended to: `--follow` would wait for
    lines that never come (and a service restarted on exit would ship it again)."""
    use_producer(monkeypatch, ScriptedProducer)
    before = len(ScriptedProducer.instances)
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    code = main(["ship", str(path), "--follow", "--bootstrap", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"logfog: {path}: compressed with gzip: a compressed file cannot be "
                          "followed"), err  # fmt: skip
    assert len(ScriptedProducer.instances) == before  # nothing connected


def test_ship_help_says_compressed_logs_are_shipped_decompressed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ship", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert (
        "compressed with gzip, bzip2 or xz (access.log.1.gz) is shipped decompressed" in help_text
    )
    assert "Not for a compressed file" in help_text
