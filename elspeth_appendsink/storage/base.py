"""The store seam: what the protocol and the tools need of a container of blobs, and no more.

:class:`Store` is the interface (a ``typing.Protocol``): create-only append blobs, an append
guarded by its offset, ranged reads, properties, seal, metadata, the four lease verbs, small
create-only objects and listing. Two stores implement it with the same semantics:
:class:`~elspeth_appendsink.storage.store.AzureStore` (Azure, or Azurite) and
:class:`~elspeth_appendsink.storage.memory.MemoryStore` (a twin in memory). One conformance suite
(``tests/storage/test_conformance.py``) runs against both.

Every store fails the same way: each refusal is a :mod:`~elspeth_appendsink.errors` class chosen
by :func:`storage_error` from the service's status and error code (the one table), and every
request is reported to ``on_call`` as a :class:`StorageCall` whose fields do not depend on the
store. The values here (:class:`StorageCall`, :class:`BlobInfo`, :class:`AppendResult`) and the
helpers shared by the stores (:func:`resolve_append`, :func:`iter_range`) import no ``azure``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from elspeth_appendsink.errors import (
    AppendConflictError,
    BlobExistsError,
    BlobTypeError,
    LeaseHeldError,
    SegmentFullError,
    StorageError,
    StorageUnavailableError,
)

__all__ = [
    "MAX_APPEND_BLOCK_BYTES",
    "MAX_APPEND_BLOCKS",
    "AppendResult",
    "BlobInfo",
    "StorageCall",
    "Store",
    "call_error",
    "iter_range",
    "resolve_append",
    "storage_error",
]

#: Azure's limits on one append blob: committed blocks, and bytes in one append (service version 2022-11-02+).
MAX_APPEND_BLOCKS = 50_000
MAX_APPEND_BLOCK_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StorageCall:
    """One request to Azure, as the audit trail sees it. JSON-safe, secret-free."""

    operation: str
    blob: str
    ok: bool
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What ``get_blob_properties`` told us about one blob."""

    name: str
    size: int
    is_append_blob: bool
    sealed: bool
    committed_blocks: int | None
    metadata: dict[str, str]
    lease_state: str | None
    etag: str
    last_modified: datetime | None = None  # the service's clock: the blob's last write


@dataclass(frozen=True, slots=True)
class AppendResult:
    """A block that is durably in the segment at ``offset``; ``resolved`` if proven by read-back."""

    offset: int
    length: int
    committed_blocks: int | None
    resolved: bool = False


class Store(Protocol):
    """**Protocol:** one container, seen as segments, manifests and run pointers.

    Failures are :class:`~elspeth_appendsink.errors.StorageError` subclasses carrying the
    service's status and error code (see :func:`storage_error`); each request, failed or not, is
    reported to ``on_call``. A missing container answers 404 ``ContainerNotFound``.
    """

    container: str
    on_call: Callable[[StorageCall], None] | None

    def uri(self, name: str) -> str:
        """``azure://<container>/<name>``: how messages and manifests name a blob."""

    def unrecorded(self) -> Store:
        """The same container on a channel of its own, reporting no calls (the lease heartbeat's)."""

    def create_append_blob(self, name: str, metadata: Mapping[str, str] | None = None) -> None:
        """Create an empty append blob with ``If-None-Match: *``: :class:`BlobExistsError`
        (409 ``BlobAlreadyExists``) if any blob is at ``name``; the existing blob is untouched."""

    def properties(self, name: str) -> BlobInfo | None:
        """The blob's properties, or None when it does not exist (404 ``BlobNotFound``)."""

    def append_block(self, name: str, data: bytes, offset: int, *, lease: str | None = None) -> AppendResult:
        """Append ``data`` (never empty) at exactly ``offset`` (``appendpos``), exactly once.

        A 412 ``AppendPositionConditionNotMet`` is settled by :func:`resolve_append`: our bytes
        already there → a ``resolved`` result; foreign bytes → :class:`AppendConflictError`.
        409 ``BlobIsSealed`` / ``InvalidBlobType`` → :class:`BlobTypeError`; 409
        ``BlockCountExceedsLimit`` (50,000 blocks) → :class:`SegmentFullError`; a lease
        mismatch (412) → :class:`LeaseHeldError`; 413 for a block over the size limit.
        """

    def read(self, name: str, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)``, cut at the blob's end; 416 ``InvalidRange`` when
        ``offset`` lies past the end (an empty blob reads as ``b""`` from 0)."""

    def stream(
        self, name: str, *, offset: int = 0, length: int | None = None, chunk: int = 8 * 1024 * 1024
    ) -> Iterator[bytes]:
        """The blob's bytes ``[offset, offset+length)`` in chunks (bounded memory)."""

    def seal(self, name: str, final_length: int, *, lease: str | None = None) -> None:
        """Seal ``name`` (idempotent); later appends get 409 ``BlobIsSealed``."""

    def set_metadata(self, name: str, metadata: Mapping[str, str], *, lease: str | None = None) -> None:
        """Replace the blob's whole metadata (key case preserved)."""

    def acquire_lease(self, name: str, lease_id: str, duration: int) -> None:
        """Take (or, with the same id, renew) the lease; 409 ``LeaseAlreadyPresent`` if another
        id holds it; ``duration`` is -1 (infinite) or 15..60 s, else 400 ``InvalidHeaderValue``."""

    def renew_lease(self, name: str, lease_id: str) -> None:
        """Renew our lease; 409 ``LeaseIdMismatchWithLeaseOperation`` if it is not ours."""

    def release_lease(self, name: str, lease_id: str) -> None:
        """Release our lease; 409 ``LeaseIdMismatchWithLeaseOperation`` if it is not ours."""

    def break_lease(self, name: str) -> None:
        """Break any lease at once; 409 ``LeaseNotPresentWithLeaseOperation`` if none is active."""

    def holds_lease(self, name: str, lease_id: str) -> bool:
        """Whether ``lease_id`` is the active lease on ``name`` (a read-only probe)."""

    def put_if_missing(self, name: str, data: bytes) -> bool:
        """Upload a small block blob unless any blob exists there; True if we created it."""

    def get(self, name: str) -> bytes | None:
        """The whole blob, or None when it (or its container) does not exist."""

    def list_names(self, prefix: str) -> list[str]:
        """Names of the blobs starting with ``prefix``, sorted."""


