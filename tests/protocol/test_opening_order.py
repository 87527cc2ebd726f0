"""Which start-up requests wait for each other: the run pointer and segment 0 go out together,
unless the blob path holds a timestamp (a resume finds such a path only through the pointer)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.storage.faults import operation_of
from elspeth_appendsink.testing import FaultyTransport, SimulatedCrash
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import expected_jsonl, make_store, make_writer, read_output

pytestmark = pytest.mark.azurite

ROWS = [{"id": i, "v": f"value-{i}"} for i in range(20)]


class _Watched(FaultyTransport):  # type: ignore[misc]
    """Notes when the run pointer was answered and when segment 0's creation was sent; holds the
    pointer back until then when asked to."""

    def __init__(self, hold_pointer: bool) -> None:
        super().__init__()
        self.hold_pointer = hold_pointer
        self.pointer_answered = threading.Event()
        self.segment_sent = threading.Event()
        self.pointer_held: bool | None = None
        self.answered_before_segment: bool | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        op = operation_of(request)
        if op == "upload" and self.hold_pointer:
            self.pointer_held = self.segment_sent.wait(timeout=10)
        elif op == "create" and not self.segment_sent.is_set():
            self.answered_before_segment = self.pointer_answered.is_set()
            self.segment_sent.set()
        response = super().send(request, **kwargs)
        if op == "upload":
            self.pointer_answered.set()
        return response


def test_pointer_and_segment_zero_go_out_together_when_a_resume_renders_the_same_path(
    azurite: Azurite, container: str
) -> None:
    """The pointer is held back until segment 0's creation has been sent: the write completes,
    so neither waited for the other, and the output is exact."""
    transport = _Watched(hold_pointer=True)
    writer = make_writer(make_store(azurite, container, transport), blob_path="together/d.jsonl")
    writer.write(ROWS)
    assert transport.pointer_held is True
    assert transport.answered_before_segment is False
    assert read_output(azurite, container, "together/d.jsonl") == expected_jsonl(ROWS)


def test_segment_zero_waits_for_the_pointer_when_the_path_holds_a_timestamp(
    azurite: Azurite, container: str
) -> None:
    """``path_is_stable=False`` (a ``{{ timestamp }}`` template): segment 0's creation is sent
    only after the pointer was answered."""
    transport = _Watched(hold_pointer=False)
    writer = make_writer(
        make_store(azurite, container, transport), blob_path="stamped/d.jsonl", path_is_stable=False
    )
    writer.write(ROWS)
    assert transport.answered_before_segment is True
    assert read_output(azurite, container, "stamped/d.jsonl") == expected_jsonl(ROWS)


def test_a_segment_zero_without_its_pointer_is_taken_by_the_resume(azurite: Azurite, container: str) -> None:
    """A crash as the pointer goes out leaves segment 0 created (it went out beside it) and no
    pointer: to a resume the run never started; its fresh start takes the empty segment 0 this
    run created, and the output is exact."""
    transport = FaultyTransport(on={("upload", 1): "crash-before"})
    store = make_store(azurite, container, transport)
    writer = make_writer(store, blob_path="orphan/d.jsonl", run_id="run-o")
    with pytest.raises(SimulatedCrash):
        writer.write(ROWS)
    assert sorted(seen.operation for seen in transport.log) == ["create", "upload"]
    segment = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        container, "orphan/d.jsonl"
    )
    assert segment.get_blob_properties().size == 0  # created, empty, and no pointer names it
    resumed = make_writer(
        make_store(azurite, container), blob_path="orphan/d.jsonl", run_id="run-o", resume=True
    )
    resumed.write(ROWS)
    assert read_output(azurite, container, "orphan/d.jsonl") == expected_jsonl(ROWS)
