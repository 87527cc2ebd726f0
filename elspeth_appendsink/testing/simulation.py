"""Deterministic faults over any :class:`~elspeth_appendsink.storage.base.Store`, driven by a seed.

:class:`FaultyStore` wraps a store (a :class:`~elspeth_appendsink.storage.memory.MemoryStore` in
the simulation tests) and numbers every request it passes on, from 1. A schedule maps request
numbers, (operation, n-th request of that operation) pairs (as ``FaultyTransport`` does), or a
function of number, operation and blob (:meth:`FaultPlan.rule`) to a fault:

* ``"fail"`` — the request fails before it takes effect: the retries are spent, the caller sees
  :class:`StorageUnavailableError` (503 ``ServerBusy``) and nothing changed;
* ``"lost"`` — the request takes effect, then its response is lost for good: the caller sees
  :class:`StorageUnavailableError` (no status) although the service applied it;
* ``"retry"`` — the response is lost and the client's hidden retry sends the request again: what
  the caller sees is the second answer (for an append, a 412 that the read-back settles; for a
  create, 409 ``BlobAlreadyExists``; for a release, 409 ``LeaseIdMismatchWithLeaseOperation``);
* ``"crash-before"`` / ``"crash-after"`` — the process dies (:class:`SimulatedCrash`, which no
  ``except Exception`` catches) before the request is sent or after it took effect.

A throttling storm is ``"fail"`` on consecutive requests (:class:`FaultPlan` ``storm``). Failed
requests are reported to ``on_call`` as the store reports a refused one. The lease heartbeat's
store (``unrecorded()``) is not faulted, as its requests travel on a pipeline of their own.
Requests sent concurrently (the opening's pointer upload) are numbered in the order they arrive.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from elspeth_appendsink.errors import StorageError
from elspeth_appendsink.storage.base import (
    AppendResult,
    BlobInfo,
    StorageCall,
    Store,
    call_error,
    iter_range,
    storage_error,
)
from elspeth_appendsink.storage.faults import SimulatedCrash

__all__ = ["FAULTS", "FaultPlan", "FaultyStore", "Seen"]

FAULTS = ("fail", "lost", "retry", "crash-before", "crash-after")


@dataclass(frozen=True)
class FaultPlan:
    """One process's faults, all drawn from ``seed``: transient faults, a storm, a crash point."""

    faults: Mapping[int, str] = field(default_factory=dict)
    storm_at: int | None = None
    storm_length: int = 0
    crash_at: int | None = None
    crash: str = "crash-before"

    @classmethod
    def random(cls, seed: int, *, requests: int = 40, crash: bool = True) -> FaultPlan:
        """A plan drawn from ``seed`` over the first ``requests`` requests (the same seed, the same plan)."""
        rng = random.Random(seed)
        faults = {
            rng.randint(1, requests): rng.choice(("fail", "lost", "retry")) for _ in range(rng.randint(0, 3))
        }
        storm = rng.random() < 0.2
        return cls(
            faults=faults,
            storm_at=rng.randint(1, requests) if storm else None,
            storm_length=rng.randint(2, 8) if storm else 0,
            crash_at=rng.randint(1, requests) if crash and rng.random() < 0.7 else None,
            crash=rng.choice(("crash-before", "crash-after")),
        )

    def rule(self) -> Callable[[int, str, str], str | None]:
        def fault(n: int, operation: str, blob: str = "") -> str | None:
            if n == self.crash_at:
                return self.crash
            if self.storm_at is not None and self.storm_at <= n < self.storm_at + self.storm_length:
                return "fail"
            return self.faults.get(n)

        return fault


@dataclass
class Seen:
    """One request as the fault layer saw it."""

    n: int
    operation: str
    blob: str
    fault: str | None


