"""The exactly-once append protocol: rows in, blocks durable in segments, each described once.

:class:`AppendWriter` drives an :class:`~elspeth_appendsink.storage.AzureStore` for one run of
one output. Objects in the container::

    <blob_path>                        segment 0 (an append blob: the output users read)
    <blob_path stem>.seg000001<ext>    segment 1, 2, … after a rollover (sealed when full)
    <blob_path>.manifest/<run_id>      this run's manifest (append blob, hash-chained records)
    .elspeth-appendsink/runs/<run_id>/<template digest>.json
                                       run pointer: which blob path the run resolved (the path
                                       template may hold a timestamp that a resume cannot re-render)

**Ordering** (the property recovery relies on). Every step is one guarded storage request, and
each is sent only after the previous one is durable:

1. pointer (create-only) → segment 0 (create-only; metadata names the creating run) → lease →
   manifest (create-only) → ``open`` record;
2. per *batch* of blocks (one or a few, prepared while the previous batch uploads): their
   ``block`` entries (the *intents*: segment, offset, length, sha256, token range, and per row
   its length or identity digest) go to the manifest in **one** append, then each block is
   appended to its segment at exactly its offset, in order;
3. per rollover: a ``rollover`` record, then seal the full segment at its final length, then
   create the next segment.

So after a crash at any instruction, only the manifest's last batch (or a last rollover) can be
unfinished, and the segments' lengths say how far it got: the segment ends exactly at the start
of the batch or at the end of one of its blocks; the blocks before that point landed (their
bytes must hash to their sha256: adopted) and the rest never will (recovery appends a ``void``
record). Every other byte of every segment is described by a committed entry — or recovery
stops with :class:`UndescribedBytesError`. Recovery re-reads each segment once to rebuild the
running sha256 of the whole output and to check every entry's hash.

Rows the engine replays after a crash are recognised by identity (:mod:`identity`): on resume,
the first call is matched *in order* against the rows the interrupted call committed (all of
them, or a tail when outcomes were partly recorded, or none: the engine's count of recorded
outcomes, ``recorded_rows``, decides when known — see :meth:`AppendWriter._match_redelivery`);
with ``if_exists: continue`` every row committed by earlier runs of the output is matched as a
multiset. Where entries carry row lengths (CSV/JSONL, content identity), the committed rows'
digests are computed from the segment bytes while recovery reads them, and a call that fails in
this process keeps references to the rows it committed to digest them only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

from elspeth_appendsink import __version__
from elspeth_appendsink.core.blocks import BlockCutter, needs_rollover
from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.identity import DIGEST_SIZE, DigestMultiset, IdentityScheme, content_digests
from elspeth_appendsink.core.manifest import (
    GENESIS,
    BlockEntry,
    DecodedRecord,
    ManifestReader,
    OpenRecord,
    Record,
    RolloverRecord,
    SealRecord,
    TokenRange,
    VoidRecord,
    encode_record,
    record_hash,
)
from elspeth_appendsink.core.paths import manifest_name, manifest_prefix, run_pointer_name, segment_name
from elspeth_appendsink.core.reconcile import RunLayout, classify_pending, expected_lengths, walk
from elspeth_appendsink.core.replay import ReplayDecision, decide_replay
from elspeth_appendsink.encoders.base import Encoder, Packed, Row
from elspeth_appendsink.errors import (
    BlobExistsError,
    BlobTypeError,
    InvariantViolation,
    LeaseHeldError,
    ManifestCorruptError,
    RecoveryError,
    RowError,
    RowTooLarge,
    SegmentFullError,
    StorageError,
    UndescribedBytesError,
)
from elspeth_appendsink.protocol.lease import lease_id_for
from elspeth_appendsink.storage import AppendResult, AzureStore, BlobInfo

__all__ = ["AppendWriter", "OutputTarget", "WriteReport"]

META_CREATOR = "elspeth_appendsink_creator"
META_WRITER = "elspeth_appendsink_writer"
# Rows are encoded a slice at a time: the first slice is _SLICE rows, later ones aim at
# _SLICE_BYTES of output (1 to _SLICE_ROWS_MAX rows). That bounds the memory held besides the
# blocks, even for rows of many MiB, and spreads an encoder's fixed cost per call thin.
_SLICE = 64
_SLICE_BYTES = 1 << 20
_SLICE_ROWS_MAX = 65536
PIPELINE_BLOCKS = 2  # blocks prepared ahead while a batch is in flight (and the most per batch)


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Everything the writer needs to know about one run's output (no credentials)."""

    container: str
    blob_path: str  # rendered
    run_id: str
    format: str
    template_digest: str
    block_size: int = 4 * 1024 * 1024
    segment_max_blocks: int = 49_000
    segment_max_bytes: int | None = None
    if_exists: str = "fail"  # fail | append | continue
    lease: bool = True
    lease_duration: int = 60
    identity: IdentityScheme = field(default_factory=lambda: IdentityScheme(None))

    @property
    def manifest(self) -> str:
        return manifest_name(self.blob_path, self.run_id)

    @property
    def lease_id(self) -> str:
        """Deterministic per run: a resume of the same run re-acquires its own lease."""
        return lease_id_for(self.run_id)


