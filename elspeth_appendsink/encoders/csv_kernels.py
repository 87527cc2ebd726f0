"""CSV lines built by Arrow compute kernels: the same bytes as the Python path, in C.

Owns :func:`kernel_lines`. :class:`~elspeth_appendsink.encoders.csv.CsvEncoder` calls it for
large UTF-8 batches and keeps its column-by-column Python code as the reference and the fallback;
``tests/unit/test_encoders_csv_kernels.py`` holds the two (and the ``csv`` module) to the same
bytes on generated rows. Each column is converted with ``pyarrow.array`` and turned into cell
text by a kernel; only a column whose values are all of one exact type (or None) takes one:

=========  ======================================================================
int64      ``cast`` to string: the decimal digits ``int.__repr__`` writes
double     ``cast`` to string when every value is an exact ``float``. Arrow and
           ``float.__repr__`` both write the shortest round-trip digits, but their
           notations differ outside fixed-point range and for whole numbers (``1``
           vs ``1.0``). Cells with ``abs(x) < 1e-4``, ``abs(x) >= 1e10``, a whole
           value, NaN or infinity are written by ``float.__repr__`` instead. At
           first use a sample of values is formatted both ways; on any
           disagreement (a pyarrow that formats differently) floats always take
           the Python path.
bool       ``True`` / ``False``
string     the text; cells holding a special character are quoted (``"``
           doubled). The whole column is searched once, so only columns that
           hold one pay for a per-cell test.
other      the Python path's text for that column (mixed types, subclasses,
           datetime, Decimal, ints beyond 64 bits, all-None columns, ...)
=========  ======================================================================

Nulls become empty cells. The lines are joined by one kernel call, and the result is already
a buffer of all lines with an offset per row, so no line is ever a Python object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elspeth_appendsink.encoders.base import Packed

__all__ = ["kernel_lines"]

_NONE = type(None)
_ARROW_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
}
# float.__repr__ uses fixed-point notation for 1e-4 <= abs(x) < 1e16, pyarrow 26 for about
# 1e-6 <= abs(x) < 1e10, and whole numbers lose their ".0" in Arrow: only the common band is
# trusted to Arrow.
_FIXED_LOW, _FIXED_HIGH = 1e-4, 1e10


@cache
def floats_agree() -> bool:
    """Whether this pyarrow writes the same text as ``float.__repr__`` in the trusted band.

    The sample's exponents step through the band by the golden ratio (evenly spread, full
    17-digit mantissas, signs alternating). A random generator would do as well, but importing
    ``numpy.random`` for it made the check, paid on a process's first CSV write, 7.8 ms instead
    of 3.4 ms.
    """
    low, high = np.log10(_FIXED_LOW), np.log10(_FIXED_HIGH)
    steps = np.arange(1, 4001)
    exponents = low + (high - low) * ((steps * ((5**0.5 - 1) / 2)) % 1.0)
    values = 10.0**exponents * np.where(steps % 2, 1.0, -1.0)
    tricky = [0.1, 0.2 + 0.1, 1 / 3, 2 / 3 * 1e9, 1e-4 + 1e-19, 123.456, 9999999999.999998, 0.5, 1.5e-4]
    sample = [v for v in (*values.tolist(), *tricky) if v != int(v) and _FIXED_LOW <= abs(v) < _FIXED_HIGH]
    arrow: list[str] = pc.cast(pa.array(sample, pa.float64()), pa.string()).to_pylist()
    return arrow == list(map(float.__repr__, sample))


def _empty_for_null(texts: pa.Array) -> pa.Array:
    return pc.fill_null(texts, "") if texts.null_count else texts


def _float_texts(array: pa.Array, values: list[Any]) -> pa.Array:
    texts = pc.cast(array, pa.string())
    magnitude = pc.abs(array)
    trusted = pc.and_(
        pc.and_(pc.greater_equal(magnitude, _FIXED_LOW), pc.less(magnitude, _FIXED_HIGH)),
        pc.not_equal(pc.floor(array), array),
    )
    others = np.flatnonzero(~pc.fill_null(trusted, True).to_numpy(zero_copy_only=False))
    if len(others):
        patch: list[str | None] = [None] * len(values)
        for index in others.tolist():
            patch[index] = float.__repr__(values[index])
        patched = pa.array(patch, pa.string())
        texts = pc.if_else(pc.is_null(patched), texts, patched)
    return _empty_for_null(texts)


def _string_texts(array: pa.Array, specials: Sequence[str]) -> pa.Array:
    """The column with the cells that need it quoted; one buffer scan decides whether any does."""
    data_buffer = array.buffers()[2]
    if data_buffer is None:
        return _empty_for_null(array)
    end = int(np.frombuffer(array.buffers()[1], np.int32, count=len(array) + 1, offset=4 * array.offset)[-1])
    data = data_buffer.slice(0, end).to_pybytes()
    found = [char for char in specials if char.encode("utf-8") in data]
    if not found:
        return _empty_for_null(array)
    needs = pc.match_substring(array, found[0])
    for char in found[1:]:
        needs = pc.or_(needs, pc.match_substring(array, char))
    body = pc.replace_substring(array, '"', '""') if '"' in found else array
    quoted = pc.binary_join_element_wise('"', body, '"', "")
    return _empty_for_null(pc.if_else(needs, quoted, array))


def _column_texts(values: list[Any], specials: Sequence[str], numbers_plain: bool) -> pa.Array | None:
    """The cell texts of one column, or None when the column needs the Python path.

    The exact value types decide (as in the Python path): pyarrow would also accept, say,
    numpy scalars or ints in a float column, which the Python path spells differently or refuses.
    """
    types = set(map(type, values)) - {_NONE}
    if len(types) != 1:
        return None  # mixed, or every value None
    (kind,) = types
    if kind is not str and not numbers_plain:
        return None  # the delimiter can occur in a number: the Python path decides quoting
    if kind is float and not floats_agree():
        return None
    arrow_type = _ARROW_TYPES.get(kind)
    if arrow_type is None:
        return None
    try:
        array = pa.array(values, arrow_type)
    except (pa.ArrowException, OverflowError, UnicodeError, ValueError):
        return None  # ints beyond int64, lone surrogates
    if kind is str:
        return _string_texts(array, specials)
    if kind is float:
        return _float_texts(array, values)
    if kind is bool:
        return _empty_for_null(pc.if_else(array, "True", "False"))
    return _empty_for_null(pc.cast(array, pa.string()))


def kernel_lines(
    columns: Sequence[list[Any]],
    delimiter: str,
    terminator: str,
    numbers_plain: bool,
    python_column: Callable[[int], list[str]],
) -> Packed:
    """All rows' CSV lines (terminator included) as one UTF-8 :class:`Packed` buffer.

    Args:
        columns: each column's values, one list per column, all the same length (at least two
            columns: a single column's empty cell is spelled ``""``, which only the Python
            path does).
        delimiter, terminator: as configured.
        numbers_plain: numbers can never need quoting with this delimiter.
        python_column: the Python path's quoted cell texts for column ``i``; called for every
            column the kernels do not handle. It raises ``UnencodableRow`` for a bad value.
    """
    specials = (delimiter, '"', "\r", "\n")
    texts = []
    for index, values in enumerate(columns):
        column = _column_texts(values, specials, numbers_plain)
        texts.append(column if column is not None else pa.array(python_column(index), pa.string()))
    parts: list[Any] = []
    for column in texts:
        parts += (column, delimiter)
    parts[-1] = terminator
    lines = pc.binary_join_element_wise(*parts, "")
    if lines.null_count:
        raise ValueError("csv kernels: a cell stayed null")  # never: every column had nulls filled
    _, offsets_buffer, data_buffer = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(lines) + 1, offset=4 * lines.offset)
    start, end = int(offsets[0]), int(offsets[-1])
    data = data_buffer.slice(start, end - start).to_pybytes() if data_buffer is not None else b""
    return Packed(data, (offsets - start).tolist())
