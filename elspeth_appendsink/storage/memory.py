"""An in-memory twin of :class:`~elspeth_appendsink.storage.store.AzureStore`, with Azure's semantics.

:class:`MemoryAccount` is the service: containers of blobs behind one lock, a clock (injectable:
lease expiry and ``last_modified`` read it) and Azure's limits. :class:`MemoryStore` is one
container of it seen through :class:`~elspeth_appendsink.storage.base.Store`; several stores on one
account see the same blobs, as several processes see one storage account.

It refuses exactly where the protocol relies on Azure refusing, with the same status, error code
and error class (through :func:`~elspeth_appendsink.storage.base.storage_error`): create-only
(``If-None-Match: *``), ``appendpos``, seal, lease conditions (missing, mismatched, expired,
broken; acquire/renew/release/break), 50,000 committed blocks, the block-size limit, ranged reads
past the end, missing blobs and containers. It reports every request as the same
:class:`~elspeth_appendsink.storage.base.StorageCall` AzureStore reports (operation, request and
response fields), and settles a 412 ``AppendPositionConditionNotMet`` by the same read-back.
Where Azurite is laxer than Azure (it ignores ``appendpos`` on seal) this twin follows Azure.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from elspeth_appendsink.errors import BlobExistsError, LeaseHeldError, StorageError
from elspeth_appendsink.storage.base import (
    MAX_APPEND_BLOCK_BYTES,
    MAX_APPEND_BLOCKS,
    AppendResult,
    BlobInfo,
    StorageCall,
    call_error,
    iter_range,
    resolve_append,
    storage_error,
)

__all__ = ["MemoryAccount", "MemoryStore"]

_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a C# identifier, as Azure requires
_MESSAGES = {
    "AppendPositionConditionNotMet": "The append position condition specified was not met.",
    "BlobAlreadyExists": "The specified blob already exists.",
    "BlobIsSealed": "The specified blob is sealed, and its contents can't be modified.",
    "BlobNotFound": "The specified blob does not exist.",
    "BlockCountExceedsLimit": "The committed block count cannot exceed the maximum limit of 50,000 blocks.",
    "ContainerNotFound": "The specified container does not exist.",
    "InvalidBlobType": "The blob type is invalid for this operation.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "InvalidMetadata": "The metadata specified is invalid. It has characters that are not permitted.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "LeaseAlreadyPresent": "There is already a lease present.",
    "LeaseIdMismatchWithBlobOperation": "The lease ID specified did not match the lease ID for the blob.",
    "LeaseIdMismatchWithLeaseOperation": (
        "The lease ID specified did not match the lease ID for the container or blob."
    ),
    "LeaseIdMissing": (
        "There is currently a lease on the blob and no lease ID was specified in the request."
    ),
    "LeaseIsBrokenAndCannotBeRenewed": (
        "The lease ID matched, but the lease has been broken explicitly and cannot be renewed."
    ),
    "LeaseNotPresentWithBlobOperation": "There is currently no lease on the blob.",
    "LeaseNotPresentWithLeaseOperation": "There is currently no lease on the container or blob.",
    "RequestEntityTooLarge": "The uploaded entity blob is too large.",
}
_HEAD = {"get_blob_properties"}  # a HEAD answer has no body: the SDK words its error differently


class _Refused(Exception):
    """The service's answer to a request it refused: a status and an error code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(_MESSAGES.get(code, code))
        self.status = status
        self.code = code


def _refuse(status: int, code: str) -> NoReturn:
    raise _Refused(status, code)


@dataclass
class _Lease:
    lease_id: str
    expires: float | None  # None: an infinite lease
    duration: int
    broken: bool = False

    def state(self, now: float) -> str:
        if self.broken:
            return "broken"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "leased"


@dataclass
class _Blob:
    is_append_blob: bool
    etag: str
    modified: float
    metadata: dict[str, str]
    data: bytearray = field(default_factory=bytearray)
    blocks: int = 0
    sealed: bool = False
    lease: _Lease | None = None

    def active_lease(self, now: float) -> str | None:
        lease = self.lease
        return lease.lease_id if lease is not None and lease.state(now) == "leased" else None

    def check_lease(self, lease: str | None, now: float, *, write: bool) -> None:
        """412 unless ``lease`` matches the blob's lease (a write without one needs no active lease)."""
        active = self.active_lease(now)
        if lease is None:
            if write and active is not None:
                _refuse(412, "LeaseIdMissing")
        elif active is None:
            _refuse(412, "LeaseNotPresentWithBlobOperation")
        elif lease != active:
            _refuse(412, "LeaseIdMismatchWithBlobOperation")


