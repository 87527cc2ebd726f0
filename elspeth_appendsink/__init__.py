"""elspeth_appendsink: an exactly-once Azure Append Blob sink (``azure_append_blob``) for ELSPETH.

The public surface is re-exported here: the sink class, the engine-agnostic writer, the
verification core and the error tree. Modules own one concept each; see their docstrings.
"""

from elspeth_appendsink._version import __version__
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
    StorageError,
    StorageUnavailableError,
    UndescribedBytesError,
    UnencodableRow,
)
from elspeth_appendsink.protocol.verify import VerifyReport, inspect_output, verify_output
from elspeth_appendsink.protocol.writer import AppendWriter, OutputTarget, WriteReport

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
