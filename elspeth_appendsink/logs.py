"""Structured logging for the package: structlog, configured once, secrets always redacted.

:func:`get_logger` is what modules use. :func:`configure` picks the renderer (console for people,
JSON for machines); it is called lazily with the console renderer if nobody configured logging.
Whatever the configuration, the redaction processor runs last before rendering, so no event field
can carry a key, SAS signature, client secret or connection string into output.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from elspeth_appendsink.core.redact import redact_value

__all__ = ["configure", "get_logger", "guard_third_party_loggers", "redact_processor"]

_configured = False


def redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: redact every string in the event dict (keys kept, values scrubbed)."""
    return {key: redact_value(value) for key, value in event_dict.items()}


def configure(*, json: bool = False, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Configure structlog for this process: console (default) or JSON lines, redaction included."""
    global _configured
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


class _RedactingLogger:
    """Redacts the event and its fields *before* handing them to structlog.

    The host may configure structlog itself (ELSPETH does, and logs to stdout), in which case our
    processor chain is not in use; redacting at the call keeps the promise whatever the setup.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, level: str) -> Any:
        method = getattr(self._inner, level)

        def emit(event: str, **fields: Any) -> Any:
            return method(redact_value(event), **{k: redact_value(v) for k, v in fields.items()})

        return emit


def get_logger(name: str = "elspeth_appendsink") -> Any:
    """A redacting logger for ``name``. Configures the console renderer on first use if needed."""
    if not _configured and not structlog.is_configured():
        configure()
    return _RedactingLogger(structlog.get_logger(name))


class _RedactingFilter(logging.Filter):
    """A stdlib logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_value(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


#: Third-party loggers that print request URLs: urllib3 logs every request line, SAS query included.
THIRD_PARTY_LOGGERS = ("urllib3.connectionpool", "azure.core.pipeline.policies.http_logging_policy")


def guard_third_party_loggers() -> None:
    """Redact what the HTTP stack logs (idempotent): a host at DEBUG would otherwise print SAS tokens."""
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())
