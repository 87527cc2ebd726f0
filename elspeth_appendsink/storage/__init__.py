"""The storage layer: the only code that imports ``azure.*``.

:class:`AzureStore` (:mod:`.store`) knows Azure's verbs for one container (create-only blobs,
guarded ``append_block``, ranged reads, leases, seals), maps every Azure error into
:mod:`elspeth_appendsink.errors` and reports every request as a :class:`StorageCall`.
:mod:`.faults` is the fault-injecting transport that tests put under it.
"""

from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.storage.store import (
    PROVIDER,
    AppendResult,
    AzureStore,
    BlobInfo,
    RetrySettings,
    StorageCall,
    build_service_client,
    map_azure_error,
)

__all__ = [
    "PROVIDER",
    "AppendResult",
    "AzureStore",
    "BlobInfo",
    "BlobServiceClient",
    "HttpTransport",
    "RetrySettings",
    "StorageCall",
    "build_service_client",
    "map_azure_error",
]
