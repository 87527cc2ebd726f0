"""The encoder registry: choose the columns for an output, build its encoder, rebuild it on resume.

:func:`create_encoder` decides the columns from the schema and the first batch, then builds the
format's encoder. :func:`restore_encoder` rebuilds an identical encoder from what
``describe()`` recorded in the manifest. :data:`FORMATS` lists what can be appended.
``json`` (one array) cannot be appended and is refused with a clear message.

Columns (:func:`decide_columns`):

* ``fixed``: exactly the declared fields. A key outside them raises ``SchemaDriftError``; a
  missing key becomes an empty cell or null, because the host enforces required fields.
* ``flexible``: the declared fields, then the extra keys of the *first* batch in first-seen order.
* ``observed``: every key of the first batch, in first-seen order.

Once decided, the columns are frozen. For CSV and Arrow, a later row with a key that has no
column raises ``SchemaDriftError`` (field and row index), never a silent drop. JSONL writes
each row's own keys and enforces the columns only in ``fixed`` mode.

Values of types other than ELSPETH's (str, int, float, bool, None) are handled as follows.
Each format module's docstring gives the details:

=====================  ====================  ======================  ===========================
value                  csv                   jsonl                   arrow
=====================  ====================  ======================  ===========================
None / missing key     empty cell            ``null`` / key absent   null
bool                   ``True``/``False``    ``true``/``false``      bool column
float                  ``repr``: ``0.1``     shortest round-trip     float64 column
NaN, +-Infinity        ``nan``, ``inf``      UnencodableRow          kept (float64)
int beyond 64 bits     digits                UnencodableRow          UnencodableRow
datetime / date        ``isoformat()``       ``isoformat()`` string  timestamp[us] (UTC if
                                                                     aware) / date32 column
time                   ``isoformat()``       ``isoformat()`` string  json column (ISO string)
Decimal                ``str()``             UnencodableRow          UnencodableRow
bytes                  UnencodableRow        UnencodableRow          binary column
dict / list (nested)   UnencodableRow        JSON object / array     json column (JSON text)
other types            UnencodableRow        UnencodableRow (UUID,   UnencodableRow
                                             Enum: orjson's native)
text not encodable     UnencodableRow        UnencodableRow (lone    UnencodableRow (lone
                       (in csv encoding)     surrogates)             surrogates)
=====================  ====================  ======================  ===========================

Every :class:`~elspeth_appendsink.errors.RowError` carries ``row_index``, the row's index in
the batch given to ``encode``.

Speed was measured with ``.venv/bin/python -m benchmarks.encoders --repeat 3`` on 200,000
generated rows (about 218 bytes as JSON; 9 fields: 2 int, 2 float, 1 bool, 4 str, one of them
None in 30% of rows, one holding the delimiter), on a quiet 2-vCPU Xeon VM (firecracker),
Python 3.11.7, orjson 3.13.0, pyarrow 26.0.1, 2026-11-27. CPU seconds, best of 3; the same
candidate varies by about ±15% between runs.

================================================  ====  =========  ======  =========
candidate                                         used     rows/s    MB/s  s/1M rows
================================================  ====  =========  ======  =========
csv: stdlib ``csv.writer``, list collector                235,000    32.2       4.26
csv: stdlib ``csv.DictWriter``                            175,000    23.9       5.73
csv: ``CsvEncoder`` Python path (columnar)                312,000    42.8       3.20
csv: ``CsvEncoder.encode_packed`` (Arrow kernels)  yes    541,000    74.1       1.85
jsonl: ``json.dumps`` per row                             173,000    37.8       5.77
jsonl: ``orjson.dumps`` per row, no checks              1,572,000   342.8       0.64
jsonl: ``JsonlEncoder.encode_packed``              yes    545,000   118.8       1.84
arrow: ``RecordBatch.from_pylist``, no checks           1,259,000   172.3       0.79
arrow: ``ArrowEncoder.encode_packed``              yes    481,000    69.8       2.08
arrow: ``ArrowEncoder.block``                      yes  1,006,000   137.7       0.99
arrow: encode + block                              yes    337,000    46.2       2.97
identity digests (8-byte BLAKE2b per row)                1,333,000       -       0.75
================================================  ====  =========  ======  =========

``AppendWriter`` encodes about 1 MiB of rows at a time (~5,000 of these), and at that size the
chosen encoders gave 1.75 (csv), 1.37 (jsonl) and 2.14 (arrow encode + block) s/1M rows.
Where the time goes:

* CSV: about half is Python (extracting each column from the dicts, checking its value types,
  converting it to an Arrow array); the rest is the kernels (float and int formatting, quoting,
  joining the lines). Float formatting by Arrow is ~2x ``repr``; the join is one pass.
* JSONL: the NaN check costs about as much as ``orjson.dumps`` itself. orjson writes NaN as
  ``null``, so every row whose text contains ``null`` has its values checked. Whole batches of
  200k rows are slower than slices. orjson returns each row in an allocation of >= 4 KiB; the
  encoder appends the newline itself, which copies the row into a right-sized object.
* Arrow: writing computes no per-row identity (recovery derives it from the decoded batch) and
  builds each slice's record batch once, while planning; a block is those batches' columns
  concatenated, not a second conversion of the rows. Re-measured 2026-12-03 with the same
  command plus ``--slice 5000``, on a busier machine (CSV's unchanged encoder took 2.51 s/1M in
  slices there, against 1.75 above): Arrow encode + block 1.37 s/1M in slices (2.05 whole), 0.55x
  CSV's time; before, 2.14 s/1M, 1.22x CSV. What is left is Python's part: pulling each column out
  of the dicts, checking exact value types, handing the lists to ``pyarrow.array``.
* Identity digests cost 0.75 s/1M rows. Writing no longer computes them for CSV, JSONL or Arrow
  outputs (CSV/JSONL manifests store row lengths, Arrow blocks are ``derived``, see
  :mod:`~elspeth_appendsink.core.manifest`), except Arrow blocks holding values that read back
  differently, and ``identity_fields`` identities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

from elspeth_appendsink.encoders import arrow, csv, jsonl
from elspeth_appendsink.encoders.arrow import ArrowEncoder, decide_kinds
from elspeth_appendsink.encoders.base import Encoder, Row, SchemaSpec
from elspeth_appendsink.encoders.csv import CsvEncoder, CsvOptions
from elspeth_appendsink.encoders.jsonl import JsonlEncoder
from elspeth_appendsink.errors import ConfigError, InvariantViolation, ManifestCorruptError

__all__ = [
    "FORMATS",
    "ArrowEncoder",
    "CsvEncoder",
    "CsvOptions",
    "Encoder",
    "JsonlEncoder",
    "Row",
    "SchemaSpec",
    "create_encoder",
    "decide_columns",
    "restore_encoder",
]

FORMATS = ("csv", "jsonl", "arrow")
_MODES = ("fixed", "flexible", "observed")
_RESTORERS: dict[str, Callable[[Mapping[str, Any]], Encoder]] = {
    "csv": csv.restore,
    "jsonl": jsonl.restore,
    "arrow": arrow.restore,
}


def decide_columns(schema: SchemaSpec, first_rows: Sequence[Row]) -> tuple[str, ...]:
    """The output's columns, by the rules in the module docstring."""
    mode = schema.mode
    declared = tuple(schema.field_names)
    if mode == "fixed":
        return declared
    if mode in ("flexible", "observed"):
        return tuple(dict.fromkeys(chain(declared, chain.from_iterable(first_rows))))
    raise ConfigError("schema.mode", f"must be one of {', '.join(_MODES)}, got {mode!r}")


