"""Recovery: where a run (or every earlier run of an output) stands in storage, as a value.

The write path (:mod:`~elspeth_appendsink.protocol.writer`) never reconstructs state itself: on
resume, or after a call whose outcome is uncertain, it asks :meth:`Recovery.own_run` for a
:class:`Recovered` — the cursor to continue from, the restored encoder, the running hash of the
whole output, and the rows the engine may hand again (:class:`Replay`, or the re-delivered call's
digests). ``if_exists: continue`` asks :meth:`Recovery.output` for every earlier run's layout.

Both read the manifests, finish or void the one step a crash can leave unfinished
(:meth:`Recovery.settle_tail`: the last batch of intents, or a rollover — the only writes made
here), and then read every segment once through the one scan
(:func:`~elspeth_appendsink.protocol.scan.scan_segments`, strictly: bytes no committed entry
accounts for stop recovery with :class:`~elspeth_appendsink.errors.UndescribedBytesError`).
Where entries carry row lengths (CSV/JSONL, content identity), the committed rows' digests are
computed from the segment bytes while the scan reads them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.decisions import check_recorded
from elspeth_appendsink.core.identity import DIGEST_SIZE, DigestMultiset
from elspeth_appendsink.core.manifest import (
    BlockEntry,
    DecodedRecord,
    OpenRecord,
    Record,
    VoidRecord,
    encode_record,
)
from elspeth_appendsink.core.paths import manifest_name, manifest_prefix, run_pointer_name, segment_name
from elspeth_appendsink.core.reconcile import (
    RunLayout,
    classify_pending,
    continued_prefix,
    expected_lengths,
    walk,
)
from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.encoders.base import Encoder
from elspeth_appendsink.errors import (
    BlobExistsError,
    InvariantViolation,
    ManifestCorruptError,
    RecoveryError,
    UndescribedBytesError,
)
from elspeth_appendsink.protocol.lease import META_CREATOR, META_WRITER, LeaseKeeper
from elspeth_appendsink.protocol.scan import (
    DigestsFromBytes,
    ScannedRun,
    read_manifest,
    require_segments,
    row_digests_from_lengths,
    scan_segments,
)
from elspeth_appendsink.storage.base import Store

if TYPE_CHECKING:
    from collections.abc import Callable

    from elspeth_appendsink.protocol.target import OutputTarget

__all__ = ["Continued", "Recovered", "Recovery", "Replay", "Verified", "create_own_segment", "last_opening"]


@dataclass(slots=True)
class Replay:
    """Rows already durable that the caller may hand us again, and where they came from.

    Each scope keeps the current write call's matches (from :meth:`begin_call` on), so that a
    call which fails can :meth:`give_back` what it matched: the engine hands the failed call's
    rows again, and the durable ones among them must be matched again.
    """

    digests: DigestMultiset
    source: str  # "resume" | "continue" | "retry"
    runs: tuple[str, ...]
    more: list[DigestMultiset] = field(default_factory=list)

    def take(self, digest: bytes) -> bool:
        if self.digests.take(digest):
            return True
        return any(scope.take(digest) for scope in self.more)

    def begin_call(self) -> None:
        """The previous call's matches stand."""
        for scope in (self.digests, *self.more):
            scope.mark()

    def give_back(self) -> None:
        """Undo every match of the current call (it failed; its rows will be handed again)."""
        for scope in (self.digests, *self.more):
            scope.undo_since_mark()

    def __len__(self) -> int:
        return len(self.digests) + sum(len(scope) for scope in self.more)


@dataclass(slots=True)
class Verified:
    """What the scan of a recovered output gave: the whole output's running hash and size, and
    the row digests computed from the bytes of the entries that carry lengths or no body."""

    full_hash: Any
    size: int
    digests: dict[tuple[int, int], bytes]

    def entry_digests(self, entry: BlockEntry) -> bytes:
        """A committed entry's packed row digests: recorded, or computed by the scan."""
        if not (entry.lengths or entry.derived):
            return entry.digests
        try:
            return self.digests[entry.segment, entry.offset]
        except KeyError:
            raise InvariantViolation(
                f"digests of entry {entry.seq} were not computed while verifying the output"
            ) from None


