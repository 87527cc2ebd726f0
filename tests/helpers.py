"""Helpers shared by the test suites: build writers over Azurite or memory, read outputs back, check them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from elspeth_appendsink.core.identity import IdentityScheme, content_digests
from elspeth_appendsink.core.manifest import BlockEntry, VoidRecord, decode_records
from elspeth_appendsink.core.paths import manifest_prefix, parse_segment_index, segment_name
from elspeth_appendsink.encoders.base import Packed
from elspeth_appendsink.protocol.writer import AppendWriter, OutputTarget
from elspeth_appendsink.storage import AzureStore, RetrySettings, StorageCall, build_service_client
from elspeth_appendsink.storage.base import Store
from elspeth_appendsink.storage.memory import MemoryStore
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.simulation import FaultyStore

FAST_RETRY = RetrySettings(total=3, initial_backoff=0.0, increment_base=0.0, jitter=0.0)
DIGEST = "0123456789abcdef"


class JsonlStub:
    """A minimal deterministic JSONL encoder so protocol tests do not depend on the encoders."""

    name = "jsonl"
    contiguous_rows = True

    def header(self) -> bytes:
        return b""

    def encode(self, rows: Sequence[Any]) -> list[bytes]:
        return [json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n" for r in rows]

    def encode_packed(self, rows: Sequence[Any]) -> Packed:
        return Packed.join(self.encode(rows))

    def block(self, encoded: Sequence[bytes | memoryview], rows: Sequence[Any]) -> bytes:
        return b"".join(encoded)

    def canonical(self, rows: Sequence[Any], encoded: Packed) -> Packed:
        return encoded

    def derivable(self, encoded: Packed) -> bool:
        return self.contiguous_rows  # a non-contiguous stub's entries carry digests

    def row_digests(self, entry: BlockEntry, block: bytes) -> bytes:
        return content_digests(block, entry.row_lengths())

    def describe(self) -> dict[str, Any]:
        return {"format": "jsonl-stub"}


class CsvStub(JsonlStub):
    """Like JsonlStub but with a header line, to prove the header is written exactly once."""

    def header(self) -> bytes:
        return b"HEADER\n"


def make_store(
    azurite: Azurite | MemorySpace,
    container: str,
    transport: Any = None,
    calls: list[StorageCall] | None = None,
    retry: RetrySettings = FAST_RETRY,
) -> Store:
    """A store on ``container`` of Azurite, or of a :class:`MemorySpace` (where ``transport`` may be
    one of its fault layers, see :meth:`MemorySpace.faulty`)."""
    if isinstance(azurite, MemorySpace):
        if isinstance(transport, FaultyStore):
            return transport
        return azurite.base.account.store(container, on_call=None if calls is None else calls.append)
    service = build_service_client(
        connection_string=azurite.connection_string, retry=retry, transport=transport
    )
    return AzureStore(service, container, on_call=None if calls is None else calls.append)


def make_writer(
    store: Store,
    *,
    run_id: str = "run-1",
    blob_path: str = "out/data.jsonl",
    resume: bool = False,
    encoder: Any = None,
    **target: Any,
) -> AppendWriter:
    enc = encoder or JsonlStub()
    t = OutputTarget(
        container=store.container,
        blob_path=blob_path,
        run_id=run_id,
        format="jsonl",
        template_digest=DIGEST,
        identity=IdentityScheme(target.pop("identity_fields", None)),
        **target,
    )
    return AppendWriter(store, t, make_encoder=lambda rows: enc, restore_encoder=lambda d: enc, resume=resume)


def read_output(azurite: Azurite, container: str, blob_path: str) -> bytes:
    """All segments of an output on Azurite, concatenated in segment order (:func:`store_output`)."""
    return store_output(make_store(azurite, container), blob_path)


def check_manifests(azurite: Azurite, container: str, blob_path: str) -> list[BlockEntry]:
    """Every committed entry of the output on Azurite, each proven by sha256 (:func:`store_manifests`)."""
    return store_manifests(make_store(azurite, container), blob_path)


def expected_jsonl(rows: Sequence[Any]) -> bytes:
    return b"".join(JsonlStub().encode(rows))


def make_memory_store(calls: list[StorageCall] | None = None, container: str = "memory") -> MemoryStore:
    """A store on a fresh in-memory account (its ``account`` gives further stores on the same data)."""
    store = MemoryStore.new(container)
    store.on_call = None if calls is None else calls.append
    return store


def store_output(store: Store, blob_path: str) -> bytes:
    """All segments of an output in ``store``, concatenated in segment order (independent of the writer)."""
    reader = store.unrecorded()
    stem = blob_path.rsplit(".", 1)[0]  # every segment's name starts with it (paths.segment_name)
    segments = sorted(
        (index, name)
        for name in reader.list_names(stem)
        if (index := parse_segment_index(blob_path, name)) is not None
    )
    return b"".join(reader.get(name) or b"" for _, name in segments)


def store_manifests(store: Store, blob_path: str) -> list[BlockEntry]:
    """Decode every manifest of the output (chain checked by the decoder) and prove each committed
    entry's bytes by sha256 against the segments. Returns the committed entries, oldest first."""
    reader = store.unrecorded()
    committed: list[BlockEntry] = []
    segments: dict[int, bytes] = {}
    for name in reader.list_names(manifest_prefix(blob_path)):
        records = [d.record for d in decode_records(reader.get(name) or b"")]
        blocks = {r.seq: r for r in records if isinstance(r, BlockEntry)}
        voided = set()
        for void in (r for r in records if isinstance(r, VoidRecord)):  # it voids the rest of its batch
            batch = blocks[void.voids].batch
            voided |= {s for s, b in blocks.items() if b.batch == batch and s >= void.voids}
        for r in records:
            if isinstance(r, BlockEntry) and r.seq not in voided:
                if r.segment not in segments:
                    segments[r.segment] = reader.get(segment_name(blob_path, r.segment)) or b""
                data = segments[r.segment][r.offset : r.end]
                assert len(data) == r.length, f"entry {r.seq} lies past the end of segment {r.segment}"
                assert hashlib.sha256(data).hexdigest() == r.sha256, f"entry {r.seq} bytes differ"
                committed.append(r)
    return committed


class MemorySpace:
    """An in-memory container for the tests that do not test Azure itself (the ``memory`` fixture).

    ``store()`` gives a new store on the same data, as a new process would get (with ``faults``:
    :class:`FaultyStore` keywords, ``at=`` / ``on=`` / ``rule=``); ``output`` and ``manifests``
    read the result independently of any writer.
    """

    container = "memory"

    def __init__(self) -> None:
        self.base = MemoryStore.new(self.container)

    def store(self, calls: list[StorageCall] | None = None, **faults: Any) -> Store:
        store = self.base.account.store(self.container, on_call=None if calls is None else calls.append)
        return FaultyStore(store, **faults) if faults else store

    def faulty(self, **schedule: Any) -> FaultyStore:
        """A new store on this container behind a fault layer with ``schedule`` (``at``/``on``/``rule``)."""
        return FaultyStore(self.base.account.store(self.container), **schedule)

    def output(self, blob_path: str) -> bytes:
        return store_output(self.base, blob_path)

    def manifests(self, blob_path: str) -> list[BlockEntry]:
        return store_manifests(self.base, blob_path)
