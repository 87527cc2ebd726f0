"""CSV encoder and the encoder registry: column decisions, exact bytes, determinism, errors."""

from __future__ import annotations

import csv
import enum
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.encoders import (
    FORMATS,
    CsvEncoder,
    CsvOptions,
    create_encoder,
    decide_columns,
    restore_encoder,
)
from elspeth_appendsink.errors import (
    ConfigError,
    InvariantViolation,
    ManifestCorruptError,
    SchemaDriftError,
    UnencodableRow,
)


@dataclass(frozen=True)
class Schema:
    """A minimal SchemaSpec."""

    mode: str
    field_names: tuple[str, ...] = ()


OBSERVED = Schema("observed")
FIELDS = ("id", "name", "score", "ok", "note")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
text_cells = st.text(alphabet=st.sampled_from(list('ab ,;"\r\n\t|é€\u2028')), max_size=8)
rows_strategy = st.lists(st.dictionaries(st.sampled_from(FIELDS), scalars), min_size=1, max_size=30)
full_rows = st.lists(st.fixed_dictionaries({f: scalars for f in FIELDS}), min_size=1, max_size=30)
delimiters = st.sampled_from([",", ";", "\t", "|", " ", ".", "e", "1"])


def encoder_for(rows: list[dict[str, Any]], schema: Schema = OBSERVED, **options: Any) -> CsvEncoder:
    encoder = create_encoder("csv", schema=schema, first_rows=rows, csv_options=CsvOptions(**options))
    assert isinstance(encoder, CsvEncoder)
    return encoder


def stdlib_lines(encoder: CsvEncoder, rows: list[dict[str, Any]]) -> list[bytes]:
    """What ``csv.writer`` writes for the same rows and options (the reference)."""
    out = []
    for row in rows:
        buffer = io.StringIO()
        writer = csv.writer(
            buffer, delimiter=encoder.options.delimiter, lineterminator=encoder.options.line_terminator
        )
        writer.writerow([row.get(column) for column in encoder.columns])
        out.append(buffer.getvalue().encode(encoder.options.encoding))
    return out


def parse(data: bytes, encoder: CsvEncoder) -> list[list[str]]:
    text = data.decode(encoder.options.encoding)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=encoder.options.delimiter))


def cell(value: Any) -> str:
    return "" if value is None else str(value)


class TestColumns:
    def test_fixed_mode_uses_exactly_the_declared_fields(self) -> None:
        """fixed: the columns are the declared fields, in declared order, whatever the batch holds."""
        schema = Schema("fixed", ("b", "a", "c"))
        assert decide_columns(schema, [{"a": 1, "b": 2}]) == ("b", "a", "c")

    def test_fixed_mode_missing_key_is_an_empty_cell(self) -> None:
        """fixed: a row without a declared key gets an empty cell (the host enforces required)."""
        encoder = create_encoder("csv", schema=Schema("fixed", ("a", "b")), first_rows=[{"a": 1}])
        assert encoder.header() + b"".join(encoder.encode([{"a": 1}, {"b": 2}])) == b"a,b\r\n1,\r\n,2\r\n"

    def test_fixed_mode_rejects_an_undeclared_field_naming_it_and_its_row(self) -> None:
        """fixed: a key outside the declared fields is SchemaDriftError with field and row index."""
        encoder = create_encoder("csv", schema=Schema("fixed", ("a",)), first_rows=[{"a": 1}])
        with pytest.raises(SchemaDriftError, match="'zz'") as caught:
            encoder.encode([{"a": 1}, {"a": 2}, {"a": 3, "zz": 4}])
        assert caught.value.row_index == 2

    def test_flexible_mode_adds_first_batch_extras_in_first_seen_order(self) -> None:
        """flexible: declared fields first, then extra keys of the first batch as first seen."""
        first = [{"x": 1, "a": 2}, {"y": 3, "b": 4, "x": 5}]
        assert decide_columns(Schema("flexible", ("a", "b")), first) == ("a", "b", "x", "y")

    def test_observed_mode_takes_every_first_batch_key_in_first_seen_order(self) -> None:
        """observed: every key of the first batch, in first-seen order across rows."""
        first = [{"c": 1}, {"a": 1, "c": 2}, {"b": 1, "a": 2}]
        assert decide_columns(OBSERVED, first) == ("c", "a", "b")

    def test_a_later_new_field_is_schema_drift_not_silent_loss(self) -> None:
        """Once the header is decided, a row bringing a new key fails, naming field and row."""
        encoder = create_encoder("csv", schema=OBSERVED, first_rows=[{"a": 1}])
        with pytest.raises(SchemaDriftError, match="'late'") as caught:
            encoder.encode([{"a": 1}, {"late": 2}])
        assert caught.value.row_index == 1

    @pytest.mark.parametrize("count", [3, 1000], ids=["python-path", "kernel-path"])
    def test_a_field_swapped_for_a_new_one_is_schema_drift(self, count: int) -> None:
        """A row with as many keys as there are columns but one of them new (a column missing)
        is found although every other row is complete, naming the new field and its row."""
        encoder = create_encoder("csv", schema=OBSERVED, first_rows=[{"a": 1, "b": 2}])
        rows: list[dict[str, Any]] = [{"a": i, "b": i} for i in range(count)]
        rows[count - 2] = {"a": 0, "late": 1}
        with pytest.raises(SchemaDriftError, match="'late'") as caught:
            encoder.encode_packed(rows)
        assert caught.value.row_index == count - 2

    def test_display_headers_rename_only_the_header_line(self) -> None:
        """headers rename the CSV header cells; data rows and describe()'s columns keep field names."""
        encoder = create_encoder(
            "csv", schema=OBSERVED, first_rows=[{"a": 1, "b": 2}], headers={"a": "Alpha, first"}
        )
        assert encoder.header() == b'"Alpha, first",b\r\n'
        assert encoder.encode([{"a": 1, "b": 2}]) == [b"1,2\r\n"]
        assert encoder.describe()["columns"] == ["a", "b"]

    def test_header_is_written_by_header_only_and_empty_when_disabled(self) -> None:
        """The header line comes from header() alone; include_header=False makes it b""."""
        rows = [{"a": 1}]
        assert encoder_for(rows).header() == b"a\r\n"
        assert encoder_for(rows, include_header=False).header() == b""
        assert encoder_for(rows).encode(rows) == [b"1\r\n"]


