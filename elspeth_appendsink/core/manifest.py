"""The run-scoped manifest: what every append committed, as a hash-chained sequence of records.

A manifest is one append blob per run (``<blob_path>.manifest/<run_id>``) holding records, each
framed so that a reader can walk the blob without any index::

    b"EAS1" | header length (u32 BE) | body length (u32 BE) | header | body

``header`` is canonical JSON (sorted keys, compact); ``body`` is binary, for block entries one
fixed-size value per row: the row's 4-byte length (header ``"body": "lengths"``) or its 8-byte
identity digest. Lengths are used where a block is its rows' bytes back to back and a row's
identity follows from those bytes (CSV and JSONL without ``identity_fields``): the digests are
derived from the segment's bytes, not computed while writing. An Arrow block with content identity usually
carries no body (``"body": "derived"``): recovery rebuilds its rows' identities from the decoded
record batch (:meth:`~elspeth_appendsink.encoders.arrow.ArrowEncoder.row_digests`). Arrow blocks
whose values the batch does not keep exactly, and ``identity_fields`` identities, carry digests.

Every header carries ``prev``, the sha256 of the previous record's full bytes, so editing,
dropping or reordering any record breaks the chain (the first record links to the last record of
the run it continues, or to ``GENESIS``). Record kinds (ordered by :mod:`.protocol.writer`):

* :class:`OpenRecord` — run id, resolved blob path, format decisions, identity scheme, limits,
  the pre-existing bytes of segment 0 and the earlier runs this one continues.
* :class:`BlockEntry` — the *intent* to append one block: segment, offset, length, sha256, token
  range, write call, row lengths or digests. Written before the data (several intents may share
  one manifest append, a *batch*, named by the seq of its first entry); committed once its bytes
  are in the segment at that offset, which recovery proves by length and sha256.
* :class:`VoidRecord` — block intents that provably never landed: the named entry and the rest
  of its batch (recovery, or a segment that refused more blocks, writes it).
* :class:`RolloverRecord` — intent to seal a full segment at its final length and open the next.
* :class:`SealRecord` — the output's last segment was sealed on completion.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from elspeth_appendsink.errors import ManifestCorruptError

__all__ = [
    "GENESIS",
    "BlockEntry",
    "ManifestReader",
    "OpenRecord",
    "Record",
    "RolloverRecord",
    "SealRecord",
    "TokenRange",
    "VoidRecord",
    "decode_records",
    "encode_record",
]

MAGIC = b"EAS1"
_PREFIX = struct.Struct(">4sII")
GENESIS = "0" * 64
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TokenRange:
    """Half-open range ``[start, end)`` of row sequence numbers within a run."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad token range [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class OpenRecord:
    kind: ClassVar[str] = "open"
    seq: int
    prev: str
    run_id: str
    container: str
    blob_path: str
    encoder: dict[str, Any]
    identity: dict[str, Any]
    block_size: int
    segment_max_blocks: int
    segment_max_bytes: int | None
    if_exists: str
    base_segment: int  # the segment this run's first block goes to
    base_length: int  # bytes already in that segment before this run's first block
    base_sha256: str  # sha256 of those bytes (for append mode); of b"" when none
    continues: tuple[str, ...]  # run ids of earlier runs of this output, oldest first
    header_written: bool  # whether this run writes the format header at the start of its first block
    created_at: str
    sink_version: str


@dataclass(frozen=True, slots=True)
class BlockEntry:
    kind: ClassVar[str] = "block"
    seq: int
    prev: str
    segment: int
    offset: int
    length: int
    sha256: str
    tokens: TokenRange
    write_call: int
    batch: int  # seq of the first entry of the manifest append that carried this one
    digests: bytes = field(repr=False)  # 8 bytes per row, in token order; b"" when `lengths` is set
    # 4-byte big-endian length per row, in token order. The rows are the block's last bytes
    # (a CSV header line may come first), so each row's identity digest follows from the segment.
    lengths: bytes = field(default=b"", repr=False)
    # No body: the rows' identity digests follow from the block's own bytes (an Arrow record
    # batch, decoded at recovery). Neither digests nor lengths are set then.
    derived: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.length

    def row_lengths(self) -> list[int]:
        """The rows' byte lengths (only for an entry that carries lengths)."""
        return list(struct.unpack(f">{len(self.lengths) // 4}I", self.lengths))

    def digest_list(self) -> list[bytes]:
        d = self.digests
        return [d[i : i + 8] for i in range(0, len(d), 8)]


@dataclass(frozen=True, slots=True)
class VoidRecord:
    kind: ClassVar[str] = "void"
    seq: int
    prev: str
    voids: int  # seq of the first BlockEntry that never landed; later entries of its batch neither
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class RolloverRecord:
    kind: ClassVar[str] = "rollover"
    seq: int
    prev: str
    segment: int  # the segment being sealed
    final_length: int
    next_segment: int
    reason: str


@dataclass(frozen=True, slots=True)
class SealRecord:
    kind: ClassVar[str] = "seal"
    seq: int
    prev: str
    segment: int
    final_length: int


Record = OpenRecord | BlockEntry | VoidRecord | RolloverRecord | SealRecord
_KINDS: dict[str, type[Any]] = {
    cls.kind: cls for cls in (OpenRecord, BlockEntry, VoidRecord, RolloverRecord, SealRecord)
}


