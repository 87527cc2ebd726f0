"""Reconciliation: reading a manifest (committed, pending, voided, rolled over), deciding a pending batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from elspeth_appendsink.core.manifest import (
    GENESIS,
    BlockEntry,
    DecodedRecord,
    OpenRecord,
    Record,
    RolloverRecord,
    SealRecord,
    TokenRange,
    VoidRecord,
    decode_records,
    encode_record,
    record_hash,
)
from elspeth_appendsink.core.reconcile import RunLayout, classify_pending, expected_lengths, walk
from elspeth_appendsink.errors import ManifestCorruptError, UndescribedBytesError


def opening(base_segment: int = 0, base_length: int = 0, run_id: str = "run") -> OpenRecord:
    return OpenRecord(
        seq=0,
        prev=GENESIS,
        run_id=run_id,
        container="c",
        blob_path="out/data.jsonl",
        encoder={"format": "jsonl"},
        identity={"scheme": "content", "fields": []},
        block_size=64,
        segment_max_blocks=4,
        segment_max_bytes=None,
        if_exists="fail",
        base_segment=base_segment,
        base_length=base_length,
        base_sha256=hashlib.sha256(b"").hexdigest(),
        continues=(),
        header_written=base_length == 0,
        created_at="2026-01-01T00:00:00+00:00",
        sink_version="0",
    )


@dataclass
class Builder:
    """Writes a manifest the way the writer does, and keeps the model of what it means."""

    base_segment: int = 0
    base_length: int = 0
    records: list[Record] = field(default_factory=list)
    # the model
    committed: list[BlockEntry] = field(default_factory=list)
    open_batch: list[BlockEntry] = field(default_factory=list)
    segment: int = 0
    ends: dict[int, int] = field(default_factory=dict)
    sealed: dict[int, int] = field(default_factory=dict)
    token: int = 0
    voided: int = 0
    call: int = 0

    head: str = GENESIS

    def __post_init__(self) -> None:
        self.segment = self.base_segment
        self.ends = {self.base_segment: self.base_length}
        self._add(opening(self.base_segment, self.base_length))

    def _add(self, record: Record) -> Record:
        """Number and link ``record`` as the next one, as the writer does."""
        record = replace(record, seq=len(self.records), prev=self.head)
        self.records.append(record)
        self.head = record_hash(encode_record(record))
        return record

    def _settle(self) -> None:
        for entry in self.open_batch:
            self.committed.append(entry)
            self.ends[entry.segment] = entry.end
        self.open_batch = []

    def batch(self, blocks: list[tuple[int, int]]) -> None:
        """One manifest append carrying intents for blocks of (length, rows)."""
        self._settle()
        self.call += 1
        first = len(self.records)
        offset = self.ends.get(self.segment, 0)
        for length, rows in blocks:
            entry = BlockEntry(
                seq=0,
                prev="",
                segment=self.segment,
                offset=offset,
                length=length,
                sha256=hashlib.sha256(str(len(self.records)).encode()).hexdigest(),
                tokens=TokenRange(self.token, self.token + rows),
                write_call=self.call,
                batch=first,
                digests=b"\x01" * 8 * rows,
            )
            entry = self._add(entry)  # type: ignore[assignment]
            self.open_batch.append(entry)
            offset, self.token = entry.end, entry.tokens.end

    def void(self, index: int) -> None:
        """The open batch's entries from ``index`` on never landed."""
        target = self.open_batch[index]
        self._add(VoidRecord(0, "", target.seq, target.segment, target.offset))
        self.voided += len(self.open_batch) - index
        self.open_batch = self.open_batch[:index]
        self.token = target.tokens.start
        self._settle()

    def rollover(self) -> None:
        self._settle()
        end = self.ends.get(self.segment, 0)
        self._add(RolloverRecord(0, "", self.segment, end, self.segment + 1, "cap"))
        self.sealed[self.segment] = end
        self.segment += 1
        self.ends.setdefault(self.segment, 0)

    def seal(self) -> None:
        self._settle()
        end = self.ends.get(self.segment, 0)
        self._add(SealRecord(0, "", self.segment, end))
        self.sealed[self.segment] = end

    def decoded(self) -> list[DecodedRecord]:
        return decode_records(chain(self.records), expect_prev=GENESIS)


