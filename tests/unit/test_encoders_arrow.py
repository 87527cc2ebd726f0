"""Arrow encoder: schema once, record batches after, a stream pyarrow reads; kinds; errors."""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.encoders import ArrowEncoder, create_encoder, restore_encoder
from elspeth_appendsink.errors import (
    ManifestCorruptError,
    RecoveryError,
    SchemaDriftError,
    UnencodableRow,
)


@dataclass(frozen=True)
class Field:
    """An ELSPETH FieldDefinition, as far as the encoder reads it."""

    name: str
    field_type: str


@dataclass(frozen=True)
class Schema:
    """A minimal SchemaSpec, optionally with typed fields like ELSPETH's SchemaConfig."""

    mode: str
    fields: tuple[Field, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


OBSERVED = Schema("observed")
TYPED = Schema(
    "fixed",
    (
        Field("id", "int"),
        Field("score", "float"),
        Field("ok", "bool"),
        Field("name", "str"),
        Field("extra", "any"),
    ),
)

safe_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
typed_rows = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "score": st.none()
            | st.floats(allow_nan=False)
            | st.integers(min_value=-(2**53), max_value=2**53),
            "ok": st.none() | st.booleans(),
            "name": st.none() | safe_text,
            "extra": st.none()
            | st.integers(min_value=-(2**60), max_value=2**60)
            | safe_text
            | st.lists(st.booleans(), max_size=3),
        },
    ),
    min_size=1,
    max_size=30,
)


def encoder_for(rows: list[dict[str, Any]], schema: Schema = TYPED) -> ArrowEncoder:
    encoder = create_encoder("arrow", schema=schema, first_rows=rows)
    assert isinstance(encoder, ArrowEncoder)
    return encoder


def stream(encoder: ArrowEncoder, *batches: list[dict[str, Any]]) -> bytes:
    blocks = [encoder.block(encoder.encode(rows), rows) for rows in batches]
    return encoder.header() + b"".join(blocks)