_UNAVAILABLE_STATUSES = {408, 429, 500, 502, 503, 504}
_LEASE_CODES = {
    "LeaseIdMissing",
    "LeaseIdMismatchWithBlobOperation",
    "LeaseNotPresentWithBlobOperation",
    "LeaseAlreadyPresent",
    "LeaseIdMismatchWithLeaseOperation",
    "LeaseLost",
}


def storage_error(
    message: str,
    *,
    blob: str,
    offset: int | None = None,
    operation: str = "",
    status: int | None = None,
    code: str | None = None,
    network: bool = False,
    unreached: bool = False,
    not_found: bool = False,
) -> StorageError:
    """The error class for a refusal (``status``, ``code``) or a network failure: the one table.

    ``message`` is already redacted; ``unreached`` marks a request that never reached the service
    (refused, unresolvable, timed out connecting); ``not_found`` a 404 the client recognised.
    """
    what = f"{operation} failed: {message}" if operation else message
    kw: dict[str, Any] = {"blob": blob, "offset": offset, "status": status, "error_code": code}
    if code == "BlobAlreadyExists":
        return BlobExistsError(
            f"{operation}: blob already exists", hint="set if_exists or use a new blob_path", **kw
        )
    if code in ("InvalidBlobType", "BlobIsSealed"):
        return BlobTypeError(
            what, hint="the blob is not an unsealed append blob; use another blob_path", **kw
        )
    if code in ("BlockCountExceedsLimit", "MaxBlobSizeConditionNotMet"):
        return SegmentFullError(what, **kw)
    if code in _LEASE_CODES:
        return LeaseHeldError(
            what, hint="another writer holds the lease; see `elspeth-appendsink inspect`", **kw
        )
    if unreached and status is None:
        return StorageUnavailableError(
            what,
            hint="the storage account is unreachable: check the account URL (or the connection "
            "string's endpoint) and the network; nothing was stored by this request",
            **kw,
        )
    if network or status in _UNAVAILABLE_STATUSES:
        return StorageUnavailableError(
            what,
            hint="the storage account is unreachable or throttling; retry later (resume continues exactly)",
            **kw,
        )
    if code == "Md5Mismatch":
        return StorageUnavailableError(
            what, hint="the block was corrupted in transit and was not stored", **kw
        )
    if not_found:
        return StorageError(what, hint="check the container exists and the blob was not deleted", **kw)
    return StorageError(what, **kw)


def call_error(mapped: StorageError) -> dict[str, Any]:
    """The ``error`` field of a failed :class:`StorageCall` (an existing blob also says why)."""
    error = mapped.audit_fields()
    if isinstance(mapped, BlobExistsError):
        error["reason"] = BlobExistsError.reason
    return error


def resolve_append(store: Store, name: str, data: bytes, offset: int, cause: StorageError) -> AppendResult:
    """After an ambiguous append: read back ``[offset, offset+len)`` and decide.

    Our bytes there → the append landed (``resolved``); nothing there after a request that never
    reached the service → :class:`StorageUnavailableError` (sending again is safe); anything
    else → :class:`AppendConflictError`. Never a blind re-append.
    """
    info = store.properties(name)
    size = -1 if info is None else info.size
    end = offset + len(data)
    if info is not None and size >= end and store.read(name, offset, len(data)) == data:
        return AppendResult(offset, len(data), info.committed_blocks, resolved=True)
    if info is not None and size == offset and cause.error_code != "AppendPositionConditionNotMet":
        # the request never took effect; the caller may send it again
        raise StorageUnavailableError(
            f"append did not land ({cause})",
            blob=name,
            offset=offset,
            status=cause.status,
            error_code=cause.error_code,
            hint="nothing was written; retrying is safe",
        ) from cause
    raise AppendConflictError(
        f"bytes at the expected append position are not ours (segment size is {size}, "
        f"expected {offset} before this block)",
        blob=name,
        offset=offset,
        status=cause.status,
        error_code=cause.error_code,
        hint="another writer appended to this blob; nothing more will be appended",
    ) from cause


def iter_range(
    read: Callable[[str, int, int], bytes], name: str, *, offset: int, length: int | None, chunk: int
) -> Iterator[bytes]:
    """Yield ``[offset, offset+length)`` of ``name`` through ``read`` in chunks of ``chunk`` bytes."""
    end = None if length is None else offset + length
    position = offset
    while end is None or position < end:
        size = chunk if end is None else min(chunk, end - position)
        try:
            data = read(name, position, size)
        except StorageError as exc:
            if exc.status == 416:  # position is at (or past) the end: an empty blob answers so too
                return
            raise
        if not data:
            return
        yield data
        position += len(data)
        if len(data) < size:
            return
