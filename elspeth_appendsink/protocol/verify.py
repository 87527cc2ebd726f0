"""Read-only views of one output: :func:`verify_output` proves every byte, :func:`inspect_output`
says where its runs stand. Nothing here writes to storage.

An *output* is everything one rendered ``blob_path`` names in a container: its segments
(``blob_path``, ``<stem>.seg000001<ext>``, …) and the manifests of every run that wrote it
(``<blob_path>.manifest/<run_id>``). Verification:

1. decodes every manifest (:class:`~elspeth_appendsink.core.manifest.ManifestReader`: framing,
   sequence numbers, hash chain); after a broken link decoding restarts at the next record, so
   one edited record is reported once and the records after it are still used;
2. interprets each run (:func:`~elspeth_appendsink.core.reconcile.walk`), using the longest
   prefix of records that fit together and reporting the first misfit;
3. orders the runs by their ``open.continues`` chain and checks that each links to, and starts
   where, the run before it ended (the first run links to ``GENESIS``);
4. streams every segment once through the scan writer recovery uses too
   (:func:`~elspeth_appendsink.protocol.scan.scan_segments`, here collecting problems instead of
   raising), in bounded memory: every byte covered by the first run's pre-existing bytes or by a
   committed entry, no overlap or gap, each entry's bytes matching its ``sha256``, every sealed
   segment sealed at the recorded length. The same pass records the *prefix hashes*
   (:attr:`VerifyReport.prefixes`): per run and write call, the sha256 and size of the whole
   output at the end of the call — what ELSPETH recorded as the sink's artifact for that write.

A block entry is the *intent*, written before its block; one whose bytes are in the segment is
committed. A run whose manifest ends in an unfinished step (an intent that never landed, an
unfinished rollover or seal, an empty manifest) *needs resume*: reported, not a problem; bytes
beyond an unfinished intent are a problem. Whether a run that stopped between blocks is complete
is the engine's knowledge, not the storage's. Data problems never raise: they become
:class:`Problem` values, each with a :class:`Location` (blob, byte offset, manifest record). Only
usage errors (:class:`~elspeth_appendsink.errors.ConfigError`: bad path, nothing there, unknown
run) and :class:`~elspeth_appendsink.errors.StorageError` raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from elspeth_appendsink.core.anchor import Prefix
from elspeth_appendsink.core.chain import UnverifiedBase, is_unlinked_append, same_start, unverified_base
from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.manifest import (
    GENESIS,
    BlockEntry,
    DecodedRecord,
    ManifestReader,
    OpenRecord,
    Record,
    RolloverRecord,
    SealRecord,
    VoidRecord,
)
from elspeth_appendsink.core.paths import (
    manifest_prefix,
    parse_segment_index,
    segment_name,
    validate_blob_path,
)
from elspeth_appendsink.core.reconcile import (
    RunLayout,
    classify_pending,
    continued_prefix,
    expected_lengths,
    walk,
)
from elspeth_appendsink.errors import ConfigError, ManifestCorruptError, UndescribedBytesError
from elspeth_appendsink.protocol.lease import META_CREATOR, lease_id_for
from elspeth_appendsink.protocol.scan import (
    Location,
    Problem,
    ProblemKind,
    ProgressCallback,
    ScannedRun,
    missing_segment,
    regions,
    scan_segments,
    segment_runs,
    undescribed,
)
from elspeth_appendsink.storage.base import BlobInfo, Store

__all__ = [
    "InspectReport",
    "Location",
    "Problem",
    "ProblemKind",
    "ProgressCallback",
    "RunReport",
    "SegmentReport",
    "UnverifiedBase",
    "VerifyReport",
    "inspect_output",
    "verify_output",
]

DEFAULT_CHUNK = 8 * 1024 * 1024
_LEASED_STATES = frozenset({"leased", "breaking"})


@dataclass(frozen=True, slots=True)
class RunReport:
    """One run of the output, as its manifest tells it."""

    run_id: str
    manifest: str
    records: int
    entries: int  # committed block entries (a landed unfinished intent included)
    voided: int
    rows: int
    bytes: int
    first_segment: int | None
    last_segment: int | None
    sealed: bool  # the run recorded the seal of its last segment (it completed with sealing)
    continues: tuple[str, ...]
    created_at: str | None
    needs_resume: bool
    pending: str | None  # the unfinished step, in words, and what a resume does about it
    cursor: Cursor | None  # where a resume continues (after settling the unfinished step)
    readable: bool = True  # False when no record could be used (see the problems)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["continues"] = list(self.continues)
        return out


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """One segment: what storage holds and what the manifests say about it."""

    index: int
    name: str
    exists: bool
    size: int
    described: int  # bytes the manifests' entries account for (an unverified base is not counted)
    entries: int
    sealed: bool
    recorded_seal: int | None  # the final length a rollover / seal record gives, if any
    committed_blocks: int | None
    lease_state: str | None
    lease_holder: str | None = None  # run id whose lease is active (inspect only)
    base: int = 0  # bytes of the unverified base in this segment (see VerifyReport.base)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_output` found. ``ok`` means no problem; a run may still need resume.

    ``base``: bytes that were in the output before its first run appended to them (``if_exists:
    append`` onto a blob something else wrote). No entry describes them: they are not counted as
    described, their rows are not in ``rows``, and only their sha256 is checked (against the
    one the run recorded). ``ok`` stays true with a base: the :attr:`verdict` says what was not
    proven.
    """

    container: str
    blob_path: str
    ok: bool
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    runs: tuple[RunReport, ...]
    segments: tuple[SegmentReport, ...]
    rows: int
    bytes: int
    sha256: str  # of the whole output: every segment, in order
    #: per run, per write call: the whole output's size and sha256 at the end of the call's last
    #: committed block (what the writer's ``content_hash`` / ``size`` said when the call returned)
    prefixes: dict[str, tuple[Prefix, ...]] = field(default_factory=dict)
    base: UnverifiedBase | None = None

    @property
    def needs_resume(self) -> bool:
        return any(run.needs_resume for run in self.runs)

    @property
    def verdict(self) -> str:
        """``verified``, ``verified_except_base`` (every byte but an unverified base is proven) or
        ``not_verified``."""
        if not self.ok:
            return "not_verified"
        return "verified" if self.base is None else "verified_except_base"

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "blob_path": self.blob_path,
            "ok": self.ok,
            "verdict": self.verdict,
            "unverified_base": None if self.base is None else self.base.as_dict(),
            "needs_resume": self.needs_resume,
            "rows": self.rows,
            "bytes": self.bytes,
            "segments_count": len(self.segments),
            "runs_count": len(self.runs),
            "sha256": self.sha256,
            "problems": [p.as_dict() for p in self.problems],
            "notes": list(self.notes),
            "runs": [r.as_dict() for r in self.runs],
            "segments": [s.as_dict() for s in self.segments],
            "prefixes": {run: [asdict(p) for p in prefixes] for run, prefixes in self.prefixes.items()},
        }


