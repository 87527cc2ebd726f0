"""The one read-only walk of an output's segments against its manifests.

Writer recovery (:mod:`~elspeth_appendsink.protocol.recovery`, ``if_exists: continue``),
:func:`~elspeth_appendsink.protocol.verify.verify_output` and
:func:`~elspeth_appendsink.protocol.verify.inspect_output` all ask the same questions of the same
bytes, and this module alone answers them:

- which :class:`Region` of a segment each committed entry (or the first run's pre-existing
  bytes) describes (:func:`regions`), and whether the regions cover the segment exactly
  (:func:`cover` — gaps, overlaps, missing bytes);
- streaming every segment once, in order (:func:`scan_segments`): each region's sha256, the
  running sha256 of the whole output (as the writer's ``content_hash`` is computed), the rows'
  identity digests of the entries the caller selects (computed from the bytes by a function the
  caller passes, :data:`DigestsFromBytes`), and the *prefix hashes* — for each write call of
  each run, the sha256 and size of the whole output at the end of that call's last committed
  block (:class:`~elspeth_appendsink.core.anchor.Prefix`);
- which segments the runs need, and which of them are gone (:func:`require_segments`, asked
  by recovery before anything is written; :func:`segment_runs` names the runs).

What a finding means is the caller's policy: ``strict`` scans (the writer's recovery, which must
not write after bytes it cannot account for) raise :class:`~elspeth_appendsink.errors.
UndescribedBytesError` at the first one; the others (verify) collect :class:`Problem` values and
read on. Reading manifests strictly (:func:`read_manifest`) is here too; verify's tolerant
reading, which reports a broken record and reads past it, stays in verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from elspeth_appendsink.core.anchor import Prefix
from elspeth_appendsink.core.identity import content_digests
from elspeth_appendsink.core.manifest import GENESIS, BlockEntry, DecodedRecord, ManifestReader
from elspeth_appendsink.core.paths import segment_name
from elspeth_appendsink.core.reconcile import RunLayout, expected_lengths
from elspeth_appendsink.errors import BlobTypeError, UndescribedBytesError
from elspeth_appendsink.storage.base import BlobInfo, Store

__all__ = [
    "DigestsFromBytes",
    "Location",
    "Problem",
    "ProblemKind",
    "ProgressCallback",
    "Region",
    "ScanResult",
    "ScannedRun",
    "cover",
    "missing_segment",
    "read_manifest",
    "regions",
    "require_segments",
    "row_digests_from_lengths",
    "scan_segments",
    "segment_runs",
    "undescribed",
]

#: Called as ``progress(bytes_done, bytes_total)`` while segments are streamed.
ProgressCallback = Callable[[int, int], None]

#: ``(entry, that entry's block bytes) -> packed 8-byte row identity digests``.
DigestsFromBytes = Callable[[BlockEntry, bytes], bytes]


def row_digests_from_lengths(entry: BlockEntry, block: bytes) -> bytes:
    """Content identity of an entry that records its rows' lengths (CSV / JSONL)."""
    return content_digests(block, entry.row_lengths())


class ProblemKind(StrEnum):
    """What kind of problem verification found."""

    MANIFEST_CORRUPT = "manifest_corrupt"  # a record cannot be decoded (framing, JSON, seq, torn tail)
    CHAIN_BROKEN = "chain_broken"  # a record does not link to the one before it (edited / dropped)
    MANIFEST_LAYOUT = "manifest_layout"  # records decode but do not fit together (offsets, tokens)
    RUN_CHAIN = "run_chain"  # the runs of the output do not continue one another
    UNLINKED_RUN = "unlinked_run"  # a run appended onto earlier runs' output without continuing them
    UNDESCRIBED_BYTES = "undescribed_bytes"  # bytes no manifest entry accounts for
    MISSING_BYTES = "missing_bytes"  # the manifests describe bytes the segment does not hold
    OVERLAP = "overlap"  # two descriptions of the same bytes
    SHA_MISMATCH = "sha_mismatch"  # an entry's bytes do not hash to its recorded sha256
    SEAL = "seal"  # a recorded seal is not done, or at another length
    BLOB_TYPE = "blob_type"  # a segment is not an append blob


