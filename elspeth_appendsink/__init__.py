"""elspeth_appendsink: an exactly-once Azure Append Blob sink (``azure_append_blob``) for ELSPETH.

The public surface is re-exported here: the sink class, the engine-agnostic writer, the
verification core and the error tree. Modules own one concept each; see their docstrings.

The root is lazy (PEP 562): a public name's module is imported the first time the name is
looked up, so importing one module of the package (``elspeth_appendsink.core.cursor``, say)
loads only what that module needs, never the SDKs, pyarrow or pydantic behind the sink.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from elspeth_appendsink._version import __version__

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and readers
    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
    from elspeth_appendsink.errors import (
        AppendConflictError,
        AppendSinkError,
        BlobExistsError,
        BlobTypeError,
        ClosedError,
        ConfigError,
        InvariantViolation,
        LeaseHeldError,
        ManifestCorruptError,
        RecoveryError,
        RowError,
        RowTooLarge,
        SchemaDriftError,
        SegmentFullError,
        SettingsChangedError,
        StorageError,
        StorageUnavailableError,
        UndescribedBytesError,
        UnencodableRow,
    )
    from elspeth_appendsink.protocol.target import OutputTarget
    from elspeth_appendsink.protocol.verify import VerifyReport, inspect_output, verify_output
    from elspeth_appendsink.protocol.writer import AppendWriter, WriteReport

#: The module that owns each lazily exported name.
_OWNERS: dict[str, tuple[str, ...]] = {
    "elspeth_appendsink.elspeth.sink": ("AzureAppendBlobSink",),
    "elspeth_appendsink.errors": (
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
    ),
    "elspeth_appendsink.protocol.verify": ("VerifyReport", "inspect_output", "verify_output"),
    "elspeth_appendsink.protocol.writer": ("AppendWriter", "WriteReport"),
    "elspeth_appendsink.protocol.target": ("OutputTarget",),
}
_LAZY = {name: module for module, names in _OWNERS.items() for name in names}

__all__ = [
    "AppendConflictError",
    "AppendSinkError",
    "AppendWriter",
    "AzureAppendBlobSink",
    "BlobExistsError",
    "BlobTypeError",
    "ClosedError",
    "ConfigError",
    "InvariantViolation",
    "LeaseHeldError",
    "ManifestCorruptError",
    "OutputTarget",
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
    "VerifyReport",
    "WriteReport",
    "__version__",
    "inspect_output",
    "verify_output",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