def _header_of(record: Record) -> dict[str, Any]:
    header: dict[str, Any] = {"kind": record.kind, "v": FORMAT_VERSION}
    for name in record.__dataclass_fields__:
        if name in ("digests", "lengths", "derived"):
            continue
        value = getattr(record, name)
        if isinstance(value, TokenRange):
            value = [value.start, value.end]
        elif isinstance(value, tuple):
            value = list(value)
        header[name] = value
    if isinstance(record, BlockEntry) and record.lengths:
        header["body"] = "lengths"
    elif isinstance(record, BlockEntry) and record.derived:
        header["body"] = "derived"
    return header


def encode_record(record: Record) -> bytes:
    """Frame one record. Deterministic: the same record always gives the same bytes."""
    header = json.dumps(_header_of(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    head = header.encode("utf-8")
    body = (record.lengths or record.digests) if isinstance(record, BlockEntry) else b""
    return _PREFIX.pack(MAGIC, len(head), len(body)) + head + body


def record_hash(encoded: bytes) -> str:
    """The chain hash of one encoded record (what the next record's ``prev`` must be)."""
    return hashlib.sha256(encoded).hexdigest()


def _build(header: dict[str, Any], body: bytes, where: str) -> Record:
    kind = header.pop("kind", None)
    version = header.pop("v", None)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None or version != FORMAT_VERSION:
        raise ManifestCorruptError(f"unknown manifest record kind {kind!r} (format v{version}) {where}")
    try:
        if cls is BlockEntry:
            tokens = header.pop("tokens")
            header["tokens"] = TokenRange(int(tokens[0]), int(tokens[1]))
            body_kind = header.pop("body", "digests")
            if body_kind not in ("digests", "lengths", "derived"):
                raise ValueError(f"unknown body kind {body_kind!r}")
            header["digests"], header["lengths"] = (b"", body) if body_kind == "lengths" else (body, b"")
            header["derived"] = body_kind == "derived"
        elif cls is OpenRecord:
            header["continues"] = tuple(header["continues"])
        record: Record = cls(**header)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ManifestCorruptError(f"malformed {kind} record {where}: {exc}") from exc
    if not isinstance(record, BlockEntry) and body:  # else a forged length could swallow later records
        raise ManifestCorruptError(
            f"{kind} record {where} carries {len(body)} body bytes; only blocks have one"
        )
    if isinstance(record, BlockEntry):
        size, what = (0, "body") if record.derived else (4, "length") if record.lengths else (8, "digest")
        if len(body) != size * len(record.tokens):
            raise ManifestCorruptError(
                f"block record {where} has {len(body)} {what} bytes for {len(record.tokens)} rows"
            )
        if record.lengths and sum(record.row_lengths()) > record.length:
            raise ManifestCorruptError(f"block record {where}: its rows are longer than the block")
    return record


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A record with where it sits in the manifest blob and its chain hash."""

    record: Record
    offset: int
    length: int
    hash: str


class ManifestReader:
    """Incremental decoder: feed bytes as they stream in, get whole records out.

    Checks framing, the hash chain and sequence numbers as it goes. ``expect_prev`` is the hash
    the first record must link to (``GENESIS`` or the continued run's last record hash).
    """

    def __init__(self, name: str = "manifest", expect_prev: str | None = None) -> None:
        self.name = name
        self._buf = bytearray()
        self._offset = 0  # offset of _buf[0] in the blob
        self.head = expect_prev
        self.next_seq = 0

    def feed(self, data: bytes) -> Iterator[DecodedRecord]:
        self._buf += data
        while True:
            if len(self._buf) < _PREFIX.size:
                return
            magic, hlen, blen = _PREFIX.unpack_from(self._buf)
            where = f"at offset {self._offset} of {self.name}"
            if magic != MAGIC:
                raise ManifestCorruptError(f"bad record magic {bytes(magic)!r} {where}")
            total = _PREFIX.size + hlen + blen
            if len(self._buf) < total:
                return
            raw = bytes(self._buf[:total])
            try:
                header = json.loads(raw[_PREFIX.size : _PREFIX.size + hlen])
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ManifestCorruptError(f"undecodable record header {where}: {exc}") from exc
            if not isinstance(header, dict):
                raise ManifestCorruptError(f"record header is not an object {where}")
            record = _build(header, raw[_PREFIX.size + hlen :], where)
            if record.seq != self.next_seq:
                raise ManifestCorruptError(f"record seq {record.seq} where {self.next_seq} was due {where}")
            if self.head is not None and record.prev != self.head:
                raise ManifestCorruptError(
                    f"hash chain broken {where}: record {record.seq} links to "
                    f"{record.prev[:12]}…, previous record hashes to {self.head[:12]}…"
                )
            digest = record_hash(raw)
            yield DecodedRecord(record, self._offset, total, digest)
            self.head = digest
            self.next_seq += 1
            del self._buf[:total]
            self._offset += total

    def finish(self) -> None:
        """Raise if bytes remain that do not form a whole record (a torn or foreign tail)."""
        if self._buf:
            raise ManifestCorruptError(
                f"{len(self._buf)} trailing bytes at offset {self._offset} of {self.name} "
                "are not a whole record"
            )


def decode_records(
    data: bytes, name: str = "manifest", expect_prev: str | None = None
) -> list[DecodedRecord]:
    """Decode a whole manifest held in memory (tests and tools; the writer streams)."""
    reader = ManifestReader(name, expect_prev)
    out = list(reader.feed(data))
    reader.finish()
    return out
