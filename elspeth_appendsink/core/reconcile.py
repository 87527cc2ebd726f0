"""Reconciliation: what a manifest says happened, checked against what the segments hold.

Pure functions over decoded records and observed segment lengths; no I/O. The write protocol
(:mod:`writer`) guarantees that a manifest append is sent only after every block it described
before is durable, so a manifest read back after a crash means exactly this:

* every :class:`BlockEntry` of an earlier *batch* (manifest append) is **committed** — its
  bytes are in its segment at its offset — except entries a :class:`VoidRecord` names;
* the **last** batch may be unfinished: its blocks were appended in order, so the segment's
  length says how many landed (sha256 then proves them) and the rest never will;
* a trailing :class:`RolloverRecord` may be unfinished too: the seal and the next segment are
  idempotent steps that are simply redone.

:func:`walk` turns one run's records into a :class:`RunLayout`; :func:`expected_lengths`
combines the runs of one output; :func:`classify_pending` decides how much of the last batch
landed; :func:`continued_prefix` is a run's manifest as the next run of its output read it.
Anything else that does not fit raises — never guesses, never truncates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from elspeth_appendsink.core.manifest import (
    BlockEntry,
    DecodedRecord,
    OpenRecord,
    RolloverRecord,
    SealRecord,
    VoidRecord,
)
from elspeth_appendsink.errors import ManifestCorruptError, UndescribedBytesError

__all__ = ["RunLayout", "classify_pending", "continued_prefix", "expected_lengths", "walk"]


@dataclass
class RunLayout:
    """One run's manifest, interpreted."""

    open: OpenRecord
    committed: list[BlockEntry] = field(default_factory=list)
    pending: list[BlockEntry] = field(default_factory=list)  # the last batch: landing not yet proven
    pending_rollover: RolloverRecord | None = None
    sealed: dict[int, int] = field(default_factory=dict)  # segment -> final length
    segment: int = 0  # the segment the run appends to at the end of its manifest
    segment_ends: dict[int, int] = field(default_factory=dict)  # committed end per segment
    head: str = ""
    next_seq: int = 0
    manifest_length: int = 0
    next_token: int = 0
    voided: int = 0
    last_call_begun: int = -1  # highest write call with any intent, landed or not

    def adopt_pending(self, count: int) -> None:
        """The first ``count`` pending intents were proven landed: count them as committed."""
        for entry in self.pending[:count]:
            self.committed.append(entry)
            self.segment_ends[entry.segment] = entry.end
            self.next_token = entry.tokens.end
        self.pending = []

    @property
    def last_write_call(self) -> int:
        return self.committed[-1].write_call if self.committed else -1


def walk(records: Sequence[DecodedRecord], name: str = "manifest") -> RunLayout:
    """Interpret one run's records (already framed and chain-checked by the reader)."""
    if not records or not isinstance(records[0].record, OpenRecord):
        raise ManifestCorruptError(f"{name} does not start with an open record")
    opening = records[0].record
    layout = RunLayout(open=opening, segment=opening_segment(opening))
    layout.segment_ends[layout.segment] = opening.base_length
    batch: list[BlockEntry] = []  # intents of the latest manifest append, not yet known to have landed

    def settle(upto: int | None = None) -> None:
        """Entries of the open batch before seq ``upto`` (all, if None) are committed."""
        nonlocal batch
        for entry in batch:
            if upto is not None and entry.seq >= upto:
                break
            layout.committed.append(entry)
            layout.segment_ends[entry.segment] = entry.end
            layout.next_token = entry.tokens.end
        batch = []

    for decoded in records[1:]:
        record = decoded.record
        where = f"record {record.seq} of {name}"
        if isinstance(record, BlockEntry):
            layout.last_call_begun = max(layout.last_call_begun, record.write_call)
        if isinstance(record, VoidRecord):
            if not batch or not any(e.seq == record.voids for e in batch):
                raise ManifestCorruptError(
                    f"{where} voids record {record.voids}, which is not an open intent"
                )
            layout.voided += sum(1 for e in batch if e.seq >= record.voids)
            settle(upto=record.voids)
            continue
        if isinstance(record, BlockEntry) and batch and record.batch == batch[0].batch:
            previous = batch[-1]
            if record.segment != previous.segment or record.offset != previous.end:
                raise ManifestCorruptError(f"{where} does not follow record {previous.seq} of its batch")
            if record.tokens.start != previous.tokens.end:
                raise ManifestCorruptError(
                    f"{where} starts at row {record.tokens.start}, expected {previous.tokens.end}"
                )
            batch.append(record)
            continue
        settle()
        layout.pending_rollover = None  # any record after a rollover means it was finished
        if isinstance(record, BlockEntry):
            expected = layout.segment_ends.get(layout.segment, 0)
            if record.batch != record.seq:
                raise ManifestCorruptError(f"{where} claims batch {record.batch} but starts a new one")
            # A seal (or rollover) fixed the segment's final length; a block after it would put
            # bytes past that length that no reader of the sealed layout expects.
            if record.segment in layout.sealed:
                raise ManifestCorruptError(
                    f"{where} places a block in segment {record.segment}, "
                    f"which was sealed at {layout.sealed[record.segment]} bytes"
                )
            if record.segment != layout.segment or record.offset != expected:
                raise ManifestCorruptError(
                    f"{where} places a block at segment {record.segment} offset {record.offset}; "
                    f"the manifest's layout puts the next block at segment {layout.segment} offset {expected}"
                )
            if record.tokens.start != layout.next_token:
                raise ManifestCorruptError(
                    f"{where} starts at row {record.tokens.start}, expected {layout.next_token}"
                )
            batch = [record]
        elif isinstance(record, RolloverRecord):
            end = layout.segment_ends.get(layout.segment, 0)
            if (
                record.segment != layout.segment
                or record.final_length != end
                or record.next_segment != record.segment + 1
            ):
                raise ManifestCorruptError(
                    f"{where}: rollover of segment {record.segment} at {record.final_length} "
                    f"does not match the layout (segment {layout.segment}, end {end})"
                )
            layout.sealed[record.segment] = record.final_length
            layout.segment = record.next_segment
            layout.segment_ends.setdefault(layout.segment, 0)
            layout.pending_rollover = record
        elif isinstance(record, SealRecord):
            layout.sealed[record.segment] = record.final_length
        else:
            raise ManifestCorruptError(f"{where}: unexpected {record.kind} record")
    layout.pending = batch
    last = records[-1]
    layout.head = last.hash
    layout.next_seq = last.record.seq + 1
    layout.manifest_length = last.offset + last.length
    return layout


