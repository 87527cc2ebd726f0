"""Bad rows: written by a documented rule, or refused before their block is sent — storage untouched.

Each case drives the real sink against Azurite: a good first write, a snapshot of every blob in
the container (type, sealed, metadata, bytes — the output *and* its manifest), then a write
whose row 1 is hostile. A refused row must raise the documented :class:`RowError` subclass
with ``row_index`` and the field named, **without a single storage request** (the transport's
count does not move) and with every blob byte-identical to the snapshot. The engine may then
retry the call with the row fixed: every row lands exactly once. A row the format can represent
is written by the rule in ``encoders/__init__.py``'s type table and read back with the format's
standard reader.
"""

from __future__ import annotations

import decimal
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import RowError, RowTooLarge, SchemaDriftError, UnencodableRow
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from elspeth_appendsink.testing.harness import ContractViolation, Engine, EngineRow
from tests.helpers import read_output
from tests.hostile.conftest import (
    TALLY,
    Options,
    as_written,
    assert_no_secret,
    decode,
    snapshot,
    tally_exact,
)

pytestmark = pytest.mark.azurite

FORMATS = ("csv", "jsonl", "arrow")
ANY = {"mode": "fixed", "fields": ["id: int", "v: any"]}
FIXED = {"mode": "fixed", "fields": ["id: int", "name: str", "kind: str"]}
OBSERVED = {"mode": "observed"}


@dataclass
class Output:
    """One sink writing one output, with its request counter and audit trail."""

    sink: AzureAppendBlobSink
    transport: FaultyTransport
    ctx: RecordingContext
    fmt: str
    path: str
    delivered: list[dict[str, Any]]

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.sink.write(rows, self.ctx)
        self.delivered += rows


def open_output(make_options: Options, fmt: str, schema: dict[str, Any], tag: str, **extra: Any) -> Output:
    path = f"{tag}/data.{fmt}"
    transport = FaultyTransport()
    sink = AzureAppendBlobSink(
        make_options(format=fmt, blob_path=path, schema=schema, **extra), transport=transport
    )
    return Output(sink, transport, RecordingContext(run_id=f"run-{tag}"), fmt, path, [])


def refuse(
    out: Output, rows: list[dict[str, Any]], error: type[RowError], azurite: Any, container: str
) -> RowError:
    """``rows`` are refused with ``error``: no request sent, every blob unchanged, nothing recorded."""
    before = snapshot(azurite, container)
    sent, recorded = out.transport.count, len(out.ctx.calls)
    with pytest.raises(error) as info:
        out.sink.write(rows, out.ctx)
    assert out.transport.count == sent, "a request was sent for a refused row"
    assert len(out.ctx.calls) == recorded
    assert snapshot(azurite, container) == before
    assert_no_secret(info.value)
    TALLY["bad rows refused before their block was sent"] += 1
    return info.value


# ---------------------------------------------------------------------------------------------
# values of types each format can or cannot represent (the encoders' type table)

NAIVE = datetime(2024, 1, 2, 3, 4, 5)
AWARE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
REFUSED = UnencodableRow

