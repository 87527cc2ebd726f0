"""Counting and latency-injecting transports: one for the sync SDK, an equivalent for adlfs (aiohttp).

:class:`CountingTransport` is a real ``RequestsTransport``. Before forwarding each request it
sleeps ``latency`` seconds (the injected per-request latency), and it counts every request by
storage operation, the request body bytes sent (``Content-Length``; the SDK sets it on every
upload) and the response body bytes received for reads.

adlfs uses the async SDK over aiohttp and builds its own client, so there is no transport to
pass in. :func:`patch_aiohttp_transport` wraps ``AioHttpTransport.send`` of azure-core in the
benchmark's child process instead: the same sleep (``asyncio.sleep``) and the same counting,
at the same place in the pipeline (below the SDK's retry policy).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from elspeth_appendsink.testing import operation_of

__all__ = ["Counts", "CountingTransport", "patch_aiohttp_transport"]


@dataclass
class Counts:
    """What went over the wire, for one strategy run. Thread-safe."""

    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    enabled: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def request(self, request: Any) -> None:
        if not self.enabled:
            return
        length = request.headers.get("Content-Length") or request.headers.get("content-length") or 0
        with self._lock:
            self.requests += 1
            self.bytes_up += int(length)
            self.by_operation[operation_of(request)] += 1

    def response(self, request: Any, response: Any) -> None:
        if not self.enabled or str(request.method).upper() != "GET":
            return
        length = response.headers.get("Content-Length") or 0
        with self._lock:
            self.bytes_down += int(length)

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes_up = self.bytes_down = 0
            self.by_operation.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes_uploaded": self.bytes_up,
            "bytes_downloaded": self.bytes_down,
            "requests_by_operation": dict(sorted(self.by_operation.items())),
        }


class CountingTransport(RequestsTransport):  # type: ignore[misc]
    """``RequestsTransport`` that sleeps ``latency`` s before each request and counts it."""

    def __init__(self, counts: Counts, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts = counts
        self.latency = latency

    def send(self, request: Any, **kwargs: Any) -> Any:
        if self.latency:
            time.sleep(self.latency)
        self.counts.request(request)
        response = super().send(request, **kwargs)
        self.counts.response(request, response)
        return response


def patch_aiohttp_transport(counts: Counts, latency: float = 0.0) -> None:
    """Make every ``AioHttpTransport`` in this process sleep and count like :class:`CountingTransport`.

    For the benchmark's child processes only (it patches a class of azure-core, process-wide).
    """
    from azure.core.pipeline.transport import AioHttpTransport

    original = getattr(AioHttpTransport, "_bench_original_send", None) or AioHttpTransport.send

    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if latency:
            await asyncio.sleep(latency)
        counts.request(request)
        response = await original(self, request, **kwargs)
        counts.response(request, response)
        return response

    AioHttpTransport._bench_original_send = original  # type: ignore[attr-defined]
    AioHttpTransport.send = send  # type: ignore[method-assign]
