"""Logging: readable console lines by default, one JSON object per line with ERRAND_LOG_FORMAT=json.

Job lines carry `jobId`, `queue` and `attempt`: passed as `extra=`, or stamped by
`JobContextFilter` on any line logged while a worker runs a job. Secrets never
reach a log line: settings hold them as SecretStr, and the redaction filter masks
anything that looks like one in a message.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from errand.settings import LogFormat, Settings

JOB_FIELDS = ("jobId", "queue", "attempt")
_SECRET_PATTERNS = (
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"']+"),
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(@)"),  # smtp://, redis://...
)

# The job the current asyncio task runs (set by the worker runner around each attempt).
job_context: ContextVar[dict[str, Any] | None] = ContextVar("errand_job", default=None)


class JobContextFilter(logging.Filter):
    """Stamps jobId, queue and attempt on a line logged while a job runs, unless given."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = job_context.get()
        if context:
            for name, value in context.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(r"\1***\2", text)
        elif pattern.groups == 1:
            text = pattern.sub(r"\1***", text)
        else:
            text = pattern.sub("***", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name in JOB_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job = " ".join(f"{n}={getattr(record, n)}" for n in JOB_FIELDS if hasattr(record, n))
        return redact(f"{line} [{job}]" if job else line)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContextFilter())
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