#: (format, case, value, expected): expected is the value read back, or the error raised.
VALUES: list[tuple[str, str, Any, Any]] = [
    ("csv", "naive-datetime", NAIVE, "2024-01-02T03:04:05"),
    ("csv", "aware-datetime", AWARE, "2024-01-02T03:04:05+00:00"),
    ("csv", "date", date(2024, 1, 2), "2024-01-02"),
    ("csv", "decimal", decimal.Decimal("1.10"), "1.10"),
    ("csv", "nan", math.nan, "nan"),
    ("csv", "infinity", -math.inf, "-inf"),
    ("csv", "int-beyond-64-bits", 2**70, str(2**70)),
    ("csv", "text-with-delimiter-quote-newline", 'a,"b"\r\nc', 'a,"b"\r\nc'),
    ("csv", "bytes", b"\x00\x01", REFUSED),
    ("csv", "nested-dict", {"a": {"b": 1}}, REFUSED),
    ("csv", "list", [1, 2], REFUSED),
    ("csv", "uuid", uuid.UUID(int=5), REFUSED),
    ("csv", "object", object(), REFUSED),
    ("csv", "lone-surrogate", "x\ud800", REFUSED),
    ("jsonl", "naive-datetime", NAIVE, "2024-01-02T03:04:05"),
    ("jsonl", "aware-datetime", AWARE, "2024-01-02T03:04:05+00:00"),
    ("jsonl", "date", date(2024, 1, 2), "2024-01-02"),
    ("jsonl", "nested-dict", {"a": {"b": [1, None]}}, {"a": {"b": [1, None]}}),
    ("jsonl", "list", [1, "x"], [1, "x"]),
    ("jsonl", "uuid", uuid.UUID(int=5), str(uuid.UUID(int=5))),
    ("jsonl", "decimal", decimal.Decimal("1.10"), REFUSED),
    ("jsonl", "bytes", b"\x00\x01", REFUSED),
    ("jsonl", "nan", math.nan, REFUSED),
    ("jsonl", "infinity", math.inf, REFUSED),
    ("jsonl", "negative-infinity", -math.inf, REFUSED),
    ("jsonl", "nan-nested-in-dict", {"x": [1.0, math.nan]}, REFUSED),
    ("jsonl", "int-beyond-64-bits", 2**70, REFUSED),
    ("jsonl", "object", object(), REFUSED),
    ("jsonl", "lone-surrogate", "x\ud800", REFUSED),
    ("arrow", "naive-datetime", NAIVE, '"2024-01-02T03:04:05"'),  # an ``any`` field is a json column
    ("arrow", "nested-dict", {"a": {"b": 1}}, '{"a":{"b":1}}'),
    ("arrow", "list", [1, 2], "[1,2]"),
    ("arrow", "decimal", decimal.Decimal("1.10"), REFUSED),
    ("arrow", "bytes-in-json-column", b"\x00\x01", REFUSED),
    ("arrow", "nan-in-json-column", math.nan, REFUSED),
    ("arrow", "int-beyond-64-bits", 2**70, REFUSED),
    ("arrow", "object", object(), REFUSED),
    ("arrow", "lone-surrogate", "x\ud800", REFUSED),
]
GOOD_CELL = {"csv": "ok", "jsonl": "ok", "arrow": '"ok"'}


@pytest.mark.parametrize(("fmt", "case", "value", "expected"), VALUES, ids=[f"{v[0]}-{v[1]}" for v in VALUES])
def test_value_is_written_by_the_documented_rule_or_refused_untouched(
    azurite: Any, container: str, make_options: Options, fmt: str, case: str, value: Any, expected: Any
) -> None:
    """Row 1 of the second write holds the value (row 0 is good and shares its block)."""
    out = open_output(make_options, fmt, ANY, f"{fmt}-{case}")
    out.write([{"id": 0, "v": "ok"}])
    hostile = [{"id": 1, "v": "ok"}, {"id": 2, "v": value}]
    TALLY["bad rows tried"] += 1
    if expected is REFUSED:
        error = refuse(out, hostile, UnencodableRow, azurite, container)
        assert error.row_index == 1 and "'v'" in str(error), str(error)
        out.write([{"id": 1, "v": "ok"}, {"id": 2, "v": None}])  # the engine retries, row fixed
        cells = [GOOD_CELL[fmt], GOOD_CELL[fmt], "" if fmt == "csv" else None]
    else:
        out.write(hostile)
        TALLY["bad rows written by a documented rule"] += 1
        cells = [GOOD_CELL[fmt], GOOD_CELL[fmt], expected]
    out.sink.close()
    rows = decode(fmt, read_output(azurite, container, out.path))
    ids = ["0", "1", "2"] if fmt == "csv" else [0, 1, 2]
    tally_exact([{"id": i, "v": c} for i, c in zip(ids, cells, strict=True)], rows)


@pytest.mark.parametrize(
    ("column", "value"),
    [("id", "1"), ("id", 2**64), ("id", 1.5), ("name", NAIVE), ("name", b"x"), ("name", 7), ("kind", True)],
)
def test_arrow_typed_column_refuses_a_value_of_another_type(
    azurite: Any, container: str, make_options: Options, column: str, value: Any
) -> None:
    """Declared ``int``/``str`` columns take only their type (no silent coercion)."""
    out = open_output(make_options, "arrow", FIXED, f"typed-{column}-{type(value).__name__}")
    out.write([{"id": 0, "name": "a", "kind": "k"}])
    row = {"id": 1, "name": "b", "kind": "k", column: value}
    TALLY["bad rows tried"] += 1
    error = refuse(out, [{"id": 9, "name": "ok", "kind": "k"}, row], UnencodableRow, azurite, container)
    assert error.row_index == 1 and f"'{column}'" in str(error)
    out.sink.close()


