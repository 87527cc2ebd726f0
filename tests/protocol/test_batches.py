"""Blocks prepared while a batch uploads travel in the next batch: one manifest append, up to four intents."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport

from elspeth_appendsink.protocol.writer import PIPELINE_BYTES, blocks_per_batch
from elspeth_appendsink.testing import operation_of
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import JsonlStub, check_manifests, expected_jsonl, make_store, make_writer, read_output

pytestmark = pytest.mark.azurite


class _CountsBlocks(JsonlStub):
    """Sets ``prepared`` once ``wanted`` blocks have been built."""

    def __init__(self, wanted: int) -> None:
        self.built = 0
        self.wanted = wanted
        self.prepared = threading.Event()

    def block(self, encoded: Sequence[Any], rows: Sequence[Any]) -> bytes:
        self.built += 1
        if self.built >= self.wanted:
            self.prepared.set()
        return super().block(encoded, rows)


class _HoldsFirstData(RequestsTransport):  # type: ignore[misc]
    """Sends the first data append only once ``until`` is set (or after 10 s)."""

    def __init__(self, until: threading.Event) -> None:
        super().__init__()
        self.until = until
        self.waited: bool | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        if self.waited is None and operation_of(request) == "append" and ".manifest/" not in request.url:
            self.waited = self.until.wait(timeout=10)
        return super().send(request, **kwargs)


def test_blocks_prepared_during_an_upload_share_one_intent_append(azurite: Azurite, container: str) -> None:
    """While the first block uploads, four more are prepared; their intents go out in one append."""
    encoder = _CountsBlocks(wanted=1 + blocks_per_batch(4096))
    transport = _HoldsFirstData(encoder.prepared)
    rows = [{"id": i, "v": "x" * 80} for i in range(1000)]
    writer = make_writer(
        make_store(azurite, container, transport), encoder=encoder, block_size=4096, lease=False
    )
    writer.write(rows)
    assert transport.waited is True  # released by the fifth block, not by the timeout
    entries = check_manifests(azurite, container, "out/data.jsonl")
    per_batch: dict[int, int] = {}
    for entry in entries:
        per_batch[entry.batch] = per_batch.get(entry.batch, 0) + 1
    sizes = list(per_batch.values())
    assert sizes[:2] == [1, 4] and max(sizes) == 4
    assert read_output(azurite, container, "out/data.jsonl") == expected_jsonl(rows)


@pytest.mark.parametrize(
    ("block_size", "blocks"),
    [(4096, 4), (4 * 1024 * 1024, 4), (PIPELINE_BYTES // 3, 3), (8 * 1024 * 1024, 2), (100 * 1024 * 1024, 2)],
)
def test_blocks_per_batch_fit_the_byte_budget(block_size: int, blocks: int) -> None:
    """Four 4 MiB blocks at most per batch; 100 MiB blocks go two at a time, as before."""
    assert blocks_per_batch(block_size) == blocks