class TestRegistry:
    def test_formats_lists_the_appendable_formats(self) -> None:
        """FORMATS names exactly the three appendable formats."""
        assert FORMATS == ("csv", "jsonl", "arrow")

    def test_json_is_refused_with_a_pointer_to_jsonl(self) -> None:
        """format json cannot be appended: ConfigError naming the option and suggesting jsonl."""
        with pytest.raises(ConfigError, match="jsonl") as caught:
            create_encoder("json", schema=OBSERVED, first_rows=[{"a": 1}])
        assert caught.value.option == "format"

    def test_unknown_format_and_mode_are_config_errors(self) -> None:
        """An unknown format or schema mode is a ConfigError naming the option."""
        with pytest.raises(ConfigError) as fmt:
            create_encoder("parquet", schema=OBSERVED, first_rows=[{"a": 1}])
        with pytest.raises(ConfigError) as mode:
            create_encoder("csv", schema=Schema("dynamic"), first_rows=[{"a": 1}])
        assert (fmt.value.option, mode.value.option) == ("format", "schema.mode")

    def test_an_empty_first_batch_is_a_caller_bug(self) -> None:
        """Columns are decided from the first batch, so it must not be empty."""
        with pytest.raises(InvariantViolation):
            create_encoder("csv", schema=OBSERVED, first_rows=[])

    @pytest.mark.parametrize("described", [{}, {"format": "xml"}, {"format": "csv"}, {"format": 3}])
    def test_restore_refuses_unusable_descriptions(self, described: dict[str, Any]) -> None:
        """restore_encoder raises ManifestCorruptError for a description it cannot rebuild."""
        with pytest.raises(ManifestCorruptError):
            restore_encoder(described)