@dataclass(frozen=True, slots=True)
class InspectReport:
    """What :func:`inspect_output` found: runs, segments, leases; no data was read."""

    container: str
    blob_path: str
    run_id: str | None  # the run asked about (None: every run)
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    runs: tuple[RunReport, ...]
    segments: tuple[SegmentReport, ...]
    base: UnverifiedBase | None = None  # as in VerifyReport (not read: ``matches`` is None)

    @property
    def needs_resume(self) -> bool:
        return any(run.needs_resume for run in self.runs)

    @property
    def leases(self) -> tuple[SegmentReport, ...]:
        return tuple(s for s in self.segments if s.lease_state in _LEASED_STATES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "blob_path": self.blob_path,
            "run_id": self.run_id,
            "needs_resume": self.needs_resume,
            "unverified_base": None if self.base is None else self.base.as_dict(),
            "problems": [p.as_dict() for p in self.problems],
            "notes": list(self.notes),
            "runs": [r.as_dict() for r in self.runs],
            "segments": [s.as_dict() for s in self.segments],
        }


# --------------------------------------------------------------------------------------------
# reading the manifests


@dataclass
class _Run:
    """One manifest, read and interpreted."""

    run_id: str
    manifest: str
    records: list[DecodedRecord]
    layout: RunLayout | None = None  # None: no usable open record
    unlanded: list[BlockEntry] = field(default_factory=list)  # intents of the last batch that never landed