@dataclass(frozen=True, slots=True)
class Location:
    """Where a problem is: a blob, a byte offset in it, and the manifest record concerned."""

    blob: str
    offset: int | None = None
    record: int | None = None  # seq of the record in ``manifest`` (or in ``blob`` when it is one)
    manifest: str | None = None

    def __str__(self) -> str:
        text = self.blob
        if self.offset is not None:
            text += f" at offset {self.offset}"
        if self.record is not None:
            text += f", record {self.record}"
            if self.manifest is not None and self.manifest != self.blob:
                text += f" of {self.manifest}"
        return text


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is wrong with the output."""

    kind: ProblemKind
    location: Location
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.location}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "location": asdict(self.location), "message": self.message}


@dataclass(frozen=True, slots=True)
class ScannedRun:
    """One run as the scan needs it: its interpreted manifest, the manifest's name, its run id
    (as the manifest is named; verify reports an open record that names another)."""

    layout: RunLayout
    manifest: str
    run_id: str


@dataclass(slots=True)
class Region:
    """Bytes ``[offset, offset+length)`` of a segment and what describes them."""

    offset: int
    length: int
    sha256: str | None  # None: not hashed (pre-existing bytes of an ``append`` run)
    what: str
    record: int | None
    manifest: str | None
    entry: BlockEntry | None = None  # None: the first run's pre-existing bytes
    run_id: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def is_entry(self) -> bool:
        return self.entry is not None


def regions(runs: Sequence[ScannedRun], index: int) -> list[Region]:
    """The regions of segment ``index`` the runs (oldest first) describe, by offset."""
    out = []
    if runs:
        first = runs[0].layout.open
        if index == first.base_segment and first.base_length:
            out.append(
                Region(
                    0,
                    first.base_length,
                    None if first.base_sha256 == GENESIS else first.base_sha256,
                    f"the bytes that were there before run {first.run_id}",
                    0,
                    runs[0].manifest,
                )
            )
    for run in runs:
        run_id = run.run_id
        for entry in run.layout.committed:
            if entry.segment == index:
                out.append(
                    Region(
                        entry.offset,
                        entry.length,
                        entry.sha256,
                        f"entry {entry.seq} of run {run_id} (rows [{entry.tokens.start}, "
                        f"{entry.tokens.end}))",
                        entry.seq,
                        run.manifest,
                        entry,
                        run_id,
                    )
                )
    out.sort(key=lambda r: (r.offset, r.end))
    return out


def cover(name: str, size: int, described: list[Region], problems: list[Problem]) -> list[Region]:
    """Report gaps, overlaps and missing bytes; return the regions to hash (in bounds, disjoint).

    A region starting inside bytes already described is not kept; consecutive ones that claim
    what the same run already claims are reported once, naming both descriptions.
    """
    position = 0
    kept: list[Region] = []
    overlaps: list[tuple[Region, Region | None]] = []  # (region, the kept one holding its first byte)
    for region in described:
        if region.offset < position:
            holder = next((k for k in reversed(kept) if k.offset <= region.offset), None)
            overlaps.append((region, holder))
            continue
        if region.offset > position and position < size:
            problems.append(undescribed(name, position, min(region.offset, size)))
        if region.end > size:
            problems.append(
                Problem(
                    ProblemKind.MISSING_BYTES,
                    Location(name, max(region.offset, size), region.record, region.manifest),
                    f"{region.what} describes bytes [{region.offset}, {region.end}), but the segment "
                    f"holds only {size} bytes",
                )
            )
            position = max(position, size)
            continue
        kept.append(region)
        position = region.end
    if position < size:
        problems.append(undescribed(name, position, size))
    problems.extend(_overlap(name, group) for group in _runs_of(overlaps))
    return kept


def _runs_of(overlaps: list[tuple[Region, Region | None]]) -> list[list[tuple[Region, Region | None]]]:
    """Overlaps grouped: consecutive regions of one run over bytes one other description holds."""
    groups: list[list[tuple[Region, Region | None]]] = []
    for region, holder in overlaps:
        if groups:
            last, last_holder = groups[-1][-1]
            if (
                region.run_id == last.run_id
                and region.offset == last.end
                and (holder.run_id if holder else None) == (last_holder.run_id if last_holder else None)
            ):
                groups[-1].append((region, holder))
                continue
        groups.append([(region, holder)])
    return groups


def _overlap(name: str, group: list[tuple[Region, Region | None]]) -> Problem:
    claims = [region for region, _ in group]
    held = list({id(h): h for _, h in group if h is not None}.values())  # each holder once, in order
    first, last = claims[0], claims[-1]
    verb = "describes" if len(claims) == 1 else "describe"
    message = f"{_named(claims)} {verb} bytes [{first.offset}, {last.end}), but "
    if held:
        message += f"{_named(held)} already {'describes' if len(held) == 1 else 'describe'} them"
    else:
        message += "they are already described"
    if held and any(h.run_id != first.run_id for h in held):
        message += ": two runs claim the same bytes (two writers at once, without a lease?)"
    return Problem(ProblemKind.OVERLAP, Location(name, first.offset, first.record, first.manifest), message)


def _named(regions: list[Region]) -> str:
    """``entry 3 of run r1 (rows [0, 40))``, or for several of one run ``entries 3-9 of run r1
    (rows [0, 280))``."""
    first, last = regions[0], regions[-1]
    if len(regions) == 1:
        return first.what
    if first.entry is not None and last.entry is not None and all(r.run_id == first.run_id for r in regions):
        return (
            f"entries {first.entry.seq}-{last.entry.seq} of run {first.run_id} (rows "
            f"[{first.entry.tokens.start}, {last.entry.tokens.end}))"
        )
    return f"{first.what} to {last.what}"


def undescribed(name: str, start: int, end: int) -> Problem:
    return Problem(
        ProblemKind.UNDESCRIBED_BYTES,
        Location(name, start),
        f"bytes [{start}, {end}) ({end - start} bytes) are not described by any manifest entry "
        "(written by something other than this sink?)",
    )


def segment_runs(layouts: Sequence[RunLayout], index: int) -> list[str]:
    """The runs (oldest first) whose manifests need segment ``index``: they started in it, moved
    to it by a finished rollover, or an entry of theirs (committed or a pending intent) lies in it."""
    runs = []
    for layout in layouts:
        if (
            layout.open.base_segment == index
            or (layout.segment == index and layout.pending_rollover is None)
            or any(e.segment == index for e in layout.committed)
            or any(e.segment == index for e in layout.pending)
        ):
            runs.append(layout.open.run_id)
    return runs


def missing_segment(name: str, runs: Sequence[str], described: int) -> str:
    """What to say of segment ``name``, gone although ``runs`` describe ``described`` bytes in it."""
    who = f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(runs)}"
    what = f"describe {described} bytes in it" if described else "name it as theirs"
    return f"segment {name} is missing, but the manifests of {who} {what} (deleted behind the sink's back?)"


def require_segments(store: Store, blob_path: str, layouts: Sequence[RunLayout]) -> None:
    """Refuse an output one of whose segments the runs' manifests need is gone, or is no longer an
    append blob (replaced by another kind of blob).

    Called by resume and ``continue`` before any request that writes (a lease, a void record, a
    new segment 0): a run must never carry on over, or create anew, a segment whose bytes the
    manifests describe. Raises :class:`UndescribedBytesError` naming the first missing segment
    and the runs that describe it (:func:`segment_runs`), or :class:`BlobTypeError`.
    """
    ends = expected_lengths(layouts)
    for index in sorted(ends):
        runs = segment_runs(layouts, index)
        name = segment_name(blob_path, index)
        info = store.properties(name) if runs else None
        if info is not None and not info.is_append_blob:
            raise BlobTypeError(
                f"segment {name} of this output is no longer an append blob; nothing will be "
                "written to the output",
                blob=name,
                hint="it was replaced by another kind of blob: restore it, or write to a new blob_path",
            )
        if runs and info is None:
            pending = [e.end for layout in layouts for e in layout.pending if e.segment == index]
            described = max([ends.get(index, 0), *pending])
            raise UndescribedBytesError(
                missing_segment(segment_name(blob_path, index), runs, described)
                + ": nothing is written over a missing segment",
                hint="restore the segment blob (a soft-deleted version or a snapshot), or write the rows to "
                "a new blob_path; `elspeth-appendsink verify` lists what is missing",
            )


def _strict_cover(name: str, size: int, end: int, described: list[Region]) -> list[Region]:
    """Recovery's reading: the segment must be exactly what the manifests describe, or we stop.

    The error names the first byte where the two disagree: the first byte no region describes,
    the first described byte the segment does not hold, or the first byte described twice.
    """
    position = 0
    for region in described:
        if region.offset < position:
            raise UndescribedBytesError(
                f"segment {name}: {region.what} describes bytes [{region.offset}, {region.end}), but bytes "
                f"[{region.offset}, {min(position, region.end)}) are already described"
            )
        if region.offset > position and position < size:
            stop = min(region.offset, size)
            raise UndescribedBytesError(
                f"segment {name}: bytes [{position}, {stop}) ({stop - position} bytes) are not described by "
                f"any manifest entry (the next one is {region.what})"
            )
        if region.end > size:
            raise UndescribedBytesError(
                f"segment {name} is {size} bytes but {region.what} describes bytes [{region.offset}, "
                f"{region.end}): bytes [{size}, {max(end, region.end)}) are missing"
            )
        position = region.end
    if size > position:
        raise UndescribedBytesError(
            f"segment {name} is {size} bytes but the manifests describe {position}: bytes [{position}, "
            f"{size}) ({size - position} bytes) are not described by any manifest entry"
        )
    if position < end:
        raise UndescribedBytesError(
            f"segment {name} is {size} bytes but the manifests describe {end}: bytes [{size}, {end}) are "
            "missing"
        )
    return described


@dataclass(slots=True)
class ScanResult:
    """What one pass over the segments found."""

    full: Any  # the running sha256 of the whole output (a hashlib object the writer continues)
    size: int  # bytes in all segments scanned
    digests: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (segment, offset) -> digests
    prefixes: dict[str, list[Prefix]] = field(default_factory=dict)  # run id -> per write call
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0  # rows of the entries kept (each described byte counted once, and present)
    entries: dict[int, int] = field(default_factory=dict)  # segment -> entries kept
    base_matches: bool | None = None  # the first run's base hashed to its recorded sha256 (None: not hashed)

    @property
    def sha256(self) -> str:
        return str(self.full.hexdigest())


def _call_ends(runs: Sequence[ScannedRun]) -> dict[int, tuple[str, int]]:
    """``id(entry)`` of each write call's last committed block -> (run id, write call)."""
    last: dict[tuple[str, int], BlockEntry] = {}
    for run in runs:
        for entry in run.layout.committed:
            key = (run.run_id, entry.write_call)
            if key not in last or entry.seq > last[key].seq:
                last[key] = entry
    return {id(entry): key for key, entry in last.items()}


