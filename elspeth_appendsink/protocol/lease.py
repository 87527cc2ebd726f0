"""Leases: the one lease id each run uses on every blob it fences, and the keeping of it.

A run's lease id is derived from its run id (a name-based UUID), never drawn at random, so that
the resume of a crashed run can take its own lease back, and so that ``verify``/``inspect`` can
tell which run holds a live lease. Both the writer and the read-only views import it from here.

:class:`LeaseKeeper` is the writer's side: it fences the segment a run writes (naming the holder
when another run has it), keeps the lease held for as long as the writer is open — a
:class:`~elspeth_appendsink.protocol.heartbeat.LeaseHeartbeat` renews it every third of its
duration, between write calls too, so that an expired lease means the writer is gone, which is
what ``runs --mark-failed`` and the launcher's ``--mark-failed-if-dead`` rely on — and lets it go.
Before each manifest append the writer calls :meth:`LeaseKeeper.confirm`: a writer paused past
its lease (another run may have continued the output meanwhile) finds out before it writes a
record, not after (a record written in the residual window is ignored by the next run's readers:
:func:`~elspeth_appendsink.core.reconcile.continued_prefix`).
Segment metadata names the run that created a blob (``META_CREATOR``) and the last run that
wrote it (``META_WRITER``), so that a refused writer's error can name the holder.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from elspeth_appendsink.errors import LeaseHeldError, StorageError, StorageUnavailableError
from elspeth_appendsink.protocol.heartbeat import LeaseHeartbeat
from elspeth_appendsink.storage.base import Store

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
        self,
        store: Store,
        run_id: str,
        *,
        enabled: bool,
        duration: int,
        events: list[dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease_id = lease_id_for(run_id)
        self.enabled = enabled
        self.duration = duration
        self.events = events
        self.clock = clock  # seconds, monotonic (a test may hand in one it moves by hand)
        self.held: str | None = None  # our lease id once acquired (the guard of every data append)
        self._at = 0.0
        self._fenced: str | None = None  # the blob the heartbeat renews (the segment being written)
        self._heart: LeaseHeartbeat | None = None
        self._lock = threading.Lock()

    def acquire(self, name: str, *, ours: bool = False) -> None:
        """Fence ``name``; our own (crashed) lease is simply re-acquired, since its id is ours.

        ``ours``: the caller created ``name`` with ``META_WRITER`` naming this run, so the
        metadata need not be read back (one request less when an output starts).
        """
        if not self.enabled:
            return
        sent = self.clock()
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
        self._at = sent
        self._beat_on(name)
        self.events.append({"event": "lease.acquired", "blob": name, "run_id": self.run_id})
        if ours:
            return
        info = self.store.properties(name)
        if info is not None and info.metadata.get(META_WRITER) != self.run_id:
            # name ourselves as the writer, so that a refused writer's error can name the holder
            self.store.set_metadata(name, {**info.metadata, META_WRITER: self.run_id}, lease=self.held)

    def keep(self, name: str) -> None:
        """Renew our lease if half its duration passed without a beat (a stalled heartbeat thread
        must not let it lapse under a write in flight)."""
        self.confirm(name)

    def confirm(self, name: str) -> None:
        """Make sure the lease on ``name`` is still ours before the writer records anything.

        The lease was confirmed (acquired or renewed, timed from when the request was sent) less
        than half its duration ago: it cannot have lapsed, no request needed — the heartbeat keeps
        it so. Else renew it now: a writer paused past its lease learns here, before any manifest
        append, that another run leased the segment meanwhile (:class:`LeaseHeldError`); a lease
        broken by an operator (``unlock``) is taken back only if no other run wrote the segment
        since (:meth:`reclaim`).
        """
        if self.held is None or self.duration < 0 or self.clock() - self._at < self.duration / 2:
            return
        sent = self.clock()
        try:
            self.store.renew_lease(name, self.held)
        except StorageUnavailableError:
            raise
        except LeaseHeldError as exc:  # the lease id on the blob is another one now
            raise self._lost(name, exc) from exc
        except StorageError as exc:
            if exc.error_code != "LeaseIsBrokenAndCannotBeRenewed":
                raise
            self.reclaim(name)
            return
        self._at = sent

    def reclaim(self, name: str) -> None:
        """Take back our lease on ``name`` after it lapsed or was broken — unless another run of
        this sink leased the segment since (its ``META_WRITER`` names it): then let go and raise
        :class:`LeaseHeldError`, before anything more is written."""
        self.acquire(name, ours=True)
        info = self.store.properties(name)
        writer = None if info is None else info.metadata.get(META_WRITER)
        if writer is not None and writer != self.run_id:
            self.release(name)
            self.held = None
            raise self._lost(name, None, writer)

    def _lost(self, name: str, exc: StorageError | None, writer: str | None = None) -> LeaseHeldError:
        if writer is None:
            info = self.store.properties(name)
            named = None if info is None else info.metadata.get(META_WRITER)
            writer = named if named != self.run_id else None
        self.stop()
        self.held = None
        return LeaseHeldError(
            f"run {self.run_id} lost its lease on {name}"
            + (f": run {writer} leased it since" if writer else ": another writer leased it since")
            + " (this writer was paused past lease_duration); nothing more is written by this run",
            holder=writer,
            blob=name,
            status=None if exc is None else exc.status,
            error_code=None if exc is None else exc.error_code,
            hint="the output was taken over; re-run the pipeline with if_exists: continue to add the rest",
        )

    def release(self, name: str) -> None:
        """Let ``name`` go (best effort: a lease expires by itself; nothing is lost).

        Releasing the blob the heartbeat renews stops the heartbeat first (after a rollover the
        old segment is released while the new one stays fenced)."""
        with self._lock:
            heart = self._heart if name == self._fenced else None
            if heart is not None:
                self._heart = self._fenced = None
        if heart is not None:
            heart.stop()
        with contextlib.suppress(StorageError):
            self.store.release_lease(name, self.lease_id)

    def stop(self) -> None:
        """Stop renewing without releasing (the writer is done with the lease, or lost it)."""
        with self._lock:
            heart, self._heart, self._fenced = self._heart, None, None
        if heart is not None:
            heart.stop()

    def _beat_on(self, name: str) -> None:
        """Make the heartbeat renew ``name`` from now on (starting it on the first lease)."""
        if self.duration < 0:
            return  # an infinite lease never lapses
        with self._lock:
            self._fenced = name
            if self._heart is None:
                quiet = self.store.unrecorded()
                # The thread holds the keeper weakly: a writer dropped without close() (a test's
                # simulated crash) must not keep a lease alive from beyond, as a killed process
                # would not; its heartbeat stops once the keeper is collected.
                keeper = weakref.ref(self)

                def renew() -> bool:
                    alive = keeper()
                    return alive is not None and alive._renew(quiet)

                self._heart = heart = LeaseHeartbeat(renew, self.duration / 3, name=f"lease-{self.run_id}")
                weakref.finalize(self, heart.stop_soon)
                heart.start()

    def _renew(self, store: Store) -> bool:
        """One beat: renew the fenced blob's lease; False once there is nothing left to keep."""
        with self._lock:
            name, held = self._fenced, self.held
        if name is None or held is None:
            return False
        sent = self.clock()
        store.renew_lease(name, held)
        self._at = sent
        return True