def chain(records: list[Record]) -> bytes:
    out, prev = [], GENESIS
    for seq, record in enumerate(records):
        raw = encode_record(replace(record, seq=seq, prev=prev))
        out.append(raw)
        prev = record_hash(raw)
    return b"".join(out)


blocks = st.lists(st.tuples(st.integers(1, 500), st.integers(0, 5)), min_size=1, max_size=4)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), blocks),
        st.tuples(st.just("void"), st.integers(0, 3)),
        st.tuples(st.just("rollover"), st.none()),
        st.tuples(st.just("seal"), st.none()),
    ),
    max_size=12,
)


@st.composite
def manifests(draw: st.DrawFn) -> Builder:
    """Valid manifests: batches, voids of the open batch, rollovers and seals in any order."""
    builder = Builder(
        base_segment=draw(st.integers(0, 3)), base_length=draw(st.sampled_from([0, 0, 17, 4096]))
    )
    for kind, arg in draw(steps):
        if kind == "batch":
            if builder.segment in builder.sealed:
                # as the writer does (protocol/writer.py, "segment already sealed"): a block never
                # goes to a sealed segment, the run rolls over to the next one first
                builder.rollover()
            builder.batch(arg)
        elif kind == "void":
            if builder.open_batch and builder.records[-1] is builder.open_batch[-1]:
                builder.void(min(arg, len(builder.open_batch) - 1))
        elif kind == "rollover":
            builder.rollover()
        else:
            builder.seal()
    return builder