class TestBytes:
    @given(rows=rows_strategy, delimiter=delimiters)
    def test_crlf_output_equals_the_stdlib_csv_writer_byte_for_byte(
        self, rows: list[dict[str, Any]], delimiter: str
    ) -> None:
        """With CRLF, every row's bytes are exactly what csv.writer(QUOTE_MINIMAL) writes."""
        encoder = encoder_for(rows, delimiter=delimiter)
        assert encoder.encode(rows) == stdlib_lines(encoder, rows)

    @given(
        rows=st.lists(st.fixed_dictionaries({"a": text_cells, "b": text_cells}), min_size=1, max_size=20),
        delimiter=delimiters,
    )
    def test_quoting_of_special_text_equals_the_stdlib(
        self, rows: list[dict[str, Any]], delimiter: str
    ) -> None:
        """Cells with delimiters, quotes, CR or LF are quoted exactly as csv.writer quotes them."""
        encoder = encoder_for(rows, delimiter=delimiter)
        assert encoder.encode(rows) == stdlib_lines(encoder, rows)

    @given(rows=st.lists(st.fixed_dictionaries({"a": text_cells, "b": scalars}), min_size=1, max_size=20))
    def test_lf_output_equals_the_stdlib_except_that_a_bare_cr_is_quoted(
        self, rows: list[dict[str, Any]]
    ) -> None:
        """With LF, bytes equal csv.writer's, except a cell holding CR, which we quote and it does not."""
        encoder = encoder_for(rows, line_terminator="\n")
        ours, reference = encoder.encode(rows), stdlib_lines(encoder, rows)
        for row, mine, theirs in zip(rows, ours, reference, strict=True):
            if "\r" not in cell(row["a"]) + cell(row["b"]):
                assert mine == theirs

    @given(rows=full_rows, delimiter=delimiters, terminator=st.sampled_from(["\r\n", "\n"]))
    def test_header_and_rows_read_back_with_the_csv_module(
        self, rows: list[dict[str, Any]], delimiter: str, terminator: str
    ) -> None:
        """header + rows parse back with csv.reader to the header and each value's cell text."""
        schema = Schema("fixed", FIELDS)
        encoder = encoder_for(rows, schema, delimiter=delimiter, line_terminator=terminator)
        parsed = parse(encoder.header() + b"".join(encoder.encode(rows)), encoder)
        assert parsed[0] == list(FIELDS)
        assert parsed[1:] == [[cell(row[f]) for f in FIELDS] for row in rows]

    @given(rows=rows_strategy, cut=st.integers(min_value=0, max_value=30))
    def test_blocks_are_concatenations_and_concatenate(self, rows: list[dict[str, Any]], cut: int) -> None:
        """block() joins the rows' bytes, each ending with the terminator, and blocks concatenate."""
        encoder = encoder_for(rows)
        encoded = encoder.encode(rows)
        assert all(line.endswith(b"\r\n") for line in encoded)
        first = encoder.block(encoded[:cut], rows[:cut])
        second = encoder.block(encoded[cut:], rows[cut:])
        assert first + second == b"".join(encoded) == encoder.block(encoded, rows)

    def test_single_column_empty_cells_are_written_as_a_quoted_empty_string(self) -> None:
        """With one column, an empty or missing value is written '""' so the line is not blank."""
        rows: list[dict[str, Any]] = [{"a": None}, {"a": ""}, {}, {"a": 1}]
        assert encoder_for([{"a": 1}]).encode(rows) == [b'""\r\n', b'""\r\n', b'""\r\n', b"1\r\n"]

    def test_value_types_follow_the_documented_table(self) -> None:
        """bool, float, NaN, datetime, date, time, Decimal and str/int enums render as documented."""

        class Colour(enum.StrEnum):
            RED = "red"

        class Size(enum.IntEnum):
            BIG = 3

        row = {
            "t": True,
            "f": 0.1,
            "big": 1e16,
            "nan": float("nan"),
            "inf": float("-inf"),
            "dt": datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC),
            "d": date(2024, 5, 6),
            "tm": time(7, 8),
            "dec": Decimal("1.10"),
            "enum": Colour.RED,
            "ienum": Size.BIG,
            "none": None,
        }
        line = encoder_for([row]).encode([row])[0]
        assert line == (
            b"True,0.1,1e+16,nan,-inf,2024-05-06T07:08:09.000010+00:00,2024-05-06,07:08:00,1.10,red,3,\r\n"
        )

    @pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16-le"])
    def test_other_encodings_encode_every_line_and_read_back(self, encoding: str) -> None:
        """Non-UTF-8 codecs encode each line (terminator included) and read back to the same text."""
        rows: list[dict[str, Any]] = [{"a": "café", "b": 'x,"y"'}, {"a": "naïve\nline", "b": None}]
        encoder = encoder_for(rows, encoding=encoding, delimiter=";")
        encoded = encoder.encode(rows)
        assert encoded == [
            line.decode("utf-8").encode(encoding) for line in encoder_for(rows, delimiter=";").encode(rows)
        ]
        assert parse(encoder.header() + b"".join(encoded), encoder)[1:] == [
            ["café", 'x,"y"'],
            ["naïve\nline", ""],
        ]