@dataclass(slots=True)
class WriteReport:
    """What one :meth:`AppendWriter.write` call did."""

    rows_in: int = 0
    rows_appended: int = 0
    rows_skipped: int = 0
    blocks: int = 0
    bytes: int = 0
    skipped_from_runs: tuple[str, ...] = ()
    replay: dict[str, Any] | None = None  # the re-delivery decision, if this call was matched (audit)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One block ready to commit: its bytes, its rows, and their manifest body.

    ``body`` is the rows' packed lengths (``lengths``) or packed identity digests. The row
    objects themselves are kept (references only) so that, should the write call fail later,
    the digests of what it committed can be computed then rather than for every block now.
    """

    data: bytes
    rows: Sequence[Row]
    body: bytes
    lengths: bool
    with_header: bool


@dataclass
class _StartPlan:
    """Where a fresh run starts: base position, the runs it continues, its encoder and hash so far."""

    base_segment: int = 0
    base_length: int = 0
    base_sha256: str = hashlib.sha256(b"").hexdigest()
    continues: tuple[str, ...] = ()
    prev: str = GENESIS
    encoder: Encoder | None = None
    full_hash: Any = field(default_factory=hashlib.sha256)
    total_bytes: int = 0
    blocks: int = 0


@dataclass(slots=True)
class _Replay:
    """Rows already durable that the caller may hand us again, and where they came from."""

    digests: DigestMultiset
    source: str  # "resume" | "continue" | "retry"
    runs: tuple[str, ...]
    more: list[DigestMultiset] = field(default_factory=list)

    def take(self, digest: bytes) -> bool:
        if self.digests.take(digest):
            return True
        return any(scope.take(digest) for scope in self.more)

    def __len__(self) -> int:
        return len(self.digests) + sum(len(scope) for scope in self.more)


class AppendWriter:
    """One run's writer. Not thread-safe; one instance per process per run."""

    def __init__(
        self,
        store: AzureStore,
        target: OutputTarget,
        *,
        make_encoder: Callable[[Sequence[Row]], Encoder],
        restore_encoder: Callable[[dict[str, Any]], Encoder],
        resume: bool = False,
        check_existing: Callable[[Encoder, bytes], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.target = target
        self._make_encoder = make_encoder
        self._restore_encoder = restore_encoder
        self._check_existing = check_existing
        self._resume = resume
        self._clock = clock
        self.cursor: Cursor | None = None
        self.encoder: Encoder | None = None
        self._hash = hashlib.sha256()
        self._dirty = False
        self._replay: _Replay | None = None
        self._needs_header = False
        self._leased: str | None = None
        self._lease_at = 0.0
        # What the current write call committed, in order: packed digests known already (from a
        # recovery, or blocks carrying digests), then rows whose blocks carry lengths.
        self._call_digests: list[bytes] = []
        self._call_rows: list[Row] = []
        self._region_digests: dict[tuple[int, int], bytes] = {}  # set by _verify_output
        self._failed_call: int | None = None  # in this process, the call that failed (if any)
        self._segment_sealed = False  # the recovered cursor sits in a segment sealed on completion
        # After a recovery (or a failed call): the write call that may be re-delivered and the
        # packed digests of the rows it committed, in order. See _match_redelivery.
        self._redelivered: tuple[int, bytes] | None = None
        # Given by the adapter before the first resumed write: how many of this run's rows the
        # engine recorded a terminal outcome for (None: unknown). Used once, by _match_redelivery.
        self.recorded_rows: int | None = None
        self._run_rows = 0  # rows this run's own manifest commits (set by recovery)
        self._full_hash: Any = hashlib.sha256()  # set by _verify_output: the whole output's running hash
        self._full_size = 0
        self.events: list[dict[str, Any]] = []  # recovery facts for the audit trail

    # --- public -------------------------------------------------------------------------------
    @property
    def content_hash(self) -> str:
        return self._hash.hexdigest()

    @property
    def size(self) -> int:
        return 0 if self.cursor is None else self.cursor.total_bytes

    @property
    def is_open(self) -> bool:
        return self.cursor is not None

    def segment(self, index: int) -> str:
        return segment_name(self.target.blob_path, index)

    def prepare(self) -> None:
        """Recover now (resume) instead of at the first write; no-op for a fresh run."""
        if self._resume and self.cursor is None:
            self._recover_own_run()

    def write(self, rows: Sequence[Row]) -> WriteReport:
        """Append ``rows`` (in order) exactly once. Raises before sending a block with a bad row."""
        report = WriteReport(rows_in=len(rows))
        if not rows:
            return report
        if self._dirty:
            # A previous call failed with an uncertain outcome: re-derive everything from storage,
            # exactly as a resume in a new process would.
            self._resume = True
            self._recover_own_run()
        if self.cursor is None:
            if self._resume:
                self._recover_own_run()
            if self.cursor is None:
                self._start(rows)
        cursor = self._require_cursor()
        call, skip = cursor.write_call + 1, 0
        self._call_digests, self._call_rows = [], []
        if self._redelivered is not None:
            (last, committed), self._redelivered = self._redelivered, None
            decision = self._match_redelivery(rows, committed)
            skip, report.replay = decision.skip, decision.facts()
            if decision.same_call:  # the interrupted call again: keep its number, so its rows stay one scope
                call = last
                self._call_digests = [committed]
        self.cursor = replace(cursor, write_call=call)
        if skip:
            report.rows_skipped += skip
            report.skipped_from_runs = (self.target.run_id,)
            rows = rows[skip:]
        try:
            self._pipeline(rows, report)
        except Exception:
            self._failed_call = call
            if not self._dirty and (self._call_digests or self._call_rows):
                # The position is certain (e.g. a bad row stopped the call after some blocks).
                committed = b"".join(self._call_digests) + self._digests_of(self._call_rows)
                self._call_digests, self._call_rows = [], []
                if self._replay is None:
                    # a retry of this call must skip exactly the rows it already committed
                    self._redelivered = (call, committed)
                else:  # continuing earlier runs: identities are matched as a multiset
                    self._replay.more.append(DigestMultiset.from_packed([committed]))
            raise
        if self._replay is not None and self._replay.digests.taken + sum(s.taken for s in self._replay.more):
            report.skipped_from_runs = self._replay.runs
        return report

    def _match_redelivery(self, rows: Sequence[Row], committed: bytes) -> ReplayDecision:
        """How many leading rows of a re-delivered call are already durable, and whether it is that call.

        ELSPETH records a group's outcomes only after its write returned, in row order, and replays
        unrecorded rows in the same order. So a re-delivered call either starts with *all* the rows
        the interrupted call committed (the crash came during the write: nothing was recorded), or
        with a tail of them (the crash came while outcomes were being recorded), or with none (all
        were recorded; the crash came in the next call before its first intent). Matching in order
        -- not as a set -- keeps equal rows of *another* group from being mistaken for durable ones;
        when the engine's count of recorded outcomes is known (``recorded_rows``) it says which of
        the three it is, so equal bytes cannot mislead. See :mod:`elspeth_appendsink.core.replay`.
        """
        pending = None
        if self.recorded_rows is not None:
            pending, self.recorded_rows = self._run_rows - self.recorded_rows, None
        head = self._digests_of(rows[: len(committed) // DIGEST_SIZE])
        return decide_replay(committed, head, len(rows), DIGEST_SIZE, pending)

    def _digests_of(self, rows: Sequence[Row]) -> bytes:
        """The rows' packed identity digests."""
        if not rows:
            return b""
        identity = self.target.identity
        return b"".join(identity.digests(chunk, encoded) for _, chunk, encoded in self._slices(rows))

    def finish(self, *, seal: bool) -> None:
        """End of run: optionally seal the last segment (recorded in the manifest first)."""
        self.prepare()  # a resumed writer given no rows since has not recovered its cursor yet
        if self.cursor is None or self._dirty:
            return
        if seal:
            c = self.cursor
            self._append_record(SealRecord(c.next_seq, c.head, c.segment, c.offset))
            self.store.seal(self.segment(c.segment), c.offset, lease=self._leased)

    def close(self) -> None:
        """Release our lease (a crashed writer's lease simply expires, or is re-acquired on resume)."""
        if self._leased is not None and self.cursor is not None:
            with contextlib.suppress(StorageError):  # the lease expires by itself; nothing is lost
                self.store.release_lease(self.segment(self.cursor.segment), self._leased)
        self._leased = None

    # --- blocks -------------------------------------------------------------------------------
    def _pipeline(self, rows: Sequence[Row], report: WriteReport) -> None:
        """Prepare blocks in this thread while a worker commits the previous batch.

        The worker runs :meth:`_commit_batch` — the only code that touches storage and the cursor
        while a call is in flight — one batch at a time, in order. Blocks prepared while it is busy
        travel together in its next batch (one manifest append for several intents), at most
        ``PIPELINE_BLOCKS`` of them, so memory stays a few blocks whatever the batch size.
        """
        groups = self._groups(rows, report)
        first = next(groups, None)
        if first is None:
            return
        pending = self._prepare(*first)
        first = None  # a prepared group's rows are no longer needed: hold blocks, not rows
        second = next(groups, None)
        if second is None:  # a single block (the common small write): no thread needed
            try:
                self._commit_batch(pending, report)
            except BaseException:
                if any(block.with_header for block in pending) and self._dirty is False:
                    self._needs_header = True
                raise
            return
        inflight: Future[None] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="elspeth-appendsink") as worker:
            try:
                rest, second = chain([second], groups), None
                for group in rest:
                    inflight, pending = self._submit(worker, inflight, pending, report)
                    pending.extend(self._prepare(*group))
                if inflight is not None:
                    inflight.result()
                    inflight = None
                self._commit_batch(pending, report)
                pending = []
            except BaseException as exc:
                if any(block.with_header for block in pending):
                    self._needs_header = True  # prepared, never sent
                failure = None if inflight is None else inflight.exception()
                if failure is not None and failure is not exc:
                    raise failure from exc
                raise

    def _submit(
        self,
        worker: ThreadPoolExecutor,
        inflight: Future[None] | None,
        pending: list[_Prepared],
        report: WriteReport,
    ) -> tuple[Future[None] | None, list[_Prepared]]:
        """Hand ``pending`` to the worker once it is free (or wait when enough blocks are waiting)."""
        if inflight is not None and not inflight.done() and len(pending) < PIPELINE_BLOCKS:
            return inflight, pending
        if inflight is not None:
            inflight.result()
        return worker.submit(self._commit_batch, pending, report), []

    def _slices(self, rows: Sequence[Row]) -> Iterator[tuple[int, Sequence[Row], Packed]]:
        """Encode ``rows`` a slice at a time: ``(start, slice, encoded)``.

        Slices start at ``_SLICE`` rows and then aim at ``_SLICE_BYTES`` of output, so a
        slice's fixed costs are spread over many rows while the memory it holds stays small
        next to a block, whatever the row size (rows larger than that go one at a time).
        """
        encoder = self._require_encoder()
        start, size = 0, _SLICE
        while start < len(rows):
            chunk = rows[start : start + size]
            try:
                encoded = encoder.encode_packed(chunk)
            except RowError as exc:
                if exc.row_index is not None:
                    exc.moved_to(start + exc.row_index)
                raise
            yield start, chunk, encoded
            start += len(chunk)
            per_row = max(1, len(encoded.data) // len(chunk))
            size = min(_SLICE_ROWS_MAX, max(1, _SLICE_BYTES // per_row))

    @property
    def _lengths_at_rest(self) -> bool:
        """Block entries carry row lengths, not digests (see :mod:`manifest`)."""
        encoder = self._require_encoder()
        return encoder.contiguous_rows and not self.target.identity.is_keyed

    def _groups(
        self, rows: Sequence[Row], report: WriteReport
    ) -> Iterator[tuple[list[Row], list[memoryview], bytes, bytes, int]]:
        """Yield whole-row groups that fill a block (header first): rows, byte spans, manifest body."""
        encoder = self._require_encoder()
        identity = self.target.identity
        lengths = self._lengths_at_rest
        header = encoder.header() if self._needs_header else b""
        cutter = BlockCutter(self.target.block_size, len(header))
        cur_rows: list[Row] = []
        cur_parts: list[memoryview] = []
        cur_body: list[bytes] = []
        cur_first = 0  # batch index of the group's first row (exact unless replayed rows were skipped)
        replay = self._replay
        for start, sliced, packed in self._slices(rows):
            chunk, encoded = sliced, packed
            matching = replay is not None and len(replay) > 0
            # digests are needed to recognise replayed rows, or when the manifest stores them
            digests = identity.digests(chunk, encoded) if matching or not lengths else b""
            origin: list[int] | None = None
            if replay is not None and matching:
                keep = [
                    i
                    for i in range(len(chunk))
                    if not replay.take(digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE])
                ]
                if len(keep) != len(chunk):
                    report.rows_skipped += len(chunk) - len(keep)
                    chunk = [chunk[i] for i in keep]
                    encoded = encoded.select(keep)
                    digests = b"".join(digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE] for i in keep)
                    origin = [start + i for i in keep]
            prefix = encoded.offsets
            try:
                cuts = cutter.feed(prefix)
            except RowTooLarge as exc:
                index = exc.row_index or 0
                exc.moved_to(origin[index] if origin is not None else start + index)
                raise
            i = 0
            for j, full in cuts:
                if j > i:
                    if not cur_rows:
                        cur_first = origin[i] if origin is not None else start + i
                    cur_rows.extend(chunk[i:j])
                    cur_parts.append(encoded.span(i, j))
                    cur_body.append(
                        encoded.lengths(i, j) if lengths else digests[i * DIGEST_SIZE : j * DIGEST_SIZE]
                    )
                    i = j
                if full:
                    yield cur_rows, cur_parts, b"".join(cur_body), header, cur_first
                    header, cur_rows, cur_parts, cur_body = b"", [], [], []
        if cur_rows:
            yield cur_rows, cur_parts, b"".join(cur_body), header, cur_first

    def _prepare(
        self,
        rows: list[Row],
        parts: Sequence[bytes | memoryview],
        body: bytes,
        header: bytes,
        first: int = 0,
    ) -> list[_Prepared]:
        """The bytes of one planned block (split further if the format's real size is over the limit).

        ``parts`` are the rows' encodings in order, several rows per item (spans of a slice);
        ``body`` their lengths or digests for the manifest.
        """
        encoder = self._require_encoder()
        data = header + (encoder.block(parts, rows) if rows else b"")
        if len(data) > self.target.block_size:
            if len(rows) <= 1:
                if header and rows:  # header and the row do not fit together: send them apart
                    return [
                        *self._prepare([], [], b"", header),
                        *self._prepare(rows, parts, body, b"", first),
                    ]
                raise RowTooLarge(
                    f"a block of one row encodes to {len(data)} bytes, over the block limit of "
                    f"{self.target.block_size}",
                    row_index=first if rows else None,
                    hint="raise block_size or shrink the row",
                )
            # Arrow: the size estimate was short; split (per row now) and try again
            half, each = len(rows) // 2, encoder.encode(rows)
            cut = half * (4 if self._lengths_at_rest else DIGEST_SIZE)
            return [
                *self._prepare(rows[:half], each[:half], body[:cut], header, first),
                *self._prepare(rows[half:], each[half:], body[cut:], b"", first + half),
            ]
        if header:
            self._needs_header = False
        return [_Prepared(data, rows, body, self._lengths_at_rest, bool(header))]

    def _commit_batch(self, blocks: list[_Prepared], report: WriteReport) -> None:
        """Intents for the blocks in one manifest append, then each block at its offset, in order."""
        queue = list(blocks)
        refused_at: tuple[int, int] | None = None
        while queue:
            c = self._require_cursor()
            t = self.target
            if self._segment_sealed:
                # ELSPETH calls on_complete even for a failed run, so seal_on_complete may have
                # sealed the segment a resume continues: carry on in the next one.
                self._rollover("segment already sealed")
                self._segment_sealed = False
                c = self._require_cursor()
            elif needs_rollover(
                c.blocks, c.offset, len(queue[0].data), t.segment_max_blocks, t.segment_max_bytes
            ):
                self._rollover("segment cap reached")
                c = self._require_cursor()
            fit, count, length = 0, c.blocks, c.offset
            for block in queue:
                if count >= t.segment_max_blocks or (
                    t.segment_max_bytes is not None
                    and length > 0
                    and length + len(block.data) > t.segment_max_bytes
                ):
                    break
                fit, count, length = fit + 1, count + 1, length + len(block.data)
            batch, queue = queue[: max(fit, 1)], queue[max(fit, 1) :]
            entries: list[BlockEntry] = []
            payload: list[bytes] = []
            seq, head, offset, token = c.next_seq, c.head, c.offset, c.next_token
            for block in batch:
                entry = BlockEntry(
                    seq=seq,
                    prev=head,
                    segment=c.segment,
                    offset=offset,
                    length=len(block.data),
                    sha256=hashlib.sha256(block.data).hexdigest(),
                    tokens=TokenRange(token, token + len(block.rows)),
                    write_call=c.write_call,
                    batch=c.next_seq,
                    digests=b"" if block.lengths else block.body,
                    lengths=block.body if block.lengths else b"",
                )
                encoded = encode_record(entry)
                entries.append(entry)
                payload.append(encoded)
                seq, head, offset, token = seq + 1, record_hash(encoded), entry.end, entry.tokens.end
            manifest_bytes = b"".join(payload)
            try:
                self.store.append_block(self.target.manifest, manifest_bytes, c.manifest_length)
            except BaseException:
                self._dirty = True
                raise
            self.cursor = replace(
                c, manifest_length=c.manifest_length + len(manifest_bytes), next_seq=seq, head=head
            )
            for index, (entry, block) in enumerate(zip(entries, batch, strict=True)):
                try:
                    result = self._append_data(entry, block.data)
                except SegmentFullError:
                    # An answer, not a lost response: nothing of this block landed. Void it and the
                    # rest of the batch, roll over, and place them in the next segment.
                    if refused_at == (entry.segment, entry.offset) or entry.offset == 0:
                        self._dirty = True
                        raise
                    refused_at = (entry.segment, entry.offset)
                    self._void(entry)
                    self._rollover("service refused more blocks")
                    queue = batch[index:] + queue
                    break
                except BaseException:
                    self._dirty = True
                    raise
                self.cursor = self._require_cursor().after_block(
                    len(block.data), len(block.rows), result.committed_blocks
                )
                self._hash.update(block.data)
                if block.lengths:
                    self._call_rows.extend(block.rows)
                else:
                    self._call_digests.append(block.body)
                report.rows_appended += len(block.rows)
                report.blocks += 1
                report.bytes += len(block.data)

    def _append_data(self, entry: BlockEntry, data: bytes) -> AppendResult:
        name = self.segment(entry.segment)
        self._keep_lease(name)
        try:
            return self.store.append_block(name, data, entry.offset, lease=self._leased)
        except LeaseHeldError as exc:
            if exc.error_code != "LeaseNotPresentWithBlobOperation" or self._leased is None:
                raise
            # Our own lease lapsed (a long retry storm or a long pause between writes): take it
            # back — that fails if anyone else leased the blob meanwhile — and send again, guarded.
            self._acquire(name)
            return self.store.append_block(name, data, entry.offset, lease=self._leased)

    def _append_record(self, record: Record) -> None:
        c = self._require_cursor()
        encoded = encode_record(record)
        try:
            self.store.append_block(self.target.manifest, encoded, c.manifest_length)
        except BaseException:
            self._dirty = True
            raise
        self.cursor = c.after_record(len(encoded), record_hash(encoded))

    def _void(self, entry: BlockEntry) -> None:
        c = self._require_cursor()
        self._append_record(VoidRecord(c.next_seq, c.head, entry.seq, entry.segment, entry.offset))

    def _rollover(self, reason: str) -> None:
        c = self._require_cursor()
        record = RolloverRecord(c.next_seq, c.head, c.segment, c.offset, c.segment + 1, reason)
        self._append_record(record)
        try:
            self._finish_rollover(record)
        except BaseException:
            # the manifest now ends in an unfinished rollover: only recovery may write after it
            # (a seal on completion here would hide it), and recovery redoes both steps
            self._dirty = True
            raise

    def _finish_rollover(self, record: RolloverRecord) -> None:
        """Seal the full segment and open the next; both steps are idempotent (redone on recovery)."""
        old, new = self.segment(record.segment), self.segment(record.next_segment)
        self.store.seal(old, record.final_length, lease=self._leased)
        self._create_own_segment(new)
        if self._leased is not None:
            self._acquire(new)
            with contextlib.suppress(StorageError):  # it expires anyway; the old segment is sealed
                self.store.release_lease(old, self.target.lease_id)
        c = self._require_cursor()
        if c.segment == record.segment:
            self.cursor = c.next_segment()

    def _create_own_segment(self, name: str) -> None:
        try:
            self.store.create_append_blob(
                name, {META_CREATOR: self.target.run_id, META_WRITER: self.target.run_id}
            )
        except BlobExistsError:
            info = self.store.properties(name)
            if info is None or info.metadata.get(META_CREATOR) != self.target.run_id or info.size != 0:
                raise UndescribedBytesError(
                    f"segment {name} exists but was not created empty by run {self.target.run_id}"
                ) from None

    # --- leases ------------------------------------------------------------------------------
    def _acquire(self, name: str) -> None:
        """Fence ``name``; our own (crashed) lease is simply re-acquired, since its id is ours."""
        if not self.target.lease:
            return
        try:
            self.store.acquire_lease(name, self.target.lease_id, self.target.lease_duration)
        except LeaseHeldError as exc:
            # The blob's metadata names the last run of this sink that wrote it; it is the holder
            # only if that run's (deterministic) lease id is the active one.
            info = self.store.properties(name)
            named = None if info is None else info.metadata.get(META_WRITER)
            holder = (
                named
                if named and named != self.target.run_id and self.store.holds_lease(name, lease_id_for(named))
                else None
            )
            raise LeaseHeldError(
                f"{name} is leased by another writer"
                + (f" (run {holder})" if holder else " (not a lease of this sink's runs)"),
                holder=holder,
                blob=name,
                status=exc.status,
                error_code=exc.error_code,
                hint="wait for that run to finish (a crashed writer's lease expires within lease_duration) "
                "or break it with `elspeth-appendsink unlock`",
            ) from exc
        self._leased = self.target.lease_id
        self._lease_at = time.monotonic()
        self.events.append({"event": "lease.acquired", "blob": name, "run_id": self.target.run_id})
        info = self.store.properties(name)
        if info is not None and info.metadata.get(META_WRITER) != self.target.run_id:
            # name ourselves as the writer, so that a refused writer's error can name the holder
            self.store.set_metadata(
                name, {**info.metadata, META_WRITER: self.target.run_id}, lease=self._leased
            )

    def _keep_lease(self, name: str) -> None:
        """Renew our lease once half its duration has passed (before it can lapse mid-run)."""
        duration = self.target.lease_duration
        if self._leased is None or duration < 0 or time.monotonic() - self._lease_at < duration / 2:
            return
        self.store.renew_lease(name, self._leased)
        self._lease_at = time.monotonic()

    # --- fresh start ----------------------------------------------------------------------------
    def _start(self, rows: Sequence[Row]) -> None:
        """Fresh start: pointer, claim the output (create, append or continue), manifest, open record."""
        t = self.target
        pointer = {
            "blob_path": t.blob_path,
            "manifest": t.manifest,
            "run_id": t.run_id,
            "created_at": self._clock().isoformat(),
        }
        payload = json.dumps(pointer, sort_keys=True).encode()
        pointer_name = run_pointer_name(t.template_digest, t.run_id)
        created = self.store.put_if_missing(pointer_name, payload)
        # An existing pointer with exactly our bytes (our timestamp) is our own upload whose response
        # was lost and whose SDK retry then found it: not an earlier start of this run.
        if not created and not self._resume and self.store.get(pointer_name) != payload:
            raise RecoveryError(
                f"run {t.run_id} already started writing this output; it must be resumed, not started again",
                hint="use `elspeth resume` (the sink's configure_for_resume) or a new run id",
            )
        plan = self._claim_output(rows)
        encoder = plan.encoder or self._make_encoder(rows)
        self.encoder = encoder
        self._hash = plan.full_hash
        header_written = plan.base_length == 0 and plan.base_segment == 0
        self._needs_header = header_written
        opening = OpenRecord(
            seq=0,
            prev=plan.prev,
            run_id=t.run_id,
            container=t.container,
            blob_path=t.blob_path,
            encoder=encoder.describe(),
            identity=t.identity.describe(),
            block_size=t.block_size,
            segment_max_blocks=t.segment_max_blocks,
            segment_max_bytes=t.segment_max_bytes,
            if_exists=t.if_exists,
            base_segment=plan.base_segment,
            base_length=plan.base_length,
            base_sha256=plan.base_sha256,
            continues=plan.continues,
            header_written=header_written,
            created_at=self._clock().isoformat(),
            sink_version=__version__,
        )
        try:
            self.store.create_append_blob(t.manifest, {META_CREATOR: t.run_id})
        except BlobExistsError:
            info = self.store.properties(t.manifest)
            if info is None or info.size != 0 or info.metadata.get(META_CREATOR) != t.run_id:
                raise RecoveryError(
                    f"manifest {t.manifest} already exists; this run must be resumed"
                ) from None
        self.cursor = Cursor(
            segment=plan.base_segment,
            offset=plan.base_length,
            blocks=plan.blocks,
            next_token=0,
            write_call=-1,
            manifest_length=0,
            next_seq=0,
            head=plan.prev,
            total_bytes=plan.total_bytes,
        )
        self._append_record(opening)

    def _claim_output(self, rows: Sequence[Row]) -> _StartPlan:
        """Create segment 0, or — as ``if_exists`` allows — take over the existing output."""
        t = self.target
        seg0 = self.segment(0)
        try:
            self.store.create_append_blob(seg0, {META_CREATOR: t.run_id, META_WRITER: t.run_id})
        except BlobExistsError:
            info = self.store.properties(seg0)
            if info is None:
                raise
            if info.metadata.get(META_CREATOR) == t.run_id and info.size == 0:
                pass  # ours, from a start that crashed before describing anything
            elif t.if_exists == "fail":
                raise
            elif not info.is_append_blob:
                raise BlobTypeError(
                    f"{seg0} exists but is not an append blob; it will not be touched", blob=seg0
                ) from None
            elif t.if_exists == "append":
                return self._claim_for_append(seg0, info, rows)
            else:
                plan = self._claim_for_continue(seg0, info)
                if plan is not None:
                    return plan
        self._acquire(seg0)
        return _StartPlan()

    def _claim_for_append(self, seg0: str, info: BlobInfo, rows: Sequence[Row]) -> _StartPlan:
        """``if_exists: append``: the existing bytes become the run's pre-existing base."""
        if info.sealed:
            raise BlobTypeError(f"{seg0} is sealed; nothing can be appended to it", blob=seg0)
        self._acquire(seg0)
        info = self.store.properties(seg0) or info
        base_hash = hashlib.sha256()
        head = b""
        for chunk in self.store.stream(seg0, length=info.size):
            base_hash.update(chunk)
            if len(head) < 64 * 1024:
                head += chunk[: 64 * 1024 - len(head)]
        encoder = self._make_encoder(rows)
        if info.size and self._check_existing is not None:
            self._check_existing(encoder, head)
        return _StartPlan(
            base_length=info.size,
            base_sha256=base_hash.hexdigest(),
            encoder=encoder,
            full_hash=base_hash.copy(),
            total_bytes=info.size,
            blocks=info.committed_blocks or 0,
        )

    def _claim_for_continue(self, seg0: str, info: BlobInfo) -> _StartPlan | None:
        """``if_exists: continue``: reconcile the earlier runs; None if there is nothing to continue."""
        recovered = self._recover_output(seg0, info)
        if recovered is None:
            return None
        layouts, replay = recovered
        last = layouts[-1]
        self._replay = replay
        base_segment = last.segment
        if base_segment in last.sealed:  # sealed on completion: continue in a fresh segment
            base_segment += 1
            self._create_own_segment(self.segment(base_segment))
        self._acquire(self.segment(base_segment))
        current = self.store.properties(self.segment(base_segment))
        return _StartPlan(
            base_segment=base_segment,
            base_length=expected_lengths(layouts).get(base_segment, 0),
            base_sha256=GENESIS,
            continues=tuple(lay.open.run_id for lay in layouts),
            prev=last.head,
            encoder=self._restore_encoder(last.open.encoder),
            full_hash=self._full_hash,
            total_bytes=self._full_size,
            blocks=0 if current is None else current.committed_blocks or 0,
        )

    # --- recovery ------------------------------------------------------------------------------
    def _read_manifest(self, name: str) -> list[DecodedRecord]:
        reader = ManifestReader(name)
        records: list[DecodedRecord] = []
        for chunk in self.store.stream(name):
            records.extend(reader.feed(chunk))
        reader.finish()
        return records

    def _recover_own_run(self) -> None:
        """Resume: restore this run's cursor from its manifest and segments (or find nothing)."""
        t = self.target
        self._dirty = False
        self.cursor = None
        raw = self.store.get(run_pointer_name(t.template_digest, t.run_id))
        if raw is None:
            return  # this run never wrote anything: a fresh start (in resume mode)
        pointer = json.loads(raw)
        if pointer.get("blob_path") != t.blob_path:
            # the template held a timestamp: the run's real path is the one it resolved back then
            self.target = t = _with_path(t, pointer["blob_path"])
        if self.store.properties(t.manifest) is None:
            return
        records = self._read_manifest(t.manifest)
        if not records:
            return  # manifest created, open record never landed: nothing of ours is in any segment
        later = [n for n in self.store.list_names(manifest_prefix(t.blob_path)) if n != t.manifest]
        for name in later:
            other = self._read_manifest(name)
            if other and isinstance(other[0].record, OpenRecord) and t.run_id in other[0].record.continues:
                raise RecoveryError(
                    f"run {other[0].record.run_id} has continued this output after run {t.run_id}; "
                    "resuming the earlier run would interleave the two",
                    hint="re-run the pipeline with if_exists: continue instead",
                )
        earlier = self._earlier_layouts(records[0].record)
        layout = self._settle_tail(walk(records, t.manifest))
        # Rows the engine may re-deliver: in a plain run, the rows the last write call that began
        # committed (in this process we know which call failed; after a restart, the last one with
        # any intent, landed or voided), matched in order by the next call. A run that continued
        # earlier runs matches by identity instead, against every row of the output so far.
        scope_call = max(layout.last_write_call, layout.last_call_begun)
        if self._failed_call is not None:
            scope_call = self._failed_call
        if earlier:
            in_scope = {id(e) for lay in [*earlier, layout] for e in lay.committed}
        else:
            in_scope = {id(e) for e in layout.committed if e.write_call == scope_call}
        self._verify_output([*earlier, layout], digests_for=in_scope)
        self._failed_call = None
        self.encoder = self._restore_encoder(layout.open.encoder)
        self._hash = self._full_hash
        self._needs_header = layout.open.header_written and not layout.committed
        blocks = 0
        info = self.store.properties(self.segment(layout.segment))
        if info is not None and info.committed_blocks is not None:
            blocks = info.committed_blocks
        self.cursor = Cursor(
            segment=layout.segment,
            offset=layout.segment_ends.get(layout.segment, 0),
            blocks=blocks,
            next_token=layout.next_token,
            write_call=layout.last_write_call,
            manifest_length=layout.manifest_length,
            next_seq=layout.next_seq,
            head=layout.head,
            total_bytes=self._full_size,
        )
        self.cursor = replace(self.cursor, write_call=scope_call)
        if earlier:
            scope = [self._entry_digests(e) for lay in [*earlier, layout] for e in lay.committed]
            runs = (*(lay.open.run_id for lay in earlier), t.run_id)
            self._replay = _Replay(DigestMultiset.from_packed(scope), "resume", runs)
            scope_rows = len(self._replay)
        else:
            committed = b"".join(
                self._entry_digests(e) for e in layout.committed if e.write_call == scope_call
            )
            self._redelivered = (scope_call, committed) if scope_call >= 0 else None
            self._run_rows = sum(len(e.tokens) for e in layout.committed)
            self._replay = None
            scope_rows = len(committed) // DIGEST_SIZE
        self.events.append(
            {
                "event": "resume.recovered",
                "run_id": t.run_id,
                "entries": len(layout.committed),
                "voided": layout.voided,
                "bytes": self._full_size,
                "replay_scope_rows": scope_rows,
                "replay_scope_write_call": scope_call,
            }
        )
        self._segment_sealed = layout.segment in layout.sealed
        self._acquire(self.segment(layout.segment))

    def _earlier_layouts(self, opening: Record) -> list[RunLayout]:
        if not isinstance(opening, OpenRecord):
            raise ManifestCorruptError(f"{self.target.manifest} does not start with an open record")
        layouts = []
        for run_id in opening.continues:
            name = manifest_name(self.target.blob_path, run_id)
            layouts.append(walk(self._read_manifest(name), name))
        return layouts

    def _settle_tail(self, layout: RunLayout) -> RunLayout:
        """Finish or void the unfinished last step of ``layout`` (writes to that run's manifest)."""
        manifest = manifest_name(self.target.blob_path, layout.open.run_id)
        if layout.pending:
            first = layout.pending[0]
            name = self.segment(first.segment)
            info = self.store.properties(name)
            landed = classify_pending(layout.pending, 0 if info is None else info.size, name)
            for entry in layout.pending[:landed]:
                data = b"".join(self.store.stream(name, offset=entry.offset, length=entry.length))
                if hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise UndescribedBytesError(
                        f"segment {name} holds {entry.length} bytes at offset {entry.offset} where the "
                        f"manifest's intent {entry.seq} expected different bytes (sha256 mismatch): "
                        "someone else appended there"
                    )
                self.events.append(
                    {
                        "event": "recovery.adopted",
                        "segment": name,
                        "offset": entry.offset,
                        "length": entry.length,
                    }
                )
            if landed < len(layout.pending):
                gone = layout.pending[landed]
                void = VoidRecord(layout.next_seq, layout.head, gone.seq, gone.segment, gone.offset)
                self.store.append_block(manifest, encode_record(void), layout.manifest_length)
                self.events.append(
                    {
                        "event": "recovery.voided",
                        "segment": name,
                        "offset": gone.offset,
                        "intents": len(layout.pending) - landed,
                    }
                )
                return walk(self._read_manifest(manifest), manifest)
            layout.adopt_pending(landed)
        elif layout.pending_rollover is not None:
            record = layout.pending_rollover
            old = self.segment(record.segment)
            info = self.store.properties(old)
            if info is None or info.size != record.final_length:
                raise UndescribedBytesError(
                    f"segment {old} is {None if info is None else info.size} bytes; "
                    f"the rollover sealed it at {record.final_length}"
                )
            if not info.sealed:
                self._acquire(old)
                self.store.seal(old, record.final_length, lease=self._leased)
            self._create_own_segment_for(self.segment(record.next_segment), layout.open.run_id)
            self.events.append({"event": "recovery.rollover_finished", "segment": old})
        return layout

    def _create_own_segment_for(self, name: str, run_id: str) -> None:
        try:
            self.store.create_append_blob(name, {META_CREATOR: run_id, META_WRITER: self.target.run_id})
        except BlobExistsError:
            info = self.store.properties(name)
            if info is None or info.metadata.get(META_CREATOR) != run_id or info.size != 0:
                raise UndescribedBytesError(
                    f"segment {name} exists but was not created empty by run {run_id}"
                ) from None

    def _recover_output(self, seg0: str, info: BlobInfo) -> tuple[list[RunLayout], _Replay] | None:
        """``if_exists: continue``: reconcile every earlier run of this output, oldest first."""
        names = self.store.list_names(manifest_prefix(self.target.blob_path))
        decoded = {}
        for name in names:
            records = self._read_manifest(name)
            if records:
                decoded[name] = records
        if not decoded:
            if info.size == 0 and META_CREATOR in info.metadata:
                return None  # created by this sink, nothing ever described: start on it
            raise BlobTypeError(
                f"{seg0} exists but no manifest of this sink describes it; it will not be continued",
                blob=seg0,
                hint="use if_exists: append to add to a blob written by something else",
            )
        layouts = []
        for name, records in decoded.items():
            layouts.append((walk(records, name), name))
        layouts.sort(key=lambda pair: len(pair[0].open.continues))
        ordered = [lay for lay, _ in layouts]
        for index, layout in enumerate(ordered):
            expected = tuple(lay.open.run_id for lay in ordered[:index])
            if layout.open.continues != expected:
                raise ManifestCorruptError(
                    f"run {layout.open.run_id} continues {list(layout.open.continues)}, but the manifests "
                    f"present give {list(expected)}: the chain of runs for this output is broken"
                )
        # The earlier runs are over (their leases are gone, or _acquire below fails): finish their tails.
        last = ordered[-1]
        fence = last.pending_rollover.segment if last.pending_rollover is not None else last.segment
        self._acquire(self.segment(fence))
        ordered = [self._settle_tail(layout) for layout in ordered]
        for index in range(1, len(ordered)):
            if ordered[index].open.prev != ordered[index - 1].head:
                raise ManifestCorruptError(
                    f"run {ordered[index].open.run_id} does not link to the last record of run "
                    f"{ordered[index - 1].open.run_id}: the chain of runs is broken"
                )
        self._verify_output(ordered, digests_for={id(e) for lay in ordered for e in lay.committed})
        digests = DigestMultiset.from_packed(self._entry_digests(e) for lay in ordered for e in lay.committed)
        replay = _Replay(digests, "continue", tuple(lay.open.run_id for lay in ordered))
        self.events.append(
            {
                "event": "continue.recovered",
                "runs": list(replay.runs),
                "rows": len(digests),
                "bytes": self._full_size,
                "identity_bytes": digests.nbytes,
            }
        )
        return ordered, replay

    def _verify_output(
        self, layouts: Sequence[RunLayout], digests_for: Collection[int] = frozenset()
    ) -> None:
        """Read every segment once: each byte described, each entry's sha256 right, full hash rebuilt.

        Entries in ``digests_for`` (by ``id``) that carry row lengths get their rows' identity
        digests computed from the bytes read, for :meth:`_entry_digests`.
        """
        self._region_digests = {}
        ends = expected_lengths(layouts)
        full = hashlib.sha256()
        total = 0
        first = layouts[0].open
        for segment in sorted(ends):
            name = self.segment(segment)
            end = ends[segment]
            info = self.store.properties(name)
            size = 0 if info is None else info.size
            if info is None and end > 0:
                raise UndescribedBytesError(
                    f"segment {name} is missing; the manifest describes {end} bytes in it"
                )
            if size != end:
                raise UndescribedBytesError(
                    f"segment {name} is {size} bytes but the manifests describe {end}: "
                    f"bytes [{min(size, end)}, {max(size, end)}) are "
                    f"{'undescribed' if size > end else 'missing'}"
                )
            regions: list[_Region] = []
            if segment == first.base_segment and first.base_length:
                regions.append(_Region(0, first.base_length, first.base_sha256, "pre-existing bytes"))
            for layout in layouts:
                for e in layout.committed:
                    if e.segment == segment:
                        what = f"entry {e.seq} of run {layout.open.run_id}"
                        rows = e if e.lengths and id(e) in digests_for else None
                        regions.append(_Region(e.offset, e.length, e.sha256, what, rows))
            regions.sort(key=lambda region: region.offset)
            position = 0
            for offset, length, _sha, what, _rows in regions:
                if offset != position:
                    raise UndescribedBytesError(
                        f"segment {name}: bytes [{position}, {offset}) are not described (next is {what})"
                    )
                position = offset + length
            if position != end:
                raise UndescribedBytesError(f"segment {name}: bytes [{position}, {end}) are not described")
            self._check_regions(name, end, regions, full)
            total += end
        self._full_hash = full
        self._full_size = total

    def _check_regions(self, name: str, end: int, regions: list[_Region], full: Any) -> None:
        index = 0
        current = hashlib.sha256()
        filled = 0
        kept: list[bytes] = []  # the current region's bytes, when its rows' digests are wanted
        for chunk in self.store.stream(name, length=end) if end else iter(()):
            full.update(chunk)
            view = memoryview(chunk)
            while view:
                offset, length, sha, what, rows = regions[index]
                take = min(len(view), length - filled)
                current.update(view[:take])
                if rows is not None:
                    kept.append(bytes(view[:take]))
                filled += take
                view = view[take:]
                if filled == length:
                    if sha != GENESIS and current.hexdigest() != sha:
                        raise UndescribedBytesError(
                            f"segment {name}: bytes [{offset}, {offset + length}) ({what}) do not match "
                            "their recorded sha256"
                        )
                    if rows is not None:
                        block = b"".join(kept)
                        self._region_digests[rows.segment, rows.offset] = content_digests(
                            block, rows.row_lengths()
                        )
                        kept = []
                    index += 1
                    current = hashlib.sha256()
                    filled = 0

    def _entry_digests(self, entry: BlockEntry) -> bytes:
        """A committed entry's packed row digests: recorded, or computed by :meth:`_verify_output`."""
        if not entry.lengths:
            return entry.digests
        try:
            return self._region_digests[entry.segment, entry.offset]
        except KeyError:
            raise InvariantViolation(
                f"digests of entry {entry.seq} were not computed while verifying the output"
            ) from None

    # --- helpers -------------------------------------------------------------------------------
    def _require_cursor(self) -> Cursor:
        if self.cursor is None:
            raise InvariantViolation("writer used before it was opened")
        return self.cursor

    def _require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise InvariantViolation("writer has no encoder")
        return self.encoder


class _Region(NamedTuple):
    """A described byte range of a segment, checked by :meth:`AppendWriter._check_regions`."""

    offset: int
    length: int
    sha256: str
    what: str
    rows: BlockEntry | None = None  # the entry whose rows' digests are wanted from these bytes


def _as_dict(cursor: Cursor) -> dict[str, Any]:
    return {name: getattr(cursor, name) for name in cursor.__dataclass_fields__}


def _with_path(target: OutputTarget, blob_path: str) -> OutputTarget:
    from dataclasses import replace

    return replace(target, blob_path=blob_path)