def read_rows(data: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.ipc.open_stream(data).read_all().to_pylist()
    return rows


def expected(encoder: ArrowEncoder, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as Arrow holds them: every column present, json cells as JSON text."""
    out = []
    for row in rows:
        item = {}
        for column, kind in zip(encoder.columns, encoder.kinds, strict=True):
            value = row.get(column)
            if kind == "json" and value is not None:
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            elif kind == "float" and value is not None:
                value = float(value)
            item[column] = value
        out.append(item)
    return out


class TestStream:
    @given(batches=st.lists(typed_rows, min_size=1, max_size=4))
    def test_header_plus_blocks_reads_back_as_the_rows(self, batches: list[list[dict[str, Any]]]) -> None:
        """header + one block per batch is an IPC stream that open_stream reads back to the rows."""
        encoder = encoder_for(batches[0])
        data = stream(encoder, *batches)
        assert read_rows(data) == [item for rows in batches for item in expected(encoder, rows)]

    @given(batches=st.lists(typed_rows, min_size=1, max_size=3))
    def test_bytes_equal_what_the_pyarrow_stream_writer_writes(
        self, batches: list[list[dict[str, Any]]]
    ) -> None:
        """header + blocks is byte for byte what new_stream writes for the same batches, minus EOS."""
        encoder = encoder_for(batches[0])
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, encoder.schema) as writer:
            for rows in batches:
                table = pa.Table.from_pylist(expected(encoder, rows), schema=encoder.schema)
                for batch in table.to_batches():
                    writer.write_batch(batch)
        end_of_stream = b"\xff\xff\xff\xff\x00\x00\x00\x00"
        assert stream(encoder, *batches) + end_of_stream == sink.getvalue()

    def test_a_stream_without_end_marker_is_read_and_a_torn_one_is_refused(self) -> None:
        """open_stream reads to a clean end without the EOS marker; a cut inside a message fails."""
        rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
        encoder = encoder_for(rows, OBSERVED)
        data = stream(encoder, rows, rows)
        assert len(read_rows(data)) == 4
        with pytest.raises(OSError, match="Expected to be able to read"):
            read_rows(data[:-3])

    def test_the_header_is_the_schema_message_only(self) -> None:
        """header() is the IPC schema message and blocks repeat no schema."""
        rows = [{"id": 1}]
        encoder = encoder_for(rows, OBSERVED)
        assert pa.ipc.read_schema(pa.py_buffer(encoder.header())).equals(encoder.schema, check_metadata=True)
        block = encoder.block(encoder.encode(rows), rows)
        assert pa.ipc.read_message(pa.py_buffer(block)).type == "record batch"


class TestKinds:
    def test_declared_types_decide_the_columns(self) -> None:
        """int, float, bool, str declared map to int64, float64, bool, string; any to json text."""
        encoder = encoder_for([{"id": None}])
        assert encoder.kinds == ("int", "float", "bool", "str", "json")
        assert [str(f.type) for f in encoder.schema] == ["int64", "double", "bool", "string", "string"]
        assert all(f.nullable for f in encoder.schema)

    @pytest.mark.parametrize(
        ("values", "kind"),
        [
            ([1, None, 2], "int"),
            ([1.5, 2.0], "float"),
            ([1, 2.5], "float"),
            ([True, None], "bool"),
            (["a"], "str"),
            ([None, None], "str"),
            ([b"\x00"], "binary"),
            ([date(2024, 1, 1)], "date"),
            ([datetime(2024, 1, 1)], "timestamp"),
            ([datetime(2024, 1, 1, tzinfo=UTC)], "timestamp_utc"),
            ([datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC)], "json"),
            ([1, "a"], "json"),
            ([{"k": 1}], "json"),
            ([[1, 2]], "json"),
        ],
    )
    def test_undeclared_kinds_are_inferred_from_the_first_batch(self, values: list[Any], kind: str) -> None:
        """Without a declared type, the first batch's value types decide the column kind."""
        encoder = encoder_for([{"v": value} for value in values], OBSERVED)
        assert encoder.kinds == (kind,)

    def test_special_kinds_read_back_as_their_values(self) -> None:
        """binary, date, timestamps (aware ones as the UTC instant) and json round-trip."""
        plus_two = timezone(timedelta(hours=2))
        rows: list[dict[str, Any]] = [
            {"b": b"\x00\xff", "d": date(2024, 2, 29), "t": datetime(2024, 1, 1, 12, 0, 0, 5),
             "u": datetime(2024, 1, 1, 12, tzinfo=plus_two), "j": {"k": [1, "é"]}},
            {"b": None, "d": None, "t": None, "u": None, "j": None},
        ]  # fmt: skip
        encoder = encoder_for(rows, OBSERVED)
        back = read_rows(stream(encoder, rows))
        assert back[0]["b"] == b"\x00\xff" and back[0]["d"] == date(2024, 2, 29)
        assert back[0]["t"] == datetime(2024, 1, 1, 12, 0, 0, 5)
        assert back[0]["u"] == datetime(2024, 1, 1, 10, tzinfo=UTC)
        assert back[0]["j"] == '{"k":[1,"é"]}'
        assert back[1] == dict.fromkeys(back[1])

    def test_json_cells_hold_what_jsonl_would_write_for_the_value(self) -> None:
        """A json column holds each value's compact JSON (times as ISO strings, as in JSONL)."""
        rows: list[dict[str, Any]] = [{"j": time(7, 8)}, {"j": [1, "é", None]}, {"j": {"a": 1.5}}]
        back = [row["j"] for row in read_rows(stream(encoder_for(rows, OBSERVED), rows))]
        assert back == ['"07:08:00"', '[1,"é",null]', '{"a":1.5}']

    def test_nan_and_infinity_are_kept_in_float_columns(self) -> None:
        """Arrow float64 holds NaN and infinities; they read back as such."""
        rows: list[dict[str, Any]] = [{"x": float("nan")}, {"x": float("inf")}, {"x": None}, {"x": 1.5}]
        back = [row["x"] for row in read_rows(stream(encoder_for(rows, OBSERVED), rows))]
        assert math.isnan(back[0]) and back[1:] == [float("inf"), None, 1.5]


class TestCanonicalEncoding:
    def test_encode_gives_the_column_ordered_json_array_of_each_row(self) -> None:
        """encode() returns compact JSON arrays in column order, missing keys as null."""
        rows: list[dict[str, Any]] = [{"name": "é", "id": 1}, {"id": 2, "ok": True}]
        assert encoder_for(rows).encode(rows) == [
            b'[1,null,null,"\xc3\xa9",null]',
            b"[2,null,true,null,null]",
        ]

    def test_nan_never_shares_an_encoding_with_null(self) -> None:
        """NaN, +inf, -inf and None give four different canonical encodings."""
        rows: list[dict[str, Any]] = [
            {"x": float("nan")},
            {"x": float("inf")},
            {"x": float("-inf")},
            {"x": None},
            {"x": 0.5},
        ]
        encoded = encoder_for(rows, OBSERVED).encode(rows)
        assert len(set(encoded)) == 5
        assert encoded[0] == b'[{"float":"nan"}]'

    @given(rows=typed_rows)
    def test_the_same_rows_always_give_the_same_bytes(self, rows: list[dict[str, Any]]) -> None:
        """Encodings, header and blocks are identical across calls and across equal encoders."""
        first, second = encoder_for(rows), encoder_for(rows)
        assert first.encode(rows) == second.encode(rows)
        assert stream(first, rows) == stream(second, rows)

    @given(rows=typed_rows, schema=st.sampled_from([TYPED, OBSERVED]))
    def test_a_restored_encoder_writes_identical_bytes(
        self, rows: list[dict[str, Any]], schema: Schema
    ) -> None:
        """restore_encoder(describe()) after a JSON round trip gives the same header, encodings, blocks."""
        encoder = encoder_for(rows, schema) if any(rows) or schema is TYPED else None
        if encoder is None:  # observed with only empty rows has no column: covered below
            return
        described = json.loads(json.dumps(encoder.describe()))
        restored = restore_encoder(described)
        assert described["format"] == "arrow"
        assert restored.describe() == encoder.describe()
        assert restored.encode(rows) == encoder.encode(rows)
        assert restored.header() + restored.block(restored.encode(rows), rows) == stream(encoder, rows)

    def test_restore_refuses_a_description_whose_schema_does_not_match(self) -> None:
        """A recorded schema that differs from the described columns is ManifestCorruptError."""
        described = encoder_for([{"id": 1}]).describe()
        other = encoder_for([{"id": 1}], OBSERVED).describe()
        with pytest.raises(ManifestCorruptError, match="schema"):
            restore_encoder({**described, "schema": other["schema"]})
        with pytest.raises(ManifestCorruptError):
            restore_encoder({**described, "schema": base64.b64encode(b"junk").decode()})

    def test_restore_refuses_an_orjson_that_spells_json_differently(self) -> None:
        """A description whose orjson fingerprint differs raises RecoveryError naming the version."""
        described = {**encoder_for([{"id": 1}]).describe(), "json_fingerprint": "0" * 16, "orjson": "3.0.0"}
        with pytest.raises(RecoveryError, match=r"orjson==3\.0\.0"):
            restore_encoder(described)


class TestErrors:
    @pytest.mark.parametrize(
        ("column", "value"),
        [
            ("id", "7"),
            ("id", 1.0),
            ("id", True),
            ("id", 2**63),
            ("score", "1.5"),
            ("score", 2**53 + 1),
            ("score", Decimal("1.5")),
            ("ok", 1),
            ("name", 5),
            ("name", "lone \ud800"),
            ("extra", float("nan")),
            ("extra", Decimal("1")),
        ],
        ids=lambda v: type(v).__name__ if not isinstance(v, str) or len(v) > 6 else v,
    )
    def test_a_value_that_does_not_fit_its_column_is_unencodable(self, column: str, value: Any) -> None:
        """Wrong types, out-of-range ints, surrogates and non-JSON values name field and row index."""
        good = {"id": 1, "score": 1.0, "ok": True, "name": "n", "extra": 1}
        rows = [good, good, {**good, column: value}]
        encoder = encoder_for(rows[:1])
        for encode in (encoder.encode, encoder.encode_packed):  # canonical rows; the writer's plan
            with pytest.raises(UnencodableRow, match=repr(column)) as caught:
                encode(rows)
            assert caught.value.row_index == 2

    def test_a_naive_datetime_does_not_fit_an_aware_column(self) -> None:
        """timestamp_utc refuses naive datetimes (and timestamp refuses aware ones)."""
        aware = datetime(2024, 1, 1, tzinfo=UTC)
        encoder = encoder_for([{"t": aware}], OBSERVED)
        with pytest.raises(UnencodableRow) as caught:
            encoder.encode([{"t": aware}, {"t": datetime(2024, 1, 1)}])
        assert caught.value.row_index == 1

    def test_the_earliest_bad_row_is_reported_across_columns(self) -> None:
        """Bad values in two columns report the lowest row index."""
        rows: list[dict[str, Any]] = [{"id": 1, "name": "a"}, {"id": 1, "name": 3}, {"id": 2**64, "name": ""}]
        encoder = encoder_for(rows[:1])
        for encode in (encoder.encode, encoder.encode_packed):
            with pytest.raises(UnencodableRow, match="'name'") as caught:
                encode(rows)
            assert caught.value.row_index == 1

    def test_a_later_new_field_is_schema_drift(self) -> None:
        """A key with no column fails with SchemaDriftError naming field and row index."""
        encoder = encoder_for([{"id": 1}], OBSERVED)
        with pytest.raises(SchemaDriftError, match="'late'") as caught:
            encoder.encode([{"id": 1}, {"late": 1}])
        assert caught.value.row_index == 1

    def test_a_first_batch_without_fields_cannot_start_a_stream(self) -> None:
        """observed mode with only empty rows gives no column: UnencodableRow, not an empty schema."""
        with pytest.raises(UnencodableRow, match="at least one column"):
            encoder_for([{}], OBSERVED)


# Every kind, with the values each accepts that a record batch gives back exactly (a float column
# of floats only, aware datetimes at UTC); ``test_values_that_read_back_differently_*`` covers the rest.
ALL_KINDS = ArrowEncoder(
    ["i", "f", "b", "s", "bin", "d", "ts", "tsz", "j"],
    ["int", "float", "bool", "str", "binary", "date", "timestamp", "timestamp_utc", "json"],
)
_json_cells = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=3),
    max_leaves=6,
)
every_kind_rows = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "i": st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "f": st.none() | st.floats(),  # NaN and infinities included
            "b": st.none() | st.booleans(),
            "s": st.none() | safe_text,
            "bin": st.none() | st.binary(max_size=20),
            "d": st.none() | st.dates(),
            "ts": st.none() | st.datetimes(),
            "tsz": st.none() | st.datetimes(timezones=st.just(UTC)),
            "j": _json_cells,
        },
    ),
    min_size=1,
    max_size=30,
)


