"""Arrow entries carry no row digests: identities are rebuilt from the decoded record batches.

Each test writes through :class:`AppendWriter` with the real Arrow encoder and checks what is
observable: the manifest's block bodies, the output read back by pyarrow, and the rows a resume,
a retry or a continue skips.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from elspeth_appendsink.encoders import ArrowEncoder
from elspeth_appendsink.errors import UnencodableRow
from elspeth_appendsink.testing import SimulatedCrash
from tests.helpers import MemorySpace, make_writer

PATH = "out/data.arrows"
SMALL = {"block_size": 4096, "segment_max_blocks": 6}


def encoder() -> ArrowEncoder:
    return ArrowEncoder(["id", "name", "amount", "blob"], ["int", "str", "float", "binary"])


def batch(call: int, n: int = 120) -> list[dict[str, Any]]:
    rows = [
        {"id": call * 1000 + i, "name": f"r{i} é" * (i % 5), "amount": i / 7, "blob": bytes([i % 256]) * 3}
        for i in range(n - 1)
    ]
    return [*rows, dict(rows[-1])]  # an equal row twice: matched as a multiset


def output_rows(memory: MemorySpace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.ipc.open_stream(memory.output(PATH)).read_all().to_pylist()
    return rows


def writer(memory: MemorySpace, faults: dict[str, Any] | None = None, **options: Any) -> Any:
    store = memory.store(**(faults or {}))
    return make_writer(store, blob_path=PATH, encoder=encoder(), **{**SMALL, **options})


class TestDerivedEntries:
    def test_entries_carry_no_body_and_the_output_reads_back(self, memory: MemorySpace) -> None:
        w = writer(memory)
        for call in range(3):
            w.write(batch(call))
        entries = memory.manifests(PATH)
        assert len(entries) >= 6
        assert all(e.derived and not e.digests and not e.lengths for e in entries if len(e.tokens))
        assert output_rows(memory) == batch(0) + batch(1) + batch(2)

    def test_identity_fields_entries_still_carry_digests(self, memory: MemorySpace) -> None:
        w = writer(memory, identity_fields=["id"])
        w.write(batch(0))
        entries = memory.manifests(PATH)
        assert entries and all(len(e.digests) == 8 * len(e.tokens) and not e.derived for e in entries)

    def test_a_resume_after_a_crash_skips_the_redelivered_call(self, memory: MemorySpace) -> None:
        """The process dies during call 2; a new process re-delivers it: each row lands once."""
        calls = [batch(0), batch(1, n=1500), batch(2)]
        first = writer(memory)
        first.write(calls[0])
        crashing = writer(memory, {"on": {("append", 6): "crash-after"}}, resume=True)
        with pytest.raises(SimulatedCrash):
            crashing.write(calls[1])
        resumed = writer(memory, resume=True)
        report = resumed.write(calls[1])
        assert 0 < report.rows_skipped < len(calls[1])
        resumed.write(calls[2])
        assert output_rows(memory) == calls[0] + calls[1] + calls[2]

    def test_a_call_stopped_by_a_bad_row_keeps_exactly_its_committed_rows(self, memory: MemorySpace) -> None:
        """Blocks before the bad row land; the retried call skips exactly them (digests computed then)."""
        # ~2 kB rows: the writer encodes a few hundred rows at a time, so blocks of the first
        # slices land before the slice holding the bad row is encoded
        w = writer(memory, block_size=65536)
        rows = [{**row, "name": "x" * 2000} for row in batch(0, n=1500)]
        bad = [*rows[:1400], {"id": "not an int"}]
        with pytest.raises(UnencodableRow):
            w.write(bad)
        landed = len(output_rows(memory))
        assert landed > 0
        report = w.write(rows)
        assert report.rows_skipped == landed
        assert output_rows(memory) == rows

    def test_rows_that_read_back_differently_record_their_digests(self, memory: MemorySpace) -> None:
        """An int in a float column reads back as a float: those blocks record digests, the others
        none, and a resume recognises rows of both kinds."""
        plain, mixed = batch(0, n=300), [{**row, "amount": row["id"]} for row in batch(1, n=300)]
        w = writer(memory, run_id="first", if_exists="continue")
        w.write(plain)
        w.write(mixed)
        w.close()
        entries = [e for e in memory.manifests(PATH) if len(e.tokens)]
        assert {e.derived for e in entries} == {True, False}
        assert all(len(e.digests) == 8 * len(e.tokens) for e in entries if not e.derived)
        again = writer(memory, run_id="second", if_exists="continue")
        assert again.write(plain + mixed).rows_skipped == len(plain + mixed)
        assert len(output_rows(memory)) == len(plain + mixed)

    def test_continue_matches_rows_of_an_earlier_run(self, memory: MemorySpace) -> None:
        first = writer(memory, run_id="first", if_exists="continue")
        first.write(batch(0))
        first.write(batch(1))
        first.close()
        second = writer(memory, run_id="second", if_exists="continue")
        report = second.write(batch(0) + batch(1) + batch(2))
        assert report.rows_skipped == len(batch(0) + batch(1))
        assert output_rows(memory) == batch(0) + batch(1) + batch(2)

    def test_a_block_that_starts_derivable_and_takes_other_rows_records_all_its_digests(
        self, memory: MemorySpace
    ) -> None:
        """The writer encodes 64 rows first: here they can be derived, the next slice's cannot,
        and both land in one block, which then records every row's digest, in order."""
        plain, mixed = batch(0, n=64), [{**row, "amount": row["id"]} for row in batch(1, n=200)]
        w = writer(memory, run_id="first", if_exists="continue", block_size=1 << 20)
        w.write(plain + mixed)
        w.close()
        (entry,) = [e for e in memory.manifests(PATH) if len(e.tokens)]
        assert not entry.derived and len(entry.digests) == 8 * len(plain + mixed)
        again = writer(memory, run_id="second", if_exists="continue", block_size=1 << 20)
        report = again.write(plain + mixed + batch(2))
        assert report.rows_skipped == len(plain + mixed)
        assert output_rows(memory) == plain + mixed + batch(2)
