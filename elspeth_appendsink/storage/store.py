"""The only module that speaks Azure: segments, manifests, leases — every request audited.

:class:`AzureStore` wraps one container of a ``BlobServiceClient``. It knows Azure's verbs
(create, append_block, read, properties, lease, seal) and Azure's failure modes, and nothing
about rows, manifests or ELSPETH. Three promises:

* **Create-only.** Blobs are created with ``If-None-Match: *``; a plain ``create_append_blob``
  (which silently truncates an existing blob) is never sent.
* **Guarded appends.** Every append carries ``appendpos_condition``. A 412
  ``AppendPositionConditionNotMet`` — also one produced by the SDK's own hidden retry after a
  lost response — and a lost response itself (``ServiceResponseError``, no status) are resolved
  by reading back ``[pos, pos+len)``: our bytes there → the append landed; nothing there → it
  did not (safe to send again); anything else → :class:`AppendConflictError`. Never a blind
  re-append.
* **Every request observed.** Each call reports a :class:`StorageCall` (operation, blob,
  request/response facts, error, latency) to ``on_call``; the ELSPETH sink turns these into audit
  records. No credential is ever part of a call record or an error.

Azure exceptions are translated into :mod:`errors` in one place, :func:`map_azure_error`.
The retry policy is ours (bounded, short exponential backoff, retries 408/5xx and network
errors), set through :class:`RetrySettings`; tests inject faults through the azure-core
``transport``.

Why one piece (~570 lines, :class:`AzureStore` ~310): every request goes through the one
:meth:`AzureStore._call` (audit record, error mapping, retry) and the guarded-append read-back
needs the same clients; cutting the verbs apart would spread that single choke point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import BlobClient, BlobServiceClient, BlobType, ContainerClient, ExponentialRetry

from elspeth_appendsink.core.redact import redact
from elspeth_appendsink.errors import AppendConflictError, BlobExistsError, LeaseHeldError, StorageError
from elspeth_appendsink.logs import guard_third_party_loggers
from elspeth_appendsink.storage.base import (
    AppendResult,
    BlobInfo,
    StorageCall,
    call_error,
    iter_range,
    resolve_append,
    storage_error,
)

__all__ = [
    "AppendResult",
    "AzureStore",
    "BlobInfo",
    "RetrySettings",
    "StorageCall",
    "Transport",
    "build_service_client",
    "map_azure_error",
]

PROVIDER = "azure_blob_storage"

#: The azure-core transport a client sends through (tests hand in a fault-injecting one).
Transport: TypeAlias = HttpTransport[Any, Any]

guard_third_party_loggers()  # urllib3 logs request URLs, SAS signature included


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Our retry policy: bounded attempts and a short exponential backoff (not the SDK's 15 s)."""

    total: int = 5
    initial_backoff: float = 0.5
    increment_base: float = 2.0
    jitter: float = 0.2
    connection_timeout: float = 20.0
    read_timeout: float = 60.0

    def policy(self) -> ExponentialRetry:
        return _Retry(
            initial_backoff=self.initial_backoff,  # type: ignore[arg-type]
            increment_base=self.increment_base,  # type: ignore[arg-type]
            retry_total=self.total,
            random_jitter_range=self.jitter,  # type: ignore[arg-type]
        )


