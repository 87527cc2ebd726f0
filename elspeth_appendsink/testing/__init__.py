"""Test support, shipped as public API (as ``structlog.testing`` is).

* :class:`FaultyTransport`, :class:`SimulatedCrash` — faults at the azure-core transport seam
  (they live in :mod:`elspeth_appendsink.storage.faults`, the only layer that speaks Azure);
* :class:`FaultyStore`, :class:`FaultPlan` (:mod:`.simulation`) — seeded faults over any store
  (the in-memory one in the simulation tests);
* :class:`RecordingContext` — an ELSPETH ``SinkContext`` that keeps every audited call;
* :mod:`.harness` — an imitation of ELSPETH's executor and resume, as a sink sees them;
* :mod:`.azurite` — the lifecycle of a local Azurite emulator.
"""

from elspeth_appendsink.storage.faults import FaultyTransport, SimulatedCrash, operation_of, schedule
from elspeth_appendsink.testing.context import RECORDED_PAYLOADS, RecordedCall, RecordingContext
from elspeth_appendsink.testing.simulation import FaultPlan, FaultyStore

__all__ = [
    "RECORDED_PAYLOADS",
    "FaultPlan",
    "FaultyStore",
    "FaultyTransport",
    "RecordedCall",
    "RecordingContext",
    "SimulatedCrash",
    "operation_of",
    "schedule",
]
