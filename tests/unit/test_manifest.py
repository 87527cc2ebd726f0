"""The manifest record format: canonical framing, exact round-trips, a hash chain that detects tampering."""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from elspeth_appendsink.core.manifest import (
    GENESIS,
    BlockEntry,
    ManifestReader,
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
from elspeth_appendsink.errors import ManifestCorruptError

# Text as the manifest may hold it: any valid Unicode (no lone surrogates, which UTF-8 cannot carry).
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
small = st.integers(min_value=0, max_value=2**40)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def token_ranges(draw: st.DrawFn, max_rows: int = 20) -> TokenRange:
    start = draw(small)
    return TokenRange(start, start + draw(st.integers(0, max_rows)))


@st.composite
def block_entries(draw: st.DrawFn, lengths: bool | None = None) -> BlockEntry:
    """A block entry whose body is digests or (``lengths``) row lengths that fit its length."""
    tokens = draw(token_ranges())
    rows = len(tokens)
    if lengths if lengths is not None else draw(st.booleans()):
        sizes = draw(st.lists(st.integers(0, 5000), min_size=rows, max_size=rows))
        length, digests, packed = (
            sum(sizes) + draw(st.integers(0, 300)),
            b"",
            struct.pack(f">{rows}I", *sizes),
        )
    else:
        length, digests, packed = draw(small), draw(st.binary(min_size=8 * rows, max_size=8 * rows)), b""
    return BlockEntry(
        seq=draw(small),
        prev=draw(hexes),
        segment=draw(small),
        offset=draw(small),
        length=length,
        sha256=draw(hexes),
        tokens=tokens,
        write_call=draw(st.integers(-1, 2**31)),
        batch=draw(small),
        digests=digests,
        lengths=packed,
    )


open_records = st.builds(
    OpenRecord,
    seq=small,
    prev=hexes,
    run_id=text,
    container=text,
    blob_path=text,
    encoder=st.dictionaries(text, json_values, max_size=4),
    identity=st.dictionaries(text, json_values, max_size=3),
    block_size=small,
    segment_max_blocks=small,
    segment_max_bytes=st.none() | small,
    if_exists=st.sampled_from(["fail", "append", "continue"]),
    base_segment=small,
    base_length=small,
    base_sha256=hexes,
    continues=st.lists(text, max_size=3).map(tuple),
    header_written=st.booleans(),
    created_at=text,
    sink_version=text,
)
void_records = st.builds(VoidRecord, seq=small, prev=hexes, voids=small, segment=small, offset=small)
rollover_records = st.builds(
    RolloverRecord,
    seq=small,
    prev=hexes,
    segment=small,
    final_length=small,
    next_segment=small,
    reason=text,
)
seal_records = st.builds(SealRecord, seq=small, prev=hexes, segment=small, final_length=small)
records: st.SearchStrategy[Record] = st.one_of(
    open_records, block_entries(), void_records, rollover_records, seal_records
)

first_records = records.map(lambda record: replace(record, seq=0))  # what a reader expects first


def chained(items: list[Record], first_prev: str = GENESIS) -> tuple[bytes, list[bytes]]:
    """Number ``items`` 0, 1, … and link each to the previous one's hash, as the writer does."""
    encoded: list[bytes] = []
    prev = first_prev
    for seq, item in enumerate(items):
        raw = encode_record(replace(item, seq=seq, prev=prev))
        encoded.append(raw)
        prev = record_hash(raw)
    return b"".join(encoded), encoded


manifests = st.lists(records, min_size=1, max_size=8).map(chained)


class TestEncodeDecode:
    @given(first_records)
    def test_every_record_round_trips_exactly(self, record: Record) -> None:
        """Decoding an encoded record gives back an equal record, digests or lengths included."""
        (decoded,) = decode_records(encode_record(record))
        assert decoded.record == record
        if isinstance(record, BlockEntry):
            assert isinstance(decoded.record, BlockEntry)
            assert (decoded.record.digests, decoded.record.lengths) == (record.digests, record.lengths)

    @given(first_records)
    def test_encoding_is_deterministic(self, record: Record) -> None:
        """The same record always frames to the same bytes (so its chain hash is stable)."""
        assert encode_record(record) == encode_record(replace(record))
        assert encode_record(decode_records(encode_record(record))[0].record) == encode_record(record)

    @given(manifests)
    def test_decoded_records_carry_their_offset_length_and_chain_hash(
        self, manifest: tuple[bytes, list[bytes]]
    ) -> None:
        """Each decoded record says where it sits in the blob and what its bytes hash to."""
        data, encoded = manifest
        decoded = decode_records(data, expect_prev=GENESIS)
        assert [d.length for d in decoded] == [len(e) for e in encoded]
        assert [d.offset for d in decoded] == [sum(map(len, encoded[:i])) for i in range(len(encoded))]
        assert [d.hash for d in decoded] == [record_hash(e) for e in encoded]

    @given(block_entries(lengths=True))
    def test_block_entry_lengths_give_one_length_per_row(self, entry: BlockEntry) -> None:
        """``row_lengths`` yields one length per row of the token range, together within the block."""
        sizes = entry.row_lengths()
        assert len(sizes) == len(entry.tokens) and sum(sizes) <= entry.length
        assert not entry.digests

    def test_block_entry_whose_rows_overrun_the_block_is_refused(self) -> None:
        """Row lengths adding up to more than the block cannot be honest: ManifestCorruptError."""
        entry = BlockEntry(
            0, GENESIS, 0, 0, 10, "0" * 64, TokenRange(0, 2), 0, 0, b"", struct.pack(">2I", 6, 6)
        )
        with pytest.raises(ManifestCorruptError, match="longer than the block"):
            decode_records(encode_record(entry))

    @given(block_entries(lengths=False))
    def test_block_entry_digests_split_into_one_per_row(self, entry: BlockEntry) -> None:
        """``digest_list`` yields one 8-byte digest per row of the token range, in order."""
        digests = entry.digest_list()
        assert len(digests) == len(entry.tokens)
        assert b"".join(digests) == entry.digests

    def test_block_entry_with_wrong_digest_count_is_refused(self) -> None:
        """A block record whose body is not 8 bytes per row is corrupt."""
        entry = BlockEntry(0, GENESIS, 0, 0, 10, GENESIS, TokenRange(0, 2), 0, 0, b"x" * 8)
        with pytest.raises(ManifestCorruptError, match="digest bytes"):
            decode_records(encode_record(entry))

    def test_a_derived_block_entry_has_no_body_and_round_trips(self) -> None:
        """``"body": "derived"``: no bytes per row (identities come from the block), decoded as such."""
        entry = BlockEntry(0, GENESIS, 0, 0, 900, GENESIS, TokenRange(5, 25), 1, 0, b"", derived=True)
        encoded = encode_record(entry)
        assert b'"body":"derived"' in encoded and encoded.endswith(b"}")
        (decoded,) = decode_records(encoded)
        assert decoded.record == entry

    def test_a_derived_block_entry_carrying_bytes_is_refused(self) -> None:
        """A forged body on a derived entry could swallow later records: ManifestCorruptError."""
        entry = BlockEntry(0, GENESIS, 0, 0, 10, GENESIS, TokenRange(0, 2), 0, 0, b"", derived=True)
        head = encode_record(entry)[12:]  # the 12-byte frame prefix, then the header (no body)
        forged = b"EAS1" + struct.pack(">II", len(head), 16) + head + b"x" * 16
        with pytest.raises(ManifestCorruptError, match="body bytes for 2 rows"):
            decode_records(forged)

    @pytest.mark.parametrize(
        "record",
        [
            VoidRecord(0, GENESIS, 0, 0, 0),
            RolloverRecord(0, GENESIS, 0, 10, 1, "cap"),
            SealRecord(0, GENESIS, 0, 10),
        ],
        ids=["void", "rollover", "seal"],
    )
    def test_a_body_on_a_record_kind_that_has_none_is_refused(self, record: Record) -> None:
        """Only block records carry a body; bytes after any other record's header are corrupt."""
        raw = encode_record(record)
        magic, hlen, blen = struct.unpack_from(">4sII", raw)
        assert blen == 0
        tampered = struct.pack(">4sII", magic, hlen, 8) + raw[12:] + b"\0" * 8
        with pytest.raises(ManifestCorruptError):
            decode_records(tampered)

    @pytest.mark.parametrize(
        ("header", "why"),
        [
            (b'{"kind":"nope","v":1}', "unknown manifest record kind"),
            (b'{"kind":"seal","v":2,"seq":0,"prev":"","segment":0,"final_length":0}', "format v2"),
            (b'{"kind":"seal","v":1,"seq":0}', "malformed seal record"),
            (b'{"kind":"seal","v":1,"seq":0,"prev":"","segment":0,"final_length":0,"x":1}', "malformed"),
            (b"[1,2]", "not an object"),
            (b"\xff{", "undecodable"),
        ],
    )
    def test_malformed_headers_are_refused_with_a_reason(self, header: bytes, why: str) -> None:
        """Unknown kinds, other format versions, missing or extra fields and non-JSON are corrupt."""
        raw = struct.pack(">4sII", b"EAS1", len(header), 0) + header
        with pytest.raises(ManifestCorruptError, match=why):
            decode_records(raw)

    def test_bad_token_range_is_refused(self) -> None:
        """A token range that ends before it starts cannot be decoded into a record."""
        raw = encode_record(BlockEntry(0, GENESIS, 0, 0, 1, GENESIS, TokenRange(3, 3), 0, 0, b""))
        tampered = raw.replace(b'"tokens":[3,3]', b'"tokens":[3,2]')
        with pytest.raises(ManifestCorruptError, match="bad token range"):
            decode_records(tampered)


class TestHashChain:
    @given(manifests)
    def test_an_untouched_chain_decodes(self, manifest: tuple[bytes, list[bytes]]) -> None:
        """Records numbered from 0 and each linked to its predecessor decode without complaint."""
        data, encoded = manifest
        assert len(decode_records(data, expect_prev=GENESIS)) == len(encoded)

    @given(manifests, st.data())
    def test_editing_any_byte_before_the_last_record_is_detected(
        self, manifest: tuple[bytes, list[bytes]], data: st.DataObject
    ) -> None:
        """Changing any byte of any record that has a successor breaks framing, decoding or the chain."""
        raw, encoded = manifest
        assume(len(encoded) >= 2)
        guarded = len(raw) - len(encoded[-1])  # the last record has no successor to vouch for it
        position = data.draw(st.integers(0, guarded - 1), label="position")
        flip = data.draw(st.integers(1, 255), label="xor")
        tampered = bytearray(raw)
        tampered[position] ^= flip
        with pytest.raises(ManifestCorruptError):
            decode_records(bytes(tampered), expect_prev=GENESIS)

    @given(manifests, st.data())
    def test_dropping_any_record_but_the_last_is_detected(
        self, manifest: tuple[bytes, list[bytes]], data: st.DataObject
    ) -> None:
        """A missing record leaves its successor linked to a hash that is not its predecessor's."""
        _, encoded = manifest
        assume(len(encoded) >= 2)
        index = data.draw(st.integers(0, len(encoded) - 2), label="dropped")
        with pytest.raises(ManifestCorruptError):
            decode_records(b"".join(encoded[:index] + encoded[index + 1 :]), expect_prev=GENESIS)

    @given(manifests, st.data())
    def test_reordering_records_is_detected(
        self, manifest: tuple[bytes, list[bytes]], data: st.DataObject
    ) -> None:
        """Any permutation other than the original order breaks the sequence numbers or the chain."""
        _, encoded = manifest
        assume(len(encoded) >= 2)
        order = data.draw(st.permutations(range(len(encoded))), label="order")
        assume(order != list(range(len(encoded))))
        with pytest.raises(ManifestCorruptError):
            decode_records(b"".join(encoded[i] for i in order), expect_prev=GENESIS)

    @given(manifests, hexes)
    def test_first_record_must_link_to_the_expected_head(
        self, manifest: tuple[bytes, list[bytes]], other: str
    ) -> None:
        """A run continuing another must link to that run's last record hash, not to anything else."""
        data, _ = manifest
        assume(other != GENESIS)
        with pytest.raises(ManifestCorruptError, match="hash chain broken"):
            decode_records(data, expect_prev=other)
        continued, _ = chained([decode_records(data)[0].record], first_prev=other)
        assert decode_records(continued, expect_prev=other)[0].record.prev == other

    def test_a_record_linking_to_the_wrong_hash_names_both_hashes(self) -> None:
        """The chain error says which record broke it and what it should have linked to."""
        first = encode_record(SealRecord(0, GENESIS, 0, 1))
        second = encode_record(SealRecord(1, "f" * 64, 0, 2))
        with pytest.raises(ManifestCorruptError, match=r"record 1 links to ffffffffffff…"):
            decode_records(first + second)


class TestManifestReader:
    @given(manifests, st.lists(st.integers(0, 10_000), max_size=12))
    def test_any_chunking_of_the_stream_gives_the_same_records(
        self, manifest: tuple[bytes, list[bytes]], cuts: list[int]
    ) -> None:
        """Feeding the blob in arbitrary pieces yields exactly the records of decoding it whole."""
        data, _ = manifest
        whole = decode_records(data, expect_prev=GENESIS)
        points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
        reader = ManifestReader(expect_prev=GENESIS)
        pieces = []
        for start, end in itertools.pairwise(points):
            pieces.extend(reader.feed(data[start:end]))
        reader.finish()
        assert pieces == whole
        assert reader.head == whole[-1].hash and reader.next_seq == len(whole)

    @given(manifests, st.data())
    def test_a_torn_tail_is_refused_at_finish(
        self, manifest: tuple[bytes, list[bytes]], data: st.DataObject
    ) -> None:
        """Bytes that stop mid-record decode the whole records before them, then ``finish`` raises."""
        raw, encoded = manifest
        cut = data.draw(st.integers(1, len(encoded[-1]) - 1), label="bytes of the last record kept")
        torn = raw[: len(raw) - len(encoded[-1]) + cut]
        reader = ManifestReader()
        assert len(list(reader.feed(torn))) == len(encoded) - 1
        with pytest.raises(ManifestCorruptError, match="trailing bytes"):
            reader.finish()

    def test_foreign_bytes_are_refused_by_their_magic(self) -> None:
        """A blob that is not a manifest fails on its first record's magic, naming the offset."""
        with pytest.raises(ManifestCorruptError, match=r"bad record magic .* at offset 0"):
            list(ManifestReader().feed(b"id,value\r\n1,2\r\n"))

    def test_an_empty_manifest_has_no_records(self) -> None:
        """A manifest blob created but never written to decodes to nothing, without error."""
        assert decode_records(b"") == []


class TestTokenRange:
    @given(st.integers(0, 2**40), st.integers(0, 2**20))
    def test_length_is_end_minus_start(self, start: int, rows: int) -> None:
        """A half-open range holds ``end - start`` rows."""
        assert len(TokenRange(start, start + rows)) == rows

    @pytest.mark.parametrize(("start", "end"), [(-1, 0), (5, 4)])
    def test_a_backwards_or_negative_range_is_refused(self, start: int, end: int) -> None:
        """A range must satisfy 0 <= start <= end."""
        with pytest.raises(ValueError, match="bad token range"):
            TokenRange(start, end)