class _Retry(ExponentialRetry):
    """ExponentialRetry that sleeps through the *caller's* transport.

    The storage SDK wraps a client's transport in a ``TransportWrapper`` for every client it hands
    out (once per level: service, container, blob), and the wrapper's ``sleep`` is plain
    ``time.sleep``. Unwrapping keeps the transport the single seam: a test transport that
    overrides ``sleep`` makes every backoff instant.
    """

    def sleep(self, settings: Any, transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if not backoff or backoff < 0:
            return
        while hasattr(transport, "_transport"):  # service -> container -> blob: wrapped once per level
            transport = transport._transport
        transport.sleep(backoff)


def _code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is None:
        return None
    return str(getattr(code, "value", code))


def map_azure_error(
    exc: BaseException, *, blob: str, offset: int | None = None, operation: str = ""
) -> StorageError:
    """Translate an Azure SDK exception into this package's error tree (the one place that does)."""
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status_code", None)
    code = _code(exc) if isinstance(exc, AzureError) else None
    message = redact(
        str(getattr(exc, "message", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    )
    return storage_error(
        message,
        blob=blob,
        offset=offset,
        operation=operation,
        status=status,
        code=code,
        network=isinstance(exc, ServiceRequestError | ServiceResponseError),
        unreached=isinstance(exc, ServiceRequestError),
        not_found=isinstance(exc, ResourceNotFoundError),
    )


def build_service_client(
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,
    retry: RetrySettings | None = None,
    transport: HttpTransport[Any, Any] | None = None,
    api_version: str | None = None,
) -> BlobServiceClient:
    """A ``BlobServiceClient`` with our retry policy, timeouts and (for tests) transport."""
    retry = retry or RetrySettings()
    kw: dict[str, Any] = {
        "retry_policy": retry.policy(),
        "connection_timeout": retry.connection_timeout,
        "read_timeout": retry.read_timeout,
    }
    if transport is not None:
        kw["transport"] = transport
    if api_version:
        kw["api_version"] = api_version
    if connection_string is not None:
        return BlobServiceClient.from_connection_string(connection_string, **kw)
    if account_url is None:
        raise ValueError("account_url or connection_string is required")
    return BlobServiceClient(account_url, credential=credential, **kw)


@dataclass
class AzureStore:
    """One container, seen as segments and manifests. Every request goes through :meth:`_call`.

    ~310 lines: one method per Azure verb, each short; kept together so none can bypass ``_call``.
    """

    service: BlobServiceClient
    container: str
    on_call: Callable[[StorageCall], None] | None = None
    validate_content: bool = False
    _container: ContainerClient = field(init=False, repr=False)
    _blobs: dict[str, BlobClient] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._container = self.service.get_container_client(self.container)

    # --- plumbing ---------------------------------------------------------------------------
    def blob(self, name: str) -> BlobClient:
        client = self._blobs.get(name)
        if client is None:
            client = self._blobs[name] = self._container.get_blob_client(name)
        return client

    def uri(self, name: str) -> str:
        return f"azure://{self.container}/{name}"

    def unrecorded(self) -> AzureStore:
        """The same container and credential on a pipeline of its own, without ``on_call``.

        For requests that belong to no audited operation and to no write path: the lease
        heartbeat's renewals, sent from their own thread. A transport given to the writer (a
        fault schedule, a benchmark's counter) sees none of them, so what it counts stays the
        writer's own requests, in order.
        """
        service = BlobServiceClient(
            self.service.url, credential=self.service.credential, api_version=self.service.api_version
        )
        return AzureStore(service, self.container, validate_content=self.validate_content)

    def _emit(self, call: StorageCall) -> None:
        if self.on_call is not None:
            self.on_call(call)

    def _call(
        self,
        operation: str,
        name: str,
        request: dict[str, Any],
        fn: Callable[[], Any],
        summarise: Callable[[Any], dict[str, Any]] = lambda _r: {},
        *,
        offset: int | None = None,
        quiet_codes: frozenset[str] = frozenset(),
    ) -> Any:
        """Run one request, report it, and translate failures. ``quiet_codes`` are expected answers
        (still reported as calls with error status, but raised as the mapped error)."""
        started = time.perf_counter()
        request = {"operation": operation, "container": self.container, "blob": name, **request}
        try:
            result = fn()
        except AzureError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            mapped = map_azure_error(exc, blob=name, offset=offset, operation=operation)
            self._emit(StorageCall(operation, name, False, request, None, call_error(mapped), elapsed))
            raise mapped from exc
        elapsed = (time.perf_counter() - started) * 1000
        self._emit(StorageCall(operation, name, True, request, summarise(result), None, elapsed))
        return result

    # --- blobs ------------------------------------------------------------------------------
    def create_append_blob(self, name: str, metadata: Mapping[str, str] | None = None) -> None:
        """Create an empty append blob; :class:`BlobExistsError` if anything is at ``name``."""
        client = self.blob(name)
        self._call(
            "create_append_blob",
            name,
            {"if_none_match": "*", "metadata": dict(metadata or {})},
            lambda: client.create_append_blob(
                metadata=dict(metadata or {}), match_condition=MatchConditions.IfMissing
            ),
            lambda r: {"etag": str(r.get("etag"))},
        )

    def properties(self, name: str) -> BlobInfo | None:
        """Properties of ``name``, or None when it does not exist."""
        client = self.blob(name)
        try:
            props = self._call(
                "get_blob_properties",
                name,
                {},
                client.get_blob_properties,
                lambda p: {
                    "size": p.size,
                    "blob_type": str(p.blob_type),
                    "sealed": bool(p.is_append_blob_sealed),
                    "committed_blocks": p.append_blob_committed_block_count,
                },
            )
        except StorageError as exc:
            if exc.status == 404 and exc.error_code in ("BlobNotFound", None):
                return None
            raise
        lease = getattr(props, "lease", None)
        return BlobInfo(
            name=name,
            size=int(props.size),
            is_append_blob=props.blob_type == BlobType.APPENDBLOB,
            sealed=bool(props.is_append_blob_sealed),
            committed_blocks=props.append_blob_committed_block_count,
            metadata=dict(props.metadata or {}),
            lease_state=None if lease is None else str(lease.state),
            etag=str(props.etag),
            last_modified=props.last_modified,
        )

    def append_block(self, name: str, data: bytes, offset: int, *, lease: str | None = None) -> AppendResult:
        """Append ``data`` at exactly ``offset``, exactly once (see the module docstring)."""
        if not data:
            raise ValueError("refusing to send an empty block")
        client = self.blob(name)
        length = len(data)
        try:
            result = self._call(
                "append_block",
                name,
                {
                    "offset": offset,
                    "length": length,
                    "appendpos_condition": offset,
                    "leased": lease is not None,
                },
                lambda: client.append_block(
                    data,
                    length=length,
                    appendpos_condition=offset,
                    lease=lease,
                    validate_content=self.validate_content,
                ),
                lambda r: {
                    "blob_append_offset": int(r["blob_append_offset"]),
                    "committed_blocks": r.get("blob_committed_block_count"),
                },
                offset=offset,
            )
        except StorageError as exc:
            cause = exc.__cause__
            ambiguous = exc.error_code == "AppendPositionConditionNotMet" or isinstance(
                cause, ServiceResponseError | ServiceRequestError
            )
            if not ambiguous:
                raise
            return resolve_append(self, name, data, offset, exc)
        landed = int(result["blob_append_offset"])
        if landed != offset:  # impossible with appendpos; never continue on a lie
            raise AppendConflictError("service reports the block landed elsewhere", blob=name, offset=landed)
        return AppendResult(offset, length, result.get("blob_committed_block_count"))

    def read(self, name: str, offset: int, length: int) -> bytes:
        client = self.blob(name)
        data: bytes = self._call(
            "download_range",
            name,
            {"offset": offset, "length": length},
            lambda: client.download_blob(offset=offset, length=length).readall(),
            lambda d: {"bytes": len(d)},
            offset=offset,
        )
        return data

    def stream(
        self, name: str, *, offset: int = 0, length: int | None = None, chunk: int = 8 * 1024 * 1024
    ) -> Iterator[bytes]:
        """Yield the blob's bytes ``[offset, offset+length)`` in chunks (bounded memory)."""
        return iter_range(self.read, name, offset=offset, length=length, chunk=chunk)

    def seal(self, name: str, final_length: int, *, lease: str | None = None) -> None:
        """Seal ``name`` only if its length is exactly ``final_length`` (idempotent)."""
        client = self.blob(name)
        self._call(
            "seal_append_blob",
            name,
            {"appendpos_condition": final_length},
            lambda: client.seal_append_blob(appendpos_condition=final_length, lease=lease),
            lambda r: {"sealed": bool(r.get("blob_sealed", True))},
            offset=final_length,
        )

    def set_metadata(self, name: str, metadata: Mapping[str, str], *, lease: str | None = None) -> None:
        client = self.blob(name)
        self._call(
            "set_blob_metadata",
            name,
            {"metadata": dict(metadata)},
            lambda: client.set_blob_metadata(dict(metadata), lease=lease),
        )

    # --- leases -----------------------------------------------------------------------------
    def acquire_lease(self, name: str, lease_id: str, duration: int) -> None:
        client = self.blob(name)
        self._call(
            "acquire_lease",
            name,
            {"lease_duration": duration},
            lambda: client.acquire_lease(lease_duration=duration, lease_id=lease_id),
        )

    def renew_lease(self, name: str, lease_id: str) -> None:
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob(name), lease_id=lease_id)
        self._call("renew_lease", name, {}, lease.renew)

    def release_lease(self, name: str, lease_id: str) -> None:
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob(name), lease_id=lease_id)
        self._call("release_lease", name, {}, lease.release)

    def break_lease(self, name: str) -> None:
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob(name))
        self._call(
            "break_lease", name, {"lease_break_period": 0}, lambda: lease.break_lease(lease_break_period=0)
        )

    def holds_lease(self, name: str, lease_id: str) -> bool:
        """Whether ``lease_id`` is the active lease on ``name``. Read-only: a properties request
        carrying the lease id, which the service answers only when that lease is the active one
        (else 412 ``LeaseIdMismatchWithBlobOperation`` / ``LeaseNotPresentWithBlobOperation``)."""
        client = self.blob(name)
        try:
            self._call(
                "get_blob_properties",
                name,
                {"lease_probe": True},
                lambda: client.get_blob_properties(lease=lease_id),
            )
        except LeaseHeldError:
            return False
        return True

    # --- small block blobs (run pointers) and listing --------------------------------------
    def put_if_missing(self, name: str, data: bytes) -> bool:
        """Upload a small block blob unless one exists; True if we created it."""
        client = self.blob(name)
        try:
            self._call(
                "upload_blob",
                name,
                {"overwrite": False, "length": len(data)},
                lambda: client.upload_blob(data, overwrite=False),
            )
        except BlobExistsError:
            return False
        return True

    def get(self, name: str) -> bytes | None:
        client = self.blob(name)
        try:
            data: bytes = self._call(
                "download_blob",
                name,
                {},
                lambda: client.download_blob().readall(),
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
            lambda: sorted(b.name for b in self._container.list_blobs(name_starts_with=prefix)),
            lambda n: {"count": len(n)},
        )
        return names
