"""Structured logs: one JSON object per line, for the worker, the aggregator and the CLI.

Each line has ``ts`` (UTC), ``level``, ``logger``, ``pid`` (a worker and its aggregator
child write to one stream), ``event`` (the call's message
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
from collections.abc import Mapping
from typing import Any

import orjson

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"

# LogRecord's own attributes: everything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _State:
    format = "text"
    level = logging.INFO


_state = _State()


def _scrub(record: logging.LogRecord) -> None:
    """Exceptions passed as arguments become their type names: Faust and mode log
    crashes as ``log.exception("Crashed reason=%r", exc)``, and the exception's message
    can quote the data that caused it.

    >>> r = logging.LogRecord("mode", 40, "x.py", 1, "Crashed reason=%r",
    ...                       (ValueError("203.0.113.9"),), None)
    >>> _scrub(r); r.getMessage()
    "Crashed reason='ValueError'"
    """
    if isinstance(record.msg, BaseException):
        record.msg = type(record.msg).__name__
    args = record.args
    if isinstance(args, tuple):
        if any(isinstance(a, BaseException) for a in args):
            record.args = tuple(_type_if_exception(a) for a in args)
    elif isinstance(args, Mapping):
        record.args = {k: _type_if_exception(v) for k, v in args.items()}


def _type_if_exception(value: object) -> object:
    return type(value).__name__ if isinstance(value, BaseException) else value


def _frames(exc_info: Any) -> tuple[str, list[str]]:
    kind, _, tb = exc_info
    return kind.__name__, [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]


class TextFormatter(logging.Formatter):
    """The human format, with the same rule as JSON: exceptions as type and frames."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        _scrub(record)
        return super().format(record)

    def formatException(self, ei: Any) -> str:
        kind, stack = _frames(ei)
        return "\n".join(["Traceback (frames only):", *(f"  {f}" for f in stack), kind])


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        _scrub(record)
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created * 1000) % 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event": str(record.msg),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool | None) else (
                    type(value).__name__)  # fmt: skip
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"], line["stack"] = _frames(record.exc_info)
        if record.stack_info:
            line["stack_info"] = True  # frames only on request, never locals
        return orjson.dumps(line).decode()

    def formatException(self, ei: Any) -> str:
        return ""  # never the message; format() adds type and frames


def default_format() -> str:
    """json when stderr is not a terminal (containers, systemd), else text."""
    return "text" if sys.stderr.isatty() else "json"


def current_format() -> str:
    """The format :func:`configure` set (a worker hands it to its aggregator child)."""
    return _state.format


def configure(fmt: str, level: int) -> None:
    """Root logging for every command; remembered for the Faust worker's own setup."""
    _state.format, _state.level = fmt, level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(_client_level(level))


def faust_logging_config(level: str | int | None = None) -> dict[str, Any]:
    """Faust's ``logging_config`` (dictConfig): the chosen format's formatter, ``level``
    (the worker's ``--loglevel``; default: the CLI's) on the root logger, and the
    Kafka clients' loggers never below INFO: kafka-python's admin client logs its whole
    configuration, SASL password included, at DEBUG.

    >>> _state.format = "json"
    >>> config = faust_logging_config("debug")
    >>> config["handlers"]["default"]["formatter"], config["root"]["level"]
    ('json', 'DEBUG')
    >>> config["loggers"]["kafka"]["level"]
    'INFO'
    >>> _state.format = "text"
    >>> faust_logging_config()["formatters"]["text"]["()"]
    'streams.logjson.TextFormatter'
    """
    if level is None:
        level = _state.level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    clients = logging.getLevelName(_client_level(level))
    formatter = "json" if _state.format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,  # logfog's and the clients' loggers stay
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"()": f"{__name__}.TextFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": logging.getLevelName(level), "handlers": ["default"]},
        "loggers": {name: {"level": clients} for name in _CLIENT_LOGGERS},
    }


#: Kafka client loggers: chatty at INFO, and at DEBUG they dump settings and records.
_CLIENT_LOGGERS = ("kafka", "aiokafka", "faust.transport")


def _client_level(level: int) -> int:
    """INFO when logfog logs at DEBUG (``-v``), else WARNING or above: never DEBUG."""
    return logging.INFO if level <= logging.DEBUG else max(level, logging.WARNING)