@dataclass
class _Survey:
    """Shared state of one verify / inspect pass: the manifests read, the runs ordered, problems
    and notes so far. Long for the reason the module docstring gives."""

    store: Store
    blob_path: str
    chunk: int
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: runs opened at the same point as an earlier run (two writers at once): not its successors
    twins: set[str] = field(default_factory=set)
    #: (run, the run before it): appended onto the earlier runs' output without continuing them
    unlinked: list[tuple[_Run, _Run]] = field(default_factory=list)

    def problem(self, kind: ProblemKind, message: str, blob: str, **where: Any) -> None:
        self.problems.append(Problem(kind, Location(blob, **where), message))

    def segment(self, index: int) -> str:
        return segment_name(self.blob_path, index)

    # --- manifests ---------------------------------------------------------------------------
    def read_runs(self) -> list[_Run]:
        prefix = manifest_prefix(self.blob_path)
        runs = []
        for name in self.store.list_names(prefix):
            run = _Run(name[len(prefix) :], name, self._read_manifest(name))
            self._interpret(run)
            runs.append(run)
        return runs

    def _read_manifest(self, name: str) -> list[DecodedRecord]:
        """Every usable record of ``name``; a broken link is reported and read past."""
        records: list[DecodedRecord] = []
        start = 0  # where the current reader started, in the blob
        while True:
            reader = ManifestReader(name if start == 0 else f"{name} (re-read from offset {start})")
            reader.next_seq = len(records)
            first = len(records)
            try:
                for chunk in self.store.stream(name, offset=start, chunk=self.chunk):
                    for decoded in reader.feed(chunk):
                        _check_shape(decoded.record)
                        records.append(_lean(decoded, start))
                reader.finish()
                return records
            except _DECODE_ERRORS as exc:
                at = records[-1].offset + records[-1].length if records else 0
                seq = len(records)
                # A record that is not this reader's first and decodes on its own (no link to
                # check) is whole: only its link is wrong. Report that and read on from it.
                if (
                    not isinstance(exc, _BadShape)
                    and len(records) > first
                    and self._decodes_alone(name, at, seq)
                ):
                    self.problem(
                        ProblemKind.CHAIN_BROKEN,
                        f"record {seq} does not link to record {seq - 1}: record {seq - 1} or {seq} was "
                        f"edited, or records were dropped or reordered [{exc}]",
                        name,
                        offset=at,
                        record=seq,
                    )
                    start = at
                    continue
                self.problem(
                    ProblemKind.MANIFEST_CORRUPT,
                    f"record {seq} cannot be decoded; it and the records after it are not used [{exc}]",
                    name,
                    offset=at,
                    record=seq,
                )
                return records

    def _decodes_alone(self, name: str, offset: int, seq: int) -> bool:
        """Whether the record at ``offset`` decodes on its own (no link to check)."""
        reader = ManifestReader(name)
        reader.next_seq = seq
        try:
            for chunk in self.store.stream(name, offset=offset, chunk=self.chunk):
                for decoded in reader.feed(chunk):
                    _check_shape(decoded.record)
                    return True
        except _DECODE_ERRORS:
            return False
        return False

    def _interpret(self, run: _Run) -> None:
        records = run.records
        if not records:
            return
        error: Exception
        try:
            run.layout = walk(records, run.manifest)
            return
        except _DECODE_ERRORS as exc:
            error = exc
        # The longest prefix that fits (walk fails from the first misfit on, so this is monotone).
        good, bad = 0, len(records)  # walk(records[:good]) fits (0: nothing), walk(records[:bad]) not
        while bad - good > 1:
            middle = (good + bad) // 2
            try:
                walk(records[:middle], run.manifest)
                good = middle
            except _DECODE_ERRORS as exc:
                error, bad = exc, middle
        misfit = records[bad - 1]
        self.problem(
            ProblemKind.MANIFEST_LAYOUT,
            f"record {misfit.record.seq} does not fit the records before it; it and the records after it "
            f"are not used [{error}]",
            run.manifest,
            offset=misfit.offset,
            record=misfit.record.seq,
        )
        if good:
            run.records = records[:good]
            run.layout = walk(run.records, run.manifest)

    # --- runs --------------------------------------------------------------------------------
    def order_runs(self, runs: list[_Run]) -> list[_Run]:
        """The usable runs, oldest first, with every link between them checked."""
        usable = [run for run in runs if run.layout is not None]
        usable.sort(
            key=lambda r: (
                len(_layout(r).open.continues),
                _layout(r).open.base_segment,
                _layout(r).open.base_length,
                r.run_id,
            )
        )
        names = {run.run_id for run in runs}
        for index, run in enumerate(usable):
            opening = _layout(run).open
            if opening.run_id != run.run_id:
                self.problem(
                    ProblemKind.RUN_CHAIN,
                    f"the manifest is named for run {run.run_id!r} but its open record is run "
                    f"{opening.run_id!r}",
                    run.manifest,
                    offset=0,
                    record=0,
                )
            expected = tuple(r.run_id for r in usable[:index])
            if opening.continues != expected and self._known_break(run, usable[:index]):
                continue
            if opening.continues != expected:
                missing = [r for r in opening.continues if r not in names]
                why = (
                    f"the manifest of {', '.join(missing)} is missing"
                    if missing
                    else f"the manifests present give {list(expected)}"
                )
                self.problem(
                    ProblemKind.RUN_CHAIN,
                    f"run {run.run_id} continues {list(opening.continues)}, but {why}",
                    run.manifest,
                    offset=0,
                    record=0,
                )
                continue
            if index == 0:
                if opening.prev != GENESIS:
                    self.problem(
                        ProblemKind.RUN_CHAIN,
                        f"run {run.run_id} is the first run of this output but its open record links to "
                        f"{opening.prev[:12]}…, not to GENESIS: an earlier run's manifest is missing",
                        run.manifest,
                        offset=0,
                        record=0,
                    )
                continue
            before = usable[index - 1]
            kept = continued_prefix(before.records, opening.prev)
            if len(kept) < len(before.records):
                self.notes.append(
                    f"{len(before.records) - len(kept)} record(s) at the end of {before.manifest} were "
                    f"written by run {before.run_id}'s writer after run {run.run_id} took the output over "
                    "(it was paused past its lease); they describe no byte and are not used"
                )
                before.records = list(kept)
                before.layout = walk(before.records, before.manifest)
            head = _layout(before).head
            if opening.prev != head:
                self.problem(
                    ProblemKind.CHAIN_BROKEN,
                    f"run {run.run_id}'s open record links to {opening.prev[:12]}…, but the last record of "
                    f"run {before.run_id} hashes to {head[:12]}…: {before.manifest} changed after "
                    f"run {run.run_id} started",
                    run.manifest,
                    offset=0,
                    record=0,
                )
        return usable

    def _known_break(self, run: _Run, earlier: list[_Run]) -> bool:
        """Report a run that does not continue ``earlier`` for what it is, when it is known: one
        opened at the same point as an earlier run, or an append onto their output written before
        appends were chained (:mod:`~elspeth_appendsink.core.chain`). False: neither."""
        layout = _layout(run)
        twin = next((r for r in earlier if same_start(_layout(r), layout)), None)
        if twin is not None:
            opening = layout.open
            after = f"after runs {', '.join(opening.continues)}" if opening.continues else "as its first run"
            self.twins.add(run.run_id)
            self.problem(
                ProblemKind.RUN_CHAIN,
                f"runs {twin.run_id} and {run.run_id} both opened the output {after}, at segment "
                f"{opening.base_segment} offset {opening.base_length}: two writers wrote it at the same "
                "time (without a lease?); neither continues the other",
                run.manifest,
                offset=0,
                record=0,
            )
            return True
        if is_unlinked_append(layout, [_layout(r) for r in earlier]):
            self.unlinked.append((run, earlier[-1]))  # reported with its base's hash (check_unlinked)
            return True
        return False

    def check_unlinked(self, prefixes: Mapping[str, Sequence[Prefix]] | None) -> None:
        """Report each run appended without continuing the runs before it (old ``append``), with
        whether its recorded base sha256 is the output they left (``prefixes``: the scan's; None:
        not read)."""
        for run, before in self.unlinked:
            opening = _layout(run).open
            seg0 = self.segment(0)
            found = [p for ps in (prefixes or {}).values() for p in ps if p.size == opening.base_length]
            matches = None if not found else found[0].sha256 == opening.base_sha256
            checked = {
                None: "",
                True: "; that is the sha256 it recorded for them",
                False: "; but they do not hash to the sha256 it recorded for them",
            }[matches]
            self.problem(
                ProblemKind.UNLINKED_RUN,
                f"run {run.run_id} appended to this output (if_exists: append) without continuing the runs "
                f"before it, as sink versions before chained appends did: its open record names no earlier "
                f"run, and its base, bytes [0, {opening.base_length}) of {seg0}, is the output run "
                f"{before.run_id} left{checked}. Every byte is described, but the runs are not chained: this "
                "sink will not continue or append to the output; write later runs to a new blob_path",
                run.manifest,
                offset=0,
                record=0,
            )
            if matches is False:
                self.problem(
                    ProblemKind.SHA_MISMATCH,
                    f"bytes [0, {opening.base_length}) (the output run {before.run_id} left, run "
                    f"{run.run_id}'s base) do not match the sha256 run {run.run_id} recorded for them",
                    seg0,
                    offset=0,
                    record=0,
                    manifest=run.manifest,
                )

    def settle_pending(self, ordered: list[_Run], infos: dict[int, BlobInfo | None]) -> None:
        """Decide how much of each run's last batch of intents landed, as recovery would (without
        writing), and adopt those: the landed ones are committed (their sha256 is checked with
        every other entry's).

        For the last run, its segment's length says how many landed
        (:func:`~elspeth_appendsink.core.reconcile.classify_pending`; a length between entry ends
        adopts the entries that fit and leaves the rest of the bytes to be reported as
        undescribed). For an earlier run, the next run's start says it: the later run adopted
        the landed ones (it would have voided the others in the earlier manifest).
        """
        for index, run in enumerate(ordered):
            layout = _layout(run)
            pending = layout.pending
            if not pending:
                continue
            first = pending[0]
            if index + 1 < len(ordered) and ordered[index + 1].run_id not in self.twins:
                nxt = _layout(ordered[index + 1]).open
                ends = [first.offset, *(entry.end for entry in pending)]
                same = nxt.base_segment == first.segment and nxt.base_length in ends
                landed = ends.index(nxt.base_length) if same else 0
            else:
                info = infos.get(first.segment)
                try:
                    if info is None:
                        # Intents are written only once their segment exists: a missing one was
                        # deleted, not never written. Adopted, its bytes are reported missing.
                        landed = len(pending)
                    else:
                        landed = classify_pending(pending, info.size, self.segment(first.segment))
                except UndescribedBytesError:
                    landed = sum(1 for entry in pending if info is not None and entry.end <= info.size)
            run.unlanded = list(pending[landed:])
            layout.adopt_pending(landed)

    def check_run_bases(self, ordered: list[_Run]) -> None:
        """Each run after the first starts where the one before it ended (as the writer places it:
        in the segment the earlier run ended in, or in the next one when that one was sealed)."""
        for index in range(1, len(ordered)):
            before, run = ordered[index - 1], ordered[index]
            if run.run_id in self.twins:
                continue  # reported as such: it did not start after the run before it
            prev = _layout(before)
            segment = prev.segment + 1 if prev.segment in prev.sealed else prev.segment
            end = expected_lengths([_layout(r) for r in ordered[:index]]).get(segment, 0)
            opening = _layout(run).open
            if (opening.base_segment, opening.base_length) != (segment, end):
                self.problem(
                    ProblemKind.RUN_CHAIN,
                    f"run {run.run_id} starts at segment {opening.base_segment} offset "
                    f"{opening.base_length}, but run {before.run_id} ended at segment {segment} offset {end}",
                    run.manifest,
                    offset=0,
                    record=0,
                )

    # --- segments ----------------------------------------------------------------------------
    def segment_indices(self, ordered: list[_Run]) -> list[int]:
        """Segments the manifests name or storage holds (an empty name-alike is not one)."""
        indices: set[int] = set()
        for run in ordered:
            layout = _layout(run)
            indices.update(layout.segment_ends)
            indices.add(layout.open.base_segment)
        first, second = self.blob_path, self.segment(1)
        common = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first))
        for name in self.store.list_names(first[:common]):
            index = parse_segment_index(self.blob_path, name)
            if index is not None:
                indices.add(index)
        return sorted(indices)

    def check_seals(
        self, ordered: list[_Run], infos: dict[int, BlobInfo | None]
    ) -> tuple[dict[int, int], set[int]]:
        """Every recorded seal is done at its length. Returns (segment -> recorded final length,
        segments whose seal is the last run's unfinished step)."""
        recorded: dict[int, tuple[int, _Run, int]] = {}
        for run in ordered:
            for decoded in run.records:
                record = decoded.record
                if isinstance(record, RolloverRecord | SealRecord):
                    recorded[record.segment] = (record.final_length, run, record.seq)
        unfinished: set[int] = set()
        if ordered:
            last = ordered[-1]
            layout = _layout(last)
            if layout.pending_rollover is not None:
                unfinished.add(layout.pending_rollover.segment)
            tail = last.records[-1].record
            if isinstance(tail, SealRecord):
                unfinished.add(tail.segment)
        for segment, (final_length, run, seq) in sorted(recorded.items()):
            info = infos.get(segment)
            name = self.segment(segment)
            if info is None:
                continue  # reported as missing bytes (or nothing to seal)
            if not info.sealed:
                if segment in unfinished:
                    continue  # the unfinished step; reported as needing resume
                self.problem(
                    ProblemKind.SEAL,
                    f"run {run.run_id} recorded sealing this segment at {final_length} bytes, "
                    "but it is not sealed",
                    name,
                    offset=final_length,
                    record=seq,
                    manifest=run.manifest,
                )
            elif info.size != final_length:
                self.problem(
                    ProblemKind.SEAL,
                    f"sealed at {info.size} bytes, but run {run.run_id} recorded its final length as "
                    f"{final_length}",
                    name,
                    offset=min(info.size, final_length),
                    record=seq,
                    manifest=run.manifest,
                )
        for segment, info in sorted(infos.items()):
            if info is not None and info.sealed and segment not in recorded:
                self.notes.append(
                    f"segment {info.name} is sealed but no manifest records sealing it (sealed by "
                    "something other than this sink): the output cannot be continued"
                )
        return {segment: value[0] for segment, value in recorded.items()}, unfinished

    def check_blob_types(self, infos: dict[int, BlobInfo | None]) -> None:
        for info in infos.values():
            if info is not None and not info.is_append_blob:
                self.problem(
                    ProblemKind.BLOB_TYPE,
                    "is not an append blob: it was replaced by something other than this sink",
                    info.name,
                )

    # --- run reports -------------------------------------------------------------------------
    def run_reports(
        self,
        runs: list[_Run],
        ordered: list[_Run],
        infos: dict[int, BlobInfo | None],
        unfinished_seals: set[int],
    ) -> list[RunReport]:
        reports = []
        position = {run.run_id: index for index, run in enumerate(ordered)}
        for run in sorted(runs, key=lambda r: (position.get(r.run_id, len(ordered)), r.run_id)):
            is_last = bool(ordered) and run is ordered[-1]
            reports.append(self._run_report(run, ordered, infos, is_last, unfinished_seals))
        return reports

    def _run_report(
        self,
        run: _Run,
        ordered: list[_Run],
        infos: dict[int, BlobInfo | None],
        is_last: bool,
        unfinished_seals: set[int],
    ) -> RunReport:
        layout = run.layout
        if layout is None:
            empty = not run.records and not any(p.location.blob == run.manifest for p in self.problems)
            return RunReport(
                run_id=run.run_id,
                manifest=run.manifest,
                records=len(run.records),
                entries=0,
                voided=0,
                rows=0,
                bytes=0,
                first_segment=None,
                last_segment=None,
                sealed=False,
                continues=(),
                created_at=None,
                needs_resume=empty,
                pending=(
                    "the manifest holds no record: the run stopped before writing its open record; "
                    "a resume starts it afresh"
                    if empty
                    else None
                ),
                cursor=None,
                readable=empty,
            )
        pending = None
        needs_resume = False
        gone = run.unlanded
        if gone:
            # Landed intents are simply committed: the protocol has no commit record, so every run
            # that stopped between blocks (finished or not) ends with a batch of intents.
            first, last = gone[0], gone[-1]
            records = f"record {first.seq}" if first is last else f"records {first.seq}-{last.seq}"
            pending = (
                f"{len(gone)} block intent{'s' * (len(gone) != 1)} ({records}: segment {first.segment}, "
                f"bytes [{first.offset}, {last.end}), rows [{first.tokens.start}, {last.tokens.end})) "
                f"did not land; a resume voids {'them' if len(gone) != 1 else 'it'} and writes those "
                "rows again"
            )
            needs_resume = is_last
        elif layout.pending_rollover is not None and is_last:
            record = layout.pending_rollover
            old = infos.get(record.segment)
            new = infos.get(record.next_segment)
            pending = (
                f"rollover (record {record.seq}) of segment {record.segment} at {record.final_length} bytes "
                f"is unfinished: segment {record.segment} is {_not(old is not None and old.sealed)}sealed "
                f"and segment {record.next_segment} is {_not(new is not None)}created; "
                "a resume finishes it"
            )
            needs_resume = True
        elif is_last and isinstance(run.records[-1].record, SealRecord):
            tail = run.records[-1].record
            if tail.segment in unfinished_seals:
                info = infos.get(tail.segment)
                if info is not None and not info.sealed:
                    pending = (
                        f"seal of segment {tail.segment} at {tail.final_length} bytes was recorded (record "
                        f"{tail.seq}) but not done; completing the run again seals it"
                    )
                    needs_resume = True
        committed = layout.committed
        sealed = any(isinstance(d.record, SealRecord) for d in run.records)
        info = infos.get(layout.segment)
        ends = (
            expected_lengths([_layout(r) for r in ordered[: ordered.index(run) + 1]])
            if run in ordered
            else {}
        )
        cursor = Cursor(
            segment=layout.segment,
            offset=layout.segment_ends.get(layout.segment, 0),
            blocks=0 if info is None or info.committed_blocks is None else info.committed_blocks,
            next_token=layout.next_token,
            write_call=layout.last_write_call,
            manifest_length=layout.manifest_length,
            next_seq=layout.next_seq,
            head=layout.head,
            total_bytes=sum(ends.values()),
        )
        return RunReport(
            run_id=run.run_id,
            manifest=run.manifest,
            records=len(run.records),
            entries=len(committed),
            voided=layout.voided,
            rows=sum(len(e.tokens) for e in committed),
            bytes=sum(e.length for e in committed),
            first_segment=layout.open.base_segment,
            last_segment=layout.segment,
            sealed=sealed,
            continues=layout.open.continues,
            created_at=layout.open.created_at,
            needs_resume=needs_resume,
            pending=pending,
            cursor=cursor,
        )

    # --- the common first half of verify and inspect -------------------------------------------
    def survey(self) -> tuple[list[_Run], list[_Run], list[int], dict[int, BlobInfo | None]]:
        runs = self.read_runs()
        ordered = self.order_runs(runs)
        indices = self.segment_indices(ordered)
        infos = {index: self.store.properties(self.segment(index)) for index in indices}
        if not runs and all(info is None for info in infos.values()):
            raise ConfigError(
                "blob_path",
                f"nothing at {self.store.uri(self.blob_path)}: no segment and no manifest "
                f"(under {manifest_prefix(self.blob_path)})",
                hint="give the rendered path of the output (e.g. out/<run id>/rows.csv), not the template; "
                "a run that wrote no row creates no output",
            )
        output, mark, run_id = self.blob_path.rpartition(".manifest/")
        if not runs and mark and output and run_id and "/" not in run_id:
            raise ConfigError(
                "blob_path",
                f"{self.blob_path} is a manifest of this sink (run {run_id}'s, for the output {output}), "
                "not an output",
                hint=f"give the output's path: {output}",
            )
        self.settle_pending(ordered, infos)
        self.check_run_bases(ordered)
        self.check_blob_types(infos)
        if not runs:
            self.notes.append("no manifest describes this output")
        return runs, ordered, indices, infos


