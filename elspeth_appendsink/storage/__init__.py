"""The storage layer: the only code that imports ``azure.*``.

:class:`Store` (:mod:`.base`) is the interface the protocol and the tools use.
:class:`MemoryStore` (:mod:`.memory`) is its in-memory twin with Azure's semantics.
:class:`AzureStore` (:mod:`.store`) knows Azure's verbs for one container (create-only blobs,
guarded ``append_block``, ranged reads, leases, seals), maps every Azure error into
:mod:`elspeth_appendsink.errors` and reports every request as a :class:`StorageCall`.
:mod:`.faults` is the fault-injecting transport that tests put under it, and
:mod:`.credentials` the one way from credentials to a client. Nothing exported here is an SDK
type: the SDK stays behind these names.
"""

from elspeth_appendsink.storage.base import Store
from elspeth_appendsink.storage.memory import MemoryAccount, MemoryStore
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
    "MemoryAccount",
    "MemoryStore",
    "RetrySettings",
    "StorageCall",
    "Store",
    "build_service_client",
    "map_azure_error",
]