@dataclass(slots=True)
class Recovered:
    """A run's position recovered from storage: what the write path resumes from (once it has
    fenced the cursor's segment again)."""

    cursor: Cursor
    encoder: Encoder
    full_hash: Any
    needs_header: bool
    replay: Replay | None  # a run that continued earlier runs: every row so far, as a multiset
    redelivered: tuple[int, bytes] | None  # else: the call that may be re-delivered, its rows in order
    segment_sealed: bool  # the cursor sits in a segment sealed on completion
    run_rows: int  # rows this run's own manifest commits (set against the engine's recorded outcomes)


@dataclass(slots=True)
class Continued:
    """``if_exists: continue``: every earlier run, settled and verified, oldest first."""

    layouts: list[RunLayout]
    replay: Replay
    verified: Verified


def settled_by_next(layout: RunLayout, following: OpenRecord) -> RunLayout:
    """``layout`` of a run that a later run continued, its last batch settled by where that run
    started: the later run proved those intents landed when it opened (it voids in the earlier
    manifest any that did not), so the segment's length, grown since, no longer tells."""
    layout.pending_rollover = None  # the later run started after it: it was finished
    pending = layout.pending
    if not pending:
        return layout
    ends = [pending[0].offset, *(entry.end for entry in pending)]
    if following.base_segment != pending[0].segment or following.base_length not in ends:
        raise ManifestCorruptError(
            f"run {following.run_id} starts at segment {following.base_segment} offset "
            f"{following.base_length}, not where run {layout.open.run_id}'s last intents end ({ends}): "
            "the chain of runs for this output is broken"
        )
    layout.adopt_pending(ends.index(following.base_length))
    return layout


def last_opening(store: Store, blob_path: str) -> OpenRecord | None:
    """The ``open`` record of the latest run of the output at ``blob_path`` (None: no manifest
    holds one). The latest run is the one continuing the most earlier runs."""
    latest: OpenRecord | None = None
    for name in store.list_names(manifest_prefix(blob_path)):
        records = read_manifest(store, name)
        first = records[0].record if records else None
        if isinstance(first, OpenRecord) and (latest is None or len(first.continues) > len(latest.continues)):
            latest = first
    return latest


def create_own_segment(store: Store, name: str, creator: str, writer: str) -> None:
    """Create segment ``name`` for run ``creator``; one it created empty already is accepted (idempotent)."""
    try:
        store.create_append_blob(name, {META_CREATOR: creator, META_WRITER: writer})
    except BlobExistsError:
        info = store.properties(name)
        if info is None or info.metadata.get(META_CREATOR) != creator or info.size != 0:
            raise UndescribedBytesError(
                f"segment {name} exists but was not created empty by run {creator}"
            ) from None


