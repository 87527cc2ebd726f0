"""Leases: the one lease id each run uses on every blob it fences, and the keeping of it.

A run's lease id is derived from its run id (a name-based UUID), never drawn at random, so that
the resume of a crashed run can take its own lease back, and so that ``verify``/``inspect`` can
tell which run holds a live lease. Both the writer and the read-only views import it from here.

:class:`LeaseKeeper` is the writer's side: it fences the segment a run writes (naming the holder
when another run has it), renews the lease once half its duration has passed, and lets it go.
Segment metadata names the run that created a blob (``META_CREATOR``) and the last run that
wrote it (``META_WRITER``), so that a refused writer's error can name the holder.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from elspeth_appendsink.errors import LeaseHeldError, StorageError
from elspeth_appendsink.storage import AzureStore

__all__ = ["LEASE_NAMESPACE", "META_CREATOR", "META_WRITER", "LeaseKeeper", "lease_id_for"]

#: Fixed forever: changing it would orphan the leases of every run written before.
LEASE_NAMESPACE = uuid.UUID("5b0c3f0e-7a51-4d7e-9f0a-6a3e2d1c9b84")

META_CREATOR = "elspeth_appendsink_creator"
META_WRITER = "elspeth_appendsink_writer"


def lease_id_for(run_id: str) -> str:
    """The lease id a run uses on every blob it fences (so its resume can take the lease back)."""
    return str(uuid.uuid5(LEASE_NAMESPACE, run_id))


class LeaseKeeper:
    """The lease one run holds on the segment it writes (when the target asks for leases)."""

    def __init__(
        self, store: AzureStore, run_id: str, *, enabled: bool, duration: int, events: list[dict[str, Any]]
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease_id = lease_id_for(run_id)
        self.enabled = enabled
        self.duration = duration
        self.events = events
        self.held: str | None = None  # our lease id once acquired (the guard of every data append)
        self._at = 0.0

    def acquire(self, name: str) -> None:
        """Fence ``name``; our own (crashed) lease is simply re-acquired, since its id is ours."""
        if not self.enabled:
            return
        try:
            self.store.acquire_lease(name, self.lease_id, self.duration)
        except LeaseHeldError as exc:
            # The blob's metadata names the last run of this sink that wrote it; it is the holder
            # only if that run's (deterministic) lease id is the active one.
            info = self.store.properties(name)
            named = None if info is None else info.metadata.get(META_WRITER)
            holder = (
                named
                if named and named != self.run_id and self.store.holds_lease(name, lease_id_for(named))
                else None
            )
            raise LeaseHeldError(
                f"{name} is leased by another writer"
                + (f" (run {holder})" if holder else " (not a lease of this sink's runs)"),
                holder=holder,
                blob=name,
                status=exc.status,
                error_code=exc.error_code,
                hint="wait for that run to finish (a crashed writer's lease expires within lease_duration) "
                "or break it with `elspeth-appendsink unlock`",
            ) from exc
        self.held = self.lease_id
        self._at = time.monotonic()
        self.events.append({"event": "lease.acquired", "blob": name, "run_id": self.run_id})
        info = self.store.properties(name)
        if info is not None and info.metadata.get(META_WRITER) != self.run_id:
            # name ourselves as the writer, so that a refused writer's error can name the holder
            self.store.set_metadata(name, {**info.metadata, META_WRITER: self.run_id}, lease=self.held)

    def keep(self, name: str) -> None:
        """Renew our lease once half its duration has passed (before it can lapse mid-run)."""
        if self.held is None or self.duration < 0 or time.monotonic() - self._at < self.duration / 2:
            return
        self.store.renew_lease(name, self.held)
        self._at = time.monotonic()

    def release(self, name: str) -> None:
        """Let ``name`` go (best effort: a lease expires by itself; nothing is lost)."""
        with contextlib.suppress(StorageError):
            self.store.release_lease(name, self.lease_id)
