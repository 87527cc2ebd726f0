"""A fresh run encodes its first rows while the output opens; what the opening decides still wins.

:meth:`AppendWriter._open` runs the opening's requests in a worker thread and encodes the first
slices meanwhile with ``make_encoder(rows)``. These tests pin down that the overlap happens, that a
``continue`` run still writes with the encoder its output was written with, and that the
opening's errors and a bad row's error come out as they did when the two were sequential.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport

from elspeth_appendsink.core.identity import IdentityScheme
from elspeth_appendsink.encoders.base import Packed
from elspeth_appendsink.encoders.csv import CsvEncoder, restore
from elspeth_appendsink.errors import UnencodableRow
from elspeth_appendsink.protocol.writer import AppendWriter, OutputTarget
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import DIGEST, make_store, read_output

pytestmark = pytest.mark.azurite


class _WatchedCsv(CsvEncoder):
    """A CSV encoder of columns ``id, v`` that says when it encoded rows, and when it refused some."""

    def __init__(self) -> None:
        super().__init__(["id", "v"])
        self.encoded = threading.Event()
        self.refused = threading.Event()

    def encode_packed(self, rows: Sequence[Any]) -> Packed:
        try:
            packed = super().encode_packed(rows)
        except UnencodableRow:
            self.refused.set()
            raise
        self.encoded.set()
        return packed


class _HoldsFirstRequest(RequestsTransport):  # type: ignore[misc]
    """Sends the opening's first request (the run pointer) only once ``until`` is set, or after 10 s."""

    def __init__(self, until: threading.Event) -> None:
        super().__init__()
        self.until = until
        self.waited: bool | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        if self.waited is None:
            self.waited = self.until.wait(timeout=10)
        return super().send(request, **kwargs)


def _writer(
    store: Any,
    run_id: str,
    if_exists: str = "fail",
    encoder: CsvEncoder | None = None,
    block_size: int = 4096,
) -> AppendWriter:
    target = OutputTarget(
        container=store.container,
        blob_path="out/data.csv",
        run_id=run_id,
        format="csv",
        template_digest=DIGEST,
        identity=IdentityScheme(None),
        if_exists=if_exists,
        block_size=block_size,
    )
    return AppendWriter(
        store,
        target,
        make_encoder=lambda rows: encoder if encoder is not None else CsvEncoder(list(rows[0])),
        restore_encoder=restore,
    )


def _lines(first: int, stop: int, v: str = "v{}") -> bytes:
    return b"".join(f"{i},{v.format(i)}\r\n".encode() for i in range(first, stop))


def test_first_rows_are_encoded_before_the_opening_is_answered(azurite: Azurite, container: str) -> None:
    """The run pointer is held until the encoder has run: the write still completes, exactly."""
    encoder = _WatchedCsv()
    transport = _HoldsFirstRequest(encoder.encoded)
    rows = [{"id": i, "v": f"v{i}"} for i in range(500)]
    _writer(make_store(azurite, container, transport), "r", encoder=encoder).write(rows)
    assert transport.waited is True  # released by the encoder, not by the timeout
    assert read_output(azurite, container, "out/data.csv") == b"id,v\r\n" + _lines(0, 500)


def test_a_bad_row_met_while_opening_is_named_when_the_output_is_open(
    azurite: Azurite, container: str
) -> None:
    """Encoding stops at the bad row's slice while the output opens; after the opening the write path
    encodes on from that slice (not from the start): its index is the call's, and the rows of the
    blocks before it are in the output once each."""
    encoder = _WatchedCsv()
    transport = _HoldsFirstRequest(encoder.refused)
    rows: list[dict[str, Any]] = [{"id": i, "v": "x" * 90} for i in range(12_000)]
    rows[11_500]["v"] = object()  # in the third slice: 64 rows, then 1 MiB (11,037 rows), then this one
    writer = _writer(make_store(azurite, container, transport), "r", encoder=encoder, block_size=640 * 1024)
    with pytest.raises(UnencodableRow) as info:
        writer.write(rows)
    assert transport.waited is True  # the refusal came while the pointer was held
    assert info.value.row_index == 11_500
    output = read_output(azurite, container, "out/data.csv")
    assert output.startswith(b"id,v\r\n")
    count = output.count(b"\r\n") - 1
    assert 0 < count < 11_500
    assert output == b"id,v\r\n" + _lines(0, count, "x" * 90)


def test_a_continuing_run_writes_with_its_outputs_encoder(azurite: Azurite, container: str) -> None:
    """The new run's rows decide another column order; the output keeps the one it was written with."""
    first = [{"id": i, "v": f"v{i}"} for i in range(100)]
    earlier = _writer(make_store(azurite, container), "first", "continue")
    earlier.write(first)
    earlier.close()
    later = [{"v": f"v{i}", "id": i} for i in range(100, 300)]  # make_encoder would pick v,id
    _writer(make_store(azurite, container), "second", "continue").write(later)
    assert read_output(azurite, container, "out/data.csv") == b"id,v\r\n" + _lines(0, 300)


def test_a_bad_first_row_is_raised_before_the_openings_refusal(azurite: Azurite, container: str) -> None:
    """A bad row among the first rows of a run that would be refused: the row is what is raised,
    before any request (the first slice is encoded before the opening starts)."""
    earlier = _writer(make_store(azurite, container), "first")
    earlier.write([{"id": 1, "v": "a"}])
    earlier.close()
    before = read_output(azurite, container, "out/data.csv")
    rows: list[dict[str, Any]] = [{"id": i, "v": "x"} for i in range(300)]
    rows[0]["v"] = b"bytes have no CSV form"
    calls: list[Any] = []
    with pytest.raises(UnencodableRow, match="row 0"):
        _writer(make_store(azurite, container, calls=calls), "second").write(rows)
    assert calls == []
    assert read_output(azurite, container, "out/data.csv") == before
