"""Reconciliation: what a manifest says happened, checked against what the segments hold.

Pure functions over decoded records and observed segment lengths; no I/O. The write protocol
(:mod:`writer`) guarantees that a record is appended only after the step before it is durable,
so a manifest read back after a crash means exactly this:

* every :class:`BlockEntry` followed by any record other than a :class:`VoidRecord` naming it
  is **committed** — its bytes are in its segment at its offset;
* the manifest's **last** record may be an unfinished step: a block intent (its bytes may or
  may not have landed — the segment's length says which, and sha256 proves it), or a rollover
  (the seal / next segment may be missing — both steps are idempotent and are simply redone).

:func:`walk` turns one run's records into a :class:`RunLayout`; :func:`expected_lengths`
combines the runs of one output; :func:`classify_pending` decides the fate of an unfinished
intent. Anything else that does not fit raises — never guesses, never truncates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from elspeth_appendsink.errors import ManifestCorruptError, UndescribedBytesError
from elspeth_appendsink.manifest import (
    BlockEntry,
    DecodedRecord,
    OpenRecord,
    RolloverRecord,
    SealRecord,
    VoidRecord,
)

__all__ = ["PendingFate", "RunLayout", "classify_pending", "expected_lengths", "walk"]


@dataclass
class RunLayout:
    """One run's manifest, interpreted."""

    open: OpenRecord
    committed: list[BlockEntry] = field(default_factory=list)
    pending: BlockEntry | None = None
    pending_rollover: RolloverRecord | None = None
    sealed: dict[int, int] = field(default_factory=dict)  # segment -> final length
    segment: int = 0  # the segment the run appends to at the end of its manifest
    segment_ends: dict[int, int] = field(default_factory=dict)  # committed end per segment
    head: str = ""
    next_seq: int = 0
    manifest_length: int = 0
    next_token: int = 0
    voided: int = 0

    def adopt_pending(self) -> None:
        """The pending intent was proven landed: count it as committed."""
        entry = self.pending
        if entry is not None:
            self.committed.append(entry)
            self.segment_ends[entry.segment] = entry.end
            self.next_token = entry.tokens.end
            self.pending = None

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
    candidate: BlockEntry | None = None

    def settle() -> None:
        nonlocal candidate
        if candidate is not None:
            layout.committed.append(candidate)
            layout.segment_ends[candidate.segment] = candidate.end
            layout.next_token = candidate.tokens.end
            candidate = None

    for decoded in records[1:]:
        record = decoded.record
        where = f"record {record.seq} of {name}"
        if isinstance(record, VoidRecord):
            if candidate is None or candidate.seq != record.voids:
                raise ManifestCorruptError(
                    f"{where} voids record {record.voids}, which is not the open intent"
                )
            candidate = None
            layout.voided += 1
            continue
        settle()
        layout.pending_rollover = None  # any record after a rollover means it was finished
        if isinstance(record, BlockEntry):
            expected = layout.segment_ends.get(layout.segment, 0)
            if record.segment != layout.segment or record.offset != expected:
                raise ManifestCorruptError(
                    f"{where} places a block at segment {record.segment} offset {record.offset}; "
                    f"the manifest's layout puts the next block at segment {layout.segment} offset {expected}"
                )
            if record.tokens.start != layout.next_token:
                raise ManifestCorruptError(
                    f"{where} starts at row {record.tokens.start}, expected {layout.next_token}"
                )
            candidate = record
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
    layout.pending = candidate
    last = records[-1]
    layout.head = last.hash
    layout.next_seq = last.record.seq + 1
    layout.manifest_length = last.offset + last.length
    return layout


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


class PendingFate(Enum):
    LANDED_IF_SHA_MATCHES = "landed_if_sha_matches"
    NOT_LANDED = "not_landed"


def classify_pending(entry: BlockEntry, observed: Mapping[int, int], segment_name: str) -> PendingFate:
    """Decide an unfinished block intent from its segment's observed length."""
    size = observed.get(entry.segment, 0)
    if size == entry.offset:
        return PendingFate.NOT_LANDED
    if size == entry.end:
        return PendingFate.LANDED_IF_SHA_MATCHES
    raise UndescribedBytesError(
        f"segment {segment_name} is {size} bytes; the manifest's last intent expects either {entry.offset} "
        f"(block not landed) or {entry.end} (block landed) — bytes [{min(size, entry.offset)}, "
        f"{max(size, entry.offset)}) are not described by any manifest entry",
    )
