"""A live writer's lease stays held between write calls, and goes when the writer closes.

``runs --mark-failed`` and the launcher's ``--mark-failed-if-dead`` treat a lapsed lease as proof
that the writer is gone; these tests pin down that a quiet but live writer never looks gone. Lease
expiry is wall-clock time by definition, so the first test lets a lease duration pass (15 s, the
service minimum) with a deadline, not a sleep standing in for an event.
"""

from __future__ import annotations

import threading
import time

import pytest

from elspeth_appendsink.testing import FaultyTransport
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import MemorySpace, make_store, make_writer

DURATION = 15


def _hearts(run_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"lease-{run_id}" and t.is_alive()]


@pytest.mark.azurite
def test_a_quiet_writer_keeps_its_lease_past_its_duration(azurite: Azurite, container: str) -> None:
    transport = FaultyTransport()
    store = make_store(azurite, container, transport)
    writer = make_writer(store, run_id="run-quiet", lease_duration=DURATION)
    writer.write([{"id": 1}])
    sent = transport.count
    assert len(_hearts("run-quiet")) == 1
    reads = 0
    deadline = time.monotonic() + DURATION + 2
    while time.monotonic() < deadline:  # no write in between: only the heartbeat can renew it
        info = store.properties(writer.segment(0))
        reads += 1
        assert info is not None and info.lease_state == "leased"
        time.sleep(1)  # pacing the checks over the interval that must pass, not waiting for an event
    assert transport.count == sent + reads  # our reads only: renewals use a pipeline of their own
    writer.write([{"id": 2}])  # the writer still holds it: its guarded appends go through
    writer.close()
    assert _hearts("run-quiet") == []
    info = store.properties(writer.segment(0))
    assert info is not None and info.lease_state == "available"


def test_close_stops_the_heartbeat_of_every_segment_it_fenced(memory: MemorySpace) -> None:
    store = memory.store()
    writer = make_writer(store, run_id="run-roll", segment_max_blocks=2, block_size=64)
    for i in range(6):
        writer.write([{"id": i, "pad": "x" * 40}])
    assert writer.cursor is not None and writer.cursor.segment >= 1  # it rolled over
    assert len(_hearts("run-roll")) == 1  # one heartbeat, following the segment being written
    writer.close()
    assert _hearts("run-roll") == []


def test_a_writer_dropped_without_close_stops_renewing(memory: MemorySpace) -> None:
    """A simulated crash drops the writer; like a killed process, it must not keep its lease."""
    import gc

    writer = make_writer(memory.store(), run_id="run-dropped")
    writer.write([{"id": 1}])
    (heart,) = _hearts("run-dropped")
    del writer
    gc.collect()
    heart.join(timeout=10)
    assert not heart.is_alive()
