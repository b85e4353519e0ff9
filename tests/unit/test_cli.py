"""The logfog command: outputs, summaries, and one clear line for every expected failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from streams.cli import build_parser, main

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
        (["anonymize", "-", "-c", "nope.yaml"], "nope.yaml: 1 problem(s)"),
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
    assert f"{path}: 1 problem(s)" in err and "Traceback" not in err
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
        ("-o", "afile", "--out: {tmp}/afile: File exists"),
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
