"""Arrow IPC stream output: the schema message once, then one record batch message per block.

Owns :class:`ArrowEncoder` (its docstring states the canonical row encoding and the planned
sizes), :func:`decide_kinds` (the column types) and :func:`restore`. :meth:`ArrowEncoder.header`
is ``schema.serialize()`` and :meth:`ArrowEncoder.block` one ``RecordBatch.serialize()`` message,
so ``header + block1 + block2 + ...`` is byte for byte what ``pyarrow.ipc.new_stream`` writes,
without the end-of-stream marker: ``open_stream`` reads to a clean end of file at a message
boundary, an append blob cannot be finalised later, so the marker is never written.

Column kinds (every field nullable; a value that does not fit raises
:class:`~elspeth_appendsink.errors.UnencodableRow` in :meth:`ArrowEncoder.encode`):

==============  ======================  ====================================================
kind            Arrow type              accepted Python values (exact types, or None)
==============  ======================  ====================================================
int             int64                   int in [-2**63, 2**63)
float           float64                 float (NaN and +-inf kept); int with abs <= 2**53
bool            bool                    bool
str             string                  str (lone surrogates rejected)
binary          binary                  bytes
date            date32                  date
timestamp       timestamp[us]           naive datetime
timestamp_utc   timestamp[us, UTC]      aware datetime (stored as the UTC instant)
json            string (``json`` kind   any value JSONL accepts, stored as its compact JSON
                in field metadata)      text (``any`` fields, mixed types, dict/list)
==============  ======================  ====================================================

Kinds come from the declared schema type when there is one (``int``/``float``/``bool``/``str``;
``any`` → ``json``), else from the first batch: one non-null type gives its kind, int+float gives
``float``, an all-null column ``str``, anything else ``json``; Decimal and other types are refused.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from itertools import repeat
from operator import is_not
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from elspeth_appendsink.encoders.base import Packed, Part, Row
from elspeth_appendsink.encoders.csv import column_values, declared_values
from elspeth_appendsink.encoders.jsonl import (
    check_fingerprint,
    json_fingerprint,
    json_value,
    json_value_error,
)
from elspeth_appendsink.errors import InvariantViolation, ManifestCorruptError, UnencodableRow

if TYPE_CHECKING:
    from elspeth_appendsink.core.manifest import BlockEntry

__all__ = ["KINDS", "ArrowEncoder", "decide_kinds", "restore"]

_NONE = type(None)
_KIND_KEY = b"elspeth_appendsink.kind"
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_FLOAT_INT = 2**53

KINDS: dict[str, Any] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "str": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamp_utc": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}
_ACCEPTS: dict[str, frozenset[type]] = {
    "int": frozenset({int}),
    "float": frozenset({float, int}),
    "bool": frozenset({bool}),
    "str": frozenset({str}),
    "binary": frozenset({bytes}),
    "date": frozenset({date}),
    "timestamp": frozenset({datetime}),
    "timestamp_utc": frozenset({datetime}),
}
# Planning sizes: a fixed-width cell's bytes in a batch (variable-width ones add a 4-byte offset,
# counted here, and their UTF-8 or binary length, counted per cell).
_WIDTH = {"int": 8, "float": 8, "bool": 1, "date": 4, "timestamp": 8, "timestamp_utc": 8}
_VARIABLE = frozenset({"str", "binary", "json"})
_DECLARED = {"int": "int", "float": "float", "bool": "bool", "str": "str", "any": "json"}
_INFERRED = {int: "int", float: "float", bool: "bool", str: "str", bytes: "binary", date: "date"}
_view: Callable[[bytes], memoryview] = memoryview  # typed: mypy cannot infer it inside map()


@dataclass(frozen=True, slots=True)
class _Planned(Packed):
    """:meth:`ArrowEncoder.encode_packed`'s result: estimated row sizes, placeholder bytes, and
    the slice's record batch, which :meth:`part` hands out so that a block is cut from it.

    ``lossless`` says whether the rows read back from a record batch exactly (see
    :meth:`ArrowEncoder.derivable`).
    """

    lossless: bool = True
    batch: pa.RecordBatch | None = None

    def part(self, start: int, stop: int) -> Part:
        """Rows ``start`` to ``stop - 1`` as a slice of the planned record batch (no copy)."""
        if self.batch is None:
            return self.span(start, stop)
        return self.batch.slice(start, stop - start)


def _cell_bytes(array: pa.Array) -> np.ndarray:
    """Each cell's bytes in a variable-width array (UTF-8 for text, 0 for null): the steps of
    its offsets buffer, one subtraction per cell whatever the text holds (counting characters
    instead would take a kernel pass per column)."""
    _, offsets_buffer, _ = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(array) + 1, offset=4 * array.offset)
    return np.diff(offsets).astype(np.int64)  # a null cell spans no bytes


def _is_aware(value: datetime) -> bool:
    return value.utcoffset() is not None


def _infer_kind(values: list[Any]) -> str:
    types = set(map(type, values)) - {_NONE}
    if not types:
        return "str"
    if types == {int, float}:
        return "float"
    if types == {datetime}:
        awareness = {_is_aware(v) for v in values if v is not None}
        if len(awareness) == 1:
            return "timestamp_utc" if awareness.pop() else "timestamp"
        return "json"
    if len(types) == 1:
        return _INFERRED.get(types.pop(), "json")
    return "json"


def decide_kinds(
    columns: Sequence[str], first_rows: Sequence[Row], declared: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The kind of each column: its declared type when known, else inferred from the first batch."""
    declared = declared or {}
    kinds = []
    for column in columns:
        kind = _DECLARED.get(declared.get(column, ""))
        # only an undeclared column's values are looked at (the first batch may be a whole run)
        kinds.append(kind if kind is not None else _infer_kind([row.get(column) for row in first_rows]))
    return tuple(kinds)


