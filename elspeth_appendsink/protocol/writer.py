"""The exactly-once append protocol: rows in, blocks durable in segments, each described once.

This module is the protocol's spine and its data path; a row can be followed from
:meth:`AppendWriter.write` to the guarded ``append_block`` reading down: ``write`` →
``_pipeline`` → ``_slices`` → ``_groups`` → ``_prepare`` → ``_commit_batch`` → ``_append_data``
(and ``_rollover`` when a segment is full). What comes before the first block hands the write
path a value: :mod:`~elspeth_appendsink.protocol.opening` (a fresh run → a ``StartPlan``),
:mod:`~elspeth_appendsink.protocol.recovery` (a resume, or a call whose outcome is uncertain → a
``Recovered`` cursor and the rows that may be replayed), ``protocol.lease.LeaseKeeper`` (fencing
and renewal) and :mod:`~elspeth_appendsink.protocol.scan` (the read-only walk recovery and verify
share). The objects in the container and the whole protocol: ``docs/architecture.md``.

**Ordering** (the property recovery relies on): every step is one guarded storage request, sent
only after the previous one is durable (the opening's exceptions are argued in its module):

1. pointer, segment 0, lease, manifest (:mod:`~elspeth_appendsink.protocol.opening`) → the
   ``open`` record, in front of the first batch's intents in one manifest append;
2. per *batch* of blocks: their ``block`` entries (the *intents*: segment, offset, length,
   sha256, token range, per row its length or identity digest) in **one** manifest append, then
   each block appended to its segment at exactly its offset, in order;
3. per rollover: a ``rollover`` record, then seal the full segment at its final length, then
   create the next segment.

So after a crash only the manifest's last batch (or a last rollover) can be unfinished, and the
segments' lengths say how far it got: blocks whose bytes hash to their sha256 are adopted, the
rest voided; any other undescribed byte stops recovery with :class:`UndescribedBytesError`.
Replayed rows are recognised by identity: the first call of a resume is matched *in order*
against the rows the interrupted call committed (the engine's count of recorded outcomes,
``recorded_rows``, decides when known: :meth:`AppendWriter._match_redelivery`); with
``if_exists: continue`` every row committed by earlier runs is matched as a multiset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from elspeth_appendsink.core.blocks import BlockCutter, needs_rollover
from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.identity import DIGEST_SIZE, DigestMultiset
from elspeth_appendsink.core.manifest import (
    BlockEntry,
    Record,
    RolloverRecord,
    SealRecord,
    TokenRange,
    VoidRecord,
    encode_record,
    record_hash,
)
from elspeth_appendsink.core.paths import segment_name
from elspeth_appendsink.core.replay import ReplayDecision, decide_replay
from elspeth_appendsink.encoders.base import Encoder, Packed, Part, Row
from elspeth_appendsink.errors import (
    ClosedError,
    InvariantViolation,
    LeaseHeldError,
    RowError,
    RowTooLarge,
    SegmentFullError,
)
from elspeth_appendsink.protocol.digest import RunningDigest
from elspeth_appendsink.protocol.lease import LeaseKeeper
from elspeth_appendsink.protocol.opening import ExistingBlob, Opening
from elspeth_appendsink.protocol.recovery import Recovery, Replay, create_own_segment
from elspeth_appendsink.protocol.target import OutputTarget
from elspeth_appendsink.storage.base import AppendResult, Store

__all__ = ["AppendWriter", "OutputTarget", "WriteReport", "blocks_per_batch"]

# Rows are encoded a slice at a time: the first slice is _SLICE rows, later ones aim at
# _SLICE_BYTES of output (1 to _SLICE_ROWS_MAX rows). That bounds the memory held besides the
# blocks, even for rows of many MiB, and spreads an encoder's fixed cost per call thin.
_SLICE = 64
_SLICE_BYTES = 1 << 20
_SLICE_ROWS_MAX = 65536
# Blocks prepared ahead while a batch is in flight, and the most per batch (one manifest append
# for all their intents): as many as fit in PIPELINE_BYTES, two to four. With latency, a batch
# of four costs five round trips where two batches of two cost six (measured: JSONL 1M rows in
# one call at 20 ms per request, 5.3 -> 4.9 s); the bytes bound keeps 100 MiB blocks at two.
PIPELINE_BYTES = 16 * 1024 * 1024
PIPELINE_BLOCKS = (2, 4)

_Slice = tuple[int, Sequence[Row], Packed]  # (index of its first row, its rows, their encoding)


def blocks_per_batch(block_size: int) -> int:
    """How many blocks are prepared ahead while a batch uploads, and the most one batch carries."""
    low, high = PIPELINE_BLOCKS
    return max(low, min(high, PIPELINE_BYTES // block_size))


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

    ``body`` is the rows' packed lengths or packed identity digests, or empty (``kind``, the
    manifest's body kind: "lengths", "digests" or "derived"). ``first`` is the index of its
    first row in the write call's rows when its rows are ``rows[first:first + len(rows)]``
    (None when replayed rows were skipped between them): should the call fail later, the
    digests of what it committed are computed then, from those rows, rather than for every
    block now.
    """

    data: bytes
    rows: Sequence[Row]
    body: bytes
    kind: str
    with_header: bool
    first: int | None = None