def _scanned(ordered: Sequence[_Run]) -> list[ScannedRun]:
    return [ScannedRun(_layout(run), run.manifest, run.run_id) for run in ordered]


def _not(flag: bool) -> str:
    return "" if flag else "not "


def _layout(run: _Run) -> RunLayout:
    assert run.layout is not None
    return run.layout


def _lean(decoded: DecodedRecord, start: int) -> DecodedRecord:
    """The record without its row digests or lengths (not needed here; they are most of a
    manifest's bytes), at its offset in the whole blob."""
    record = decoded.record
    if isinstance(record, BlockEntry) and (record.digests or record.lengths):
        decoded = replace(decoded, record=replace(record, digests=b"", lengths=b""))
    return replace(decoded, offset=decoded.offset + start) if start else decoded


class _BadShape(ValueError):
    """A record decodes but a field has the wrong type or sign (an edited manifest)."""


_DECODE_ERRORS = (ManifestCorruptError, TypeError, ValueError, KeyError, IndexError, AttributeError)
_COUNTS: dict[type[Any], tuple[str, ...]] = {
    OpenRecord: ("seq", "base_segment", "base_length", "block_size", "segment_max_blocks"),
    BlockEntry: ("seq", "segment", "offset", "length", "write_call", "batch"),
    VoidRecord: ("seq", "voids", "segment", "offset"),
    RolloverRecord: ("seq", "segment", "final_length", "next_segment"),
    SealRecord: ("seq", "segment", "final_length"),
}
_TEXTS: dict[type[Any], tuple[str, ...]] = {
    OpenRecord: ("prev", "run_id", "blob_path", "base_sha256"),
    BlockEntry: ("prev", "sha256"),
}


