"""Every exception this package raises, in one place.

The tree::

    AppendSinkError                      something a user or operator must act on
    ├── ConfigError (ValueError)         bad options; names the option; raised at construction
    │   └── SettingsChangedError         an option differs from what the output's first run recorded
    ├── RowError (ValueError)            a row cannot be written; raised before its block is sent
    │   ├── RowTooLarge                  one encoded row exceeds the block limit
    │   ├── UnencodableRow               a value the format cannot represent
    │   └── SchemaDriftError             a field the (already written) header has no column for
    ├── StorageError                     Azure said no; carries blob, offset, status, error code
    │   ├── BlobExistsError              fresh run, blob already there (reason "blob_exists")
    │   ├── BlobTypeError                not an append blob / sealed by someone else
    │   ├── AppendConflictError          bytes at our position are not ours
    │   ├── LeaseHeldError               another writer holds the lease
    │   ├── SegmentFullError             the service refused more blocks (handled by rollover)
    │   └── StorageUnavailableError      throttled / unreachable after the retry budget
    ├── RecoveryError                    manifest and segments do not reconcile
    │   ├── ManifestCorruptError         undecodable record or broken hash chain
    │   └── UndescribedBytesError        bytes in a segment no manifest entry accounts for
    └── ClosedError                      written to after close, or after the run sealed its output

    InvariantViolation (RuntimeError)    a bug in this package; never caught or retried

Every message is passed through :func:`~elspeth_appendsink.core.redact.redact` so no secret can
leak through ``str(error)`` (a ``ConfigError``'s through ``redact_keylike`` too: it echoes the
user's options, where a secret may be misplaced); structured fields are kept on the instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elspeth_appendsink.core.redact import redact, redact_keylike

__all__ = [
    "AppendConflictError",
    "AppendSinkError",
    "BlobExistsError",
    "BlobTypeError",
    "ClosedError",
    "ConfigError",
    "InvariantViolation",
    "LeaseHeldError",
    "ManifestCorruptError",
    "RecoveryError",
    "RowError",
    "RowTooLarge",
    "SchemaDriftError",
    "SegmentFullError",
    "SettingsChangedError",
    "StorageError",
    "StorageUnavailableError",
    "UndescribedBytesError",
    "UnencodableRow",
]


class AppendSinkError(Exception):
    """Base of every operational error. ``hint`` says what to do about it."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.hint = hint or self.hint
        text = redact(message)
        if self.hint:
            text = f"{text} (hint: {redact(self.hint)})"
        super().__init__(text)


class ConfigError(AppendSinkError, ValueError):
    """An option is missing, contradictory or invalid. ``option`` names it."""

    def __init__(self, option: str, message: str, *, hint: str = "") -> None:
        self.option = option
        # it echoes what the user typed, and a secret may sit in any option: redacted harder
        super().__init__(f"option '{option}': {redact_keylike(message)}", hint=redact_keylike(hint))


class SettingsChangedError(ConfigError):
    """A later run of an output configures what its first run decided otherwise.

    Raised when the output is opened (resume, ``continue``, ``append`` onto this sink's own
    output), before any request that writes. ``differences`` lists each option with its
    recorded and configured value (see :mod:`elspeth_appendsink.core.decisions`).
    """

    hint = (
        "an output's identity and row format are fixed by its first run: configure the recorded "
        "values again, or write to a new blob_path"
    )

    def __init__(self, option: str, differences: Sequence[Any], *, run_id: str, output: str) -> None:
        self.differences = tuple(differences)
        self.run_id = run_id
        self.output = output
        listed = "; ".join(
            f"{d.option}: recorded {_shown(d.recorded)}, configured {_shown(d.configured)}"
            for d in differences
        )
        super().__init__(
            option, f"output {output} was written with other settings (run {run_id}) -- {listed}"
        )


def _shown(value: Any) -> str:
    return "not set" if value is None else repr(value)


class RowError(AppendSinkError, ValueError):
    """A row cannot be written. Raised before any byte of its block is sent."""

    def __init__(self, message: str, *, row_index: int | None = None, hint: str = "") -> None:
        self.row_index = row_index
        self.detail = message
        where = f"row {row_index}: " if row_index is not None else ""
        super().__init__(f"{where}{message}", hint=hint)

    def moved_to(self, row_index: int) -> None:
        """Re-point the error at ``row_index``, message included (a slice's row index becomes the
        row's index in the whole batch the caller passed)."""
        self.row_index = row_index
        self.args = RowError(self.detail, row_index=row_index, hint=self.hint).args


class RowTooLarge(RowError):
    """One encoded row is bigger than the block limit, so it can never be appended whole."""


class UnencodableRow(RowError):
    """A value the configured format cannot represent (type, NaN, text the encoding lacks)."""


class SchemaDriftError(RowError):
    """A row brings a field the header (already durable) has no column for."""


class StorageError(AppendSinkError):
    """Azure refused or failed a request. Carries where and what, never credentials."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        blob: str | None = None,
        offset: int | None = None,
        status: int | None = None,
        error_code: str | None = None,
        hint: str = "",
    ) -> None:
        self.blob = blob
        self.offset = offset
        self.status = status
        self.error_code = error_code
        parts = [message]
        if blob is not None:
            parts.append(f"blob={blob}")
        if offset is not None:
            parts.append(f"offset={offset}")
        if status is not None:
            parts.append(f"status={status}")
        if error_code:
            parts.append(f"code={error_code}")
        super().__init__(" ".join([parts[0] + ";", *parts[1:]]) if len(parts) > 1 else message, hint=hint)

    def audit_fields(self) -> dict[str, Any]:
        """The structured facts for an audit record (all redacted, all JSON-safe)."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "blob": self.blob,
            "offset": self.offset,
            "status": self.status,
            "error_code": self.error_code,
        }


class BlobExistsError(StorageError):
    """A fresh run found its output blob already present and ``if_exists`` is ``fail``."""

    reason = "blob_exists"


class BlobTypeError(StorageError):
    """The blob is not an append blob, or is sealed, so it cannot be appended to."""


class AppendConflictError(StorageError):
    """The bytes at our expected append position are not the bytes we sent."""


class LeaseHeldError(StorageError):
    """Another writer holds the blob's lease."""

    def __init__(self, message: str, *, holder: str | None = None, **kw: Any) -> None:
        self.holder = holder
        super().__init__(message, **kw)


class SegmentFullError(StorageError):
    """The service refused a block because the segment reached 50,000 blocks (or a size cap)."""


class StorageUnavailableError(StorageError):
    """Throttling or network failures outlasted the retry budget. Safe to retry later."""

    retryable = True


class RecoveryError(AppendSinkError):
    """The manifest and the segments do not reconcile; nothing more is appended."""


class ManifestCorruptError(RecoveryError):
    """A manifest record cannot be decoded, or the hash chain is broken."""


class UndescribedBytesError(RecoveryError):
    """A segment holds bytes that no manifest entry (or pending intent) accounts for."""


class ClosedError(AppendSinkError):
    """A write after ``close`` (or after the run sealed its output); refused before any request."""


class InvariantViolation(RuntimeError):
    """A broken internal invariant: a bug in elspeth_appendsink, not an operational error."""