#: What a writer records before a guarded request to a segment it fences: all a writer that lost
#: the segment's lease can have recorded after another run took the output over.
_BEFORE_A_SEGMENT_REQUEST = (BlockEntry, RolloverRecord, SealRecord)


def continued_prefix(records: Sequence[DecodedRecord], link: str) -> Sequence[DecodedRecord]:
    """A run's records as far as the next run of its output read them.

    ``link`` is the next run's ``open.prev``: the hash of the last record it read here, after it
    had leased the segment. Records after that one were written later by this run's own writer,
    paused past its lease in the instant between confirming the lease and appending to its
    manifest (a different blob: the segment's lease cannot guard it). Losing the lease, that
    writer could append no byte to any segment after them, so they describe nothing and are left
    out — when they are only what a writer records before a segment request (intents, a rollover,
    a seal); a scan still proves it, since any byte they did describe would be undescribed. A
    link to no record here, or anything else after it, returns ``records`` unchanged: the chain
    is broken and the caller says so.
    """
    for index, decoded in enumerate(records):
        if decoded.hash == link:
            tail = records[index + 1 :]
            if tail and all(isinstance(d.record, _BEFORE_A_SEGMENT_REQUEST) for d in tail):
                return records[: index + 1]
            break
    return records


def opening_segment(opening: OpenRecord) -> int:
    """The segment a run's first block goes to."""
    return opening.base_segment


def expected_lengths(layouts: Sequence[RunLayout]) -> dict[int, int]:
    """Committed length of every segment across the runs of one output, oldest run first."""
    ends: dict[int, int] = {}
    for layout in layouts:
        for segment, end in layout.segment_ends.items():
            ends[segment] = max(ends.get(segment, 0), end)
    return ends


def classify_pending(pending: Sequence[BlockEntry], observed_size: int, segment_name: str) -> int:
    """How many of the last batch's intents landed, from their segment's observed length.

    Blocks of a batch are appended in order, each only after the previous one landed, so the
    segment's length must be exactly the batch's start or the end of one of its entries. The
    landed ones must still be proven by sha256 (the caller reads them).
    """
    start = pending[0].offset
    if observed_size == start:
        return 0
    if observed_size < start:
        raise UndescribedBytesError(
            f"segment {segment_name} is {observed_size} bytes, but the manifest describes {start} bytes "
            f"before its last intents: bytes [{observed_size}, {start}) are missing "
            "(was the blob deleted or replaced?)"
        )
    for count, entry in enumerate(pending, start=1):
        if observed_size == entry.end:
            return count
    # The intents that fit are the landed ones (as verify adopts them): the first byte no entry
    # describes is where the last of them ends, not where the batch began.
    described = max((e.end for e in pending if e.end <= observed_size), default=start)
    raise UndescribedBytesError(
        f"segment {segment_name} is {observed_size} bytes; the manifest's last intents expect it to end at "
        f"one of {[start, *(e.end for e in pending)]} — bytes [{described}, {observed_size}) "
        f"({observed_size - described} bytes) are not described by any manifest entry",
    )