def _declared_types(schema: SchemaSpec) -> dict[str, str]:
    """Field types when the schema carries them (ELSPETH's ``SchemaConfig.fields``), else ``{}``."""
    fields = getattr(schema, "fields", None) or ()
    found: dict[str, str] = {}
    for field in fields:
        name, field_type = getattr(field, "name", None), getattr(field, "field_type", None)
        if isinstance(name, str) and isinstance(field_type, str):
            found[name] = field_type
    return found


def create_encoder(
    fmt: str,
    *,
    schema: SchemaSpec,
    first_rows: Sequence[Row],
    csv_options: CsvOptions | None = None,
    headers: Mapping[str, str] | None = None,
) -> Encoder:
    """Build the encoder for a new output from its schema and first batch.

    Args:
        fmt: one of :data:`FORMATS`.
        schema: mode and declared fields (types too, when the object carries them).
        first_rows: the first batch the output receives (not empty); observed and flexible
            columns come from it.
        csv_options: delimiter, encoding, header and terminator (csv only).
        headers: field -> display name, for the CSV header line and JSONL keys (not Arrow).

    Raises:
        ConfigError: unknown or non-appendable format, bad options or schema mode.
    """
    if fmt == "json":
        raise ConfigError(
            "format",
            "json (a single array) cannot be appended to",
            hint="use jsonl (one object per line) instead",
        )
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not first_rows:
        raise InvariantViolation("create_encoder needs the output's first (non-empty) batch")
    columns = decide_columns(schema, first_rows)
    if headers is not None and not isinstance(headers, Mapping):
        raise ConfigError("headers", "must be a mapping of field name to display name")
    if fmt == "csv":
        names = [headers.get(column, column) for column in columns] if headers else None
        return CsvEncoder(columns, csv_options or CsvOptions(), names)
    if fmt == "jsonl":
        return JsonlEncoder(columns, mode=schema.mode, headers=headers)
    return ArrowEncoder(columns, decide_kinds(columns, first_rows, _declared_types(schema)))


def restore_encoder(described: Mapping[str, Any]) -> Encoder:
    """Rebuild the encoder that produced ``described`` (from ``describe()``): same rows, same bytes.

    Raises:
        ManifestCorruptError: the description is not one this version can rebuild.
    """
    fmt = described.get("format") if isinstance(described, Mapping) else None
    restorer = _RESTORERS.get(fmt) if isinstance(fmt, str) else None
    if restorer is None:
        raise ManifestCorruptError(f"unknown encoder format in the manifest: {fmt!r}")
    return restorer(described)