class MemoryAccount:
    """A storage account in memory: containers of blobs, a clock and Azure's append limits.

    ``clock`` returns seconds since the epoch (``time.time`` unless a test drives time itself).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        max_block_bytes: int = MAX_APPEND_BLOCK_BYTES,
        max_blocks: int = MAX_APPEND_BLOCKS,
    ) -> None:
        self.clock = clock
        self.max_block_bytes = max_block_bytes
        self.max_blocks = max_blocks
        self.lock = threading.RLock()
        self._containers: dict[str, dict[str, _Blob]] = {}
        self._etags = 0

    def create_container(self, name: str) -> None:
        with self.lock:
            self._containers.setdefault(name, {})

    def store(self, container: str, on_call: Callable[[StorageCall], None] | None = None) -> MemoryStore:
        return MemoryStore(self, container, on_call=on_call)

    def blobs(self, container: str) -> dict[str, _Blob]:
        """The container's blobs (404 ``ContainerNotFound`` when there is no such container)."""
        blobs = self._containers.get(container)
        if blobs is None:
            _refuse(404, "ContainerNotFound")
        return blobs

    def blob(self, container: str, name: str) -> _Blob:
        """The blob at ``name`` (404 ``BlobNotFound`` when there is none)."""
        blob = self.blobs(container).get(name)
        if blob is None:
            _refuse(404, "BlobNotFound")
        return blob

    def delete(self, container: str, name: str) -> None:
        """Remove a blob, as someone working behind the sink's back would (tests tamper with it)."""
        with self.lock:
            self.blob(container, name)
            del self.blobs(container)[name]

    def touch(self, blob: _Blob) -> None:
        """A write: a new etag and last-modified time."""
        self._etags += 1
        blob.etag = f'"0x{0x8DC000000000000 + self._etags:X}"'
        blob.modified = self.clock()

    def new_blob(self, container: str, name: str, metadata: Mapping[str, str], *, append: bool) -> _Blob:
        """Create-only: 409 ``BlobAlreadyExists`` when anything is at ``name``."""
        blobs = self.blobs(container)
        if name in blobs:
            _refuse(409, "BlobAlreadyExists")
        if any(not _METADATA_KEY.match(key) for key in metadata):
            _refuse(400, "InvalidMetadata")
        blob = blobs[name] = _Blob(append, "", 0.0, dict(metadata))
        self.touch(blob)
        return blob


