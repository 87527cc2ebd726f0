"""The encoder registry: choose the columns for an output, build its encoder, rebuild it on resume.

:func:`create_encoder` decides the columns (:func:`decide_columns`) from the schema and the
first batch, then builds the format's encoder; :func:`restore_encoder` rebuilds an identical one
from what ``describe()`` recorded in the manifest. :data:`FORMATS` lists what can be appended
(``json``, one array, cannot be and is refused). Values of types other than ELSPETH's (str, int,
float, bool, None) follow this table (each format module's docstring gives the details):

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

Every :class:`~elspeth_appendsink.errors.RowError` carries ``row_index``, the row's index in the
batch given to ``encode``. What each encoder costs is in ``docs/benchmarks.md``.
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
    """The output's columns, decided once per output and then frozen.

    * ``fixed``: exactly the declared fields. A key outside them raises ``SchemaDriftError``; a
      missing key becomes an empty cell or null, because the host enforces required fields.
    * ``flexible``: the declared fields, then the extra keys of the *first* batch in first-seen
      order.
    * ``observed``: every key of the first batch, in first-seen order.

    For CSV and Arrow, a later row with a key that has no column raises ``SchemaDriftError``
    (field and row index), never a silent drop. JSONL writes each row's own keys and enforces
    the columns only in ``fixed`` mode.
    """
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
