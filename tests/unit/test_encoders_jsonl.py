"""JSONL encoder: one JSON object per line, exact bytes, determinism, errors."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.encoders import JsonlEncoder, create_encoder, restore_encoder
from elspeth_appendsink.errors import RecoveryError, SchemaDriftError, UnencodableRow


@dataclass(frozen=True)
class Schema:
    """A minimal SchemaSpec."""

    mode: str
    field_names: tuple[str, ...] = ()


OBSERVED = Schema("observed")
FIELDS = ("id", "name", "score", "ok", "note", "ünï")

safe_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
finite_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    safe_text,
)
json_values = st.recursive(
    finite_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(safe_text, inner, max_size=3)),
    max_leaves=8,
)
rows_strategy = st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values), min_size=1, max_size=30)


def encoder_for(rows: list[dict[str, Any]], schema: Schema = OBSERVED, **kw: Any) -> JsonlEncoder:
    encoder = create_encoder("jsonl", schema=schema, first_rows=rows, **kw)
    assert isinstance(encoder, JsonlEncoder)
    return encoder


class TestBytes:
    @given(rows=rows_strategy)
    def test_every_line_parses_back_to_its_row(self, rows: list[dict[str, Any]]) -> None:
        """Each line is one JSON object, newline-terminated, that json.loads turns back into the row."""
        lines = encoder_for(rows).encode(rows)
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
        assert [json.loads(line) for line in lines] == rows

    @given(rows=rows_strategy)
    def test_keys_keep_row_order(self, rows: list[dict[str, Any]]) -> None:
        """Keys are written in the row's own order."""
        lines = encoder_for(rows).encode(rows)
        assert [list(json.loads(line)) for line in lines] == [list(row) for row in rows]

    def test_output_is_compact_utf8_without_ascii_escapes(self) -> None:
        """Compact separators, raw UTF-8 for non-ASCII, escaped control characters."""
        row = {"b": 1, "a": "é€\u2028", "c": [True, None, 0.5], "d": "tab\there\n"}
        assert encoder_for([row]).encode([row]) == [
            b'{"b":1,"a":"\xc3\xa9\xe2\x82\xac\xe2\x80\xa8","c":[true,null,0.5],"d":"tab\\there\\n"}\n'
        ]

    def test_datetimes_are_written_as_isoformat_strings(self) -> None:
        """datetime, date and time (nested too) become their isoformat() strings."""
        moment = datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
        row = {"dt": moment, "d": date(2024, 5, 6), "t": time(7, 8), "nested": [moment]}
        assert json.loads(encoder_for([row]).encode([row])[0]) == {
            "dt": moment.isoformat(),
            "d": "2024-05-06",
            "t": "07:08:00",
            "nested": [moment.isoformat()],
        }

    def test_uuid_is_written_as_its_string(self) -> None:
        """UUID is one of orjson's native types: written as the canonical string."""
        row = {"u": uuid.UUID(int=1)}
        assert encoder_for([row]).encode([row]) == [b'{"u":"00000000-0000-0000-0000-000000000001"}\n']

    @given(rows=rows_strategy, cut=st.integers(min_value=0, max_value=30))
    def test_blocks_are_concatenations_and_concatenate(self, rows: list[dict[str, Any]], cut: int) -> None:
        """block() joins the rows' lines; blocks concatenate; the header is empty."""
        encoder = encoder_for(rows)
        encoded = encoder.encode(rows)
        assert encoder.header() == b""
        first = encoder.block(encoded[:cut], rows[:cut])
        second = encoder.block(encoded[cut:], rows[cut:])
        assert first + second == b"".join(encoded) == encoder.block(encoded, rows)

    def test_any_mapping_is_written_like_the_equal_dict(self) -> None:
        """Rows are Mappings: a read-only mapping view encodes exactly like the dict it shows."""
        row = {"b": 1, "a": [1.5]}
        assert encoder_for([row]).encode([MappingProxyType(row)]) == encoder_for([row]).encode([row])

    def test_rows_with_nulls_and_floats_are_not_mistaken_for_nan(self) -> None:
        """None beside finite floats passes the NaN check (orjson writes both NaN and None as null)."""
        rows: list[dict[str, Any]] = [{"a": None, "b": 1.5, "c": "null"}, {"a": 2.0, "b": None}]
        assert encoder_for(rows).encode(rows) == [b'{"a":null,"b":1.5,"c":"null"}\n', b'{"a":2.0,"b":null}\n']