def _check_shape(record: Record) -> None:
    """Raise :class:`_BadShape` when a field the checks rely on has the wrong type or sign."""
    for name in _COUNTS[type(record)]:
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _BadShape(f"{record.kind} record field {name!r} is {value!r}, not a count")
    for name in _TEXTS.get(type(record), ("prev",)):
        value = getattr(record, name)
        if not isinstance(value, str):
            raise _BadShape(f"{record.kind} record field {name!r} is {value!r}, not text")
    if isinstance(record, OpenRecord) and not all(isinstance(run, str) for run in record.continues):
        raise _BadShape(f"open record field 'continues' is {list(record.continues)!r}, not run ids")
    if isinstance(record, BlockEntry) and record.length == 0:
        raise _BadShape("block record has length 0")


def _segment_reports(
    scan: _Survey,
    ordered: list[_Run],
    indices: Sequence[int],
    infos: dict[int, BlobInfo | None],
    seals: dict[int, int],
    holders: dict[int, str | None] | None = None,
    *,
    base: UnverifiedBase | None,
    entries: Mapping[int, int] | None = None,
) -> list[SegmentReport]:
    """Each segment's report; ``entries``: the scan's count of entries kept per segment (each
    described byte once), else every committed entry the manifests place there."""
    layouts = [_layout(run) for run in ordered]
    described = expected_lengths(layouts)
    scanned = _scanned(ordered)
    reports = []
    for index in indices:
        info = infos.get(index)
        described_here = regions(scanned, index)
        unverified = base.length if base is not None and base.segment == index else 0
        reports.append(
            SegmentReport(
                index=index,
                name=scan.segment(index),
                exists=info is not None,
                size=0 if info is None else info.size,
                described=described.get(index, 0) - unverified,
                entries=(
                    sum(1 for r in described_here if r.is_entry) if entries is None else entries.get(index, 0)
                ),
                sealed=info is not None and info.sealed,
                recorded_seal=seals.get(index),
                committed_blocks=None if info is None else info.committed_blocks,
                lease_state=None if info is None else info.lease_state,
                lease_holder=None if holders is None else holders.get(index),
                base=unverified,
            )
        )
    return reports