class AppendWriter:
    """One run's writer. Not thread-safe; one instance per process per run.

    It owns the cursor and everything that moves it: the data path (one piece, because the
    cursor, the call's committed rows and the "outcome uncertain" flag must change together at
    each guarded append), the rollover, and the end of the run. Opening and recovery produce
    values it installs (:meth:`_open`, :meth:`_recover`).
    """

    def __init__(
        self,
        store: Store,
        target: OutputTarget,
        *,
        make_encoder: Callable[[Sequence[Row]], Encoder],
        restore_encoder: Callable[[dict[str, Any]], Encoder],
        resume: bool = False,
        check_existing: Callable[[Encoder, ExistingBlob], None] | None = None,
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
        self._digest = RunningDigest()  # content_hash: the output's running sha256
        self._dirty = False
        self._replay: Replay | None = None
        self._needs_header = False
        self.events: list[dict[str, Any]] = []  # recovery facts for the audit trail
        self._lease = LeaseKeeper(
            store, target.run_id, enabled=target.lease, duration=target.lease_duration, events=self.events
        )
        # What the current write call committed, in order: packed digests known already (from a
        # recovery, or blocks carrying digests), then the rows of blocks that carry none, each
        # block's as a range of the call's rows (``_call_input``) when they are consecutive
        # there, which they are unless replayed rows were skipped (then as the rows themselves):
        # a call of any length keeps a few objects per block, not a reference per row.
        self._call_digests: list[bytes] = []
        self._call_rows: list[range | Sequence[Row]] = []
        self._call_input: Sequence[Row] = ()
        self._failed_call: int | None = None  # in this process, the call that failed (if any)
        self._segment_sealed = False  # the recovered cursor sits in a segment sealed on completion
        # After a recovery (or a failed call): the write call that may be re-delivered and the
        # packed digests of the rows it committed, in order. See _match_redelivery.
        self._redelivered: tuple[int, bytes] | None = None
        self._unsent = b""  # the open record, until the first manifest append carries it (see _open)
        # Given by the adapter before the first resumed write: how many of this run's rows the
        # engine recorded a terminal outcome for (None: unknown). Used once, by _match_redelivery.
        self.recorded_rows: int | None = None
        self._run_rows = 0  # rows this run's own manifest commits (set by recovery)
        self._ended: str | None = None  # "sealed" (finish sealed the output) or "closed"

    # --- public -------------------------------------------------------------------------------
    @property
    def content_hash(self) -> str:
        return self._digest.hexdigest()

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
            self._recover()

    def write(self, rows: Sequence[Row]) -> WriteReport:
        """Append ``rows`` (in order) exactly once. Raises before sending a block with a bad row,
        and :class:`ClosedError` (before any request) once the writer is closed or sealed the output."""
        self._refuse_if_ended()
        report = WriteReport(rows_in=len(rows))
        if not rows:
            return report
        if self._dirty:
            # A previous call failed with an uncertain outcome: re-derive everything from storage,
            # exactly as a resume in a new process would.
            self._resume = True
            self._recover()
        ready: Iterator[_Slice] | None = None  # the first slices, encoded while the output opened
        if self.cursor is None:
            if self._resume:
                self._recover()
            if self.cursor is None:
                ready = self._open(rows)
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
            rows, ready = rows[skip:], None
        self._call_input = rows
        if self._replay is not None:
            self._replay.begin_call()
        try:
            self._pipeline(rows, report, ready)
        except Exception:
            self._failed_call = call
            if not self._dirty and self._replay is not None:
                # rows this call skipped as durable will be handed again, with the rest
                self._replay.give_back()
            if not self._dirty and (self._call_digests or self._call_rows):
                # The position is certain (e.g. a bad row stopped the call after some blocks).
                committed = b"".join(self._call_digests) + self._digests_of(self._committed_rows())
                self._call_digests = []
                if self._replay is None:
                    # a retry of this call must skip exactly the rows it already committed
                    self._redelivered = (call, committed)
                else:  # continuing earlier runs: identities are matched as a multiset
                    self._replay.more.append(DigestMultiset.from_packed([committed]))
            raise
        finally:
            self._call_input, self._call_rows = (), []
        if self._unsent:  # every row was already durable: the open record still goes out with this call
            self._append_manifest(b"")
        if self._replay is not None and self._replay.digests.taken + sum(s.taken for s in self._replay.more):
            report.skipped_from_runs = self._replay.runs
        return report

    def _recover(self) -> None:
        """Take up this run where storage says it stands (:meth:`.Recovery.own_run`), or find nothing."""
        self._dirty = False
        self.cursor = None
        recovery = Recovery(self.store, self.target, self._lease, self.events)
        try:
            recovered = recovery.own_run(failed_call=self._failed_call, restore_encoder=self._restore_encoder)
        finally:
            self.target = recovery.target  # the path the run's pointer names
        if recovered is None:
            return
        self._failed_call = None
        self.encoder = recovered.encoder
        self._digest.state = recovered.full_hash
        self._needs_header = recovered.needs_header
        self.cursor = recovered.cursor
        self._replay = recovered.replay
        self._redelivered = recovered.redelivered
        self._run_rows = recovered.run_rows
        self._segment_sealed = recovered.segment_sealed
        self._lease.acquire(self.segment(recovered.cursor.segment))

    def _open(self, rows: Sequence[Row]) -> Iterator[_Slice] | None:
        """A fresh run: open the output (:meth:`.Opening.start`), then write the plan's open record.

        The opening's round trips (four for a new output) need nothing from the rows but the
        encoder, which ``make_encoder(rows)`` decides without I/O. So the opening runs in a
        worker thread while this thread encodes the first slices with that encoder
        (:meth:`_encode_ahead`); no request changes place, only encoding moves earlier. Returns
        the slices of ``rows`` (those encoded, then the rest lazily) when the plan kept that
        encoder, else None: the write path then encodes from the start with the plan's encoder
        (``continue`` restores the one its output was written with).
        """
        opening = Opening(
            self.store,
            self.target,
            self._lease,
            self.events,
            make_encoder=self._make_encoder,
            restore_encoder=self._restore_encoder,
            check_existing=self._check_existing,
            resume=self._resume,
            clock=self._clock,
        )
        # A bad row among the first rows is found before any request: the first slice is encoded
        # before the opening starts (a fresh output or an append base keeps this encoder; a
        # ``continue`` restores its own, which may judge the rows otherwise: it finds out later).
        early = self.target.if_exists != "continue"
        try:
            guess: Encoder | None = self._make_encoder(rows)
        except RowError:
            if early:
                raise
            guess = None
        except Exception:
            guess = None  # the opening makes it again, in its own order, and raises there
        ready: Iterator[_Slice] | None = None
        if guess is None:
            plan = opening.start(rows)
        else:
            slices = self._slices(rows, encoder=guess)
            head: list[_Slice] = []
            try:
                head = [next(slices)]
            except RowError:
                if early:
                    raise
                slices = self._slices(rows, encoder=guess)  # encoded again (and raised) after the opening
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="elspeth-appendsink-open") as pool:
                started = pool.submit(opening.start, rows, guess)
                ready = self._encode_ahead(rows, head, slices, started) if head else None
                plan = started.result()
            if plan.encoder is not guess:
                ready = None
        self.encoder = plan.encoder
        self._digest.state = plan.full_hash
        self._needs_header = plan.needs_header
        if plan.replay is not None:
            self._replay = plan.replay
        # The open record is not sent alone: it travels in front of the first manifest append
        # (the first batch's intents, usually), which saves a round trip when an output starts.
        # Nothing is in any segment before that append is durable, and a manifest without its
        # open record is, to recovery, a start that never happened (module docstring, step 1).
        encoded = encode_record(plan.open_record)
        self.cursor = plan.cursor.after_record(len(encoded), record_hash(encoded))
        self._unsent = encoded
        return ready

    def _encode_ahead(
        self, rows: Sequence[Row], ready: list[_Slice], slices: Iterator[_Slice], started: Future[Any]
    ) -> Iterator[_Slice]:
        """Encode more of ``slices`` (``rows``' slices after those ``ready``) until ``started`` is
        done or a batch's worth of blocks (see ``PIPELINE_BYTES``) is ready; return them followed
        by the rest of the slices (lazily).

        A slice that fails to encode (a bad row) ends the work ahead: the write path encodes it
        again after the opening and raises there, as it would have without this.
        """
        size = sum(len(item[2].data) for item in ready)
        start = sum(len(item[1]) for item in ready)
        try:
            while not started.done() and size < self._batch_blocks * self.target.block_size:
                item = next(slices, None)
                if item is None:
                    break
                ready.append(item)
                size, start = size + len(item[2].data), start + len(item[1])
        except Exception:
            return chain(ready, self._slices(rows, start=start))
        return chain(ready, slices)

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

    def _committed_rows(self) -> list[Row]:
        """The rows :attr:`_call_rows` names, in order."""
        call = self._call_input
        return list(
            chain.from_iterable(
                call[kept.start : kept.stop] if isinstance(kept, range) else kept for kept in self._call_rows
            )
        )

    def _digests_of(self, rows: Sequence[Row]) -> bytes:
        """The rows' packed identity digests."""
        if not rows:
            return b""
        identity = self.target.identity
        slices = self._slices(rows)
        return b"".join(
            identity.digests(chunk, self._content(chunk, encoded)) for _, chunk, encoded in slices
        )

    def _content(self, rows: Sequence[Row], encoded: Packed) -> Packed:
        """The rows' canonical encodings, unless the identity is keyed (then none are needed)."""
        return encoded if self.target.identity.is_keyed else self._require_encoder().canonical(rows, encoded)

    # --- the data path: rows → slices → blocks → intents → appends → cursor -----------------------
    def _pipeline(
        self, rows: Sequence[Row], report: WriteReport, slices: Iterator[_Slice] | None = None
    ) -> None:
        """Prepare blocks in this thread while a worker commits the previous batch.

        The worker runs :meth:`_commit_batch` — the only code that touches storage and the cursor
        while a call is in flight — one batch at a time, in order. Blocks prepared while it is busy
        travel together in its next batch (one manifest append for several intents), at most
        ``_batch_blocks`` of them (two to four, see ``PIPELINE_BYTES``), so memory stays a few blocks
        whatever the batch size.
        """
        groups = self._groups(rows, report, slices)
        first = next(groups, None)
        if first is None:
            return
        pending = self._prepare(*first)
        # the group ends the batch when it holds every row from its first one on (conservative:
        # replayed rows skipped inside it make this false, and the worker is merely not needed)
        last = first[4] + len(first[0]) == len(rows)
        first = None  # a prepared group's rows are no longer needed: hold blocks, not rows
        if last:  # a single block (the common small write): no thread needed
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
                # the first block goes out now, while the next ones are encoded
                inflight, pending = self._submit(worker, inflight, pending, report)
                for group in groups:
                    pending.extend(self._prepare(*group))
                    inflight, pending = self._submit(worker, inflight, pending, report)
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
        if inflight is not None and not inflight.done() and len(pending) < self._batch_blocks:
            return inflight, pending
        if inflight is not None:
            inflight.result()
        return worker.submit(self._commit_batch, pending, report), []

    def _slices(
        self, rows: Sequence[Row], start: int = 0, encoder: Encoder | None = None
    ) -> Iterator[_Slice]:
        """Encode ``rows`` from ``start`` on a slice at a time: ``(start, slice, encoded)``.

        Slices start at ``_SLICE`` rows and then aim at ``_SLICE_BYTES`` of output, so a
        slice's fixed costs are spread over many rows while the memory it holds stays small
        next to a block, whatever the row size (rows larger than that go one at a time).
        ``encoder`` defaults to the output's.
        """
        encoder = encoder if encoder is not None else self._require_encoder()
        size = _SLICE
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
    def _batch_blocks(self) -> int:
        return blocks_per_batch(self.target.block_size)

    @property
    def _lengths_at_rest(self) -> bool:
        """Block entries carry row lengths, not digests (see :mod:`manifest`)."""
        encoder = self._require_encoder()
        return encoder.contiguous_rows and not self.target.identity.is_keyed

    @property
    def _derived_at_rest(self) -> bool:
        """Block entries carry no body when their rows allow: digests follow from the block."""
        encoder = self._require_encoder()
        return not encoder.contiguous_rows and not self.target.identity.is_keyed

    def _groups(
        self, rows: Sequence[Row], report: WriteReport, slices: Iterator[_Slice] | None = None
    ) -> Iterator[tuple[list[Row], list[Part], bytes, bytes, int, bool]]:
        """Yield whole-row groups that fill a block (header first): rows, their parts, manifest
        body, header, the index of the group's first row in ``rows``, and whether the group's
        rows are consecutive there (no replayed row was skipped between them).

        ``slices`` are ``rows``' slices when some were encoded already (see :meth:`_open`).
        """
        encoder = self._require_encoder()
        identity = self.target.identity
        lengths = self._lengths_at_rest
        derived = self._derived_at_rest
        header = encoder.header() if self._needs_header else b""
        cutter = BlockCutter(self.target.block_size, len(header))
        cur_rows: list[Row] = []
        cur_parts: list[Part] = []
        cur_body: list[bytes] = []
        cur_first = 0  # index in rows of the group's first row
        cur_next = 0  # index in rows just past the group's last row, while they are consecutive
        cur_consecutive = True
        cur_recorded = False  # a "derived" group holds rows whose digests must be recorded after all
        replay = self._replay
        for start, sliced, packed in slices if slices is not None else self._slices(rows):
            chunk, encoded = sliced, packed
            matching = replay is not None and len(replay) > 0
            recorded = not lengths and not (derived and encoder.derivable(encoded))
            # digests are needed to recognise replayed rows, or when the manifest stores them
            wanted = matching or recorded or cur_recorded
            digests = identity.digests(chunk, self._content(chunk, encoded)) if wanted else b""
            if derived and recorded and not cur_recorded and cur_rows:
                # the group so far carried no digests: compute them now, the block will record them
                cur_body = [
                    identity.digests(cur_rows, self._content(cur_rows, encoder.encode_packed(cur_rows)))
                ]
            cur_recorded = cur_recorded or recorded
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
                    low = origin[i] if origin is not None else start + i
                    high = origin[j - 1] + 1 if origin is not None else start + j
                    if not cur_rows:
                        cur_first, cur_next, cur_consecutive = low, low, True
                    cur_consecutive = cur_consecutive and low == cur_next and high - low == j - i
                    cur_next = high
                    cur_rows.extend(chunk[i:j])
                    cur_parts.append(encoded.part(i, j))
                    if lengths:
                        cur_body.append(encoded.lengths(i, j))
                    elif cur_recorded:
                        cur_body.append(digests[i * DIGEST_SIZE : j * DIGEST_SIZE])
                    i = j
                if full:
                    yield cur_rows, cur_parts, b"".join(cur_body), header, cur_first, cur_consecutive
                    header, cur_rows, cur_parts, cur_body = b"", [], [], []
                    cur_recorded = recorded and j < len(chunk)
        if cur_rows:
            yield cur_rows, cur_parts, b"".join(cur_body), header, cur_first, cur_consecutive

    def _prepare(
        self,
        rows: list[Row],
        parts: Sequence[Part],
        body: bytes,
        header: bytes,
        first: int = 0,
        consecutive: bool = False,
    ) -> list[_Prepared]:
        """The bytes of one planned block (split further if the format's real size is over the limit).

        ``parts`` are the rows' encodings in order, several rows per item (parts of a slice);
        ``body`` their lengths or digests for the manifest; ``first`` the index of the first
        row in the call's rows, and ``consecutive`` whether they are the call's rows from there.
        """
        encoder = self._require_encoder()
        data = header + (encoder.block(parts, rows) if rows else b"")
        if len(data) > self.target.block_size:
            if len(rows) <= 1:
                if header and rows:  # header and the row do not fit together: send them apart
                    return [
                        *self._prepare([], [], b"", header),
                        *self._prepare(rows, parts, body, b"", first, consecutive),
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
                *self._prepare(rows[:half], each[:half], body[:cut], header, first, consecutive),
                *self._prepare(rows[half:], each[half:], body[cut:], b"", first + half, consecutive),
            ]
        if header:
            self._needs_header = False
        derived = self._derived_at_rest and bool(rows) and not body  # (a recorded group has digests)
        kind = "lengths" if self._lengths_at_rest else "derived" if derived else "digests"
        return [_Prepared(data, rows, body, kind, bool(header), first if consecutive else None)]

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
            # the running digest past these blocks is computed meanwhile, adopted as each lands
            ahead = self._digest.ahead([block.data for block in batch])
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
                    digests=block.body if block.kind == "digests" else b"",
                    lengths=block.body if block.kind == "lengths" else b"",
                    derived=block.kind == "derived",
                )
                encoded = encode_record(entry)
                entries.append(entry)
                payload.append(encoded)
                seq, head, offset, token = seq + 1, record_hash(encoded), entry.end, entry.tokens.end
            manifest_bytes = b"".join(payload)
            self._append_manifest(manifest_bytes)
            self.cursor = replace(
                c, manifest_length=c.manifest_length + len(manifest_bytes), next_seq=seq, head=head
            )
            for index, (entry, block) in enumerate(zip(entries, batch, strict=True)):
                try:
                    result = self._append_data(entry, block.data)
                    self._digest.adopt(ahead, index)  # (should hashing fail, recovery rebuilds it)
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
                if block.kind != "digests" or self._call_rows:  # (rows stay in order)
                    kept = block.first
                    self._call_rows.append(
                        block.rows if kept is None else range(kept, kept + len(block.rows))
                    )
                else:
                    self._call_digests.append(block.body)
                report.rows_appended += len(block.rows)
                report.blocks += 1
                report.bytes += len(block.data)

    def _append_data(self, entry: BlockEntry, data: bytes) -> AppendResult:
        name = self.segment(entry.segment)
        self._lease.keep(name)
        try:
            return self.store.append_block(name, data, entry.offset, lease=self._lease.held)
        except LeaseHeldError as exc:
            if exc.error_code != "LeaseNotPresentWithBlobOperation" or self._lease.held is None:
                raise
            # Our own lease lapsed or was broken (a long retry storm, an operator's unlock): take
            # it back — that fails if another run leased the blob since — and send again, guarded.
            self._lease.reclaim(name)
            return self.store.append_block(name, data, entry.offset, lease=self._lease.held)

    def _append_record(self, record: Record) -> None:
        c = self._require_cursor()
        encoded = encode_record(record)
        self._append_manifest(encoded)
        self.cursor = c.after_record(len(encoded), record_hash(encoded))

    def _append_manifest(self, data: bytes) -> None:
        """One guarded manifest append at the cursor's manifest length, the unsent open record
        (if any) in front; the caller moves the cursor past ``data`` once this returned."""
        c = self._require_cursor()
        unsent = self._unsent
        try:
            # A writer paused past its lease must not record anything after another run took the
            # output over: the lease is confirmed first (usually no request; see LeaseKeeper.confirm).
            self._lease.confirm(self.segment(c.segment))
            self.store.append_block(self.target.manifest, unsent + data, c.manifest_length - len(unsent))
        except BaseException:
            self._dirty = True
            raise
        self._unsent = b""

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
        self.store.seal(old, record.final_length, lease=self._lease.held)
        create_own_segment(self.store, new, self.target.run_id, self.target.run_id)
        if self._lease.held is not None:
            self._lease.acquire(new, ours=True)  # created (now or before a crash) naming this run
            self._lease.release(old)  # it expires anyway; the old segment is sealed
        c = self._require_cursor()
        if c.segment == record.segment:
            self.cursor = c.next_segment()

    # --- end of run ----------------------------------------------------------------------------
    def finish(self, *, seal: bool) -> None:
        """End of run: optionally seal the last segment (recorded in the manifest first)."""
        if self._ended is not None:
            return  # sealed already (a second seal record would follow the first), or closed
        self.prepare()  # a resumed writer given no rows since has not recovered its cursor yet
        if self.cursor is None or self._dirty:
            return
        if self._unsent:  # no block was ever sent (a bad first row): the run still opened
            self._append_manifest(b"")
        if seal:
            c = self.cursor
            self._append_record(SealRecord(c.next_seq, c.head, c.segment, c.offset))
            self.store.seal(self.segment(c.segment), c.offset, lease=self._lease.held)
            self._ended = "sealed"

    def close(self) -> None:
        """Release our lease (a crashed writer's lease simply expires, or is re-acquired on resume).
        Later writes raise :class:`ClosedError`."""
        self._ended = "closed"
        if self._lease.held is not None and self.cursor is not None:
            self._lease.release(self.segment(self.cursor.segment))  # it expires by itself anyway
        self._lease.stop()
        self._lease.held = None
        self._digest.close()

    # --- helpers -------------------------------------------------------------------------------
    def _refuse_if_ended(self) -> None:
        """Nothing may be recorded after the seal record, nor by a writer that let its lease go."""
        if self._ended == "sealed":
            raise ClosedError(
                f"run {self.target.run_id} sealed {self.target.blob_path} when it completed; "
                "nothing more can be written by this run",
                hint="write before on_complete, or continue the output with a new run (if_exists: continue)",
            )
        if self._ended == "closed":
            raise ClosedError(
                f"the writer of run {self.target.run_id} for {self.target.blob_path} is closed",
                hint="write before close(); a closed writer cannot be reopened",
            )

    def _require_cursor(self) -> Cursor:
        if self.cursor is None:
            raise InvariantViolation("writer used before it was opened")
        return self.cursor

    def _require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise InvariantViolation("writer has no encoder")
        return self.encoder