class TestColumns:
    def test_observed_rows_are_written_with_their_own_keys(self) -> None:
        """observed/flexible: a key absent from the first batch is still written (lines self-describe)."""
        encoder = encoder_for([{"a": 1}])
        assert encoder.encode([{"b": 2}]) == [b'{"b":2}\n']
        assert encoder.describe()["columns"] == ["a"]

    def test_fixed_mode_rejects_an_undeclared_field_naming_it_and_its_row(self) -> None:
        """fixed: a key outside the declared fields is SchemaDriftError with field and row index."""
        encoder = encoder_for([{"a": 1}], Schema("fixed", ("a",)))
        with pytest.raises(SchemaDriftError, match="'b'") as caught:
            encoder.encode([{"a": 1}, {"b": 1}])
        assert caught.value.row_index == 1

    def test_fixed_mode_missing_keys_are_left_out(self) -> None:
        """fixed: a row missing a declared key is written with the keys it has."""
        encoder = encoder_for([{"a": 1}], Schema("fixed", ("a", "b")))
        assert encoder.encode([{"b": 2}]) == [b'{"b":2}\n']

    def test_display_headers_rename_keys(self) -> None:
        """headers rename keys as ELSPETH's display headers do; unmapped keys keep their names."""
        encoder = encoder_for([{"a": 1, "b": 2}], headers={"a": "Alpha"})
        assert encoder.encode([{"a": 1, "b": 2}]) == [b'{"Alpha":1,"b":2}\n']

    def test_renamed_keys_that_collide_raise_instead_of_dropping_a_value(self) -> None:
        """A display name equal to another key of the row is UnencodableRow, not a lost value."""
        encoder = encoder_for([{"a": 1}], headers={"a": "b"})
        with pytest.raises(UnencodableRow, match="same key") as caught:
            encoder.encode([{"a": 1}, {"a": 1, "b": 2}])
        assert caught.value.row_index == 1


class TestDeterminism:
    @given(rows=rows_strategy)
    def test_the_same_rows_always_give_the_same_bytes(self, rows: list[dict[str, Any]]) -> None:
        """Encoding twice, or with a second encoder built the same way, gives identical bytes."""
        first, second = encoder_for(rows), encoder_for(rows)
        assert first.encode(rows) == first.encode(rows) == second.encode(rows)

    @given(rows=rows_strategy, mode=st.sampled_from(["fixed", "flexible", "observed"]))
    def test_a_restored_encoder_writes_identical_bytes(self, rows: list[dict[str, Any]], mode: str) -> None:
        """restore_encoder(describe()) after a JSON round trip writes the same bytes."""
        encoder = encoder_for(rows, Schema(mode, FIELDS if mode != "observed" else ()), headers={"id": "ID"})
        described = json.loads(json.dumps(encoder.describe()))
        restored = restore_encoder(described)
        assert described["format"] == "jsonl"
        assert restored.describe() == encoder.describe()
        assert restored.encode(rows) == encoder.encode(rows)

    @given(rows=rows_strategy, cut=st.integers(min_value=0, max_value=30))
    def test_encoding_in_slices_equals_encoding_the_whole_batch(
        self, rows: list[dict[str, Any]], cut: int
    ) -> None:
        """A row's bytes do not depend on the other rows of its batch."""
        encoder = encoder_for(rows)
        assert encoder.encode(rows[:cut]) + encoder.encode(rows[cut:]) == encoder.encode(rows)

    def test_restore_refuses_an_orjson_that_spells_json_differently(self) -> None:
        """A description whose orjson fingerprint differs raises RecoveryError naming the version."""
        described = {**encoder_for([{"a": 1.5}]).describe(), "json_fingerprint": "0" * 16, "orjson": "3.0.0"}
        with pytest.raises(RecoveryError, match=r"orjson==3\.0\.0"):
            restore_encoder(described)


class TestErrors:
    @pytest.mark.parametrize(
        "value",
        [
            float("nan"),
            float("inf"),
            float("-inf"),
            [1.0, float("nan")],
            {"deep": {"x": float("inf")}},
            Decimal("1.1"),
            b"raw",
            {1, 2},
            object(),
            2**64,
            -(2**63) - 1,
            {1: "non-str key"},
            "lone \ud800 surrogate",
        ],
        ids=[
            "nan",
            "inf",
            "-inf",
            "nested-nan",
            "deep-inf",
            "decimal",
            "bytes",
            "set",
            "object",
            "2**64",
            "below-int64",
            "int-key",
            "surrogate",
        ],
    )
    def test_values_without_a_json_form_raise_unencodable_row(self, value: Any) -> None:
        """Each value JSON cannot hold raises UnencodableRow naming the field and the row index."""
        rows: list[dict[str, Any]] = [{"a": 1, "b": None}, {"a": 2.5, "b": None}, {"a": 3, "b": value}]
        with pytest.raises(UnencodableRow, match="'b'") as caught:
            encoder_for(rows[:1]).encode(rows)
        assert caught.value.row_index == 2

    def test_the_earliest_bad_row_is_reported(self) -> None:
        """With a NaN in row 1 and bytes in row 2, the NaN's row is reported."""
        rows: list[dict[str, Any]] = [{"a": 1}, {"a": float("nan")}, {"a": b"x"}]
        with pytest.raises(UnencodableRow) as caught:
            encoder_for(rows[:1]).encode(rows)
        assert caught.value.row_index == 1

    def test_a_non_string_top_level_key_is_unencodable(self) -> None:
        """JSON object keys must be strings; a row with an int key is UnencodableRow."""
        rows: list[dict[Any, Any]] = [{"a": 1}, {1: "x"}]
        with pytest.raises(UnencodableRow, match="must be strings") as caught:
            encoder_for(rows[:1]).encode(rows)
        assert caught.value.row_index == 1