def _entry(rows: int, block: bytes) -> Any:
    from elspeth_appendsink.core.manifest import BlockEntry, TokenRange

    return BlockEntry(7, "", 0, 0, len(block), "", TokenRange(0, rows), 0, 7, b"", derived=True)


def _release_digests(encoder: ArrowEncoder, rows: list[dict[str, Any]]) -> bytes:
    """The digests the release computed while writing: content identity of ``encode``."""
    from elspeth_appendsink.core.identity import IdentityScheme
    from elspeth_appendsink.encoders.base import Packed

    return IdentityScheme(None).digests(rows, Packed.join(encoder.encode(rows)))


class TestIdentitiesFromBlocks:
    @given(rows=every_kind_rows, with_header=st.booleans())
    def test_digests_from_the_decoded_batch_equal_those_of_encode(
        self, rows: list[dict[str, Any]], with_header: bool
    ) -> None:
        """Every kind, NaN and infinities, nulls and missing keys, json cells, binary, dates and
        timestamps with and without a zone: the batch gives back each row's canonical encoding."""
        encoder = ALL_KINDS
        planned = encoder.encode_packed(rows)
        assert encoder.derivable(planned)
        assert len(planned) == len(rows)
        block = (encoder.header() if with_header else b"") + encoder.block(planned.rows(), rows)
        assert encoder.row_digests(_entry(len(rows), block), block) == _release_digests(encoder, rows)

    @pytest.mark.parametrize(
        ("kinds", "value"),
        [
            (["float"], 5),
            (["timestamp_utc"], datetime(2024, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=2)))),
        ],
        ids=["int-in-float", "aware-not-utc"],
    )
    def test_values_that_read_back_differently_are_not_derivable(self, kinds: list[str], value: Any) -> None:
        """5 is read back as 5.0, 03:04+02:00 as 01:04+00:00: their canonical texts differ, so such
        rows' digests must be recorded (the batch alone would give other identities)."""
        encoder = ArrowEncoder(["x"], kinds)
        rows = [{"x": None}, {"x": value}]
        assert not encoder.derivable(encoder.encode_packed(rows))
        block = encoder.block([], rows)
        assert encoder.row_digests(_entry(2, block), block) != _release_digests(encoder, rows)
        assert encoder.derivable(encoder.encode_packed([{"x": None}]))

    def test_a_block_with_another_row_count_is_refused(self) -> None:
        rows = [{"i": 1}, {"i": 2}]
        block = ALL_KINDS.block([], rows)
        with pytest.raises(ManifestCorruptError, match="describes 3 rows"):
            ALL_KINDS.row_digests(_entry(3, block), block)

    @given(rows=every_kind_rows)
    def test_planned_sizes_cover_the_batch(self, rows: list[dict[str, Any]]) -> None:
        """The estimate planning uses is at least the batch's bytes less its fixed metadata."""
        planned = ALL_KINDS.encode_packed(rows)
        assert planned.offsets[-1] + 2048 >= len(ALL_KINDS.block([], rows))

    @given(rows=every_kind_rows, data=st.data())
    def test_a_block_cut_from_planned_parts_equals_the_block_built_from_its_rows(
        self, rows: list[dict[str, Any]], data: st.DataObject
    ) -> None:
        """The writer cuts a block from the record batches planned per slice, across slices; the
        message is byte for byte the one built from the same rows."""
        cut = data.draw(st.integers(0, len(rows)))
        start = data.draw(st.integers(0, cut))
        stop = data.draw(st.integers(cut, len(rows)).filter(lambda stop: stop > start))
        first, second = ALL_KINDS.encode_packed(rows[:cut]), ALL_KINDS.encode_packed(rows[cut:])
        parts = [part for part in (first.part(start, cut), second.part(0, stop - cut)) if len(part)]
        assert ALL_KINDS.block(parts, rows[start:stop]) == ALL_KINDS.block([], rows[start:stop])

    @given(rows=every_kind_rows)
    def test_planned_sizes_are_the_documented_estimate(self, rows: list[dict[str, Any]]) -> None:
        """Fixed-width cells and a validity byte per column, and the UTF-8 (or binary) bytes of
        each variable-width cell: a row's own bytes in the batch, whatever its text holds."""
        from elspeth_appendsink.encoders.jsonl import json_value

        def cell_bytes(value: Any, kind: str) -> int:
            if value is None:
                return 0
            if kind == "json":
                return len(json_value(value))
            return len(value) if kind == "binary" else len(value.encode("utf-8"))

        width = {"int": 8, "float": 8, "bool": 1, "date": 4, "timestamp": 8, "timestamp_utc": 8}
        fixed = len(ALL_KINDS.kinds) + sum(width.get(kind, 4) for kind in ALL_KINDS.kinds)
        expected = [
            fixed
            + sum(
                cell_bytes(row.get(column), kind)
                for column, kind in zip(ALL_KINDS.columns, ALL_KINDS.kinds, strict=True)
                if kind in ("str", "binary", "json")
            )
            for row in rows
        ]
        planned = ALL_KINDS.encode_packed(rows)
        assert [b - a for a, b in pairwise(planned.offsets)] == expected
