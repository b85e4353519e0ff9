"""`make run` end to end: the demo must finish, show events on every topic, exit 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_make_run_demo_shows_every_destination_and_stops_cleanly() -> None:
    result = subprocess.run([sys.executable, "-m", "streams.demo", "--lines", "1000"],
                            capture_output=True, text=True, cwd=ROOT, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    shipped = int(re.search(r"shipped ([\d,]+) lines", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    ops = int(re.search(r"--- logs.ops: ([\d,]+) events", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    dead = int(re.search(r"--- logs.dead: ([\d,]+) dead", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert ops + dead == shipped and dead >= 2  # the sample's two junk lines
    assert "logfog.agg.input" not in out  # internal streams are not shown
    assert "worker stopped (exit 0)" in out
    without_networks = re.sub(r"\d+\.\d+\.\d+\.0/\d+", "", out)  # truncated /24s are fine
    assert "198.51.100." not in without_networks and "203.0.113." not in without_networks