def _nonfinite_marker(value: float) -> dict[str, str]:
    return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _canonical_default(value: Any) -> Any:
    """orjson's hook for the canonical encoding: datetime/date as ISO text, bytes as base64."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _json_text(value: Any) -> str:
    """A json column's cell: the value's JSONL encoding (already validated by ``encode``)."""
    return json_value(value).decode("utf-8")


def _outside_int64(value: int) -> bool:
    return not _INT64[0] <= value <= _INT64[1]


def _inexact_as_float(value: int | float) -> bool:
    return type(value) is int and abs(value) > _EXACT_FLOAT_INT


def _has_surrogate(value: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in value)


def _misfit_test(kind: str, present: list[Any]) -> Callable[[Any], bool] | None:
    """A per-value test for the values of an accepted type that still do not fit, when some exist.

    ``present`` holds the column's non-null values, all of accepted types. A cheap
    whole-column check runs first, and a per-value test is returned only when it fails.
    """
    if kind == "int" and (min(present) < _INT64[0] or max(present) > _INT64[1]):
        return _outside_int64
    if kind == "float":
        ints = [value for value in present if type(value) is int]
        if ints and (min(ints) < -_EXACT_FLOAT_INT or max(ints) > _EXACT_FLOAT_INT):
            return _inexact_as_float
    if kind == "str":
        try:
            "".join(present).encode("utf-8")
        except UnicodeEncodeError:
            return _has_surrogate
    if kind in ("timestamp", "timestamp_utc"):
        aware = kind == "timestamp_utc"
        if any(_is_aware(value) != aware for value in present):
            return lambda value: _is_aware(value) != aware
    return None


class ArrowEncoder:
    """Arrow IPC stream for a fixed list of typed columns. See the module docstring.

    :meth:`encode` returns a canonical per-row encoding. It defines row identity and is never
    written. Writing does not compute it: :meth:`encode_packed` validates the rows, builds their
    record batch and estimates their sizes (a block is cut from those batches), and the manifest
    records no digests for a block (:meth:`derivable`); recovery rebuilds each row's canonical
    encoding from the decoded record batch (:meth:`row_digests`), which gives back exactly what
    ``encode`` gives for the row, except for an int in a float column (read back as a float) and
    an aware datetime with a non-zero UTC offset (read back at UTC): blocks holding those record
    digests. The canonical encoding is the compact JSON array of the row's values in column
    order (orjson, missing → null, json cells as their text, bytes as base64, NaN and infinities
    as ``{"float": "nan"|"inf"|"-inf"}`` so that they never collide with null). Like JSONL,
    :meth:`describe` records orjson's spelling fingerprint, and :func:`restore` refuses an
    orjson that spells differently.

    The planned sizes (:meth:`encode_packed`: fixed-width cells, 4-byte offsets and UTF-8 bytes
    of variable-width ones, one validity byte per cell) approximate a row's share of a record
    batch. They are **not** an upper bound: a batch message adds a few hundred bytes of metadata
    and 8-byte padding per buffer. A writer that plans blocks against a hard limit must check
    ``len(block(...))``. A stream cut inside a message raises ``OSError`` when read.

    Args:
        columns: the decided columns, in output order (at least one).
        kinds: one kind per column, keys of :data:`KINDS`.
    """

    name = "arrow"
    contiguous_rows = False

    __slots__ = ("_allowed", "_fixed_width", "_header", "columns", "kinds", "schema")

    def __init__(self, columns: Sequence[str], kinds: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.kinds = tuple(kinds)
        if len(self.columns) != len(self.kinds):
            raise InvariantViolation("arrow: one kind is needed per column")
        if not self.columns:
            raise UnencodableRow(
                "the first batch has no fields, and an Arrow stream needs at least one column",
                row_index=0,
                hint="declare the schema's fields, or start the output with a row that has fields",
            )
        unknown = [kind for kind in self.kinds if kind not in KINDS]
        if unknown:
            raise InvariantViolation(f"arrow: unknown column kinds {unknown}")
        self.schema = pa.schema(
            [
                pa.field(column, KINDS[kind], nullable=True, metadata={_KIND_KEY: kind.encode("ascii")})
                for column, kind in zip(self.columns, self.kinds, strict=True)
            ]
        )
        self._allowed = frozenset(self.columns)
        self._header: bytes = self.schema.serialize().to_pybytes()
        # per row, the fixed-width cells' bytes plus one validity byte per column (an overestimate)
        self._fixed_width = len(self.kinds) + sum(_WIDTH.get(kind, 4) for kind in self.kinds)

    def header(self) -> bytes:
        """The IPC schema message (continuation marker, length, flatbuffer, padding)."""
        return self._header

    def encode(self, rows: Sequence[Row]) -> list[bytes]:
        """Validate every value against its column and return the canonical per-row encoding."""
        if not rows:
            return []
        columns = self._checked_columns(rows)
        return self._canonical_rows(
            [self._canonical_column(kind, values) for kind, values in zip(self.kinds, columns, strict=True)]
        )

    def encode_packed(self, rows: Sequence[Row]) -> Packed:
        """Validate the rows, build their record batch and estimate each row's share of it.

        The writer plans blocks with these sizes only (see the module docstring: not an upper
        bound); the bytes are placeholders, and a block is cut from the batch (:meth:`block`).
        Nothing is hashed: content identities come from :meth:`canonical` when a writer needs
        them, or from a written block by :meth:`row_digests`.
        """
        if not rows:
            return _Planned(b"", [0])
        columns = declared_values(rows, self._allowed, self.columns)
        batch, lossless = self._batch(columns)
        sizes = np.full(len(rows), self._fixed_width, dtype=np.int64)
        for kind, array in zip(self.kinds, batch.columns, strict=True):
            if kind in _VARIABLE:
                sizes += _cell_bytes(array)
        offsets = [0, *np.cumsum(sizes).tolist()]
        return _Planned(bytes(offsets[-1]), offsets, lossless, batch)

    def canonical(self, rows: Sequence[Row], encoded: Packed) -> Packed:
        """The rows' canonical encodings (the identity basis): :meth:`encode`, packed."""
        return Packed.join(self.encode(rows))

    def derivable(self, encoded: Packed) -> bool:
        """Whether a record batch of these rows gives back their canonical encodings exactly.

        False when a value is stored in a form that reads back differently (an int in a float
        column, an aware datetime with a non-zero UTC offset): such rows' digests must be
        recorded in the manifest.
        """
        return isinstance(encoded, _Planned) and encoded.lossless

    def row_digests(self, entry: BlockEntry, block: bytes) -> bytes:
        """The packed content digests of the rows of ``block``, an entry written by this encoder.

        The block is one record batch message, after the schema message when it starts the
        output. It is decoded against :attr:`schema` and each row's canonical encoding is rebuilt
        exactly as :meth:`encode` defines it, then hashed as :meth:`IdentityScheme.digests` does.
        """
        from elspeth_appendsink.core.identity import content_digests  # core imports encoders.base

        body = block[len(self._header) :] if block.startswith(self._header) else block
        try:
            reader = pa.ipc.open_stream(pa.py_buffer(self._header + body))
            batches = list(reader)
        except (pa.ArrowException, OSError) as exc:
            raise ManifestCorruptError(
                f"block entry {entry.seq} does not hold a readable Arrow record batch: {exc}"
            ) from None
        columns: list[list[Any]] = [[] for _ in self.columns]
        for batch in batches:
            for values, array in zip(columns, batch.columns, strict=True):
                values.extend(array.to_pylist())
        canonical = self._canonical_rows(
            [
                values if kind == "json" else self._canonical_column(kind, values)
                for kind, values in zip(self.kinds, columns, strict=True)
            ]
        )
        if len(canonical) != len(entry.tokens):
            raise ManifestCorruptError(
                f"block entry {entry.seq} describes {len(entry.tokens)} rows; "
                f"its batch holds {len(canonical)}"
            )
        return content_digests(b"".join(canonical), list(map(len, canonical)))

    def block(self, encoded: Sequence[Part], rows: Sequence[Row]) -> bytes:
        """One record batch message holding exactly these rows (already accepted by ``encode``).

        When ``encoded`` holds the planned batch slices of these rows (:meth:`_Planned.part`),
        their columns are concatenated; otherwise the batch is built from ``rows``. Either way
        the arrays are fresh, so the message is byte for byte the same (a serialised *slice*
        would differ: it keeps its parent's offsets).
        """
        if not rows:
            return b""
        slices = [part for part in encoded if isinstance(part, pa.RecordBatch)]
        if slices and len(slices) == len(encoded) and sum(part.num_rows for part in slices) == len(rows):
            arrays = [pa.concat_arrays([part.column(i) for part in slices]) for i in range(len(self.columns))]
            batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        else:
            batch, _ = self._batch(column_values(rows, self.columns), checked=True)
        data: bytes = batch.serialize().to_pybytes()
        return data

    def describe(self) -> dict[str, Any]:
        """The frozen decisions, JSON-safe; :func:`restore` rebuilds the identical encoder."""
        return {
            "format": self.name,
            "version": 1,
            "columns": [
                {"name": column, "kind": kind} for column, kind in zip(self.columns, self.kinds, strict=True)
            ],
            "schema": base64.b64encode(self._header).decode("ascii"),
            "orjson": orjson.__version__,
            "json_fingerprint": json_fingerprint(),
        }

    # -- helpers -------------------------------------------------------------------------

    def _checked_columns(self, rows: Sequence[Row]) -> list[list[Any]]:
        """The rows' values column by column, once every value is known to fit its column."""
        columns = declared_values(rows, self._allowed, self.columns)
        self._reject_misfits(columns)
        return columns

    def _batch(self, columns: list[list[Any]], checked: bool = False) -> tuple[pa.RecordBatch, bool]:
        """The record batch of these columns, and whether it reads back losslessly.

        Only the checks pyarrow does not make itself run first (exact value types, awareness of
        datetimes, json cells, ints a float column cannot hold exactly); pyarrow refuses
        out-of-range ints, surrogates and inexact floats while converting. On any doubt the full
        per-value check (:meth:`_first_problem`) names the first bad row.
        """
        lossless = True
        for kind, values in zip(self.kinds, columns, strict=True):
            types = None if checked else self._quick_fit(kind, values)
            if not checked and types is None:
                self._reject_misfits(columns, expected=True)
            if kind == "float" and lossless:
                lossless = int not in (types or set(map(type, values)))  # 5 is read back as 5.0
            elif kind == "timestamp_utc" and lossless:
                # an aware datetime is read back at UTC, so only a zero offset keeps its ISO text
                lossless = not any(value.utcoffset() for value in values if value is not None)
        try:
            arrays = [
                pa.array(self._arrow_values(kind, values), type=KINDS[kind])
                for kind, values in zip(self.kinds, columns, strict=True)
            ]
            return pa.RecordBatch.from_arrays(arrays, schema=self.schema), lossless
        except (pa.ArrowException, OverflowError, UnicodeError, TypeError, ValueError) as exc:
            if not checked:
                self._reject_misfits(columns, expected=True)
            raise InvariantViolation(f"arrow: pyarrow refused a value that encode() accepted: {exc}") from exc

    @staticmethod
    def _quick_fit(kind: str, values: list[Any]) -> set[type] | None:
        """The column's value types when it certainly fits once pyarrow accepts it; None when it
        needs the full check."""
        types = set(map(type, values)) - {_NONE}
        if kind == "json":
            return None if any(value is not None and json_value_error(value) for value in values) else types
        if not types <= _ACCEPTS[kind]:
            return None
        # the misfits pyarrow would convert without complaint: ints a double cannot hold exactly,
        # datetimes of the other awareness
        if (kind == "float" and int in types) or kind in ("timestamp", "timestamp_utc"):
            present = list(filter(partial(is_not, None), values))
            if present and _misfit_test(kind, present) is not None:
                return None
        return types

    def _reject_misfits(self, columns: list[list[Any]], expected: bool = False) -> None:
        """Raise ``UnencodableRow`` for the first value (by row) that does not fit its column.

        ``expected``: a misfit must exist (a quick check or pyarrow refused the columns), so
        finding none is an ``InvariantViolation``.
        """
        problems = [
            found
            for found in (
                self._first_problem(column, kind, values)
                for column, kind, values in zip(self.columns, self.kinds, columns, strict=True)
            )
            if found is not None
        ]
        if problems:
            index, message = min(problems)
            hint = "fix the value upstream or declare the field's type"
            raise UnencodableRow(message, row_index=index, hint=hint)
        if expected:
            raise InvariantViolation("arrow: pyarrow refused a batch in which every value fits its column")

    @staticmethod
    def _canonical_rows(canonical: list[list[Any]]) -> list[bytes]:
        """Each row's compact JSON array of its canonical column values.

        orjson hands back each row in an allocation of at least 4 KiB, so a block's 20,000 rows
        kept as returned would touch 80 MiB; each is copied into a right-sized object instead
        (the same bytes; the canonical rows of 200k rows in blocks of 20k: 42k -> 14k page
        faults, 0.25-0.40 -> 0.21-0.27 s). Recovery computes them for every "derived" block
        it digests, and content identity for the rows a write call may skip.
        """
        rows_as_tuples = zip(*canonical, strict=True)
        dumped = map(orjson.dumps, rows_as_tuples, repeat(_canonical_default), repeat(_JSON_OPTIONS))
        return list(map(bytes, map(_view, dumped)))

    @staticmethod
    def _first_problem(column: str, kind: str, values: list[Any]) -> tuple[int, str] | None:
        """(row index, message) for the first value that does not fit the column, or None."""
        if kind == "json":
            for index, value in enumerate(values):
                problem = None if value is None else json_value_error(value)
                if problem is not None:
                    return index, f"field {column!r} (json column): {problem}"
            return None
        accepts = _ACCEPTS[kind]
        all_types = set(map(type, values))
        if not all_types - {_NONE} <= accepts:
            for index, value in enumerate(values):
                if value is not None and type(value) not in accepts:
                    got = type(value).__name__
                    return index, f"field {column!r}: column is {KINDS[kind]}, got a value of type {got}"
        present = list(filter(partial(is_not, None), values)) if _NONE in all_types else values
        misfit = _misfit_test(kind, present) if present else None
        if misfit is None:
            return None
        for index, value in enumerate(values):
            if value is not None and misfit(value):
                return index, f"field {column!r}: value does not fit the {KINDS[kind]} column"
        raise InvariantViolation(f"arrow: column {column!r} failed its batch check but no value did")

    @staticmethod
    def _canonical_column(kind: str, values: list[Any]) -> list[Any]:
        if kind == "json":
            return [None if value is None else _json_text(value) for value in values]
        if kind == "float":
            present = list(filter(partial(is_not, None), values))
            if not math.isfinite(sum(present)):
                return [
                    _nonfinite_marker(value) if type(value) is float and not math.isfinite(value) else value
                    for value in values
                ]
        return values

    @staticmethod
    def _arrow_values(kind: str, values: list[Any]) -> list[Any]:
        if kind == "json":
            return [None if value is None else _json_text(value) for value in values]
        return values


def restore(described: Mapping[str, Any]) -> ArrowEncoder:
    """Rebuild the encoder :meth:`ArrowEncoder.describe` described (same bytes for the same rows)."""
    try:
        if described["format"] != ArrowEncoder.name or described["version"] != 1:
            raise ManifestCorruptError(f"not a version-1 arrow encoder description: {described!r}")
        columns = [entry["name"] for entry in described["columns"]]
        kinds = [entry["kind"] for entry in described["columns"]]
        check_fingerprint(described)
        encoder = ArrowEncoder(columns, kinds)
        recorded = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(described["schema"])))
    except (KeyError, TypeError, ValueError, InvariantViolation, pa.ArrowException) as exc:
        raise ManifestCorruptError(f"arrow encoder description is unusable: {exc}") from None
    if not recorded.equals(encoder.schema, check_metadata=True):
        raise ManifestCorruptError(
            "arrow encoder description: the recorded schema differs from the one its columns describe"
        )
    return encoder
