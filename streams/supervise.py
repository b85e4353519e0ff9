"""A child process that is restarted when it dies and stopped with its parent.

``aggregates.run_in: process`` (the default): ``logfog worker`` runs the windowed
aggregation as a ``logfog aggregator`` child. In the worker's own event loop the
aggregation cost 45% of its throughput (README, "Performance"); in a process of its own
it runs on another core, and one command still does the whole job.

Decisions:

* The child runs in a session of its own: a terminal's Ctrl-C reaches the worker only,
  and the worker stops the child (SIGTERM, then SIGKILL after a deadline), so a stop
  never races a restart.
* A child that dies is restarted after a back-off that doubles up to ``max_backoff``
  and starts over once a child has lived ``healthy_after`` seconds: a crash loop costs
  a log line every half minute, not a core.
* A parent that dies without stopping its child (kill -9) cannot be relied on to do
  anything, so the child watches for it (:func:`watch_parent`): the environment says
  which process started it, and when its parent is another one, it stops itself.
* Nothing but the exit status and the process id is logged: the child writes its own
  logs to the same stream.

>>> import sys
>>> child = Supervisor("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
>>> child.start().running
True
>>> child.stop(timeout=10)  # SIGTERM
-15
>>> child.running, child.restarts
(False, 0)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger("logfog.supervise")

#: The process id of the process that started the child (see :func:`watch_parent`).
PARENT_ENV = "LOGFOG_PARENT_PID"


def refuse_inspection() -> bool:
    """Make this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``); whether it
    is now.

    Why: the aggregator child's environment lacks the key secrets, but it runs as the
    same user and knows its parent's pid, and ``/proc/<pid>/environ`` (the environment
    the worker started with, master key included) and ``/proc/<pid>/mem`` of a dumpable
    process are readable by any process of that user. A non-dumpable process's are
    not (root's still are), and it writes no core dump with keys in it. The price:
    attaching a profiler (py-spy) to it takes root.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    pr_set_dumpable, pr_get_dumpable = 4, 3
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(pr_set_dumpable, 0, 0, 0, 0)
        return int(libc.prctl(pr_get_dumpable, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Supervisor:
    """Start ``argv`` as a child; restart it when it exits, until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.restarts = 0
        self.last_exit: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def status(self) -> dict[str, Any]:
        """For the worker's status page: no arguments or environment, only the process."""
        return {"pid": self.pid, "running": self.running, "restarts": self.restarts,
                "last_exit": self.last_exit}  # fmt: skip

    def start(self) -> Supervisor:
        with self._lock:
            self._proc = self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name=f"logfog-supervise-{self.name}", daemon=True
        )
        self._watcher.start()
        return self

    def terminate(self) -> None:
        """Begin stopping: no more restarts, SIGTERM to the child. Returns at once."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the child (SIGTERM; SIGKILL after ``timeout`` s); its exit status."""
        self.terminate()
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) did not stop within %.0fs: killed", self.name,
                          proc.pid, timeout)  # fmt: skip
                proc.kill()
                code = proc.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self.last_exit = code
        return code

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Same stdout/stderr as ours: the child's log lines go where the worker's go.
        proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        log.info("%s started (pid %d)", self.name, proc.pid)
        return proc

    def _watch(self) -> None:
        backoff = self.first_backoff
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            self.last_exit = code
            lived = time.monotonic() - started
            if lived >= self.healthy_after:
                backoff = self.first_backoff
            log.error("%s (pid %d) exited with status %d after %.0fs; restarting in %.1fs",
                      self.name, proc.pid, code, lived, backoff)  # fmt: skip
            while not self._respawn(backoff):
                if self._stopping.is_set():
                    return
                backoff = min(backoff * 2, self.max_backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _respawn(self, after: float) -> bool:
        """After ``after`` s, start the child again; False if that failed or we stop."""
        if self._stopping.wait(after):
            return False
        with self._lock:
            if self._stopping.is_set():
                return False
            try:
                self._proc = self._spawn()
            except OSError as error:  # e.g. out of processes: try again later
                log.error("%s could not be started (%s)", self.name, type(error).__name__)
                return False
            self.restarts += 1
            return True


def watch_parent(
    interval: float = 1.0,
    on_orphaned: Callable[[], None] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> threading.Thread | None:
    """In a child a :class:`Supervisor` started: stop when that parent is gone.

    When the parent dies its children are handed to another process (init, or a
    subreaper), so ``os.getppid()`` changes. Checked every ``interval`` s by a daemon
    thread; ``on_orphaned`` defaults to SIGTERM to ourselves, the graceful stop. None
    (and no thread) when we were not started by a supervisor.
    """
    expected = environ.get(PARENT_ENV, "")
    if not expected.isdigit():
        return None
    parent = int(expected)
    act = on_orphaned or (lambda: os.kill(os.getpid(), signal.SIGTERM))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the process that started this one (pid %d) is gone: stopping", parent)
        act()

    thread = threading.Thread(target=watch, name="logfog-parent-watch", daemon=True)
    thread.start()
    return thread