def test_arrow_native_kinds_inferred_from_the_first_batch_round_trip(
    azurite: Any, container: str, make_options: Options
) -> None:
    """Observed schema: datetime, date, bytes and float (NaN and infinity kept) get Arrow types and
    read back as the same values; a later value of another type in such a column is refused."""
    out = open_output(make_options, "arrow", OBSERVED, "arrow-kinds")
    first = {"id": 0, "ts": NAIVE, "utc": AWARE, "day": date(2024, 1, 2), "raw": b"\x00\xff", "x": 0.5}
    second = {"id": 1, "ts": NAIVE, "utc": AWARE, "day": date(2025, 1, 2), "raw": b"", "x": math.inf}
    out.write([first])
    out.write([second])
    TALLY["bad rows tried"] += 2
    TALLY["bad rows written by a documented rule"] += 1
    error = refuse(out, [{**second, "ts": "2024-01-02"}], UnencodableRow, azurite, container)
    assert error.row_index == 0 and "'ts'" in str(error)
    out.sink.close()
    rows = decode("arrow", read_output(azurite, container, out.path))
    tally_exact([first, second], rows)
    assert math.isinf(rows[1]["x"]) and rows[0]["utc"].tzinfo is not None


@pytest.mark.parametrize(
    ("encoding", "text", "refused"),
    [
        ("ascii", "café", True),
        ("latin-1", "5 €", True),
        ("latin-1", "café", False),
        ("utf-16-le", "é€😀", False),
    ],
)
def test_csv_text_the_encoding_cannot_hold_is_refused(
    azurite: Any, container: str, make_options: Options, encoding: str, text: str, refused: bool
) -> None:
    """Text outside ``csv_options.encoding`` raises UnencodableRow naming the character, never a
    UnicodeEncodeError; text inside it is written in that encoding."""
    out = open_output(
        make_options, "csv", FIXED, f"enc-{encoding}-{refused}", csv_options={"encoding": encoding}
    )
    out.write([{"id": 0, "name": "plain", "kind": "k"}])
    TALLY["bad rows tried"] += 1
    hostile = [{"id": 1, "name": "fine", "kind": "k"}, {"id": 2, "name": text, "kind": "k"}]
    if refused:
        error = refuse(out, hostile, UnencodableRow, azurite, container)
        assert error.row_index == 1 and encoding in str(error) and "'name'" in str(error)
    else:
        out.write(hostile)
        TALLY["bad rows written by a documented rule"] += 1
    out.sink.close()
    data = read_output(azurite, container, out.path).decode(encoding)
    expected = ["id,name,kind", "0,plain,k"] + (["1,fine,k", f"2,{text},k"] if not refused else [])
    assert data.split("\r\n")[:-1] == expected


# ---------------------------------------------------------------------------------------------
# rows that do not fit the schema


@pytest.mark.parametrize("fmt", FORMATS)
def test_extra_field_under_a_fixed_schema_is_refused(
    azurite: Any, container: str, make_options: Options, fmt: str
) -> None:
    """A key the fixed schema does not declare: SchemaDriftError naming it, never a silent drop."""
    out = open_output(make_options, fmt, FIXED, f"extra-{fmt}")
    out.write([{"id": 0, "name": "a", "kind": "k"}])
    TALLY["bad rows tried"] += 1
    rows = [{"id": 1, "name": "b", "kind": "k"}, {"id": 2, "name": "c", "kind": "k", "secret_col": 1}]
    error = refuse(out, rows, SchemaDriftError, azurite, container)
    assert error.row_index == 1 and "'secret_col'" in str(error)
    out.sink.close()