class Recovery:
    """Recovery of one output for one run: reads manifests and segments, settles unfinished tails.

    ``target`` is replaced when the run's pointer says it resolved another blob path (a template
    holding a timestamp cannot be re-rendered by a resume); the writer takes it back from here.
    """

    def __init__(
        self, store: Store, target: OutputTarget, lease: LeaseKeeper, events: list[dict[str, Any]]
    ) -> None:
        self.store = store
        self.target = target
        self.lease = lease
        self.events = events

    def segment(self, index: int) -> str:
        return segment_name(self.target.blob_path, index)

    def _read_manifest(self, name: str) -> list[DecodedRecord]:
        return read_manifest(self.store, name)

    def own_run(
        self, *, failed_call: int | None, restore_encoder: Callable[[dict[str, Any]], Encoder]
    ) -> Recovered | None:
        """Resume: this run's cursor from its manifest and segments (None: it never wrote anything).

        ``failed_call`` is the call that failed in this process, if any (else the last one that
        began is the one the engine may re-deliver).
        """
        t = self.target
        raw = self.store.get(run_pointer_name(t.template_digest, t.run_id))
        if raw is None:
            # No pointer: this run never wrote anything (a fresh start, in resume mode) — or its
            # pointer was deleted. A path without a timestamp renders again, so the run's manifest
            # is still found there, and recovery goes on without the pointer.
            if not t.path_is_stable or self.store.properties(t.manifest) is None:
                return None
            self.events.append({"event": "recovery.pointer_missing", "run_id": t.run_id})
        else:
            pointer = json.loads(raw)
            if pointer.get("blob_path") != t.blob_path:
                # the template held a timestamp: the run's real path is the one it resolved back then
                self.target = t = replace(t, blob_path=pointer["blob_path"])
        if self.store.properties(t.manifest) is None:
            self._refuse_lost_manifest()
            return None
        records = self._read_manifest(t.manifest)
        if not records:
            return None  # manifest created, open record never landed: nothing of ours is in any segment
        later = [n for n in self.store.list_names(manifest_prefix(t.blob_path)) if n != t.manifest]
        for name in later:
            other = self._read_manifest(name)
            if other and isinstance(other[0].record, OpenRecord) and t.run_id in other[0].record.continues:
                raise RecoveryError(
                    f"run {other[0].record.run_id} has continued this output after run {t.run_id}; "
                    "resuming the earlier run would interleave the two",
                    hint=f"recover the later run instead: {recover_line(other[0].record.run_id)}",
                )
        earlier = self.earlier_layouts(records[0].record)
        opened = walk(records, t.manifest)
        self.check_settings(opened.open)
        require_segments(self.store, t.blob_path, [*earlier, opened])
        layout = self.settle_tail(opened)
        # Rows the engine may re-deliver: in a plain run, the rows the last write call that began
        # committed (in this process we know which call failed; after a restart, the last one with
        # any intent, landed or voided), matched in order by the next call. A run that continued
        # earlier runs matches by identity instead, against every row of the output so far.
        scope_call = max(layout.last_write_call, layout.last_call_begun)
        if failed_call is not None:
            scope_call = failed_call
        # A run that appended to this sink's own output matches only its own rows: the earlier
        # runs' rows are not re-deliveries of it, however equal.
        continued = earlier and layout.open.if_exists == "continue"
        if continued:
            in_scope = {id(e) for lay in [*earlier, layout] for e in lay.committed}
        else:
            in_scope = {id(e) for e in layout.committed if e.write_call == scope_call}
        encoder = restore_encoder(layout.open.encoder)
        verified = self.verify([*earlier, layout], digests_for=in_scope, row_digests=encoder.row_digests)
        blocks = 0
        info = self.store.properties(self.segment(layout.segment))
        if info is not None and info.committed_blocks is not None:
            blocks = info.committed_blocks
        cursor = Cursor(
            segment=layout.segment,
            offset=layout.segment_ends.get(layout.segment, 0),
            blocks=blocks,
            next_token=layout.next_token,
            write_call=scope_call,
            manifest_length=layout.manifest_length,
            next_seq=layout.next_seq,
            head=layout.head,
            total_bytes=verified.size,
        )
        replay: Replay | None = None
        redelivered: tuple[int, bytes] | None = None
        if continued:
            scope = [verified.entry_digests(e) for lay in [*earlier, layout] for e in lay.committed]
            runs = (*(lay.open.run_id for lay in earlier), t.run_id)
            replay = Replay(DigestMultiset.from_packed(scope), "resume", runs)
            scope_rows = len(replay)
        else:
            committed = b"".join(
                verified.entry_digests(e) for e in layout.committed if e.write_call == scope_call
            )
            redelivered = (scope_call, committed) if scope_call >= 0 else None
            scope_rows = len(committed) // DIGEST_SIZE
        self.events.append(
            {
                "event": "resume.recovered",
                "run_id": t.run_id,
                "entries": len(layout.committed),
                "voided": layout.voided,
                "bytes": verified.size,
                "replay_scope_rows": scope_rows,
                "replay_scope_write_call": scope_call,
            }
        )
        return Recovered(
            cursor=cursor,
            encoder=encoder,
            full_hash=verified.full_hash,
            needs_header=layout.open.header_written and not layout.committed,
            replay=replay,
            redelivered=redelivered,
            segment_sealed=layout.segment in layout.sealed,
            run_rows=sum(len(e.tokens) for e in layout.committed),
        )

    def check_settings(self, recorded: OpenRecord) -> None:
        """Refuse this run if it configures otherwise what ``recorded`` decided (before any write)."""
        t = self.target
        check_recorded(
            recorded.encoder,
            recorded.identity,
            identity_fields=t.identity.fields,
            requested=t.requested,
            run_id=recorded.run_id,
            output=f"{t.container}/{t.blob_path}",
        )

    def _finish_seal(self, layout: RunLayout) -> None:
        """Seal the last run's segment if it recorded a seal whose request never landed (the run
        died, or the seal failed, after the record): the output is continued in a new segment."""
        if layout.segment not in layout.sealed:
            return
        name = self.segment(layout.segment)
        info = self.store.properties(name)
        if info is not None and not info.sealed:
            self.store.seal(name, layout.segment_ends.get(layout.segment, 0), lease=self.lease.held)
            self.events.append({"event": "recovery.seal_finished", "segment": name})

    def _refuse_lost_manifest(self) -> None:
        """This run's pointer exists but its manifest does not: refuse if the run had written data.

        A run that created segment 0 and put bytes in it always has a manifest (it is created
        before the first byte); without it those bytes can no longer be proven, so the run is
        not taken for one that never started.
        """
        t = self.target
        seg0 = self.segment(0)
        info = self.store.properties(seg0)
        if info is not None and info.size and info.metadata.get(META_CREATOR) == t.run_id:
            raise RecoveryError(
                f"the manifest of run {t.run_id} ({t.manifest}) is missing -- lost or deleted: the "
                f"{info.size} bytes that run wrote to {seg0} can no longer be proven, so it is not resumed",
                hint="restore the manifest blob, or write the rows to a new blob_path; "
                "`elspeth-appendsink verify` lists the bytes no manifest describes",
            )

    def earlier_layouts(self, opening: Record) -> list[RunLayout]:
        """The runs ``opening`` continues, oldest first, each settled by the start of the next."""
        if not isinstance(opening, OpenRecord):
            raise ManifestCorruptError(f"{self.target.manifest} does not start with an open record")
        names = [manifest_name(self.target.blob_path, run_id) for run_id in opening.continues]
        records = [self._read_manifest(name) for name in names]
        # each run as the run after it read it (a stale writer's late records left out)
        links = [*(r[0].record.prev if r else "" for r in records[1:]), opening.prev]
        layouts = [
            walk(self._cut(recs, link, name), name)
            for recs, link, name in zip(records, links, names, strict=False)
        ]
        following = [lay.open for lay in layouts[1:]] + [opening]
        return [settled_by_next(lay, nxt) for lay, nxt in zip(layouts, following, strict=False)]

    def _cut(self, records: list[DecodedRecord], link: str, name: str) -> Sequence[DecodedRecord]:
        """``records`` as the next run read them (:func:`continued_prefix`), saying so if cut."""
        kept = continued_prefix(records, link)
        if len(kept) < len(records):
            self.events.append(
                {
                    "event": "recovery.stale_records_ignored",
                    "manifest": name,
                    "records": len(records) - len(kept),
                    "why": "written by that run's writer after the next run took the output over",
                }
            )
        return kept

    def settle_tail(self, layout: RunLayout) -> RunLayout:
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
                self.lease.acquire(old)
                self.store.seal(old, record.final_length, lease=self.lease.held)
            create_own_segment(
                self.store, self.segment(record.next_segment), layout.open.run_id, self.target.run_id
            )
            self.events.append({"event": "recovery.rollover_finished", "segment": old})
        return layout

    def described(self) -> dict[str, list[DecodedRecord]]:
        """Every manifest of this output that holds records, by name (read, not settled)."""
        decoded = {}
        for name in self.store.list_names(manifest_prefix(self.target.blob_path)):
            records = self._read_manifest(name)
            if records:
                decoded[name] = records
        return decoded

    def output(
        self,
        decoded: dict[str, list[DecodedRecord]],
        restore_encoder: Callable[[dict[str, Any]], Encoder],
    ) -> Continued:
        """``continue`` (or ``append`` onto this sink's own output): reconcile every earlier run of
        this output, oldest first, from its manifests (:meth:`described`, not empty).

        The configured settings are checked against the last run's recorded decisions before
        anything is written (the lease, the earlier runs' unfinished tails).
        """
        layouts = []
        for name, records in decoded.items():
            layouts.append((walk(records, name), name))
        layouts.sort(key=lambda pair: len(pair[0].open.continues))
        ordered = [lay for lay, _ in layouts]
        for index in range(len(ordered) - 1):  # each run as the run after it read it
            name = layouts[index][1]
            kept = self._cut(decoded[name], ordered[index + 1].open.prev, name)
            if len(kept) < len(decoded[name]):
                ordered[index] = walk(kept, name)
        for index, layout in enumerate(ordered):
            expected = tuple(lay.open.run_id for lay in ordered[:index])
            if layout.open.continues != expected:
                raise ManifestCorruptError(
                    f"run {layout.open.run_id} continues {list(layout.open.continues)}, but the manifests "
                    f"present give {list(expected)}: the chain of runs for this output is broken"
                )
        # The earlier runs are over (their leases are gone, or acquire below fails): finish their tails.
        last = ordered[-1]
        if any(lay.committed or lay.pending for lay in ordered):
            self.check_settings(last.open)  # (no byte of theirs reached storage: nothing was decided)
        require_segments(self.store, self.target.blob_path, ordered)
        fence = last.pending_rollover.segment if last.pending_rollover is not None else last.segment
        self.lease.acquire(self.segment(fence))
        earlier = [settled_by_next(lay, nxt.open) for lay, nxt in itertools.pairwise(ordered)]
        ordered = [*earlier, self.settle_tail(ordered[-1])]
        self._finish_seal(ordered[-1])
        for index in range(1, len(ordered)):
            if ordered[index].open.prev != ordered[index - 1].head:
                raise ManifestCorruptError(
                    f"run {ordered[index].open.run_id} does not link to the last record of run "
                    f"{ordered[index - 1].open.run_id}: the chain of runs is broken"
                )
        verified = self.verify(
            ordered,
            digests_for={id(e) for lay in ordered for e in lay.committed},
            row_digests=restore_encoder(ordered[-1].open.encoder).row_digests,
        )
        digests = DigestMultiset.from_packed(
            verified.entry_digests(e) for lay in ordered for e in lay.committed
        )
        replay = Replay(digests, "continue", tuple(lay.open.run_id for lay in ordered))
        self.events.append(
            {
                "event": "continue.recovered",
                "runs": list(replay.runs),
                "rows": len(digests),
                "bytes": verified.size,
                "identity_bytes": digests.nbytes,
            }
        )
        return Continued(ordered, replay, verified)

    def verify(
        self,
        layouts: Sequence[RunLayout],
        digests_for: Collection[int] = frozenset(),
        row_digests: DigestsFromBytes = row_digests_from_lengths,
    ) -> Verified:
        """Read every segment once (the scan, strictly): each byte described, each entry's sha256
        right, the whole output's hash rebuilt.

        Entries in ``digests_for`` (by ``id``) that carry row lengths or no body (Arrow's
        ``derived``) get their rows' identity digests computed from the bytes read by
        ``row_digests`` — the output's encoder's :meth:`~Encoder.row_digests` — for
        :meth:`Verified.entry_digests`.
        """
        ends = expected_lengths(layouts)
        infos = {segment: self.store.properties(self.segment(segment)) for segment in sorted(ends)}
        runs = [
            ScannedRun(lay, manifest_name(self.target.blob_path, lay.open.run_id), lay.open.run_id)
            for lay in layouts
        ]
        derivable = (e for lay in layouts for e in lay.committed if e.lengths or e.derived)
        wanted = {id(e) for e in derivable if id(e) in digests_for}
        result = scan_segments(
            self.store,
            self.target.blob_path,
            runs,
            infos,
            strict=True,
            described=ends,
            want_digests=wanted,
            digests_from_bytes=row_digests,
        )
        return Verified(result.full, result.size, result.digests)
