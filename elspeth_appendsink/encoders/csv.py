"""CSV output: one header line, then one line per row, each ending with the line terminator.

Owns :class:`CsvOptions`, :class:`CsvEncoder`, :func:`restore`, and :func:`reject_undeclared`.

Bytes written are the bytes Python's ``csv.writer(quoting=QUOTE_MINIMAL, doublequote=True)``
writes, except that a bare ``\\r`` inside a value is quoted when the terminator is ``\\n`` (the csv
module leaves it unquoted, which its own reader then rejects); tests compare the two byte for
byte. The encoder never calls the csv module, so its changes cannot change the bytes. Large
batches are built by Arrow compute kernels (:mod:`~elspeth_appendsink.encoders.csv_kernels`);
small ones, and every column the kernels do not handle, by the Python path here, column by
column. The Python path is the reference: tests hold the kernels to its bytes, and it alone
decides and words every error.

=========================  ==========================================================
value                      cell text
=========================  ==========================================================
missing key, ``None``      empty cell (indistinguishable from ``""``, as in any CSV)
``str`` (and subclasses)   the text itself
``bool``                   ``True`` / ``False``
``int``                    ``int.__repr__`` (IntEnum members by value)
``float``                  ``float.__repr__``: ``0.1``, ``1e+16``, ``nan``, ``inf``
datetime / date / time     ``isoformat()``
``Decimal``                ``str()``
anything else              :class:`~elspeth_appendsink.errors.UnencodableRow`
                           (bytes, dict, list, set, ...): field, type and row index
=========================  ==========================================================

A cell is quoted (``"`` doubled) when it holds the delimiter, ``"``, ``\\r`` or ``\\n``; a single
empty cell of a one-column row is written ``""``. Text the configured encoding cannot represent
raises ``UnencodableRow``, never ``UnicodeEncodeError``.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from itertools import compress, repeat
from operator import add, contains, itemgetter, not_, or_
from typing import Any

import pyarrow as pa

from elspeth_appendsink.encoders.base import ContiguousRows, Packed, Row
from elspeth_appendsink.encoders.csv_kernels import kernel_lines
from elspeth_appendsink.errors import (
    ConfigError,
    InvariantViolation,
    ManifestCorruptError,
    SchemaDriftError,
    UnencodableRow,
)

__all__ = [
    "CsvEncoder",
    "CsvOptions",
    "CsvProblem",
    "column_values",
    "csv_options_problem",
    "declared_values",
    "reject_undeclared",
    "restore",
]

_NONE = type(None)
_TEXT = frozenset({str})
_PLAIN = frozenset({str, int, float, bool})  # exact types whose str() is the cell text
_PLAIN_OR_NONE = _PLAIN | {_NONE}
_NUMERIC = frozenset({int, float, bool})
_NUMERIC_OR_NONE = _NUMERIC | {_NONE}
_TERMINATORS = ("\r\n", "\n")
# Below this many rows the Python path is faster than the kernels' fixed cost per call (the
# benchmark rows, warm: Python 30 % faster at 300 rows, 5 % at 700, even at ~900, kernels 15 %
# faster at 1,200 and 30 % at 5,000).
_KERNEL_MIN_ROWS = 800


#: A broken rule of :class:`CsvOptions`: the key, what is wrong, and a hint (possibly empty).
CsvProblem = tuple[str, str, str]


def csv_options_problem(
    delimiter: object, encoding: object, include_header: object, line_terminator: object
) -> CsvProblem | None:
    """The first rule these CSV options break, in key order, or ``None``: the one statement of them.

    :class:`CsvOptions` raises it as ``ConfigError("csv_options.<key>")``, the sink's options
    (:class:`~elspeth_appendsink.elspeth.options.CsvOptions`) as ``ConfigError("csv_options")``.
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return "delimiter", f"must be a single character, got {delimiter!r}", ""
    if delimiter in '"\r\n\x00':
        return "delimiter", f"cannot be a quote or a line break (nor NUL), got {delimiter!r}", ""
    problem = _encoding_problem(encoding)
    if problem is not None:
        return problem
    if not isinstance(include_header, bool):
        return "include_header", "must be true or false", ""
    if line_terminator not in _TERMINATORS:
        return (
            "line_terminator",
            f'must be "\\r\\n" (CRLF) or "\\n" (LF), got {line_terminator!r}',
            'in YAML, write it in double quotes: "\\r\\n"',
        )
    return None