@pytest.mark.parametrize(("fmt", "schema"), [("csv", OBSERVED), ("csv", "flexible"), ("arrow", OBSERVED)])
def test_new_field_after_the_columns_were_written_is_refused(
    azurite: Any, container: str, make_options: Options, fmt: str, schema: Any
) -> None:
    """CSV/Arrow columns are frozen by the first batch (the header is durable): a field first seen
    later is SchemaDriftError — naming the field — in observed and flexible mode alike."""
    if schema == "flexible":
        schema = {"mode": "flexible", "fields": ["id: int"]}
    out = open_output(make_options, fmt, schema, f"new-{fmt}-{schema['mode']}")
    out.write([{"id": 0, "name": "a"}])
    TALLY["bad rows tried"] += 1
    error = refuse(out, [{"id": 1, "name": "b"}, {"id": 2, "name": "c", "late": 3}], SchemaDriftError,
                   azurite, container)  # fmt: skip
    assert error.row_index == 1 and "'late'" in str(error)
    out.sink.close()


def test_jsonl_observed_rows_keep_their_own_keys(azurite: Any, container: str, make_options: Options) -> None:
    """JSONL has no header: in observed mode a new field is written (each line has its own keys)."""
    out = open_output(make_options, "jsonl", OBSERVED, "jsonl-new")
    out.write([{"id": 0, "name": "a"}])
    out.write([{"id": 1, "name": "b", "late": [1]}])
    TALLY["bad rows tried"] += 1
    TALLY["bad rows written by a documented rule"] += 1
    out.sink.close()
    tally_exact(out.delivered, decode("jsonl", read_output(azurite, container, out.path)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_required_field(
    azurite: Any, container: str, make_options: Options, fmt: str, tmp_path: Path
) -> None:
    """ELSPETH's executor refuses a row lacking a required field before ``write`` (the sink
    declares them): nothing is sent. Handed to the sink directly, the row is written by the
    documented rule: an empty CSV cell, an absent JSONL key, an Arrow null."""
    options = make_options(format=fmt, blob_path=f"req-{fmt}/data.{fmt}", schema=FIXED)
    transport = FaultyTransport()
    sink = AzureAppendBlobSink(options, transport=transport)
    assert sink.declared_required_fields == {"id", "name", "kind"}
    engine = Engine({"out": sink}, tmp_path)
    rows = [
        EngineRow("a", "out", {"id": 0, "name": "a", "kind": "k"}),
        EngineRow("b", "out", {"id": 1, "kind": "k"}),
    ]
    TALLY["bad rows tried"] += 2  # once through the engine, once straight to the sink
    with pytest.raises(ContractViolation, match=r"lacks required fields \['name'\]"):
        engine.run("run-1", rows)
    engine.close()
    # only on_start's read-only check of the container (the run pointer's properties) was sent
    assert [seen.operation for seen in transport.log] == ["properties"]
    assert snapshot(azurite, container) == {}
    TALLY["bad rows refused before their block was sent"] += 1
    direct = open_output(make_options, fmt, FIXED, f"req-direct-{fmt}")
    direct.write([{"id": 0, "name": "a", "kind": "k"}, {"id": 1, "kind": "k"}])
    TALLY["bad rows written by a documented rule"] += 1
    direct.sink.close()
    written = decode(fmt, read_output(azurite, container, direct.path))
    if fmt == "csv":
        assert written[1] == {"id": "1", "name": "", "kind": "k"}
    elif fmt == "jsonl":
        assert written[1] == {"id": 1, "kind": "k"}
    else:
        assert written[1] == {"id": 1, "name": None, "kind": "k"}


# ---------------------------------------------------------------------------------------------
# rows over the block limit

BIG_BLOCK = {"csv": 1024, "jsonl": 1024, "arrow": 2048}


@pytest.mark.parametrize("fmt", FORMATS)
def test_single_row_over_the_block_limit_is_refused(
    azurite: Any, container: str, make_options: Options, fmt: str
) -> None:
    """RowTooLarge with the row's index and both sizes; nothing sent, nothing changed."""
    limit = BIG_BLOCK[fmt]
    out = open_output(make_options, fmt, FIXED, f"big-{fmt}", block_size=limit)
    out.write([{"id": 0, "name": "a", "kind": "k"}])
    TALLY["bad rows tried"] += 1
    rows = [{"id": 1, "name": "b", "kind": "k"}, {"id": 2, "name": "x" * (limit + 10), "kind": "k"}]
    error = refuse(out, rows, RowTooLarge, azurite, container)
    assert error.row_index == 1 and f"{limit} bytes" in str(error)
    out.write([{"id": 1, "name": "b", "kind": "k"}, {"id": 2, "name": "x", "kind": "k"}])
    out.sink.close()
    tally_exact(as_written(fmt, out.delivered), decode(fmt, read_output(azurite, container, out.path)))


def test_arrow_row_whose_record_batch_exceeds_the_limit_is_named(
    azurite: Any, container: str, make_options: Options
) -> None:
    """The limit is checked on the real record batch too; that refusal must name the row as well."""
    out = open_output(make_options, "arrow", FIXED, "big-batch", block_size=1024)
    out.write([{"id": 0, "name": "a", "kind": "k"}])
    TALLY["bad rows tried"] += 1
    rows = [{"id": 1, "name": "b", "kind": "k"}, {"id": 2, "name": "x" * 900, "kind": "k"}]
    error = refuse(out, rows, RowTooLarge, azurite, container)
    out.sink.close()
    assert error.row_index == 1, str(error)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_first_write_leaves_no_row_bytes_and_the_retry_writes_the_header_once(
    azurite: Any, container: str, make_options: Options, fmt: str
) -> None:
    """A hostile row in the very first write: the output exists (the run claimed it) but holds no
    byte; the retried call writes the header (CSV, Arrow schema) once, then every row once."""
    out = open_output(make_options, fmt, FIXED, f"first-{fmt}", block_size=BIG_BLOCK[fmt])
    TALLY["bad rows tried"] += 1
    with pytest.raises(RowTooLarge) as info:
        out.sink.write(
            [{"id": 0, "name": "a", "kind": "k"}, {"id": 1, "name": "y" * 4096, "kind": "k"}], out.ctx
        )
    assert info.value.row_index == 1
    assert read_output(azurite, container, out.path) == b""
    data_requests = [s for s in out.transport.log if s.operation == "append" and ".manifest/" not in s.url]
    assert data_requests == []
    TALLY["bad rows refused before their block was sent"] += 1
    out.write([{"id": 0, "name": "a", "kind": "k"}, {"id": 1, "name": "y", "kind": "k"}])
    out.write([{"id": 2, "name": "z", "kind": "k"}])
    out.sink.close()
    data = read_output(azurite, container, out.path)
    tally_exact(as_written(fmt, out.delivered), decode(fmt, data))
    if fmt == "csv":
        assert data.count(b"id,name,kind") == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_row_deep_in_a_large_write_stops_before_its_block_then_the_retry_is_exact(
    azurite: Any, container: str, make_options: Options, fmt: str
) -> None:
    """100,000 rows, row 90,000 unencodable: blocks of earlier rows are already durable (they are
    whole rows, described in the manifest), the bad row's block is never sent, and the engine's
    retry of the call (row fixed) appends exactly the rows still missing. (The writer encodes
    about 1 MiB of rows at a time, so the bad row must sit a few MiB in for earlier blocks to land.)"""
    out = open_output(make_options, fmt, FIXED, f"deep-{fmt}", block_size=8192)
    out.write([{"id": -1, "name": "first", "kind": "k"}])
    rows = [{"id": i, "name": f"row-{i:05d}", "kind": "k"} for i in range(100_000)]
    poisoned = [*rows[:90_000], {"id": 90_000, "name": object(), "kind": "k"}, *rows[90_001:]]
    TALLY["bad rows tried"] += 1
    with pytest.raises(UnencodableRow) as info:
        out.sink.write(poisoned, out.ctx)
    assert info.value.row_index == 90_000
    landed = decode(fmt, read_output(azurite, container, out.path))
    prefix = as_written(fmt, [out.delivered[0], *rows])
    assert 1 < len(landed) <= 90_001 and landed == prefix[: len(landed)]  # whole rows, a prefix
    TALLY["bad rows refused before their block was sent"] += 1
    out.write(rows)
    out.sink.close()
    tally_exact(as_written(fmt, out.delivered), decode(fmt, read_output(azurite, container, out.path)))
