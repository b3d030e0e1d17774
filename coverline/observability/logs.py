"""Log lines on stderr: one JSON object per line, or plain text for a person at a terminal.

Every line has `ts`, `level`, `logger`, `message`, `pid` and, when the code serves an API
request or a worker job, its `request_id`; the fields a call passes in `extra` follow.

Third-party libraries never log below INFO, and those whose lines carry SQL parameters or
request bodies (SQLAlchemy, the database drivers, the form parser) never below WARNING, at any
`COVERLINE_LOG_LEVEL`: a debug log must not hold secrets or customers' data.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from coverline.kit.request_id import current_request_id

LogFormat = Literal["auto", "json", "text"]

_RECORD_FIELDS = frozenset(
    {
        *vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",
        # uvicorn's copy of the message with terminal colours.
        "color_message",
    }
)
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
# Their DEBUG and INFO lines quote SQL parameters, connection strings or request bodies.
QUIET = ("sqlalchemy", "asyncpg", "python_multipart", "multipart")


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _request_id(record: logging.LogRecord) -> str | None:
    given = record.__dict__.get("request_id")
    return given if isinstance(given, str) else current_request_id()


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_FIELDS and key != "request_id"
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = _request_id(record)
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in _extra(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message [request id]`, without the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record.created)} {record.levelname:<7} {record.name}: "
            f"{record.getMessage()}"
        )
        request_id = _request_id(record)
        if request_id is not None:
            line += f" [{request_id}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def resolved_format(log_format: LogFormat) -> Literal["json", "text"]:
    """`auto`: text for a person at a terminal, JSON for a log collector."""
    if log_format == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return log_format


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` document, also handed to uvicorn for its processes."""
    chosen = LEVELS[level]
    formatter = JsonFormatter if resolved_format(log_format) == "json" else TextFormatter
    others = max(chosen, logging.INFO)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"coverline": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "coverline",
                "stream": "ext://sys.stderr",
                # uvicorn's TRACE level (below DEBUG) would print every ASGI message.
                "level": logging.DEBUG,
            }
        },
        "root": {"level": others, "handlers": ["stderr"]},
        "loggers": {
            "coverline": {"level": chosen},
            "uvicorn": {"level": others, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": others, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": others, "handlers": [], "propagate": True},
            **{name: {"level": max(chosen, logging.WARNING)} for name in QUIET},
            # One line per plugin at every start.
            "alembic.runtime.plugins": {"level": logging.WARNING},
        },
    }


def configure_logging(level: str, log_format: LogFormat) -> None:
    logging.config.dictConfig(logging_config(level, log_format))
