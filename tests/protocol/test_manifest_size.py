"""The manifest's cost at the default block size and ~200-byte rows: within 2.5 % of the data when
entries carry row lengths (content identity), within 5 % when they carry digests (``identity_fields``),
and a few hundred bytes per block for Arrow (no per-row body)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.encoders import create_encoder
from tests.helpers import MemorySpace, make_writer

CALLS = 6
ROWS_PER_CALL = 25_000  # ~200-byte rows: ~5 MB per call, ~30 MB in all


@dataclass(frozen=True)
class Schema:
    mode: str = "observed"
    field_names: tuple[str, ...] = ()


def batch(call: int) -> list[dict[str, Any]]:
    """Rows like a typical pipeline's: ~200 bytes of JSON, a few typed fields, unique ids."""
    return [
        {
            "id": call * ROWS_PER_CALL + i,
            "customer": f"customer-{(i * 7919) % 100_000:06d}",
            "amount": round(i * 0.37, 2),
            "currency": "EUR",
            "approved": i % 3 != 0,
            "reference": f"INV-2026-{call:02d}-{i:08d}",
            "note": "settled via standard clearing; no manual review required" if i % 2 else "held",
            "region": ("north", "south", "east", "west")[i % 4],
            "channel": ("web", "branch", "partner")[i % 3],
        }
        for i in range(ROWS_PER_CALL)
    ]


class TestManifestSize:
    @pytest.mark.parametrize(
        ("identity_fields", "limit"), [(None, 0.025), (["id"], 0.05)], ids=["lengths", "digests"]
    )
    def test_manifest_is_a_few_percent_of_the_data(
        self, memory: MemorySpace, identity_fields: list[str] | None, limit: float
    ) -> None:
        """Default 4 MiB blocks, ~200-byte rows, ~30 MB written: manifest bytes ≤ 2.5 % of data bytes
        with 4-byte row lengths, ≤ 5 % with 8-byte digests."""
        first = batch(0)
        encoder = create_encoder("jsonl", schema=Schema(), first_rows=first)
        store = memory.store()
        writer = make_writer(
            store,
            blob_path="size/out.jsonl",
            run_id="size-run",
            encoder=encoder,
            identity_fields=identity_fields,
        )
        rows = 0
        for call in range(CALLS):
            batch_rows = first if call == 0 else batch(call)
            writer.write(batch_rows)
            rows += len(batch_rows)
        data = memory.output("size/out.jsonl")
        manifest = store.properties(manifest_name("size/out.jsonl", "size-run"))
        assert manifest is not None
        ratio = manifest.size / len(data)
        print(
            f"\nmanifest size: {len(data) / 1e6:.1f} MB of data ({len(data) / rows:.0f} B/row, {rows} rows), "
            f"manifest {manifest.size / 1e3:.1f} kB = {100 * ratio:.2f} %"
        )
        assert 190 <= len(data) / rows <= 210
        assert 25_000_000 <= len(data) == writer.size
        entries = memory.manifests("size/out.jsonl")
        assert len(entries) >= 7  # blocks of up to 4 MiB
        assert all(bool(entry.lengths) == (identity_fields is None) for entry in entries)
        assert ratio <= limit

    def test_arrow_manifest_records_no_row_digests(self, memory: MemorySpace) -> None:
        """Arrow with content identity: entries carry no body, so the manifest is a few hundred bytes
        per 4 MiB block whatever the row count (identities are rebuilt from the batches)."""
        first = batch(0)
        encoder = create_encoder("arrow", schema=Schema(), first_rows=first)
        store = memory.store()
        writer = make_writer(store, blob_path="size/out.arrows", run_id="size-run", encoder=encoder)
        for call in range(CALLS):
            writer.write(first if call == 0 else batch(call))
        data = memory.output("size/out.arrows")
        manifest = store.properties(manifest_name("size/out.arrows", "size-run"))
        assert manifest is not None
        entries = memory.manifests("size/out.arrows")
        assert len(entries) >= 5
        assert all(entry.derived and not entry.digests for entry in entries if len(entry.tokens))
        print(f"\narrow manifest: {manifest.size / 1e3:.1f} kB for {len(data) / 1e6:.1f} MB of data")
        assert manifest.size / len(data) <= 0.001
