"""A fault-injecting azure-core transport: the storage seam tests use to break requests.

Public test support (re-exported by :mod:`elspeth_appendsink.testing`); it lives here because it
is an azure-core transport, and only :mod:`elspeth_appendsink.storage` speaks Azure.

:class:`FaultyTransport` is a real ``RequestsTransport`` with a schedule of faults keyed by the
request's ordinal number (``n``, counted from 1 over every request) or by its operation and the
n-th request of that operation. Faults:

* ``"lose"`` — send the request (the service applies it), then raise ``ServiceResponseError``
  as if the response was lost on the way back;
* ``"reset"`` — raise ``ServiceRequestError`` without sending (connection reset);
* ``"status:503"`` (any status) — answer with that status and ``x-ms-error-code`` without
  sending (throttling storms); ``"status:409:BlockCountExceedsLimit"`` names the error code;
* ``"crash-before"`` / ``"crash-after"`` — raise :class:`SimulatedCrash`, a ``BaseException``
  the SDK does not catch, before or after the request reaches the service: every protocol step
  is a storage request, so crashing at every ``n`` covers every crash point.

``sleep`` is overridden so retry backoffs cost nothing (and are counted): no test sleeps.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpRequest, RequestsTransport, RequestsTransportResponse

__all__ = ["FaultyTransport", "SimulatedCrash", "operation_of", "schedule"]


class SimulatedCrash(BaseException):
    """The process "dies" here. A BaseException so that no ``except Exception`` can swallow it."""


_ERROR_CODES = {500: "InternalError", 503: "ServerBusy", 408: "OperationTimedOut", 429: "TooManyRequests"}


def operation_of(request: Any) -> str:
    """Name the storage operation a request performs (``append``, ``create``, ``read``, ...)."""
    query = parse_qs(urlparse(request.url).query)
    comp = (query.get("comp") or [""])[0]
    method = str(request.method).upper()
    if comp == "appendblock":
        return "append"
    if comp == "seal":
        return "seal"
    if comp == "lease":
        return "lease"
    if comp == "metadata":
        return "metadata"
    if comp == "list":
        return "list"
    if method == "HEAD":
        return "properties"
    if method == "GET":
        return "read"
    if method == "PUT":
        blob_type = request.headers.get("x-ms-blob-type", "")
        return "create" if blob_type == "AppendBlob" else "upload"
    if method == "DELETE":
        return "delete"
    return method.lower()


@dataclass
class _Seen:
    n: int
    operation: str
    url: str
    status: int | None
    fault: str | None


@dataclass
class FaultyTransport(RequestsTransport):  # type: ignore[misc]
    """A real transport with scheduled faults. Thread-safe counters; see the module docstring."""

    at: Mapping[int, str] = field(default_factory=dict)
    """Faults by global request number (1-based)."""
    on: Mapping[tuple[str, int], str] = field(default_factory=dict)
    """Faults by (operation, n-th request of that operation)."""
    rule: Callable[[int, str, Any], str | None] | None = None
    """Or a function (n, operation, request) -> fault or None, for random schedules."""
    log: list[_Seen] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.count = 0
        self.per_op: Counter[str] = Counter()
        self._lock = threading.Lock()

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)

    def _fault_for(self, request: Any) -> tuple[int, str, str | None]:
        with self._lock:
            self.count += 1
            op = operation_of(request)
            self.per_op[op] += 1
            n = self.count
            fault = self.at.get(n) or self.on.get((op, self.per_op[op]))
            if fault is None and self.rule is not None:
                fault = self.rule(n, op, request)
            return n, op, fault

    def send(self, request: HttpRequest, **kwargs: Any) -> Any:
        n, op, fault = self._fault_for(request)
        seen = _Seen(n, op, request.url, None, fault)
        self.log.append(seen)
        if fault == "crash-before":
            raise SimulatedCrash(f"crash before request {n} ({op})")
        if fault == "reset":
            raise ServiceRequestError(f"injected: connection reset before request {n} ({op})")
        if fault is not None and fault.startswith("status:"):
            _, status_text, *code = fault.split(":", 2)
            status = int(status_text)
            seen.status = status
            stream = bool(kwargs.get("stream"))
            return _fake_response(request, status, stream=stream, code=code[0] if code else None)
        response = super().send(request, **kwargs)
        seen.status = response.status_code
        if fault == "lose":
            raise ServiceResponseError(f"injected: response of request {n} ({op}) lost")
        if fault == "crash-after":
            raise SimulatedCrash(f"crash after request {n} ({op}) reached the service")
        return response

    def operations(self) -> list[str]:
        return [s.operation for s in self.log]


def _fake_response(request: Any, status: int, *, stream: bool = False, code: str | None = None) -> Any:
    """An error answer of the kind the real transport returns for ``request`` (legacy or rest)."""
    import requests
    from azure.core.pipeline._tools import handle_non_stream_rest_response, is_rest
    from requests.structures import CaseInsensitiveDict

    raw = requests.Response()
    raw.status_code = status
    raw.reason = "Injected"
    code = code or _ERROR_CODES.get(status, "InjectedFault")
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>injected {status}</Message></Error>"
    ).encode()
    raw.raw = io.BytesIO(body)  # read as the SDK reads a real answer (streamed or not)
    raw.headers = CaseInsensitiveDict(
        {"x-ms-error-code": code, "Content-Type": "application/xml", "Content-Length": str(len(body))}
    )
    raw.url = request.url
    if is_rest(request):  # what the storage SDK sends: it reads error bodies with .read()
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        response = RestRequestsTransportResponse(  # type: ignore[no-untyped-call]
            request=request, internal_response=raw
        )
        if not stream:
            handle_non_stream_rest_response(response)
        return response
    return RequestsTransportResponse(request, raw)


def schedule(faults: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Build an ``at=`` schedule from (request number, fault) pairs."""
    return dict(faults)
