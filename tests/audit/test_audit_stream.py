"""Audit of the streaming wiring and the command-line tools: each test fails on the
code it was written against and passes once the finding is fixed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
DEAD = "logs.dead"

MINIMAL = {
    "input": {"format": "combined"},
    "keys": {"source": "ephemeral"},
    "destinations": {
        "ops": {"topic": "logs.ops", "fields": {
            "network": {"from": "client.ip", "action": "truncate_ip"},
            "status": {"from": "response.status", "action": "keep"}}},
    },
}  # fmt: skip


def combined(client: int, stamp: str, status: int = 200) -> bytes:
    return (f'198.51.100.{client} - - [{stamp}] "GET /p HTTP/1.1" {status} 5 "-" "{UA}"').encode()


def now_stamp() -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())


# --------------------------------------------------------------------------- anonymize


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "streams", *args], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip


# --------------------------------------------------------------------------- ship


# --------------------------------------------------------------------------- topics


@pytest.mark.parametrize("taken", ["logs.raw", "logs.dead"])
def test_a_destination_on_one_of_logfogs_own_topics_is_a_config_error(
    tmp_path: Path, taken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config compares destinations' topics only with each other: a destination
    on the raw topic (the worker would read its own events back as raw lines) or on
    the dead-letter topic passes ("OK"). topic_specs then holds the topic twice with
    different retentions (raw 3 d vs 7 d), and `logfog topics create` (like the worker's
    start) dies with ValueError("duplicate topic names in specs"): a traceback, exit 1."""
    import logging

    from streams.cli import main

    config = {**MINIMAL, "destinations": {"ops": {**MINIMAL["destinations"]["ops"],
                                                   "topic": taken}}}  # fmt: skip
    path = write_config(tmp_path, config)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        checked = main(["check-config", str(path)])
        created = main(["topics", "create", "-c", str(path), "--bootstrap", "127.0.0.1:9"])
    finally:
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err
    assert checked == 2 and created == 2 and "Traceback" not in err