@dataclass
class MemoryStore:
    """One container of a :class:`MemoryAccount`, seen as a ``Store``."""

    account: MemoryAccount
    container: str
    on_call: Callable[[StorageCall], None] | None = None

    @classmethod
    def new(cls, container: str = "memory", clock: Callable[[], float] = time.time) -> MemoryStore:
        """A store on a fresh account holding one empty container."""
        account = MemoryAccount(clock)
        account.create_container(container)
        return cls(account, container)

    # --- plumbing ---------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return f"azure://{self.container}/{name}"

    def unrecorded(self) -> MemoryStore:
        return MemoryStore(self.account, self.container)

    def _call(
        self,
        operation: str,
        name: str,
        request: dict[str, Any],
        fn: Callable[[], Any],
        summarise: Callable[[Any], dict[str, Any]] = lambda _r: {},
        *,
        offset: int | None = None,
    ) -> Any:
        """Run one request under the account's lock, report it as AzureStore does, map refusals."""
        started = time.perf_counter()
        request = {"operation": operation, "container": self.container, "blob": name, **request}
        try:
            with self.account.lock:
                result = fn()
        except _Refused as refused:
            elapsed = (time.perf_counter() - started) * 1000
            message = str(refused)
            if operation in _HEAD:
                message = f"Operation returned an invalid status '{message}'"
            mapped = storage_error(
                message,
                blob=name,
                offset=offset,
                operation=operation,
                status=refused.status,
                code=refused.code,
                not_found=refused.status == 404,
            )
            if self.on_call is not None:
                self.on_call(StorageCall(operation, name, False, request, None, call_error(mapped), elapsed))
            raise mapped from None
        elapsed = (time.perf_counter() - started) * 1000
        if self.on_call is not None:
            self.on_call(StorageCall(operation, name, True, request, summarise(result), None, elapsed))
        return result

    def _blob(self, name: str) -> _Blob:
        return self.account.blob(self.container, name)

    def _now(self) -> float:
        return self.account.clock()

    # --- blobs ------------------------------------------------------------------------------
    def create_append_blob(self, name: str, metadata: Mapping[str, str] | None = None) -> None:
        """Create an empty append blob; :class:`BlobExistsError` if anything is at ``name``."""
        meta = dict(metadata or {})

        def create() -> dict[str, Any]:
            blob = self.account.new_blob(self.container, name, meta, append=True)
            return {"etag": blob.etag}

        self._call(
            "create_append_blob",
            name,
            {"if_none_match": "*", "metadata": dict(meta)},
            create,
            lambda r: {"etag": str(r.get("etag"))},
        )

    def properties(self, name: str) -> BlobInfo | None:
        """Properties of ``name``, or None when it does not exist."""
        try:
            info: BlobInfo = self._call(
                "get_blob_properties",
                name,
                {},
                lambda: self._info(name),
                lambda p: {
                    "size": p.size,
                    "blob_type": "BlobType.APPENDBLOB" if p.is_append_blob else "BlobType.BLOCKBLOB",
                    "sealed": p.sealed,
                    "committed_blocks": p.committed_blocks,
                },
            )
        except StorageError as exc:
            if exc.status == 404 and exc.error_code in ("BlobNotFound", None):
                return None
            raise
        return info

    def _info(self, name: str) -> BlobInfo:
        blob = self._blob(name)
        lease = blob.lease
        return BlobInfo(
            name=name,
            size=len(blob.data),
            is_append_blob=blob.is_append_blob,
            sealed=blob.sealed,
            committed_blocks=blob.blocks if blob.is_append_blob else None,
            metadata=dict(blob.metadata),
            lease_state="available" if lease is None else lease.state(self._now()),
            etag=blob.etag,
            last_modified=datetime.fromtimestamp(blob.modified, UTC),
        )

    def append_block(self, name: str, data: bytes, offset: int, *, lease: str | None = None) -> AppendResult:
        """Append ``data`` at exactly ``offset``, exactly once (see the Store protocol)."""
        if not data:
            raise ValueError("refusing to send an empty block")
        length = len(data)
        try:
            landed, blocks = self._call(
                "append_block",
                name,
                {
                    "offset": offset,
                    "length": length,
                    "appendpos_condition": offset,
                    "leased": lease is not None,
                },
                lambda: self._append(name, bytes(data), offset, lease),
                lambda r: {"blob_append_offset": r[0], "committed_blocks": r[1]},
                offset=offset,
            )
        except StorageError as exc:
            if exc.error_code != "AppendPositionConditionNotMet":
                raise
            return resolve_append(self, name, data, offset, exc)
        return AppendResult(landed, length, blocks)

    def _append(self, name: str, data: bytes, offset: int, lease: str | None) -> tuple[int, int]:
        """The service's checks, in Azure's order; then the block is committed."""
        if len(data) > self.account.max_block_bytes:
            _refuse(413, "RequestEntityTooLarge")
        blob = self._blob(name)
        if not blob.is_append_blob:
            _refuse(409, "InvalidBlobType")
        blob.check_lease(lease, self._now(), write=True)
        if blob.sealed:
            _refuse(409, "BlobIsSealed")
        if blob.blocks >= self.account.max_blocks:  # checked before appendpos, as Azure does
            _refuse(409, "BlockCountExceedsLimit")
        if len(blob.data) != offset:
            _refuse(412, "AppendPositionConditionNotMet")
        blob.data += data
        blob.blocks += 1
        self.account.touch(blob)
        return offset, blob.blocks

    def read(self, name: str, offset: int, length: int) -> bytes:
        data: bytes = self._call(
            "download_range",
            name,
            {"offset": offset, "length": length},
            lambda: self._range(name, offset, length),
            lambda d: {"bytes": len(d)},
            offset=offset,
        )
        return data

    def _range(self, name: str, offset: int, length: int) -> bytes:
        data = self._blob(name).data
        if offset > len(data):
            _refuse(416, "InvalidRange")
        return bytes(data[offset : offset + length])

    def stream(
        self, name: str, *, offset: int = 0, length: int | None = None, chunk: int = 8 * 1024 * 1024
    ) -> Iterator[bytes]:
        """Yield the blob's bytes ``[offset, offset+length)`` in chunks (bounded memory)."""
        return iter_range(self.read, name, offset=offset, length=length, chunk=chunk)

    def seal(self, name: str, final_length: int, *, lease: str | None = None) -> None:
        """Seal ``name`` only if its length is exactly ``final_length`` (idempotent)."""

        def seal() -> None:
            blob = self._blob(name)
            if not blob.is_append_blob:
                _refuse(409, "InvalidBlobType")
            blob.check_lease(lease, self._now(), write=True)
            if len(blob.data) != final_length:  # Azure enforces appendpos here; Azurite does not
                _refuse(412, "AppendPositionConditionNotMet")
            blob.sealed = True  # Azure keeps the etag and last-modified time of a sealed blob

        self._call(
            "seal_append_blob",
            name,
            {"appendpos_condition": final_length},
            seal,
            lambda _r: {"sealed": True},
            offset=final_length,
        )

    def set_metadata(self, name: str, metadata: Mapping[str, str], *, lease: str | None = None) -> None:
        meta = dict(metadata)

        def set_metadata() -> None:
            blob = self._blob(name)
            blob.check_lease(lease, self._now(), write=True)
            if any(not _METADATA_KEY.match(key) for key in meta):
                _refuse(400, "InvalidMetadata")
            blob.metadata = dict(meta)
            self.account.touch(blob)

        self._call("set_blob_metadata", name, {"metadata": dict(meta)}, set_metadata)

    # --- leases -----------------------------------------------------------------------------
    def acquire_lease(self, name: str, lease_id: str, duration: int) -> None:
        def acquire() -> None:
            if duration != -1 and not 15 <= duration <= 60:
                _refuse(400, "InvalidHeaderValue")
            blob, now = self._blob(name), self._now()
            active = blob.active_lease(now)
            if active is not None and active != lease_id:
                _refuse(409, "LeaseAlreadyPresent")
            blob.lease = _Lease(lease_id, None if duration < 0 else now + duration, duration)

        self._call("acquire_lease", name, {"lease_duration": duration}, acquire)

    def renew_lease(self, name: str, lease_id: str) -> None:
        def renew() -> None:
            lease = self._own_lease(name, lease_id)
            if lease.broken:
                _refuse(409, "LeaseIsBrokenAndCannotBeRenewed")
            lease.expires = None if lease.duration < 0 else self._now() + lease.duration

        self._call("renew_lease", name, {}, renew)

    def release_lease(self, name: str, lease_id: str) -> None:
        def release() -> None:
            self._own_lease(name, lease_id)
            self._blob(name).lease = None

        self._call("release_lease", name, {}, release)

    def _own_lease(self, name: str, lease_id: str) -> _Lease:
        """The blob's lease if it carries ``lease_id`` (active, expired or broken), else 409."""
        lease = self._blob(name).lease
        if lease is None or lease.lease_id != lease_id:
            _refuse(409, "LeaseIdMismatchWithLeaseOperation")
        return lease

    def break_lease(self, name: str) -> None:
        def break_() -> None:
            blob = self._blob(name)
            if blob.lease is None or blob.active_lease(self._now()) is None:
                _refuse(409, "LeaseNotPresentWithLeaseOperation")
            blob.lease.broken = True  # a break period of 0: broken at once

        self._call("break_lease", name, {"lease_break_period": 0}, break_)

    def holds_lease(self, name: str, lease_id: str) -> bool:
        """Whether ``lease_id`` is the active lease on ``name`` (a properties probe carrying it)."""
        try:
            self._call(
                "get_blob_properties",
                name,
                {"lease_probe": True},
                lambda: self._blob(name).check_lease(lease_id, self._now(), write=False),
            )
        except LeaseHeldError:
            return False
        return True

    # --- small block blobs (run pointers) and listing --------------------------------------
    def put_if_missing(self, name: str, data: bytes) -> bool:
        """Upload a small block blob unless one exists; True if we created it."""
        payload = bytes(data)

        def put() -> None:
            blob = self.account.new_blob(self.container, name, {}, append=False)
            blob.data += payload

        try:
            self._call("upload_blob", name, {"overwrite": False, "length": len(payload)}, put)
        except BlobExistsError:
            return False
        return True

    def get(self, name: str) -> bytes | None:
        try:
            data: bytes = self._call(
                "download_blob",
                name,
                {},
                lambda: bytes(self._blob(name).data),
                lambda d: {"bytes": len(d)},
            )
        except StorageError as exc:
            if exc.status == 404:
                return None
            raise
        return data

    def list_names(self, prefix: str) -> list[str]:
        names: list[str] = self._call(
            "list_blobs",
            prefix,
            {"prefix": prefix},
            lambda: sorted(n for n in self.account.blobs(self.container) if n.startswith(prefix)),
            lambda n: {"count": len(n)},
        )
        return names
