"""Opening an output for a fresh run: the steps before the first block, producing a :class:`StartPlan`.

In protocol order: run pointer → segment 0 (or, as ``if_exists`` allows, a claim of the existing
output: on an output this sink's manifests describe, ``continue`` and ``append`` reconcile every
earlier run through :class:`~elspeth_appendsink.protocol.recovery.Recovery` and go on after them,
``continue`` also skipping the rows already durable; ``append`` onto a blob no manifest describes
takes its bytes as the run's pre-existing base) → lease and manifest.
The plan says where the run starts (cursor), with which encoder, the running hash of the output
so far, the rows already durable that ``continue`` must recognise, and the ``open`` record; the
write path (:meth:`~elspeth_appendsink.protocol.writer.AppendWriter.write`) sends that record in
front of its first intents and goes on from the cursor.

Which step waits for which (the argument for each is in ``docs/architecture.md``):

* **pointer and segment 0 together**, unless the path holds a ``{{ timestamp }}``: a resume
  finds such a path only through the pointer, so no blob of the run may exist before it. Any
  other path a resume renders again (``OutputTarget.path_is_stable``) and takes the empty
  segment 0 its run created. A refused pointer is reported before any error of the claim.
* **segment 0, then lease** (a missing blob cannot be leased) **and then manifest** (created
  first, a run refused the output would leave an empty manifest among another run's).
* **lease and manifest together** (a fresh segment 0 only): nothing is written to either until
  both are done, and an empty segment and manifest of this run are re-used by recovery. A
  segment 0 created just now already names this run as its writer, so it is not read back.
* **then the open record**, with the first intents (:meth:`AppendWriter._open`): a manifest
  without its open record is a start that never happened.

None of these requests needs the rows' bytes, so the writer runs :meth:`Opening.start` in a
worker thread and encodes the first rows meanwhile, with the encoder it hands in (the one
``make_encoder`` decides from those rows; kept unless the output is continued).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from elspeth_appendsink._version import __version__
from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.manifest import GENESIS, DecodedRecord, OpenRecord
from elspeth_appendsink.core.paths import run_pointer_name, segment_name
from elspeth_appendsink.core.reconcile import expected_lengths
from elspeth_appendsink.encoders.base import Encoder, Row
from elspeth_appendsink.errors import BlobExistsError, BlobTypeError, RecoveryError
from elspeth_appendsink.protocol.lease import META_CREATOR, META_WRITER, LeaseKeeper
from elspeth_appendsink.protocol.recovery import Recovery, Replay, create_own_segment
from elspeth_appendsink.storage.base import BlobInfo, Store

if TYPE_CHECKING:
    from elspeth_appendsink.protocol.target import OutputTarget

__all__ = ["ExistingBlob", "Opening", "StartPlan"]


@dataclass(slots=True)
class StartPlan:
    """A fresh run, opened: where it starts and what its first manifest record is."""

    cursor: Cursor  # before the open record
    open_record: OpenRecord
    encoder: Encoder
    full_hash: Any  # the running sha256 of the whole output so far
    needs_header: bool
    replay: Replay | None  # ``continue``: every row of the earlier runs


#: bytes of a foreign blob's start and end that an ``append`` run checks
_SAMPLE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ExistingBlob:
    """What an ``append`` run read of a blob no manifest describes, before adding to it: its
    first and last bytes (up to 64 KiB each) and how many ``"`` bytes it holds in all."""

    head: bytes
    tail: bytes
    quotes: int


@dataclass
class _Base:
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
    replay: Replay | None = None


