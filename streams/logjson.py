"""Structured logs: one JSON object per line, for the worker, the aggregator and the CLI.

Each line has ``ts`` (UTC), ``level``, ``logger``, ``event`` (the call's message
template, or ``extra={"event": ...}``: stable, greppable, free of data), ``message``
(the template with its arguments) and any ``extra`` fields. logfog's own calls pass
only type names, counts, topic names and reason codes as arguments.

Exceptions are logged as type and stack frames (file, line, function) only: an
exception's message can quote the data that caused it (a raw line, an address), so it
is never written. ``--log-format text`` keeps the human format (on a terminal, the
default).

>>> import logging
>>> record = logging.LogRecord("logfog.worker", logging.WARNING, "app.py", 1,
...     "publish failed (%s); retrying in %.1fs", ("KafkaTimeoutError", 0.4), None)
>>> record.created = 0.25
>>> line = orjson.loads(JsonFormatter().format(record))
>>> line["ts"], line["level"], line["logger"]
('1970-01-01T00:00:00.250Z', 'warning', 'logfog.worker')
>>> line["event"]
'publish failed (%s); retrying in %.1fs'
>>> line["message"]
'publish failed (KafkaTimeoutError); retrying in 0.4s'
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import Any

import orjson

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# LogRecord's own attributes: everything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _State:
    format = "text"
    level = logging.INFO


_state = _State()


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created * 1000) % 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": str(record.msg),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool | None) else (
                    type(value).__name__)  # fmt: skip
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            line["exc_type"] = kind.__name__
            line["stack"] = [f"{f.filename}:{f.lineno} {f.name}"
                             for f in traceback.extract_tb(tb)]  # fmt: skip
        if record.stack_info:
            line["stack_info"] = True  # frames only on request, never locals
        return orjson.dumps(line).decode()

    def formatException(self, ei: Any) -> str:
        return ""  # never the message; format() adds type and frames


def default_format() -> str:
    """json when stderr is not a terminal (containers, systemd), else text."""
    return "text" if sys.stderr.isatty() else "json"


def configure(fmt: str, level: int) -> None:
    """Root logging for every command; remembered for the Faust worker's own setup."""
    _state.format, _state.level = fmt, level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def faust_logging_config() -> dict[str, Any] | None:
    """Faust's ``logging_config`` (dictConfig) for the chosen format; None keeps Faust's
    own text format.

    >>> _state.format = "json"
    >>> faust_logging_config()["handlers"]["default"]["formatter"]
    'json'
    >>> _state.format = "text"
    >>> faust_logging_config() is None
    True
    """
    if _state.format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,  # logfog's and the clients' loggers stay
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": _state.level, "handlers": ["default"]},
    }
