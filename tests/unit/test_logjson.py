"""JSON log lines: event names and fields, never exception messages (they quote data)."""

from __future__ import annotations

import logging
import logging.config
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.logjson import JsonFormatter, TextFormatter, configure, faust_logging_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "203.0.113.77"


def record_of(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    (record,) = caplog.records
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = orjson.loads(line)
    return parsed


def test_extra_fields_and_event_name(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("logfog.test")
    with caplog.at_level(logging.INFO):
        log.info("created topic %s", "logs.raw",
                 extra={"event": "topic.created", "partitions": 4, "obj": object()})  # fmt: skip
    line = record_of(caplog)
    assert line["event"] == "topic.created"
    assert line["message"] == "created topic logs.raw"
    assert (line["partitions"], line["obj"], line["level"]) == (4, "object", "info")


def test_exceptions_give_type_and_frames_never_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("logfog.test")
    try:
        raise ValueError(f"bad line from {SECRET}")
    except ValueError:
        with caplog.at_level(logging.ERROR):
            log.exception("rule failed")
    text = JsonFormatter().format(caplog.records[0])
    assert SECRET not in text
    line = orjson.loads(text)
    assert line["exc_type"] == "ValueError"
    assert any("test_logjson.py" in frame and "test_exceptions" in frame
               for frame in line["stack"])  # fmt: skip


def test_faust_gets_a_dict_config_that_logs_json() -> None:
    configure("json", logging.INFO)
    try:
        config = faust_logging_config()
        assert config is not None and config["disable_existing_loggers"] is False
        logging.config.dictConfig(config)
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        configure("text", logging.INFO)
    logging.config.dictConfig(faust_logging_config())
    assert isinstance(logging.getLogger().handlers[0].formatter, TextFormatter)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_exceptions_in_faust_style_arguments_are_logged_by_type_only(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # mode/Faust log a crashed service as log.exception("Crashed reason=%r", exc); the
    # exception's message can quote the data that caused it.
    configure(fmt, logging.INFO)
    try:
        try:
            raise ValueError("bad line from 203.0.113.9")
        except ValueError as exc:
            logging.getLogger("mode.services").exception("Crashed reason=%r", exc)
    finally:
        configure("text", logging.INFO)
    err = capsys.readouterr().err
    assert "ValueError" in err and "Crashed reason=" in err
    assert "203.0.113.9" not in err and "bad line" not in err


def test_kafka_client_loggers_never_log_debug() -> None:
    # kafka-python's admin client logs its configuration (SASL password) at DEBUG.
    configure("json", logging.DEBUG)
    try:
        assert logging.getLogger("kafka.admin.client").getEffectiveLevel() == logging.INFO
        config = faust_logging_config("debug")
        logging.config.dictConfig(config)
        assert logging.getLogger("kafka.admin.client").getEffectiveLevel() == logging.INFO
        assert logging.getLogger().level == logging.DEBUG  # --loglevel reaches Faust's setup
    finally:
        configure("text", logging.INFO)


def run_pid(lines: list[dict[str, object]]) -> int:
    pid = lines[0]["pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


def test_the_cli_logs_json_when_not_on_a_terminal(tmp_path: Path) -> None:
    config = tmp_path / "unsafe.yaml"
    config.write_text("destinations: {ops: {topic: o, fields: {u: {from: user.name, "
                      "action: keep, unsafe: true}}}}\n")  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "streams", "anonymize", "-", "-q", "-c", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, input="",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [orjson.loads(x) for x in run.stderr.splitlines()]  # every line is JSON
    assert lines and all(x["level"] == "warning" and "UNSAFE" in x["message"] for x in lines)
    assert all({"ts", "logger", "event"} <= set(x) for x in lines)
    assert {x["pid"] for x in lines} == {run_pid(lines)}  # one process: one pid
    text = subprocess.run(
        [sys.executable, "-m", "streams", "--log-format", "text", "anonymize", "-", "-q",
         "-c", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60, input="",
    )  # fmt: skip
    assert " WARNING logfog[" in text.stderr and not text.stderr.startswith("{")
    assert re.search(r" WARNING logfog\[\d+\]: ", text.stderr), text.stderr
