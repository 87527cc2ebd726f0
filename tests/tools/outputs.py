"""Outputs for the tooling tests: written by the real writer, then crashed or tampered with.

The first argument names where: an :class:`Azurite` (with a container), or a :class:`MemorySpace`
(tests of the tools' own logic, which need no emulator); the raw helpers (``read_blob``,
``append_raw``, ``rewrite_blob``, …) tamper the same way on both."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient

from elspeth_appendsink.core.identity import content_digests
from elspeth_appendsink.core.manifest import (
    BlockEntry,
    DecodedRecord,
    TokenRange,
    decode_records,
    encode_record,
    record_hash,
)
from elspeth_appendsink.core.paths import manifest_name, segment_name
from elspeth_appendsink.protocol.writer import AppendWriter
from elspeth_appendsink.testing import FaultyTransport, SimulatedCrash
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import MemorySpace, make_store, make_writer

Where = Azurite | MemorySpace

BLOB = "out/data.jsonl"
SMALL: dict[str, Any] = {"block_size": 200, "segment_max_blocks": 5}
ROWS_PER_CALL = 25
CALLS = 3


def batches(calls: int = CALLS, first_id: int = 0) -> list[list[dict[str, Any]]]:
    return [
        [{"id": first_id + c * ROWS_PER_CALL + i, "v": f"value-{c}-{i}"} for i in range(ROWS_PER_CALL)]
        for c in range(calls)
    ]


def write_output(
    azurite: Where,
    container: str,
    *,
    blob_path: str = BLOB,
    run_id: str = "run-1",
    seal: bool = False,
    first_id: int = 0,
    **target: Any,
) -> AppendWriter:
    """A complete run: three write calls over ≥3 segments (200-byte blocks, 5 blocks a segment)."""
    writer = make_writer(
        make_store(azurite, container), run_id=run_id, blob_path=blob_path, **{**SMALL, **target}
    )
    for batch in batches(first_id=first_id):
        writer.write(batch)
    writer.finish(seal=seal)
    writer.close()
    return writer


def data_append_rule(nth: int, fault: str) -> Callable[[int, str, Any], str | None]:
    """A FaultyTransport (or FaultyStore) rule: ``fault`` at the ``nth`` data append (not a manifest's)."""
    seen = 0

    def rule(n: int, operation: str, request: Any) -> str | None:
        nonlocal seen
        target = request if isinstance(request, str) else request.url  # a blob name or a request
        if operation == "append" and ".manifest/" not in target:
            seen += 1
            if seen == nth:
                return fault
        return None

    return rule


def first_call_blocks(azurite: Where, container: str) -> int:
    """How many blocks the first write call of :func:`batches` makes (in a probe output).

    A crash right after that many data appends finds no intent unfinished, whatever the batches:
    a call's last block always ends its batch, while where earlier batches end depends on timing.
    """
    writer = make_writer(
        make_store(azurite, container), run_id="probe", blob_path="probe/first.jsonl", **SMALL
    )
    return writer.write(batches()[0]).blocks


def crash_run(
    azurite: Where,
    container: str,
    transport: Any,
    *,
    blob_path: str = BLOB,
    run_id: str = "run-1",
    seal: bool = False,
) -> int | None:
    """Run the three write calls through ``transport`` until it crashes; the index of the call
    that crashed (the engine replays from there), or None when it never crashed."""
    writer = make_writer(
        make_store(azurite, container, transport), run_id=run_id, blob_path=blob_path, **SMALL
    )
    data = batches()
    for index, batch in enumerate(data):
        try:
            writer.write(batch)
        except SimulatedCrash:
            return index
    try:
        writer.finish(seal=seal)
    except SimulatedCrash:
        return len(data)
    return None


def resume_run(
    azurite: Where,
    container: str,
    crashed_in: int,
    *,
    blob_path: str = BLOB,
    run_id: str = "run-1",
    seal: bool = False,
) -> AppendWriter:
    """Resume a crashed run the way the engine does: replay the crashed call and everything after."""
    writer = make_writer(
        make_store(azurite, container), run_id=run_id, blob_path=blob_path, resume=True, **SMALL
    )
    writer.prepare()
    for batch in batches()[crashed_in:]:
        writer.write(batch)
    writer.finish(seal=seal)
    writer.close()
    return writer


def blob(azurite: Azurite, container: str, name: str) -> BlobClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        container, name
    )


def read_blob(azurite: Where, container: str, name: str) -> bytes:
    if isinstance(azurite, MemorySpace):
        return azurite.base.account.store(container).get(name) or b""
    return blob(azurite, container, name).download_blob().readall()


