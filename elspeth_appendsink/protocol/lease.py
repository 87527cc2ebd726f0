"""Lease identity: the one lease id each run uses on every blob it fences.

A run's lease id is derived from its run id (a name-based UUID), never drawn at random, so that
the resume of a crashed run can take its own lease back, and so that ``verify``/``inspect`` can
tell which run holds a live lease. Both the writer and the read-only views import it from here.
"""

from __future__ import annotations

import uuid

__all__ = ["LEASE_NAMESPACE", "lease_id_for"]

#: Fixed forever: changing it would orphan the leases of every run written before.
LEASE_NAMESPACE = uuid.UUID("5b0c3f0e-7a51-4d7e-9f0a-6a3e2d1c9b84")


def lease_id_for(run_id: str) -> str:
    """The lease id a run uses on every blob it fences (so its resume can take the lease back)."""
    return str(uuid.uuid5(LEASE_NAMESPACE, run_id))