class TestDeterminism:
    @given(rows=rows_strategy)
    def test_the_same_rows_always_give_the_same_bytes(self, rows: list[dict[str, Any]]) -> None:
        """Encoding twice, or with a second encoder built the same way, gives identical bytes."""
        first, second = encoder_for(rows), encoder_for(rows)
        assert first.encode(rows) == first.encode(rows) == second.encode(rows)
        assert first.header() == second.header()

    @given(rows=rows_strategy, delimiter=delimiters, terminator=st.sampled_from(["\r\n", "\n"]))
    def test_a_restored_encoder_writes_identical_bytes(
        self, rows: list[dict[str, Any]], delimiter: str, terminator: str
    ) -> None:
        """restore_encoder(describe()) after a JSON round trip writes the same header and rows."""
        encoder = encoder_for(rows, delimiter=delimiter, line_terminator=terminator)
        described = json.loads(json.dumps(encoder.describe()))
        restored = restore_encoder(described)
        assert described["format"] == "csv"
        assert restored.describe() == encoder.describe()
        assert restored.header() == encoder.header()
        assert restored.encode(rows) == encoder.encode(rows)

    @given(rows=rows_strategy, cut=st.integers(min_value=0, max_value=30))
    def test_encoding_in_slices_equals_encoding_the_whole_batch(
        self, rows: list[dict[str, Any]], cut: int
    ) -> None:
        """A row's bytes do not depend on the other rows of its batch (the writer encodes slices)."""
        encoder = encoder_for(rows)
        assert encoder.encode(rows[:cut]) + encoder.encode(rows[cut:]) == encoder.encode(rows)


class TestErrors:
    @pytest.mark.parametrize(
        "value",
        [b"raw", {"k": 1}, [1, 2], {1, 2}, object(), 10**5000],
        ids=["bytes", "dict", "list", "set", "object", "int-5000-digits"],
    )
    def test_values_without_a_csv_form_raise_unencodable_row(self, value: Any) -> None:
        """bytes, dict, list, set, other objects and unprintable ints name field, type and row."""
        encoder = encoder_for([{"a": 1, "b": 2}])
        with pytest.raises(UnencodableRow, match="'b'") as caught:
            encoder.encode([{"a": 1, "b": 2}, {"a": 1, "b": value}])
        assert caught.value.row_index == 1

    def test_the_earliest_bad_row_is_reported_whatever_its_column(self) -> None:
        """Bad values in several columns report the lowest row index, not the first column's."""
        encoder = encoder_for([{"a": 1, "b": 2}])
        with pytest.raises(UnencodableRow, match="'b'") as caught:
            encoder.encode([{"a": 1, "b": 2}, {"a": 1, "b": b"x"}, {"a": b"y", "b": 2}])
        assert caught.value.row_index == 1

    @pytest.mark.parametrize(
        ("encoding", "text"), [("latin-1", "€uro"), ("cp1252", "😀"), ("utf-8", "\ud800")]
    )
    def test_text_the_encoding_cannot_hold_is_unencodable_row_not_unicode_error(
        self, encoding: str, text: str
    ) -> None:
        """Characters outside the codec raise UnencodableRow naming field and row index."""
        encoder = encoder_for([{"a": "x", "b": "y"}], encoding=encoding)
        with pytest.raises(UnencodableRow, match="'b'") as caught:
            encoder.encode([{"a": "x", "b": "y"}, {"a": "x", "b": "y"}, {"a": "x", "b": text}])
        assert caught.value.row_index == 2

    @pytest.mark.parametrize(
        ("options", "option"),
        [
            ({"delimiter": '"'}, "csv_options.delimiter"),
            ({"delimiter": ",,"}, "csv_options.delimiter"),
            ({"delimiter": "\n"}, "csv_options.delimiter"),
            ({"line_terminator": "\r"}, "csv_options.line_terminator"),
            ({"encoding": "no-such-codec"}, "csv_options.encoding"),
            ({"encoding": "utf-16"}, "csv_options.encoding"),
            ({"encoding": "utf-8-sig"}, "csv_options.encoding"),
        ],
    )
    def test_bad_options_raise_config_error_naming_the_option(
        self, options: dict[str, Any], option: str
    ) -> None:
        """Invalid CsvOptions fail at construction with ConfigError naming the option."""
        with pytest.raises(ConfigError) as caught:
            CsvOptions(**options)
        assert caught.value.option == option

    def test_a_header_the_encoding_cannot_hold_is_a_config_error(self) -> None:
        """Display names outside the codec fail at construction, not on the first write."""
        with pytest.raises(ConfigError):
            create_encoder(
                "csv",
                schema=OBSERVED,
                first_rows=[{"a": 1}],
                csv_options=CsvOptions(encoding="ascii"),
                headers={"a": "Größe"},
            )