def break_lease(azurite: Where, container: str, name: str) -> None:
    if isinstance(azurite, MemorySpace):
        store = azurite.base.account.store(container)
        info = store.properties(name)
        if info is not None and info.lease_state == "leased":
            store.break_lease(name)
        return
    client = blob(azurite, container, name)
    if client.get_blob_properties().lease.state == "leased":
        BlobLeaseClient(client).break_lease(lease_break_period=0)


def lease_state(azurite: Azurite, container: str, name: str) -> str:
    return str(blob(azurite, container, name).get_blob_properties().lease.state)


def blob_size(azurite: Where, container: str, name: str) -> int:
    if isinstance(azurite, MemorySpace):
        info = azurite.base.account.store(container).properties(name)
        assert info is not None
        return info.size
    return int(blob(azurite, container, name).get_blob_properties().size)


def create_raw(azurite: Where, container: str, name: str) -> None:
    """A plain append blob at ``name``, as another program would create it (no metadata)."""
    if isinstance(azurite, MemorySpace):
        azurite.base.account.store(container).create_append_blob(name)
    else:
        blob(azurite, container, name).create_append_blob()


def append_raw(azurite: Where, container: str, name: str, data: bytes) -> None:
    """Append ``data`` at the blob's end without a lease, as another program would."""
    if isinstance(azurite, MemorySpace):
        azurite.base.account.store(container).append_block(name, data, blob_size(azurite, container, name))
    else:
        blob(azurite, container, name).append_block(data)


def delete_raw(azurite: Where, container: str, name: str) -> None:
    if isinstance(azurite, MemorySpace):
        azurite.base.account.delete(container, name)
    else:
        blob(azurite, container, name).delete_blob()


def faulty(azurite: Where, **schedule: Any) -> Any:
    """What :func:`crash_run` sends through: a FaultyTransport on Azurite, a FaultyStore in memory."""
    if isinstance(azurite, MemorySpace):
        return azurite.faulty(**schedule)
    return FaultyTransport(**schedule)


def rewrite_blob(azurite: Where, container: str, name: str, data: bytes, *, seal: bool | None = None) -> None:
    """Replace ``name`` by an append blob holding ``data``, with the same metadata and (unless told
    otherwise) the same seal state: what someone editing the blob behind the sink's back leaves."""
    if isinstance(azurite, MemorySpace):
        store = azurite.base.account.store(container)
        info = store.properties(name)
        assert info is not None
        break_lease(azurite, container, name)
        azurite.base.account.delete(container, name)
        store.create_append_blob(name, info.metadata)
        step = 4 * 1024 * 1024
        for start in range(0, len(data), step):
            store.append_block(name, data[start : start + step], start)
        if info.sealed if seal is None else seal:
            store.seal(name, len(data))
        return
    client = blob(azurite, container, name)
    props = client.get_blob_properties()
    break_lease(azurite, container, name)
    client.delete_blob()
    client.create_append_blob(metadata=props.metadata)
    step = 4 * 1024 * 1024
    for start in range(0, len(data), step):
        client.append_block(data[start : start + step])
    if props.is_append_blob_sealed if seal is None else seal:
        client.seal_append_blob()


def flip_byte(azurite: Where, container: str, name: str, offset: int) -> None:
    data = bytearray(read_blob(azurite, container, name))
    data[offset] ^= 0x01
    rewrite_blob(azurite, container, name, bytes(data))


def manifest_records(
    azurite: Where, container: str, *, blob_path: str = BLOB, run_id: str = "run-1"
) -> list[DecodedRecord]:
    return decode_records(read_blob(azurite, container, manifest_name(blob_path, run_id)))


def committed_entries(azurite: Where, container: str, **where: Any) -> list[BlockEntry]:
    return [
        d.record for d in manifest_records(azurite, container, **where) if isinstance(d.record, BlockEntry)
    ]


def edit_entry_sha(
    azurite: Where, container: str, seq: int, *, blob_path: str = BLOB, run_id: str = "run-1"
) -> None:
    """Change one hex digit of the sha256 in manifest record ``seq`` (a block entry), in place."""
    name = manifest_name(blob_path, run_id)
    raw = bytearray(read_blob(azurite, container, name))
    record = manifest_records(azurite, container, blob_path=blob_path, run_id=run_id)[seq]
    assert isinstance(record.record, BlockEntry)
    key = b'"sha256":"'
    at = raw.index(key, record.offset, record.offset + record.length) + len(key)
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    rewrite_blob(azurite, container, name, bytes(raw))


def segment(index: int, blob_path: str = BLOB) -> str:
    return segment_name(blob_path, index)