class TestWalk:
    @given(manifests())
    def test_layout_matches_the_model_of_the_write_protocol(self, built: Builder) -> None:
        """Committed entries, pending batch, voids, seals, segment ends and next row are read exactly."""
        decoded = built.decoded()
        layout = walk(decoded)
        assert layout.committed == built.committed
        assert layout.pending == built.open_batch
        assert layout.voided == built.voided
        assert layout.sealed == built.sealed
        assert layout.segment == built.segment
        assert layout.segment_ends == built.ends
        assert layout.next_token == (built.committed[-1].tokens.end if built.committed else 0)
        assert layout.head == decoded[-1].hash
        assert layout.next_seq == len(decoded)
        assert layout.manifest_length == sum(d.length for d in decoded)
        assert layout.last_write_call == (built.committed[-1].write_call if built.committed else -1)

    @given(manifests())
    def test_only_a_trailing_rollover_is_pending(self, built: Builder) -> None:
        """A rollover is unfinished only if it is the manifest's last record."""
        layout = walk(built.decoded())
        last = built.records[-1]
        if isinstance(last, RolloverRecord):
            assert layout.pending_rollover is not None
            assert (layout.pending_rollover.segment, layout.pending_rollover.final_length) == (
                last.segment,
                last.final_length,
            )
        else:
            assert layout.pending_rollover is None

    @given(manifests(), st.data())
    def test_adopting_pending_intents_commits_exactly_those(
        self, built: Builder, data: st.DataObject
    ) -> None:
        """``adopt_pending(k)`` commits the first k intents of the last batch and drops the rest."""
        layout = walk(built.decoded())
        pending = list(layout.pending)
        count = data.draw(st.integers(0, len(pending)), label="landed")
        before = list(layout.committed)
        layout.adopt_pending(count)
        assert layout.committed == before + pending[:count]
        assert layout.pending == []
        if count:
            assert layout.next_token == pending[count - 1].tokens.end
            assert layout.segment_ends[pending[0].segment] == pending[count - 1].end

    def test_a_batch_followed_by_any_record_is_committed(self) -> None:
        """Every intent of a batch is committed once a later record exists (the writer waited for it)."""
        built = Builder()
        built.batch([(10, 1), (20, 2)])
        built.batch([(5, 1)])
        layout = walk(built.decoded())
        assert [e.length for e in layout.committed] == [10, 20]
        assert [e.length for e in layout.pending] == [5]

    def test_a_void_commits_the_intents_before_it_and_drops_the_rest(self) -> None:
        """A void names the first intent of its batch that never landed; earlier ones did."""
        built = Builder()
        built.batch([(10, 1), (20, 2), (30, 3)])
        built.void(1)
        layout = walk(built.decoded())
        assert [e.length for e in layout.committed] == [10]
        assert layout.pending == [] and layout.voided == 2
        assert layout.next_token == 1 and layout.segment_ends[0] == 10

    def test_a_rollover_moves_to_the_next_segment_and_seals_the_old(self) -> None:
        """After a rollover the next block goes to offset 0 of the next segment."""
        built = Builder()
        built.batch([(10, 1)])
        built.rollover()
        built.batch([(7, 1)])
        layout = walk(built.decoded())
        assert layout.sealed == {0: 10}
        assert layout.segment == 1 and layout.pending_rollover is None
        assert layout.pending[0].segment == 1 and layout.pending[0].offset == 0

    def test_pre_existing_bytes_are_where_the_first_block_goes(self) -> None:
        """A run appending to existing bytes places its first block after them."""
        built = Builder(base_segment=2, base_length=4096)
        built.batch([(10, 1)])
        layout = walk(built.decoded())
        assert layout.segment == 2 and layout.pending[0].offset == 4096

    def test_a_manifest_must_start_with_an_open_record(self) -> None:
        """Anything else first (or nothing at all) is corrupt."""
        with pytest.raises(ManifestCorruptError, match="does not start with an open record"):
            walk([])
        with pytest.raises(ManifestCorruptError, match="does not start with an open record"):
            walk(decode_records(chain([SealRecord(0, "", 0, 0)])))

    @pytest.mark.parametrize(
        ("change", "why"),
        [
            ({"offset": 11}, "places a block at segment 0 offset 11"),
            ({"segment": 1}, "places a block at segment 1"),
            ({"tokens": TokenRange(2, 3)}, "starts at row 2, expected 1"),
            ({"batch": 0}, "claims batch 0 but starts a new one"),
        ],
    )
    def test_a_block_that_does_not_follow_the_layout_is_corrupt(
        self, change: dict[str, object], why: str
    ) -> None:
        """A new batch must start at the committed end of the current segment, at the next row."""
        built = Builder()
        built.batch([(10, 1)])
        built.batch([(5, 1)])
        built.records[-1] = replace(built.records[-1], **change)  # type: ignore[arg-type]
        with pytest.raises(ManifestCorruptError, match=why):
            walk(built.decoded())

    @pytest.mark.parametrize(
        ("change", "why"),
        [
            ({"offset": 11}, "does not follow record 1 of its batch"),
            ({"tokens": TokenRange(2, 3)}, "starts at row 2, expected 1"),
        ],
    )
    def test_an_intent_that_does_not_follow_its_batch_is_corrupt(
        self, change: dict[str, object], why: str
    ) -> None:
        """Within a batch each intent starts where the previous one ends, at the next row."""
        built = Builder()
        built.batch([(10, 1), (5, 1)])
        built.records[-1] = replace(built.records[-1], **change)  # type: ignore[arg-type]
        with pytest.raises(ManifestCorruptError, match=why):
            walk(built.decoded())

    def test_a_void_must_name_an_intent_of_the_open_batch(self) -> None:
        """Voiding a settled entry (or with no batch open) is corrupt: it cannot be undone."""
        built = Builder()
        built.batch([(10, 1)])
        built.batch([(5, 1)])
        built.records.append(VoidRecord(0, "", 1, 0, 0))  # entry 1 was settled by the second batch
        with pytest.raises(ManifestCorruptError, match="which is not an open intent"):
            walk(built.decoded())
        fresh = Builder()
        fresh.records.append(VoidRecord(0, "", 0, 0, 0))
        with pytest.raises(ManifestCorruptError, match="which is not an open intent"):
            walk(fresh.decoded())

    @pytest.mark.parametrize(
        "record",
        [
            RolloverRecord(0, "", 1, 10, 2, "cap"),
            RolloverRecord(0, "", 0, 9, 1, "cap"),
            RolloverRecord(0, "", 0, 10, 2, "cap"),
        ],
        ids=["wrong-segment", "wrong-length", "skips-a-segment"],
    )
    def test_a_rollover_that_does_not_match_the_layout_is_corrupt(self, record: RolloverRecord) -> None:
        """A rollover seals the current segment at its committed end and opens exactly the next one."""
        built = Builder()
        built.batch([(10, 1)])
        built.records.append(record)
        with pytest.raises(ManifestCorruptError, match="does not match the layout"):
            walk(built.decoded())

    def test_a_block_after_a_seal_of_its_segment_is_corrupt(self) -> None:
        """A seal fixes the segment's final length: a later block in that segment is refused."""
        built = Builder()
        built.batch([(10, 1)])
        built.seal()
        built.batch([(5, 1)])  # placed at the sealed segment's end, so only the seal forbids it
        with pytest.raises(ManifestCorruptError, match="which was sealed at 10 bytes"):
            walk(built.decoded())

    def test_an_open_record_in_the_middle_is_corrupt(self) -> None:
        """Only the first record may be an open record."""
        built = Builder()
        built.records.append(opening())
        with pytest.raises(ManifestCorruptError, match="unexpected open record"):
            walk(built.decoded())


