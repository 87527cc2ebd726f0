"""Opening an output for a fresh run: the steps before the first block, producing a :class:`StartPlan`.

In protocol order: run pointer → segment 0 (or, as ``if_exists`` allows, a claim of the existing
output: ``append`` takes its bytes as the run's pre-existing base, ``continue`` reconciles every
earlier run through :class:`~elspeth_appendsink.protocol.recovery.Recovery`) → lease and manifest.
The plan says where the run starts (cursor), with which encoder, the running hash of the output
so far, the rows already durable that ``continue`` must recognise, and the ``open`` record; the
write path (:meth:`~elspeth_appendsink.protocol.writer.AppendWriter.write`) sends that record in
front of its first intents and goes on from the cursor.

Why each step waits for the one before, or need not (measured by ``python -m benchmarks.timeline``:
a fresh output used to cost seven round trips before its first data byte, now three, four when
the path holds a timestamp):

* **pointer and segment 0, together — unless the path holds a timestamp**: a resume of a
  ``{{ timestamp }}`` path cannot render it again and finds it only through the pointer, so
  there no blob of the run may exist before the pointer (a crash between the two would leave a
  segment no resume can find), and segment 0 waits for it. Every other path
  (``OutputTarget.path_is_stable``) a resume renders again: a crash after segment 0 but before
  the pointer then looks like a run that never started, and its fresh start finds the empty
  segment 0 this run created and takes it, as after a lost response. A refused pointer (the run
  already started) is reported before any error of the claim, as in order.
* **segment 0, then lease**: a blob that does not exist cannot be leased.
* **segment 0, then manifest**: the manifest lives under the output's path; created first, a run
  refused the output (``blob_exists``) would leave an empty manifest of its own among another
  run's.
* **lease and manifest, together** (a fresh segment 0 only): the manifest is this run's alone and
  nothing is written to either blob until both are done; a crash after one of them is the same,
  to recovery, as a crash before both (an empty segment and manifest of this run are re-used).
  The metadata of a segment 0 created just now already names this run as its writer, so it is
  not read back after the lease (one request less).
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

from elspeth_appendsink import __version__
from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.manifest import GENESIS, OpenRecord
from elspeth_appendsink.core.paths import run_pointer_name, segment_name
from elspeth_appendsink.core.reconcile import expected_lengths
from elspeth_appendsink.encoders.base import Encoder, Row
from elspeth_appendsink.errors import BlobExistsError, BlobTypeError, RecoveryError
from elspeth_appendsink.protocol.lease import META_CREATOR, META_WRITER, LeaseKeeper
from elspeth_appendsink.protocol.recovery import Recovery, Replay, create_own_segment
from elspeth_appendsink.storage.base import BlobInfo, Store

if TYPE_CHECKING:
    from elspeth_appendsink.protocol.writer import OutputTarget

__all__ = ["Opening", "StartPlan"]


@dataclass(slots=True)
class StartPlan:
    """A fresh run, opened: where it starts and what its first manifest record is."""

    cursor: Cursor  # before the open record
    open_record: OpenRecord
    encoder: Encoder
    full_hash: Any  # the running sha256 of the whole output so far
    needs_header: bool
    replay: Replay | None  # ``continue``: every row of the earlier runs


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
        check_existing: Callable[[Encoder, bytes], None] | None,
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
            header_written = base.base_length == 0 and base.base_segment == 0
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
        try:
            self.store.create_append_blob(seg0, {META_CREATOR: t.run_id, META_WRITER: t.run_id})
            return _Base(), seg0
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
                return self._claim_for_append(seg0, info, rows), None
            else:
                base = self._claim_for_continue(seg0, info)
                if base is not None:
                    return base, None
        self.lease.acquire(seg0)
        return _Base(), None

    def _claim_for_append(self, seg0: str, info: BlobInfo, rows: Sequence[Row]) -> _Base:
        """``if_exists: append``: the existing bytes become the run's pre-existing base."""
        if info.sealed:
            raise BlobTypeError(f"{seg0} is sealed; nothing can be appended to it", blob=seg0)
        self.lease.acquire(seg0)
        info = self.store.properties(seg0) or info
        base_hash = hashlib.sha256()
        head = b""
        for chunk in self.store.stream(seg0, length=info.size):
            base_hash.update(chunk)
            if len(head) < 64 * 1024:
                head += chunk[: 64 * 1024 - len(head)]
        encoder = self._new_encoder(rows)
        if info.size and self._check_existing is not None:
            self._check_existing(encoder, head)
        return _Base(
            base_length=info.size,
            base_sha256=base_hash.hexdigest(),
            encoder=encoder,
            full_hash=base_hash.copy(),
            total_bytes=info.size,
            blocks=info.committed_blocks or 0,
        )

    def _claim_for_continue(self, seg0: str, info: BlobInfo) -> _Base | None:
        """``if_exists: continue``: reconcile the earlier runs; None if there is nothing to continue."""
        continued = Recovery(self.store, self.target, self.lease, self.events).output(
            seg0, info, self._restore_encoder
        )
        if continued is None:
            return None
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
            encoder=self._restore_encoder(last.open.encoder),
            full_hash=continued.verified.full_hash,
            total_bytes=continued.verified.size,
            blocks=0 if current is None else current.committed_blocks or 0,
            replay=continued.replay,
        )