class TestNanScan:
    @given(
        st.lists(
            st.text(alphabet='nul"x\\', max_size=24).map(lambda body: ("{" + body + "}\n").encode()),
            max_size=40,
        )
    )
    def test_rows_holding_null_are_found_at_every_alignment(self, lines: list[bytes]) -> None:
        """The vectorised scan names exactly the lines a per-line search does, wherever "null"
        starts (any of the four byte alignments of the slice)."""
        from elspeth_appendsink.encoders.base import Packed
        from elspeth_appendsink.encoders.jsonl import _rows_holding_null

        expected = [index for index, line in enumerate(lines) if b"null" in line]
        count = sum(line.count(b"null") for line in lines)
        assert _rows_holding_null(Packed.join(lines)) == (expected, count)

    @given(
        st.lists(
            st.fixed_dictionaries(
                {"a": st.none() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)},
                optional={"b": st.text(alphabet="nul ", max_size=8) | st.none()},
            ),
            min_size=1,
            max_size=30,
        ),
        st.data(),
    )
    def test_a_non_finite_float_anywhere_is_reported_at_its_row(
        self, rows: list[dict[str, Any]], data: st.DataObject
    ) -> None:
        """Among rows holding nulls and text full of "null"-like letters, a NaN or infinity placed
        in any row is reported at that row (orjson alone would write it as null)."""
        at = data.draw(st.integers(0, len(rows) - 1))
        bad = [dict(row) for row in rows]
        bad[at]["a"] = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        encoder = encoder_for([{"a": 1, "b": "x"}])
        encoder.encode(rows)  # the finite batch is fine
        with pytest.raises(UnencodableRow) as caught:
            encoder.encode(bad)
        assert caught.value.row_index == at


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
_ROWS = st.lists(st.dictionaries(st.sampled_from("abcdef"), _VALUES, min_size=1), min_size=1, max_size=8)


@given(rows=_ROWS, seed=st.randoms(use_true_random=False))
def test_content_identity_ignores_key_order_and_follows_from_the_stored_bytes(
    rows: list[Any], seed: Any
) -> None:
    """The identity digests of rows (at write time) equal those derived from their stored bytes
    (at recovery), and rows whose keys come in another order have the same identity."""
    from elspeth_appendsink.core.identity import IdentityScheme
    from elspeth_appendsink.core.manifest import BlockEntry, TokenRange

    encoder = JsonlEncoder(["a", "b", "c", "d", "e", "f"], mode="observed")
    shuffled = []
    for row in rows:
        items = list(row.items())
        seed.shuffle(items)
        shuffled.append(dict(items))
    identity = IdentityScheme(None)
    encoded = encoder.encode_packed(rows)
    at_write = identity.digests(rows, encoder.canonical(rows, encoded))
    other = encoder.encode_packed(shuffled)
    assert identity.digests(shuffled, encoder.canonical(shuffled, other)) == at_write
    entry = BlockEntry(
        seq=1, prev="0" * 64, segment=0, offset=0, length=len(encoded.data), sha256="",
        tokens=TokenRange(0, len(rows)), write_call=0, batch=1, digests=b"",
        lengths=encoded.lengths(0, len(rows)),
    )  # fmt: skip
    assert encoder.row_digests(entry, encoded.data) == at_write


def test_outputs_begun_by_version_1_keep_the_bytes_as_their_identity() -> None:
    """A version-1 description (release 0.1.0) restores the rule its manifests were written with."""
    described = {**JsonlEncoder(["a", "b"], mode="observed").describe(), "version": 1}
    old = restore_encoder(described)
    rows: list[Any] = [{"b": 1, "a": 2}]
    encoded = old.encode_packed(rows)
    assert old.canonical(rows, encoded) is encoded and old.describe()["version"] == 1
