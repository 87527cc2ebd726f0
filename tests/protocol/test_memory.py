"""Bounded memory: a 200 MB run holds a few blocks at a time, however long the run and however many rows."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest

from elspeth_appendsink.encoders import create_encoder
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, make_writer

pytestmark = pytest.mark.azurite

BLOCK = 4 * 1024 * 1024
CALLS = 50
ROWS_PER_CALL = 4_200  # rows of ~1,000 bytes: each call is one full block and part of a second
ROW_BYTES = 1_000


@dataclass(frozen=True)
class Schema:
    mode: str = "observed"
    field_names: tuple[str, ...] = ()


def batch(call: int) -> list[dict[str, Any]]:
    """One write call's rows, built fresh (as the engine hands over a new list per call)."""
    pad = "m" * (ROW_BYTES - 60)
    return [
        {"id": call * ROWS_PER_CALL + i, "call": call, "ok": True, "pad": pad} for i in range(ROWS_PER_CALL)
    ]


class TestMemory:
    def test_writing_200_mb_holds_fewer_than_five_blocks(self, azurite: Azurite, container: str) -> None:
        """Peak memory allocated inside each write call (input rows excluded) stays under 5 block sizes."""
        rows = batch(0)
        encoder = create_encoder("jsonl", schema=Schema(), first_rows=rows)
        store = make_store(azurite, container)
        writer = make_writer(store, blob_path="mem/out.jsonl", encoder=encoder, block_size=BLOCK)
        expected = hashlib.sha256()
        peaks: list[int] = []
        started = time.perf_counter()
        tracemalloc.start()
        try:
            for call in range(CALLS):
                rows = rows if call == 0 else batch(call)
                tracemalloc.reset_peak()
                baseline = tracemalloc.get_traced_memory()[0]  # the input rows are already counted here
                writer.write(rows)
                peaks.append(tracemalloc.get_traced_memory()[1] - baseline)
                tracemalloc.stop()  # the expected bytes are computed untraced
                expected.update(b"".join(encoder.encode(rows)))
                tracemalloc.start()
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - started
        peak = max(peaks)
        print(
            f"\nmemory: {writer.size / 1e6:.1f} MB in {CALLS} write calls ({elapsed:.1f} s); "
            f"peak inside a call {peak / 2**20:.2f} MiB = {peak / BLOCK:.2f} blocks "
            f"(median {sorted(peaks)[CALLS // 2] / 2**20:.2f} MiB)"
        )
        assert writer.size >= 200_000_000
        assert peak < 5 * BLOCK, f"peak {peak / 2**20:.1f} MiB inside a write call"
        # and the output is every row, exactly: the blob's bytes hash to the rows' encoding
        stored = hashlib.sha256()
        for chunk in store.stream("mem/out.jsonl"):
            stored.update(chunk)
        assert stored.hexdigest() == expected.hexdigest() == writer.content_hash