class Opening:
    """The opening of one output by one fresh run (see the module docstring for the order)."""

    def __init__(
        self,
        store: Store,
        target: OutputTarget,
        lease: LeaseKeeper,
        events: list[dict[str, Any]],
        *,
        make_encoder: Callable[[Sequence[Row]], Encoder],
        restore_encoder: Callable[[dict[str, Any]], Encoder],
        check_existing: Callable[[Encoder, ExistingBlob], None] | None,
        resume: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.target = target
        self.lease = lease
        self.events = events
        self._make_encoder = make_encoder
        self._restore_encoder = restore_encoder
        self._check_existing = check_existing
        self._resume = resume
        self._clock = clock
        self._fresh: Encoder | None = None

    def segment(self, index: int) -> str:
        return segment_name(self.target.blob_path, index)

    def start(self, rows: Sequence[Row], encoder: Encoder | None = None) -> StartPlan:
        """Fresh start: pointer, claim the output (create, append or continue), manifest.

        ``encoder``, when given, is ``make_encoder(rows)`` made already (the writer encodes the
        first rows with it while this runs): a new output or an ``append`` base takes it instead
        of making another, and the plan says which one it holds (``continue`` restores its own).
        """
        t = self.target
        self._fresh = encoder
        pointer = {
            "blob_path": t.blob_path,
            "manifest": t.manifest,
            "run_id": t.run_id,
            "created_at": self._clock().isoformat(),
        }
        payload = json.dumps(pointer, sort_keys=True).encode()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="elspeth-appendsink-open") as pool:
            if t.path_is_stable:
                # a resume renders this same path, so it needs no pointer to find segment 0: the
                # two go out together (see the module docstring)
                pointed = pool.submit(self._point, payload)
                try:
                    base, fence = self._claim_output(rows)
                finally:
                    pointed.result()  # a refused pointer is the error to report, as in order
            else:
                self._point(payload)
                base, fence = self._claim_output(rows)
            encoder = base.encoder or self._new_encoder(rows)
            # the header goes in front of the output's first byte, wherever that lands (an empty
            # segment 0 sealed by a failed run's completion puts it in segment 1)
            header_written = base.total_bytes == 0
            opening = OpenRecord(
                seq=0,
                prev=base.prev,
                run_id=t.run_id,
                container=t.container,
                blob_path=t.blob_path,
                encoder=encoder.describe(),
                identity=t.identity.describe(),
                block_size=t.block_size,
                segment_max_blocks=t.segment_max_blocks,
                segment_max_bytes=t.segment_max_bytes,
                if_exists=t.if_exists,
                base_segment=base.base_segment,
                base_length=base.base_length,
                base_sha256=base.base_sha256,
                continues=base.continues,
                header_written=header_written,
                created_at=self._clock().isoformat(),
                sink_version=__version__,
            )
            if fence is None:
                self._create_manifest()
            else:
                # A segment 0 we just created: fencing it and creating our manifest do not depend
                # on each other (the manifest is this run's alone, and nothing is written to either
                # until both are done), so they go out together: one round trip instead of two.
                fenced = pool.submit(self.lease.acquire, fence, ours=True)
                self._create_manifest()
                fenced.result()
        cursor = Cursor(
            segment=base.base_segment,
            offset=base.base_length,
            blocks=base.blocks,
            next_token=0,
            write_call=-1,
            manifest_length=0,
            next_seq=0,
            head=base.prev,
            total_bytes=base.total_bytes,
        )
        return StartPlan(cursor, opening, encoder, base.full_hash, header_written, base.replay)

    def _point(self, payload: bytes) -> None:
        """The run pointer, create-only; refuse a run that already started writing this output."""
        t = self.target
        name = run_pointer_name(t.template_digest, t.run_id)
        created = self.store.put_if_missing(name, payload)
        # An existing pointer with exactly our bytes (our timestamp) is our own upload whose response
        # was lost and whose SDK retry then found it: not an earlier start of this run.
        if not created and not self._resume and self.store.get(name) != payload:
            raise RecoveryError(
                f"run {t.run_id} already started writing this output; it must be resumed, not started again",
                hint="use `elspeth resume` (the sink's configure_for_resume) or a new run id",
            )

    def _new_encoder(self, rows: Sequence[Row]) -> Encoder:
        """The encoder a new output (or an ``append`` base) is written with: decided by ``rows``."""
        return self._fresh if self._fresh is not None else self._make_encoder(rows)

    def _create_manifest(self) -> None:
        """This run's manifest, create-only (an empty one of ours, from a crashed start, is kept)."""
        t = self.target
        try:
            self.store.create_append_blob(t.manifest, {META_CREATOR: t.run_id})
        except BlobExistsError:
            info = self.store.properties(t.manifest)
            if info is None or info.size != 0 or info.metadata.get(META_CREATOR) != t.run_id:
                raise RecoveryError(
                    f"manifest {t.manifest} already exists; this run must be resumed"
                ) from None

    def _claim_output(self, rows: Sequence[Row]) -> tuple[_Base, str | None]:
        """Create segment 0, or — as ``if_exists`` allows — take over the existing output.

        Returns the base and, when segment 0 was created just now, its name: the lease on it is
        then taken by :meth:`start`, together with the manifest's creation (else it is held).
        """
        t = self.target
        seg0 = self.segment(0)
        if t.if_exists != "fail" and self.store.properties(seg0) is None:
            # A segment 0 this sink's manifests describe is never created anew over their runs:
            # recovery refuses, naming it and the runs, before anything is written.
            recovery = Recovery(self.store, t, self.lease, self.events)
            described = recovery.described()
            if described:
                return self._claim_for_continue(recovery, described), None
        try:
            self.store.create_append_blob(seg0, {META_CREATOR: t.run_id, META_WRITER: t.run_id})
            return _Base(), seg0
        except BlobExistsError as exists:
            info = self.store.properties(seg0)
            if info is None:
                raise
            if info.metadata.get(META_CREATOR) == t.run_id and info.size == 0:
                pass  # ours, from a start that crashed before describing anything
            elif self._is_empty_own_output(info):
                base = self._take_over_empty(seg0, info)
                if base is not None:
                    return base, None
            elif t.if_exists == "fail":
                raise _exists(exists, info) from None
            elif not info.is_append_blob:
                raise BlobTypeError(
                    f"{seg0} exists but is not an append blob; it will not be touched", blob=seg0
                ) from None
            else:
                base = self._claim_existing(seg0, info, rows)
                if base is not None:
                    return base, None
        self.lease.acquire(seg0)
        return _Base(), None

    def _claim_existing(self, seg0: str, info: BlobInfo, rows: Sequence[Row]) -> _Base | None:
        """``append`` or ``continue`` onto an existing segment 0 (None: take it as new).

        An output this sink's manifests describe is continued as a chain of runs: the new run
        adopts the recorded decisions (or is refused, :mod:`~elspeth_appendsink.core.decisions`)
        and, for ``continue`` only, skips the rows already durable. A blob no manifest describes
        is appended to as a foreign base (``append``), or taken as new when this sink created it
        empty; one this sink wrote whose manifests are gone is refused.
        """
        t = self.target
        recovery = Recovery(self.store, t, self.lease, self.events)
        described = recovery.described()
        if described:
            return self._claim_for_continue(recovery, described)
        if info.size == 0 and META_CREATOR in info.metadata:
            return None  # created by this sink, nothing ever described: start on it
        if META_CREATOR in info.metadata:
            raise RecoveryError(
                f"{seg0} was written by this sink (run {info.metadata[META_CREATOR]}), but no manifest "
                f"describes its {info.size} bytes: the manifests were lost or deleted, so it is neither "
                "continued nor appended to",
                hint="restore the manifest blobs, or write to a new blob_path",
            )
        if t.if_exists == "append":
            return self._claim_for_append(seg0, info, rows)
        raise BlobTypeError(
            f"{seg0} exists but no manifest of this sink describes it; it will not be continued",
            blob=seg0,
            hint="use if_exists: append to add to a blob written by something else",
        )

    def _is_empty_own_output(self, info: BlobInfo) -> bool:
        """Segment 0 of another run of this sink, still empty, and no segment 1 with bytes (a
        failed run's completion may have sealed the empty segment 0); ``continue`` has its own
        path."""
        if not (
            self.target.if_exists != "continue"
            and info.size == 0
            and META_CREATOR in info.metadata
            and info.is_append_blob
        ):
            return False
        if not info.sealed:
            return True
        after = self.store.properties(self.segment(1))
        return after is None or after.size == 0

    def _take_over_empty(self, seg0: str, info: BlobInfo) -> _Base | None:
        """An output this sink created that no manifest describes a byte of (an earlier run stopped
        before its first block: a bad row, a crash): any ``if_exists`` takes it over as
        ``continue`` would — under the lease (refused while that run still holds it), naming the
        runs that opened it so the chain of runs stays whole — but with an encoder of its own.
        None: no manifest holds a record (start on it afresh)."""
        recovery = Recovery(self.store, self.target, self.lease, self.events)
        described = recovery.described()
        if not described:
            return None
        base = self._claim_for_continue(recovery, described)
        if base.total_bytes:
            raise BlobExistsError(
                f"{seg0}: the output already holds {base.total_bytes} bytes written by runs "
                f"{', '.join(base.continues)} of this sink",
                blob=seg0,
                hint="use if_exists: continue to add to it, or a new blob_path",
            )
        # no byte, so _claim_for_continue left the encoder to this run; not ``continue``, no replay
        self.events.append({"event": "open.took_over_empty", "blob": seg0, "runs": list(base.continues)})
        return base

    def _claim_for_append(self, seg0: str, info: BlobInfo, rows: Sequence[Row]) -> _Base:
        """``if_exists: append``: the existing bytes become the run's pre-existing base."""
        if info.sealed:
            raise BlobTypeError(f"{seg0} is sealed; nothing can be appended to it", blob=seg0)
        self.lease.acquire(seg0)
        info = self.store.properties(seg0) or info
        base_hash = hashlib.sha256()
        head, tail, quotes = b"", b"", 0
        for chunk in self.store.stream(seg0, length=info.size):
            base_hash.update(chunk)
            quotes += chunk.count(b'"')
            tail = (tail + chunk)[-_SAMPLE:]
            if len(head) < _SAMPLE:
                head += chunk[: _SAMPLE - len(head)]
        encoder = self._new_encoder(rows)
        if info.size and self._check_existing is not None:
            self._check_existing(encoder, ExistingBlob(head, tail, quotes))
        return _Base(
            base_length=info.size,
            base_sha256=base_hash.hexdigest(),
            encoder=encoder,
            full_hash=base_hash.copy(),
            total_bytes=info.size,
            blocks=info.committed_blocks or 0,
        )

    def _claim_for_continue(self, recovery: Recovery, described: dict[str, list[DecodedRecord]]) -> _Base:
        """Reconcile the earlier runs of this sink's output; the new run goes on after them."""
        continued = recovery.output(described, self._restore_encoder)
        layouts = continued.layouts
        last = layouts[-1]
        base_segment = last.segment
        if base_segment in last.sealed:  # sealed on completion: continue in a fresh segment
            base_segment += 1
            create_own_segment(self.store, self.segment(base_segment), self.target.run_id, self.target.run_id)
        self.lease.acquire(self.segment(base_segment))
        current = self.store.properties(self.segment(base_segment))
        return _Base(
            base_segment=base_segment,
            base_length=expected_lengths(layouts).get(base_segment, 0),
            base_sha256=GENESIS,
            continues=tuple(lay.open.run_id for lay in layouts),
            prev=last.head,
            # no byte of the earlier runs reached storage: their decisions are not binding
            encoder=self._restore_encoder(last.open.encoder) if continued.verified.size else None,
            full_hash=continued.verified.full_hash,
            total_bytes=continued.verified.size,
            blocks=0 if current is None else current.committed_blocks or 0,
            replay=continued.replay if self.target.if_exists == "continue" else None,
        )


def _exists(refused: BlobExistsError, info: BlobInfo) -> BlobExistsError:
    """The ``if_exists: fail`` refusal, with a hint that fits who wrote the blob."""
    creator, writer = info.metadata.get(META_CREATOR), info.metadata.get(META_WRITER)
    if creator is None and writer is None:
        hint = "set if_exists: append to add to a blob written by something else, or use a new blob_path"
    else:
        who = (
            f"this sink created it (run {creator})"
            if creator
            else f"this sink has written to it (run {writer})"
        )
        hint = f"{who}: resume that run, or set if_exists: continue to complete or extend it"
    return BlobExistsError(
        f"{refused.blob} already exists",
        blob=refused.blob,
        status=refused.status,
        error_code=refused.error_code,
        hint=hint,
    )