def _encoding_problem(encoding: object) -> CsvProblem | None:
    """Only a text codec that writes no byte-order mark: rows are encoded one by one, so a codec
    writing one on every encode (``utf-16``, ``utf-32``, ``utf-8-sig``) would repeat it inside the
    output."""
    if not isinstance(encoding, str):
        return "encoding", f"must be a string, got {type(encoding).__name__}", ""
    try:
        codecs.lookup(encoding)
        bom = "".encode(encoding)
        probe = "a,b\r\n".encode(encoding)
    except LookupError:  # unknown, or a bytes-to-bytes codec such as base64
        return "encoding", f"unknown text encoding {encoding!r}", ""
    if bom:
        return (
            "encoding",
            f"{encoding!r} writes a byte-order mark on every encode, so appended rows would carry one each",
            "use a BOM-free codec such as utf-8, utf-16-le or utf-16-be",
        )
    if not probe:
        return "encoding", f"{encoding!r} cannot encode text", ""
    return None


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How CSV text is shaped and encoded. Invalid values raise ``ConfigError`` naming the option.

    Args:
        delimiter: one character; not ``"``, ``\\r``, ``\\n`` or NUL.
        encoding: a codec that writes no byte-order mark (``utf-8`` by default).
        include_header: write the header line at offset 0 of the output.
        line_terminator: ``"\\r\\n"`` (the csv module's default) or ``"\\n"``; fixed for the output.
    """

    delimiter: str = ","
    encoding: str = "utf-8"
    include_header: bool = True
    line_terminator: str = "\r\n"

    def __post_init__(self) -> None:
        problem = csv_options_problem(
            self.delimiter, self.encoding, self.include_header, self.line_terminator
        )
        if problem is not None:
            key, message, hint = problem
            raise ConfigError(f"csv_options.{key}", message, hint=hint)


def reject_undeclared(rows: Sequence[Row], allowed: frozenset[str], columns: Sequence[str]) -> None:
    """Raise ``SchemaDriftError`` for the first row holding a field outside ``allowed``.

    The whole batch is checked in one C-level pass, and only a batch that fails is searched
    row by row for the first offending row.
    """
    if set().union(*rows) <= allowed:
        return
    for index, row in enumerate(rows):
        for field in row:
            if field not in allowed:
                shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
                raise SchemaDriftError(
                    f"field {field!r} has no column in this output (columns: {shown})",
                    row_index=index,
                    hint="declare the field in the sink schema; in observed/flexible mode a field must "
                    "appear in the first batch, because the header is already written",
                )
    raise InvariantViolation("reject_undeclared: batch union exceeded the columns but no row did")


def column_values(
    rows: Sequence[Row], columns: Sequence[str], *, complete: bool | None = None
) -> list[list[Any]]:
    """The rows' values column by column, ``None`` for a missing key.

    Call only after :func:`reject_undeclared` (or use :func:`declared_values`). If every row
    then has as many keys as there are columns (``complete``, counted here unless the caller
    knows it), every row holds every column and C-level ``itemgetter`` maps can be used.
    """
    if complete is None:
        complete = set(map(len, rows)) == {len(columns)}
    if complete:
        return [list(map(itemgetter(column), rows)) for column in columns]
    return [[row.get(column) for row in rows] for column in columns]


def declared_values(rows: Sequence[Row], allowed: frozenset[str], columns: Sequence[str]) -> list[list[Any]]:
    """:func:`reject_undeclared`, then :func:`column_values`, in one pass when rows are complete.

    A row with exactly ``len(columns)`` keys that holds every column (distinct names) holds no
    other field, so when every row does, the ``itemgetter`` maps prove what the key union would
    (the union costs about 5 ms per 100k rows of 10 fields); a missing key sends the batch
    through :func:`reject_undeclared`, which names its first undeclared field.
    """
    complete = set(map(len, rows)) == {len(columns)}
    if complete and len(allowed) == len(columns):
        try:
            return column_values(rows, columns, complete=True)
        except KeyError:
            complete = False  # some row misses a column, so it holds another field: named below
    reject_undeclared(rows, allowed, columns)
    return column_values(rows, columns, complete=complete)


def _cell(column: str, value: Any, index: int) -> str:
    """The text of one value, by the table in the module docstring (the general, slow path)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise UnencodableRow(
                f"field {column!r}: an int with more than {sys.get_int_max_str_digits()} digits",
                row_index=index,
                hint="write it as str upstream",
            ) from None
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise UnencodableRow(
        f"field {column!r}: a value of type {type(value).__name__} cannot be written as CSV",
        row_index=index,
        hint="convert it to str, int, float or bool upstream (bytes, dict and list have no CSV form)",
    )


def _column_text(column: str, values: list[Any]) -> tuple[list[str], bool]:
    """Cell texts for one column, using the cheapest conversion its value types allow.

    Also says whether the texts are all numbers and empty cells. Those hold only ASCII
    letters, digits and ``.+-``, so they can need quoting only with such a delimiter.
    """
    types = set(map(type, values))
    if types <= _TEXT:
        return values, False
    if types <= _NUMERIC:
        return list(map(str, values)), True
    if types <= _NUMERIC_OR_NONE:
        return ["" if value is None else str(value) for value in values], True
    if types <= _PLAIN:
        return list(map(str, values)), False
    if types <= _PLAIN_OR_NONE:
        return ["" if value is None else str(value) for value in values], False
    return [_cell(column, value, index) for index, value in enumerate(values)], False


class CsvEncoder(ContiguousRows):
    """CSV lines for a fixed list of columns. See the module docstring for the exact bytes.

    Args:
        columns: the decided columns, in output order.
        options: delimiter, encoding, header, terminator.
        header_names: display names for the header line (same length as ``columns``);
            defaults to the column names. Data rows are unaffected.
    """

    name = "csv"
    __slots__ = (
        "_allowed",
        "_header",
        "_needs_quote",
        "_numeric_safe",
        "_specials",
        "_utf8",
        "columns",
        "header_names",
        "options",
    )

    def __init__(
        self,
        columns: Sequence[str],
        options: CsvOptions | None = None,
        header_names: Sequence[str] | None = None,
    ) -> None:
        self.options = options or CsvOptions()
        self.columns = tuple(columns)
        self.header_names = tuple(header_names) if header_names is not None else self.columns
        if len(self.header_names) != len(self.columns):
            raise ConfigError("headers", "one display name is needed per column")
        if not all(isinstance(name, str) for name in (*self.columns, *self.header_names)):
            raise ConfigError("headers", "column and display names must be strings")
        self._allowed = frozenset(self.columns)
        self._utf8 = codecs.lookup(self.options.encoding).name == "utf-8"  # CsvOptions checked it
        self._specials = self.options.delimiter + '"\r\n'
        self._needs_quote = re.compile("[" + re.escape(self._specials) + "]").search
        delimiter = self.options.delimiter
        # numbers never need quoting, unless the delimiter can occur in one or a lone empty
        # cell must be written as "" (one column)
        self._numeric_safe = not (delimiter.isalnum() or delimiter in ".+-") and len(self.columns) > 1
        self._header = b""
        if self.options.include_header:
            cells = list(map(self._quote, self.header_names))
            line = self.options.delimiter.join(cells) + self.options.line_terminator
            try:
                self._header = line.encode(self.options.encoding)
            except UnicodeEncodeError as exc:
                raise ConfigError(
                    "csv_options.encoding",
                    f"the header line cannot be encoded as {self.options.encoding} ({exc.reason})",
                ) from None

    def header(self) -> bytes:
        """The header line (display names), or ``b""`` when ``include_header`` is off."""
        return self._header

    def encode(self, rows: Sequence[Row]) -> list[bytes]:
        """One ``bytes`` per row: its exact CSV line, terminator included."""
        return self.encode_packed(rows).rows()

    def encode_packed(self, rows: Sequence[Row]) -> Packed:
        """All rows' lines back to back. Large UTF-8 batches are built by Arrow kernels
        (:mod:`~elspeth_appendsink.encoders.csv_kernels`), the rest by the Python path below;
        both write the same bytes, and the Python path decides every error."""
        if not rows:
            return Packed(b"", [0])
        values = declared_values(rows, self._allowed, self.columns)
        if self._utf8 and len(self.columns) > 1 and len(rows) >= _KERNEL_MIN_ROWS:
            try:
                return kernel_lines(
                    values,
                    self.options.delimiter,
                    self.options.line_terminator,
                    self._numeric_safe,
                    lambda index: self._python_column(self.columns[index], values[index])[0],
                )
            except (pa.ArrowException, UnicodeError, ValueError):
                pass  # a bad value (or text UTF-8 cannot hold): the Python path names it
        return Packed.join(self._encode_python(rows, values))

    def _python_column(self, column: str, values: list[Any]) -> tuple[list[str], bool]:
        """One column's cells, quoted where needed, and whether any holds a line break."""
        texts, numeric = _column_text(column, values)
        if numeric and self._numeric_safe:
            return texts, False
        return self._quote_column(texts)

    def _encode_python(self, rows: Sequence[Row], values: list[list[Any]] | None = None) -> list[bytes]:
        """The reference path: one ``str`` per cell, a ``join`` per row, one encode.

        ``values`` are the rows' :func:`declared_values`, when known already.
        """
        count = len(rows)
        if values is None:
            values = declared_values(rows, self._allowed, self.columns)
        try:
            converted = [
                self._python_column(column, cells) for column, cells in zip(self.columns, values, strict=True)
            ]
        except ValueError:  # UnencodableRow, or str() of an int too long to print
            self._raise_first_bad_cell(rows)
            raise
        texts = [column_texts for column_texts, _ in converted]
        multiline = any(has_line_break for _, has_line_break in converted)
        lines = list(map(self.options.delimiter.join, zip(*texts, strict=True))) if texts else [""] * count
        terminator = self.options.line_terminator
        try:
            if self._utf8 and not multiline:  # one encode, split at the terminators we wrote
                text = terminator.join(lines)
                text += terminator
                encoded = text.encode("utf-8").splitlines(keepends=True)
                if len(encoded) != count:
                    raise InvariantViolation("csv: line split does not match the row count")
                return encoded
            return list(map(str.encode, map(add, lines, repeat(terminator)), repeat(self.options.encoding)))
        except UnicodeEncodeError:
            self._raise_unencodable(rows, lines)
            raise

    def describe(self) -> dict[str, Any]:
        """The frozen decisions, JSON-safe; :func:`restore` rebuilds the identical encoder."""
        return {
            "format": self.name,
            "version": 1,
            "columns": list(self.columns),
            "header_names": list(self.header_names),
            "delimiter": self.options.delimiter,
            "encoding": self.options.encoding,
            "include_header": self.options.include_header,
            "line_terminator": self.options.line_terminator,
        }

    # -- helpers -------------------------------------------------------------------------

    def _quote(self, text: str) -> str:
        if self._needs_quote(text) or (not text and len(self.columns) == 1):
            return '"' + text.replace('"', '""') + '"'
        return text

    def _quote_column(self, texts: list[str]) -> tuple[list[str], bool]:
        """The column with the cells that need it quoted, and whether any holds CR or LF.

        One scan of the joined column finds which special characters occur at all. The cells
        holding them are then picked with C-level ``contains`` maps, so Python code runs only
        for the cells that are actually quoted.
        """
        joined = "\x00".join(texts)
        found = [char for char in self._specials if char in joined]
        if len(self.columns) == 1 and "" in texts:
            found.append("")
        if not found:
            return texts, False
        flags: Iterator[bool] | None = None
        for char in found:
            hits = map(contains, texts, repeat(char)) if char else map(not_, texts)
            flags = hits if flags is None else map(or_, flags, hits)
        quoted = list(texts)
        for index in compress(range(len(quoted)), flags or ()):
            quoted[index] = '"' + quoted[index].replace('"', '""') + '"'
        return quoted, "\r" in found or "\n" in found

    def _raise_first_bad_cell(self, rows: Sequence[Row]) -> None:
        for index, row in enumerate(rows):
            for column in self.columns:
                _cell(column, row.get(column), index)

    def _raise_unencodable(self, rows: Sequence[Row], lines: Iterable[str]) -> None:
        encoding = self.options.encoding
        for index, line in enumerate(lines):
            try:
                line.encode(encoding)
            except UnicodeEncodeError:
                pass
            else:
                continue
            for column in self.columns:
                cell = _cell(column, rows[index].get(column), index)
                try:
                    cell.encode(encoding)
                except UnicodeEncodeError as exc:
                    raise UnencodableRow(
                        f"field {column!r}: character {exc.object[exc.start]!r} at position {exc.start} "
                        f"cannot be encoded as {encoding}",
                        row_index=index,
                        hint="choose an encoding that covers the data (utf-8 covers all text "
                        "except lone surrogates)",
                    ) from None
            raise InvariantViolation(f"csv: row {index} failed to encode but none of its cells did")


def restore(described: Mapping[str, Any]) -> CsvEncoder:
    """Rebuild the encoder :meth:`CsvEncoder.describe` described (same bytes for the same rows)."""
    try:
        if described["format"] != CsvEncoder.name or described["version"] != 1:
            raise ManifestCorruptError(f"not a version-1 csv encoder description: {described!r}")
        options = CsvOptions(
            delimiter=described["delimiter"],
            encoding=described["encoding"],
            include_header=described["include_header"],
            line_terminator=described["line_terminator"],
        )
        return CsvEncoder(described["columns"], options, described["header_names"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise ManifestCorruptError(f"csv encoder description is unusable: {exc}") from None
