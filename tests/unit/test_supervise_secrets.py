"""The aggregator child cannot read the worker's key secrets out of ``/proc``.

Its own environment lacks them (``test_supervise.py``), but it runs as the same user
and knows its parent's pid: ``/proc/<parent>/environ`` of a dumpable process holds the
environment the worker started with, master key included (found by an audit). The
worker now makes itself non-dumpable before it starts the child. Run as a non-root
user (root reads any process's ``/proc``), as the container does (uid 10001).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import os, subprocess, sys
    from streams.supervise import refuse_inspection

    if sys.argv[1] == "protect":
        assert refuse_inspection()
    child = subprocess.run([sys.executable, "-c", sys.argv[2], str(os.getpid())],
                           env={"PATH": os.environ.get("PATH", "")},
                           capture_output=True, text=True, timeout=30)
    print(child.stdout.strip())
    """
)

CHILD = textwrap.dedent(
    """
    import sys
    try:
        with open(f"/proc/{sys.argv[1]}/environ", "rb") as f:
            print("read", b"LOGFOG_MASTER_KEY=" in f.read())
    except PermissionError:
        print("refused")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl")
@pytest.mark.parametrize(("mode", "expected"), [("open", "read True"), ("protect", "refused")])
def test_the_child_cannot_read_the_workers_environment(mode: str, expected: str) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
           "PYTHONDONTWRITEBYTECODE": "1", "LOGFOG_MASTER_KEY": os.urandom(32).hex()}  # fmt: skip
    python, as_user = sys.executable, {}
    if os.geteuid() == 0:
        # Root reads every process's /proc: both sides run as an unprivileged user, with
        # the system's interpreter (the venv's may live under /root). streams.supervise
        # needs nothing outside the standard library.
        python = shutil.which("python3", path="/usr/bin:/bin") or ""
        if not python:
            pytest.skip("no system python3 to run as an unprivileged user")
        as_user = {"user": 65534, "group": 65534}
    done = subprocess.run(
        [python, "-c", WORKER, mode, CHILD], cwd="/", env=env, capture_output=True,
        text=True, timeout=60, **as_user,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