class FaultyStore:
    """A :class:`~elspeth_appendsink.storage.base.Store` that injects scheduled faults into another."""

    def __init__(
        self,
        inner: Store,
        *,
        at: Mapping[int, str] | None = None,
        on: Mapping[tuple[str, int], str] | None = None,
        rule: Callable[[int, str, str], str | None] | None = None,
    ) -> None:
        self.inner = inner
        self.container = inner.container
        self.at = dict(at or {})
        self.on = dict(on or {})
        self.rule = rule
        self.per_op: Counter[str] = Counter()
        self.log: list[Seen] = []
        self.count = 0
        self._lock = threading.Lock()
        self._quiet = threading.local()
        self.on_call: Callable[[StorageCall], None] | None = inner.on_call
        inner.on_call = self._forward

    # --- plumbing ---------------------------------------------------------------------------
    def _forward(self, call: StorageCall) -> None:
        if self.on_call is not None and not getattr(self._quiet, "on", False):
            self.on_call(call)

    def _next(self, operation: str, blob: str) -> tuple[int, str | None]:
        with self._lock:
            self.count += 1
            self.per_op[operation] += 1
            n = self.count
            fault = self.at.get(n) or self.on.get((operation, self.per_op[operation]))
            if fault is None and self.rule is not None:
                fault = self.rule(n, operation, blob)
            self.log.append(Seen(n, operation, blob, fault))
            return n, fault

    def _unavailable(
        self, operation: str, blob: str, *, status: int | None, code: str | None
    ) -> StorageError:
        message = "The server is busy." if status else "injected: the response was lost"
        error = storage_error(
            message, blob=blob, operation=operation, status=status, code=code, network=status is None
        )
        request = {"operation": operation, "container": self.container, "blob": blob}
        self._forward(StorageCall(operation, blob, False, request, None, call_error(error), 0.0))
        return error

    def _do(self, operation: str, blob: str, fn: Callable[[], Any]) -> Any:
        """One request through the schedule."""
        n, fault = self._next(operation, blob)
        if fault == "crash-before":
            raise SimulatedCrash(f"crash before request {n} ({operation} {blob})")
        if fault == "fail":
            raise self._unavailable(operation, blob, status=503, code="ServerBusy")
        if fault in ("lost", "retry"):
            self._unheard(fn)  # it took effect (or was refused); its answer never arrived
        if fault == "lost":
            raise self._unavailable(operation, blob, status=None, code=None)
        result = fn()
        if fault == "crash-after":
            raise SimulatedCrash(f"crash after request {n} ({operation} {blob}) took effect")
        return result

    def _unheard(self, fn: Callable[[], Any]) -> None:
        """Send a request whose answer is lost: the store's own report of it is withheld too."""
        self._quiet.on = True
        try:
            fn()
        except StorageError:
            pass
        finally:
            self._quiet.on = False

    def operations(self) -> list[str]:
        return [s.operation for s in self.log]

    # --- the Store verbs --------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return self.inner.uri(name)

    def unrecorded(self) -> Store:
        return self.inner.unrecorded()

    def create_append_blob(self, name: str, metadata: Mapping[str, str] | None = None) -> None:
        self._do("create", name, lambda: self.inner.create_append_blob(name, metadata))

    def properties(self, name: str) -> BlobInfo | None:
        info: BlobInfo | None = self._do("properties", name, lambda: self.inner.properties(name))
        return info

    def append_block(self, name: str, data: bytes, offset: int, *, lease: str | None = None) -> AppendResult:
        result: AppendResult = self._do(
            "append", name, lambda: self.inner.append_block(name, data, offset, lease=lease)
        )
        return result

    def read(self, name: str, offset: int, length: int) -> bytes:
        data: bytes = self._do("read", name, lambda: self.inner.read(name, offset, length))
        return data

    def stream(
        self, name: str, *, offset: int = 0, length: int | None = None, chunk: int = 8 * 1024 * 1024
    ) -> Iterator[bytes]:
        return iter_range(self.read, name, offset=offset, length=length, chunk=chunk)

    def seal(self, name: str, final_length: int, *, lease: str | None = None) -> None:
        self._do("seal", name, lambda: self.inner.seal(name, final_length, lease=lease))

    def set_metadata(self, name: str, metadata: Mapping[str, str], *, lease: str | None = None) -> None:
        self._do("metadata", name, lambda: self.inner.set_metadata(name, metadata, lease=lease))

    def acquire_lease(self, name: str, lease_id: str, duration: int) -> None:
        self._do("lease", name, lambda: self.inner.acquire_lease(name, lease_id, duration))

    def renew_lease(self, name: str, lease_id: str) -> None:
        self._do("lease", name, lambda: self.inner.renew_lease(name, lease_id))

    def release_lease(self, name: str, lease_id: str) -> None:
        self._do("lease", name, lambda: self.inner.release_lease(name, lease_id))

    def break_lease(self, name: str) -> None:
        self._do("lease", name, lambda: self.inner.break_lease(name))

    def holds_lease(self, name: str, lease_id: str) -> bool:
        held: bool = self._do("properties", name, lambda: self.inner.holds_lease(name, lease_id))
        return held

    def put_if_missing(self, name: str, data: bytes) -> bool:
        created: bool = self._do("upload", name, lambda: self.inner.put_if_missing(name, data))
        return created

    def get(self, name: str) -> bytes | None:
        data: bytes | None = self._do("read", name, lambda: self.inner.get(name))
        return data

    def list_names(self, prefix: str) -> list[str]:
        names: list[str] = self._do("list", prefix, lambda: self.inner.list_names(prefix))
        return names


_: type[Store] = FaultyStore  # mypy checks here that the fault layer is a Store