def scan_segments(
    store: Store,
    blob_path: str,
    runs: Sequence[ScannedRun],
    infos: dict[int, BlobInfo | None],
    *,
    strict: bool,
    described: dict[int, int],
    want_digests: Collection[int] = frozenset(),
    digests_from_bytes: DigestsFromBytes = row_digests_from_lengths,
    chunk: int = 8 * 1024 * 1024,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """Stream the segments in ``infos`` (by index, in order) once against ``runs`` (oldest first).

    ``described`` is each segment's length as the manifests give it
    (:func:`~elspeth_appendsink.core.reconcile.expected_lengths`). Entries whose ``id`` is in
    ``want_digests`` get ``digests_from_bytes(entry, block)`` into :attr:`ScanResult.digests`.
    ``strict`` raises :class:`UndescribedBytesError` at the first finding; otherwise findings
    become :attr:`ScanResult.problems`.
    """
    result = ScanResult(hashlib.sha256(), 0)
    ends = _call_ends(runs)
    total = sum(0 if info is None else info.size for info in infos.values())
    done = 0
    if progress is not None:
        progress(0, total)
    for index in sorted(infos):
        name = segment_name(blob_path, index)
        info = infos[index]
        expected = described.get(index, 0)
        if info is None:
            if expected > 0:
                missing = missing_segment(name, segment_runs([r.layout for r in runs], index), expected)
                if strict:
                    raise UndescribedBytesError(missing)
                result.problems.append(Problem(ProblemKind.MISSING_BYTES, Location(name, 0), missing))
            continue
        if not runs and info.size == 0:
            continue
        mine = regions(runs, index)
        if strict:
            kept = _strict_cover(name, info.size, expected, mine)
        else:
            kept = cover(name, info.size, mine, result.problems)
        counted = [region.entry for region in kept if region.entry is not None]
        result.rows += sum(len(entry.tokens) for entry in counted)
        result.entries[index] = len(counted)
        done = _stream_segment(
            store, name, info.size, kept, result, ends, want_digests, digests_from_bytes,
            strict=strict, chunk=chunk, done=done, total=total, progress=progress,
        )  # fmt: skip
    return result


def _stream_segment(
    store: Store,
    name: str,
    size: int,
    kept: list[Region],
    result: ScanResult,
    ends: dict[int, tuple[str, int]],
    want_digests: Collection[int],
    digests_from_bytes: DigestsFromBytes,
    *,
    strict: bool,
    chunk: int,
    done: int,
    total: int,
    progress: ProgressCallback | None,
) -> int:
    """Stream ``[0, size)`` once: feed the full-output hash, check each region, take digests and
    prefix hashes (the full hash is fed up to a write call's end before it is copied)."""
    full = result.full
    base = result.size  # the output's bytes before this segment
    index = 0
    current = hashlib.sha256()
    kept_bytes: list[bytes] = []  # the current region's bytes, when its rows' digests are wanted
    position = 0
    for piece in store.stream(name, length=size, chunk=chunk) if size else iter(()):
        end = position + len(piece)
        view = memoryview(piece)
        fed = 0  # bytes of this piece already in the full hash
        while index < len(kept) and kept[index].offset < end:
            region = kept[index]
            entry = region.entry
            wanted = entry is not None and id(entry) in want_digests
            low, high = max(region.offset, position), min(region.end, end)
            if high > low:
                current.update(view[low - position : high - position])
                if wanted:
                    kept_bytes.append(bytes(view[low - position : high - position]))
            if region.end > end:
                break
            if entry is None and region.sha256 is not None:
                result.base_matches = current.hexdigest() == region.sha256
            if region.sha256 is not None and current.hexdigest() != region.sha256:
                if strict:
                    raise UndescribedBytesError(
                        f"segment {name}: bytes [{region.offset}, {region.end}) ({region.what}) do not "
                        "match their recorded sha256"
                    )
                result.problems.append(
                    Problem(
                        ProblemKind.SHA_MISMATCH,
                        Location(name, region.offset, region.record, region.manifest),
                        f"bytes [{region.offset}, {region.end}) ({region.what}) do not match the sha256 "
                        "recorded for them: the bytes or the manifest were changed after they were written",
                    )
                )
            if entry is not None and wanted:
                result.digests[entry.segment, entry.offset] = digests_from_bytes(entry, b"".join(kept_bytes))
                kept_bytes = []
            call = ends.get(id(entry)) if entry is not None else None
            if call is not None:
                cut = region.end - position
                full.update(view[fed:cut])
                fed = cut
                run_id, write_call = call
                result.prefixes.setdefault(run_id, []).append(
                    Prefix(write_call, base + region.end, full.copy().hexdigest())
                )
            current = hashlib.sha256()
            index += 1
        full.update(view[fed:])
        position = end
        done += len(piece)
        if progress is not None:
            progress(done, total)
    if position < size:
        problem = Problem(
            ProblemKind.MISSING_BYTES,
            Location(name, position),
            f"the segment was {size} bytes when listed but only {position} could be read",
        )
        if strict:
            raise UndescribedBytesError(f"segment {name}: {problem.message}")
        result.problems.append(problem)
    result.size = base + size
    return done


def read_manifest(store: Store, name: str) -> list[DecodedRecord]:
    """Every record of manifest ``name``, strictly (any defect raises ``ManifestCorruptError``)."""
    reader = ManifestReader(name)
    records: list[DecodedRecord] = []
    for chunk in store.stream(name):
        records.extend(reader.feed(chunk))
    reader.finish()
    return records