def forge_foreign_rows(
    azurite: Azurite, container: str, rows: bytes, *, blob_path: str = BLOB, run_id: str = "run-1"
) -> BlockEntry:
    """Append ``rows`` (whole lines) to the output's last segment and forge, on top of the run's
    manifest, the block entry a writer would have recorded for them: the next seq, linked to the
    head, with their sha256, tokens, row lengths or digests and a new write call. The manifest is
    rewritten with the same bytes plus that record, so its chain is unbroken and every byte is
    described: plain verify passes. The forged entry is returned."""
    decoded = manifest_records(azurite, container, blob_path=blob_path, run_id=run_id)
    last = [d.record for d in decoded if isinstance(d.record, BlockEntry)][-1]
    name = segment_name(blob_path, last.segment)
    client = blob(azurite, container, name)
    offset = client.get_blob_properties().size
    break_lease(azurite, container, name)
    client.append_block(rows)
    lengths = [len(line) for line in rows.splitlines(keepends=True)]
    forged = replace(
        last,
        seq=len(decoded),
        prev=decoded[-1].hash,
        offset=offset,
        length=len(rows),
        sha256=hashlib.sha256(rows).hexdigest(),
        tokens=TokenRange(last.tokens.end, last.tokens.end + len(lengths)),
        write_call=last.write_call + 1,
        batch=len(decoded),
        lengths=struct.pack(f">{len(lengths)}I", *lengths) if last.lengths else b"",
        digests=b"" if last.lengths else content_digests(rows, lengths),
    )
    manifest = manifest_name(blob_path, run_id)
    data = read_blob(azurite, container, manifest) + encode_record(forged)
    rewrite_blob(azurite, container, manifest, data)
    return forged


def drop_last_call(azurite: Azurite, container: str, *, blob_path: str = BLOB, run_id: str = "run-1") -> int:
    """Remove the run's last write call without a trace in the container: recreate its manifest
    without the records from that call's first block on (a seal after it goes too), and its
    segment without that block's bytes (unsealed; later segments deleted). Every remaining record
    links and every remaining byte is described, so plain verify passes. Returns the call."""
    decoded = manifest_records(azurite, container, blob_path=blob_path, run_id=run_id)
    entries = [d for d in decoded if isinstance(d.record, BlockEntry)]
    calls = [d.record.write_call for d in entries if isinstance(d.record, BlockEntry)]
    first = entries[calls.index(calls[-1])]
    call, entry = calls[-1], first.record
    assert isinstance(entry, BlockEntry)
    manifest = manifest_name(blob_path, run_id)
    rewrite_blob(azurite, container, manifest, read_blob(azurite, container, manifest)[: first.offset])
    name = segment_name(blob_path, entry.segment)
    rewrite_blob(azurite, container, name, read_blob(azurite, container, name)[: entry.offset], seal=False)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    index = entry.segment + 1
    while (later := service.get_blob_client(container, segment_name(blob_path, index))).exists():
        break_lease(azurite, container, later.blob_name)
        later.delete_blob()
        index += 1
    return call


def rewrite_rows_in_place(
    azurite: Azurite, container: str, entry_seq: int, *, blob_path: str = BLOB, run_id: str = "run-1"
) -> BlockEntry:
    """Change the bytes of block entry ``entry_seq`` (same length: one digit of its first row) and
    make the manifest agree: a new sha256 for that entry, and every record from it on re-linked,
    so the chain is whole again. Plain verify passes. Returns the edited entry."""
    decoded = manifest_records(azurite, container, blob_path=blob_path, run_id=run_id)
    entry = decoded[entry_seq].record
    assert isinstance(entry, BlockEntry)
    name = segment_name(blob_path, entry.segment)
    data = bytearray(read_blob(azurite, container, name))
    block = data[entry.offset : entry.end]
    at = next(i for i, byte in enumerate(block) if chr(byte).isdigit())
    block[at] = ord("1") if block[at] != ord("1") else ord("2")
    data[entry.offset : entry.end] = block
    rewrite_blob(azurite, container, name, bytes(data))
    manifest = manifest_name(blob_path, run_id)
    raw = bytearray(read_blob(azurite, container, manifest)[: decoded[entry_seq].offset])
    head = decoded[entry_seq - 1].hash
    edited = replace(entry, sha256=hashlib.sha256(bytes(block)).hexdigest())
    for d in decoded[entry_seq:]:
        record = replace(edited if d.record is entry else d.record, prev=head)
        encoded = encode_record(record)
        raw += encoded
        head = record_hash(encoded)
    rewrite_blob(azurite, container, manifest, bytes(raw))
    return edited