def pending_batch(start: int, lengths: list[int]) -> list[BlockEntry]:
    entries, offset, token = [], start, 0
    for seq, length in enumerate(lengths, start=1):
        entries.append(
            BlockEntry(seq, "", 0, offset, length, "", TokenRange(token, token + 1), 0, 1, b"\0" * 8)
        )
        offset, token = offset + length, token + 1
    return entries


class TestClassifyPending:
    @given(st.integers(0, 10_000), st.lists(st.integers(1, 1000), min_size=1, max_size=6), st.data())
    def test_the_segment_length_says_how_many_intents_landed(
        self, start: int, lengths: list[int], data: st.DataObject
    ) -> None:
        """Length == batch start → none landed; == the end of intent k → the first k landed."""
        batch = pending_batch(start, lengths)
        count = data.draw(st.integers(0, len(batch)), label="landed")
        observed = start if count == 0 else batch[count - 1].end
        assert classify_pending(batch, observed, "seg") == count

    @given(
        st.integers(0, 10_000), st.lists(st.integers(1, 1000), min_size=1, max_size=6), st.integers(0, 20_000)
    )
    def test_any_other_length_is_undescribed_bytes(
        self, start: int, lengths: list[int], observed: int
    ) -> None:
        """A length between intent boundaries, before the batch or past it is never guessed at."""
        batch = pending_batch(start, lengths)
        assume(observed != start and observed not in {e.end for e in batch})
        with pytest.raises(UndescribedBytesError, match=f"segment seg is {observed} bytes"):
            classify_pending(batch, observed, "seg")


class TestExpectedLengths:
    @given(st.lists(st.dictionaries(st.integers(0, 5), st.integers(0, 10_000), max_size=4), max_size=4))
    def test_each_segment_ends_at_the_furthest_committed_end_of_any_run(
        self, ends_per_run: list[dict[int, int]]
    ) -> None:
        """Across the runs of one output, a segment's committed length is the largest end any run recorded."""
        layouts = [RunLayout(open=opening(), segment_ends=dict(ends)) for ends in ends_per_run]
        combined = expected_lengths(layouts)
        assert set(combined) == {segment for ends in ends_per_run for segment in ends}
        for segment, end in combined.items():
            assert end == max(ends[segment] for ends in ends_per_run if segment in ends)
