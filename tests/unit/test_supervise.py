"""The supervised child process (aggregates.run_in: process): restart, stop, orphaning."""

from __future__ import annotations

import os
import sys
import threading
import time

from streams.app import aggregator_child
from streams.config import normalize
from streams.supervise import PARENT_ENV, Supervisor, watch_parent

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
EXIT_3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
# Ignores SIGTERM: only SIGKILL stops it.
STUBBORN = [sys.executable, "-c", "import signal, sys, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)"]  # fmt: skip


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_child_that_dies_is_restarted_with_growing_backoff() -> None:
    child = Supervisor("exits", EXIT_3, first_backoff=0.05, max_backoff=0.2).start()
    try:
        wait_for(lambda: child.restarts >= 3)
        assert child.last_exit == 3
    finally:
        child.stop(timeout=5)
    restarts = child.restarts
    time.sleep(0.5)
    assert child.restarts == restarts, "restarted after stop"


def test_a_killed_child_is_replaced_by_a_new_process() -> None:
    child = Supervisor("sleeper", SLEEP, first_backoff=0.05).start()
    try:
        first = child.pid
        assert first is not None
        os.kill(first, 9)
        wait_for(lambda: child.restarts == 1 and child.running)
        assert child.pid != first
        assert child.status() == {"pid": child.pid, "running": True, "restarts": 1,
                                  "last_exit": -9}  # fmt: skip
    finally:
        assert child.stop(timeout=5) == -15


def test_stop_during_the_backoff_starts_nothing() -> None:
    child = Supervisor("exits", EXIT_3, first_backoff=30).start()
    wait_for(lambda: child.last_exit == 3)
    started = time.monotonic()
    child.stop(timeout=5)
    assert time.monotonic() - started < 5, "stop waited for the backoff"
    assert child.restarts == 0 and not child.running


def test_a_restart_that_cannot_start_is_tried_again_later(caplog: object) -> None:
    child = Supervisor("sleeper", SLEEP, first_backoff=0.05, max_backoff=0.1).start()
    spawn, failures = child._spawn, []

    def flaky() -> object:
        if len(failures) < 2:
            failures.append(1)
            raise BlockingIOError("fork: resource temporarily unavailable")
        return spawn()

    child._spawn = flaky  # type: ignore[method-assign]
    try:
        first = child.pid
        assert first is not None
        os.kill(first, 9)
        wait_for(lambda: child.restarts == 1 and child.running)
        assert len(failures) == 2 and child.pid != first
        messages = [r.getMessage() for r in caplog.records]  # type: ignore[attr-defined]
        assert sum("exited with status" in m for m in messages) == 1, messages
        assert sum("could not be started (BlockingIOError)" in m for m in messages) == 2
    finally:
        child.stop(timeout=5)


def test_a_child_that_ignores_sigterm_is_killed_after_the_deadline() -> None:
    import subprocess

    child = Supervisor("stubborn", STUBBORN)
    child._spawn = lambda: subprocess.Popen(  # type: ignore[method-assign]
        STUBBORN, env=child.env, start_new_session=True, stdout=subprocess.PIPE
    )
    child.start()
    assert child._proc is not None and child._proc.stdout is not None
    assert child._proc.stdout.readline() == b"ready\n"  # its handler is installed
    assert child.stop(timeout=0.5) == -9


def test_the_child_is_told_who_its_parent_is_and_gets_a_session_of_its_own() -> None:
    probe = [sys.executable, "-c", "import os, sys; "
             f"sys.exit(0 if os.environ['{PARENT_ENV}'] == str(os.getppid()) "
             "and os.getsid(0) == os.getpid() else 1)"]  # fmt: skip
    child = Supervisor("probe", probe, first_backoff=30).start()
    try:
        wait_for(lambda: child.last_exit is not None)
        assert child.last_exit == 0
    finally:
        child.stop(timeout=5)


def test_an_orphaned_child_stops_itself() -> None:
    orphaned = threading.Event()
    # Started by a process that is not our parent now (we are never our own parent):
    # what an orphan sees once its parent is gone.
    watcher = watch_parent(0.01, orphaned.set, {PARENT_ENV: str(os.getpid())})
    assert watcher is not None
    assert orphaned.wait(5)


def test_a_child_whose_parent_lives_keeps_running() -> None:
    orphaned = threading.Event()
    watch_parent(0.01, orphaned.set, {PARENT_ENV: str(os.getppid())})
    assert not orphaned.wait(0.3)


def test_a_process_nobody_supervises_watches_nothing() -> None:
    assert watch_parent(0.01, lambda: None, {}) is None
    assert watch_parent(0.01, lambda: None, {PARENT_ENV: "not a pid"}) is None


def test_the_aggregator_child_gets_no_pseudonym_key_secrets(monkeypatch: object) -> None:
    setenv = monkeypatch.setenv  # type: ignore[attr-defined]
    for name in ("LOGFOG_MASTER_KEY", "LOGFOG_MASTER_KEY_ACCEPTED", "SITE_KEY", "OTHER"):
        setenv(name, "x" * 64)
    config = normalize({"keys": {"source": "env:SITE_KEY"}}, [], [])
    child = aggregator_child(config, "config/logfog.yaml", "127.0.0.1:9", 7001, "info")
    hidden = {"LOGFOG_MASTER_KEY", "LOGFOG_MASTER_KEY_ACCEPTED", "SITE_KEY"}
    assert not hidden & set(child.env)
    assert child.env["OTHER"] == "x" * 64 and child.env[PARENT_ENV] == str(os.getpid())
    argv = child.argv
    assert argv[argv.index("aggregator") + 1:] == [
        "-c", os.path.abspath("config/logfog.yaml"), "--bootstrap", "127.0.0.1:9",
        "--web-port", "7001", "--loglevel", "info",
    ]  # fmt: skip
