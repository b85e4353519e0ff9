"""Drive Debian's headless Chromium from tests: install it, render a page, screenshot it.

Chromium is run as a one-shot command (``--dump-dom`` / ``--screenshot``) with a
*virtual time budget*: Chromium fast-forwards timers while the page is otherwise idle
and only stops once the budget is used up, so ``fetch`` + ``setInterval`` scripts run
for real (a network fetch pauses virtual time until it completes). No driver, no
websocket protocol, no extra Python packages.

Nothing may leave loopback: every host name except the loopback ones resolves to
"not found" (``--host-resolver-rules``), proxies are off, and Chromium's own
background traffic (updates, sync, field trials, safe browsing...) is disabled.
With ``net_log``, :func:`render` keeps Chromium's network log so a test can prove it
(:func:`foreign_requests`).

The Makefile's test setup can install Chromium ahead of time with::

    python -c "from tests.support.browser import ensure_chromium; ensure_chromium()"
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Debian's package installs the real binary's wrapper here.
DEBIAN_CHROMIUM = "/usr/bin/chromium"
WINDOW = (1280, 900)
_LOCK = Path(tempfile.gettempdir()) / "logfog-chromium-install.lock"

#: Only loopback names resolve; a literal non-loopback IP is unaffected by resolver
#: rules, so the page itself is also checked for absolute URLs by the tests.
_RESOLVER_RULES = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
#: Where Chromium's built-in Google endpoints are pointed instead (discard port: refused).
_DEAD = "http://127.0.0.1:9"

_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: the setuid sandbox is unavailable
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-field-trial-config",
    # Even with the switches above, Chromium 156 still tries the network time service,
    # the component updater and GAIA's ListAccounts (seen in --log-net-log output):
    "--disable-features=NetworkTimeServiceQuerying,Translate,OptimizationHints,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions",
    f"--component-updater=url-source={_DEAD}",
    f"--gaia-url={_DEAD}",
    f"--google-apis-url={_DEAD}",
    f"--lso-url={_DEAD}",
    "--metrics-recording-only",
    "--no-pings",
    "--no-proxy-server",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    f"--host-resolver-rules={_RESOLVER_RULES}",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]


def find_chromium() -> str | None:
    """Path of an installed Chromium (``$LOGFOG_CHROMIUM`` wins), or None."""
    for candidate in (os.environ.get("LOGFOG_CHROMIUM"), DEBIAN_CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_chromium() -> str:
    """Return Debian's Chromium, installing it with apt-get (as root) if it is missing.

    Serialised with a file lock so concurrent test processes do not race for dpkg's lock.
    """
    found = find_chromium()
    if found:
        return found
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_chromium()  # another process may have installed it meanwhile
        if found:
            return found
        if os.geteuid() != 0:
            raise RuntimeError(
                "chromium is not installed and installing it needs root: "
                "run `apt-get update && apt-get install -y chromium`"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        started = time.monotonic()
        print("installing Debian chromium with apt-get…", file=sys.stderr, flush=True)
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
        ):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        print(f"chromium installed in {time.monotonic() - started:.0f} s", file=sys.stderr)
    found = find_chromium()
    if not found:
        raise RuntimeError(f"apt-get installed chromium but {DEBIAN_CHROMIUM} is missing")
    return found


@contextlib.contextmanager
def _profile() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="logfog-chromium-") as tmp:
        yield Path(tmp)


def _run(args: list[str], wait_ms: int) -> bytes:
    """Run Chromium with ``args``; its stdout. Killed as a process group on timeout
    (Debian's ``/usr/bin/chromium`` is a shell wrapper that does not ``exec``)."""
    if wait_ms <= 0:  # --virtual-time-budget=0 never finishes loading
        raise ValueError(f"wait_ms must be positive, not {wait_ms}")
    proc = subprocess.Popen(
        [ensure_chromium(), *_FLAGS, f"--virtual-time-budget={wait_ms}", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=30 + wait_ms / 1000)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"chromium exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}"
        )
    return out


def render(url: str, wait_ms: int = 5000, net_log: Path | None = None) -> str:
    """The DOM of ``url`` serialised after its scripts ran for ``wait_ms`` of virtual time.

    With ``net_log``, Chromium writes its network log there (see :func:`requested_urls`).
    """
    with _profile() as profile:
        extra = [f"--log-net-log={net_log}", "--net-log-capture-mode=Default"] if net_log else []
        return _run([f"--user-data-dir={profile}", *extra, "--dump-dom", url], wait_ms).decode()


def screenshot(url: str, path: Path | str, wait_ms: int = 5000) -> Path:
    """Save a PNG of ``url`` (window :data:`WINDOW`) after ``wait_ms`` of virtual time."""
    out = Path(path).resolve()
    out.unlink(missing_ok=True)
    with _profile() as profile:
        _run([f"--user-data-dir={profile}", f"--screenshot={out}", url], wait_ms)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out


def _load_net_log(net_log: Path) -> dict[str, Any]:
    raw = net_log.read_text()
    try:
        return dict(json.loads(raw))
    except json.JSONDecodeError:  # a log cut short (browser killed) lacks the closing "]}"
        return dict(json.loads(raw.rstrip().rstrip(",") + "]}"))


def _is_loopback(target: str) -> bool:
    """True for a loopback URL, host name or ``host:port`` socket address."""
    host = urlsplit(target).hostname if "://" in target else target.rsplit(":", 1)[0]
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def foreign_requests(net_log: Path) -> set[str]:
    """What a Chromium network log (``--log-net-log``) shows going beyond loopback:
    requested URLs, resolved host names, TCP connection targets, and UDP targets that
    were actually sent bytes (a bare UDP ``connect()``, Chromium's IPv6 reachability
    probe, sends nothing). Empty when everything stayed on loopback."""
    log = _load_net_log(net_log)
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    seen: set[str] = set()
    udp_targets: dict[int, str] = {}
    udp_senders: set[int] = set()
    for event in log.get("events", []):
        kind = names.get(event["type"], "")
        params = event.get("params") or {}
        source = int(event["source"]["id"])
        if kind == "UDP_CONNECT" and "address" in params:
            udp_targets[source] = params["address"]
        elif kind == "UDP_BYTES_SENT":
            udp_senders.add(source)
        elif kind.startswith("TCP_CONNECT"):
            seen.update(a for k in ("address", "remote_address") if (a := params.get(k)))
            seen.update(params.get("address_list") or [])
        elif kind.startswith("HOST_RESOLVER") and params.get("host"):
            seen.add(params["host"])
        if isinstance(params.get("url"), str):
            seen.add(params["url"])
    seen.update(udp_targets[s] for s in udp_senders if s in udp_targets)
    return {target for target in seen if not _is_loopback(target)}


def requested_urls(net_log: Path) -> set[str]:
    """Every URL a Chromium network log shows a request for."""
    return {
        params["url"]
        for event in _load_net_log(net_log).get("events", [])
        if isinstance(params := event.get("params") or {}, dict)
        and isinstance(params.get("url"), str)
    }