def _base(scan: _Survey, ordered: list[_Run], infos: Mapping[int, BlobInfo | None]) -> UnverifiedBase | None:
    """The first run's unverified base; a lost manifest of the run that created its segment is a
    problem (the base is then this sink's own rows, no longer provable)."""
    layouts = [_layout(run) for run in ordered]
    if not layouts or not layouts[0].open.base_length:
        return None
    info = infos.get(layouts[0].open.base_segment)
    creator = None if info is None else info.metadata.get(META_CREATOR)
    base = unverified_base(layouts, scan.blob_path, creator)
    if base is not None and base.written_by is not None and base.written_by not in layouts[0].open.continues:
        scan.problem(
            ProblemKind.RUN_CHAIN,
            f"run {base.written_by} of this sink created this segment, but no manifest of it is here (lost "
            f"or deleted): its bytes [0, {base.length}) are only the base run {base.run_id} appended to, "
            "and cannot be proven",
            base.blob,
            offset=0,
        )
    return base


# --------------------------------------------------------------------------------------------
# public entry points


def verify_output(
    store: Store,
    blob_path: str,
    *,
    progress: ProgressCallback | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> VerifyReport:
    """Verify every byte of the output at ``blob_path`` (the rendered path) in ``store``'s container.

    Reads only. Data problems are returned in the report; raises
    :class:`~elspeth_appendsink.errors.ConfigError` when ``blob_path`` is invalid or names
    nothing, and :class:`~elspeth_appendsink.errors.StorageError` when storage fails.

    Args:
        store: the container holding the output.
        blob_path: the rendered blob path (segment 0).
        progress: called with (bytes verified, bytes in all segments) after every chunk.
        chunk: bytes per read request.
    """
    validate_blob_path(blob_path)
    scan = _Survey(store, blob_path, chunk)
    runs, ordered, indices, infos = scan.survey()
    seals, unfinished = scan.check_seals(ordered, infos)
    result = scan_segments(
        store,
        blob_path,
        _scanned(ordered),
        {index: infos[index] for index in indices},
        strict=False,
        described=expected_lengths([_layout(run) for run in ordered]),
        chunk=chunk,
        progress=progress,
    )
    scan.problems.extend(result.problems)
    scan.check_unlinked(result.prefixes)
    base = _base(scan, ordered, infos)
    if base is not None:
        base = replace(base, matches=result.base_matches)
    total = sum(0 if info is None else info.size for info in infos.values())
    reports = scan.run_reports(runs, ordered, infos, unfinished)
    return VerifyReport(
        container=store.container,
        blob_path=blob_path,
        ok=not scan.problems,
        problems=tuple(scan.problems),
        notes=tuple(scan.notes),
        runs=tuple(reports),
        segments=tuple(
            _segment_reports(scan, ordered, indices, infos, seals, base=base, entries=result.entries)
        ),
        rows=result.rows,
        bytes=total,
        sha256=result.sha256,
        prefixes=_with_bases(ordered, result.prefixes),
        base=base,
    )


#: The ``call`` of a run's base prefix: the output as the run opened it, before its first block.
BASE_CALL = -1


def _with_bases(
    ordered: Sequence[_Run], scanned: Mapping[str, list[Prefix]]
) -> dict[str, tuple[Prefix, ...]]:
    """Each run's prefixes: its base (:data:`BASE_CALL`), then the scan's one per write call.

    A write call whose rows were all already durable returns the base size to ELSPETH, and so
    does a first write of an empty output. The first run's base is the bytes that were there
    before it (recorded in its open record, checked by the scan as a region); a later run's is
    where the run before it left the output.
    """
    out: dict[str, tuple[Prefix, ...]] = {}
    previous: Prefix | None = None
    for run in ordered:
        opening = _layout(run).open
        if previous is None:
            if opening.base_segment != 0:
                base = None  # not a chain's first run as the writer opens one: no base to state
            else:
                empty = opening.base_length == 0
                sha = hashlib.sha256(b"").hexdigest() if empty else opening.base_sha256
                base = Prefix(BASE_CALL, opening.base_length, sha)
        else:
            base = Prefix(BASE_CALL, previous.size, previous.sha256)
        own = tuple(scanned.get(run.run_id, ()))
        out[run.run_id] = (base, *own) if base is not None else own
        previous = own[-1] if own else base
    return out


def inspect_output(
    store: Store, blob_path: str, *, run_id: str | None = None, chunk: int = DEFAULT_CHUNK
) -> InspectReport:
    """Where the runs of the output at ``blob_path`` stand, without reading its data.

    Reads the manifests and the segments' properties; probes each leased segment with the lease
    id of each run to name the holder; compares segment sizes with what the manifests describe
    (use :func:`verify_output` to check the bytes themselves). A last run's unfinished block
    intent is judged by its segment's size, as recovery does (its sha256 is checked by verify).

    Raises :class:`~elspeth_appendsink.errors.ConfigError` (option ``run_id``) when ``run_id``
    has no manifest here.
    """
    validate_blob_path(blob_path)
    scan = _Survey(store, blob_path, chunk)
    runs, ordered, indices, infos = scan.survey()
    if run_id is not None and all(run.run_id != run_id for run in runs):
        known = ", ".join(run.run_id for run in runs) or "none"
        raise ConfigError("run_id", f"run {run_id!r} has no manifest for this output (runs: {known})")
    seals, unfinished = scan.check_seals(ordered, infos)
    described = expected_lengths([_layout(run) for run in ordered])
    for index in indices:
        info = infos[index]
        expected = described.get(index, 0)
        size = 0 if info is None else info.size
        if info is None and expected:
            owners = segment_runs([_layout(run) for run in ordered], index)
            name = scan.segment(index)
            scan.problem(ProblemKind.MISSING_BYTES, missing_segment(name, owners, expected), name, offset=0)
        elif size > expected:
            scan.problems.append(undescribed(scan.segment(index), expected, size))
        elif size < expected:
            scan.problem(
                ProblemKind.MISSING_BYTES,
                f"the segment holds {size} bytes; the manifests describe {expected}",
                scan.segment(index),
                offset=size,
            )
    scan.check_unlinked(None)
    base = _base(scan, ordered, infos)
    holders = {
        index: _lease_holder(store, scan.segment(index), [*ordered, *(r for r in runs if r.layout is None)])
        for index, info in infos.items()
        if info is not None and info.lease_state in _LEASED_STATES
    }
    reports = scan.run_reports(runs, ordered, infos, unfinished)
    if run_id is not None:
        reports = [r for r in reports if r.run_id == run_id]
    return InspectReport(
        container=store.container,
        blob_path=blob_path,
        run_id=run_id,
        problems=tuple(scan.problems),
        notes=tuple(scan.notes),
        runs=tuple(reports),
        segments=tuple(_segment_reports(scan, ordered, indices, infos, seals, holders, base=base)),
        base=base,
    )


def _lease_holder(store: Store, name: str, runs: Sequence[_Run]) -> str | None:
    """The run whose lease id is the active lease on ``name`` (newest run tried first), or None."""
    for run in reversed(runs):
        if store.holds_lease(name, lease_id_for(run.run_id)):
            return run.run_id
    return None
