"""JSON Lines output: one RFC 8259 JSON object per row, each line ending with ``\\n``.

Owns :class:`JsonlEncoder`, :func:`restore`, and helpers the Arrow encoder reuses:
:func:`json_value` / :func:`json_value_error`, :func:`json_fingerprint` / :func:`check_fingerprint`.

Bytes are what ``orjson.dumps(row, option=OPT_APPEND_NEWLINE)`` writes: UTF-8, compact, keys in
row order, non-ASCII unescaped, control characters escaped. Some floats are spelled differently
from ``json.dumps`` (``0.00001`` for ``1e-05``; both valid JSON). That spelling is not part of
orjson's API, so :meth:`JsonlEncoder.describe` records a fingerprint of it and :func:`restore`
refuses (``RecoveryError``) an orjson that would spell the rows of an open output differently.

=========================  ==========================================================
value                      JSON
=========================  ==========================================================
``None``                   ``null``
str / int / float / bool   string / number / number / ``true`` ``false``
dict / list / tuple        object / array (nested values follow this table)
datetime / date / time     ``isoformat()`` string
NaN, +-Infinity            :class:`~elspeth_appendsink.errors.UnencodableRow` (JSON has
                           no such numbers; orjson would silently write ``null``)
int < -2**63 or >= 2**64   ``UnencodableRow`` (orjson's range)
Decimal, bytes, set, ...   ``UnencodableRow`` (no silent change of type or precision)
non-str dict key           ``UnencodableRow``
lone surrogate in text     ``UnencodableRow`` (not valid UTF-8)
UUID, Enum                 what orjson writes natively: the string / the member's value
=========================  ==========================================================

Columns: each line carries its own keys; the decided columns are recorded, and in ``fixed`` mode
a key outside them raises :class:`~elspeth_appendsink.errors.SchemaDriftError`. ``headers``
renames keys as ELSPETH's display headers do; renamed keys that collide raise ``UnencodableRow``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from itertools import accumulate, chain, compress, pairwise, repeat
from operator import add, is_
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from elspeth_appendsink.encoders.base import ContiguousRows, Packed, Row
from elspeth_appendsink.encoders.csv import reject_undeclared
from elspeth_appendsink.errors import (
    ConfigError,
    InvariantViolation,
    ManifestCorruptError,
    RecoveryError,
    UnencodableRow,
)

__all__ = [
    "JsonlEncoder",
    "check_fingerprint",
    "json_fingerprint",
    "json_value",
    "json_value_error",
    "restore",
]

_VALUE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
if TYPE_CHECKING:
    from elspeth_appendsink.core.manifest import BlockEntry

_MODES = ("fixed", "flexible", "observed")
#: the description version new outputs are written with (2: key-order-free content identity)
_VERSION = 2
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NULL_WORD = int.from_bytes(b"null", "little")
_PROBE = [0.1, 1e-05, 1e-07, 1e16, 1e22, 1.5e300, 5e-324, -0.0, 123456789.125, 2.0**70, 1 / 3,
          "\x00\x1f\u2028\x7f\"\\/é", date(2024, 1, 2), 2**64 - 1]  # fmt: skip


def _default(value: Any) -> Any:
    """orjson's hook for types it does not write itself: datetimes become ISO strings."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _has_nonfinite(value: Any) -> bool:
    """True when ``value`` is, or contains, a NaN or infinite float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_has_nonfinite, value.values()))
    if isinstance(value, list | tuple):
        return any(map(_has_nonfinite, value))
    return False


def _rows_holding_null(packed: Packed) -> tuple[list[int], int]:
    """The indices of the rows whose text holds ``null`` anywhere, in order, and how many times
    ``null`` occurs in all (it cannot overlap itself, so every occurrence is counted once).

    The text is compared four bytes at a time, as little-endian words, once per byte alignment:
    four vectorised passes over the slice instead of a substring search per row (about 0.18 s
    against 0.42 s per million rows of ~300 bytes). Its fixed cost is about 20 us per call, so
    below ~150 rows a search per row would be quicker, by microseconds; one path is kept. A
    match never spans two rows, because every line is one JSON object: it starts with ``{`` and
    ends with ``}\\n``.
    """
    data = np.frombuffer(packed.data, dtype=np.uint8)
    found = []
    for shift in range(4):
        count = (len(data) - shift) // 4
        if count > 0:
            hits = np.flatnonzero(data[shift : shift + 4 * count].view("<u4") == _NULL_WORD)
            if len(hits):
                found.append(hits * 4 + shift)
    if not found:
        return [], 0
    starts = np.concatenate(found)
    rows = np.searchsorted(np.asarray(packed.offsets), starts, side="right") - 1
    holding = np.zeros(len(packed), dtype=bool)
    holding[rows] = True
    indices: list[int] = np.flatnonzero(holding).tolist()
    return indices, len(starts)


def _may_hold_nonfinite(rows: Sequence[dict[str, Any]]) -> bool:
    """False when no value of ``rows`` can be NaN or infinite (one C-level pass over all values).

    Only str, int, bool and None values, plus floats whose sum is finite, rule it out. A NaN
    or infinity always makes the sum non-finite; an overflowing sum only costs a precise check.
    """
    values = list(chain.from_iterable(map(dict.values, rows)))  # (rows are dicts by now)
    types = list(map(type, values))  # once, for the set and the filter: ~11 % faster
    kinds = set(types)
    if not kinds <= _SCALARS:
        return True
    if float not in kinds:
        return False
    return not math.isfinite(sum(compress(values, map(is_, types, repeat(float)))))


def json_fingerprint() -> str:
    """A digest of how the installed orjson spells a set of tricky values.

    Output bytes must not change while an output is open. Resume recognises rows already
    written by their encoded bytes. orjson's float spelling (3.13 writes ``0.00001`` and
    ``1e-7``) is not part of its API and may change between releases. So
    :meth:`JsonlEncoder.describe` records this digest, and :func:`restore` refuses an orjson
    that spells differently.
    """
    return hashlib.sha256(orjson.dumps(_PROBE, default=_default, option=_VALUE_OPTIONS)).hexdigest()[:16]


def check_fingerprint(described: Mapping[str, Any]) -> None:
    """Raise ``RecoveryError`` when this orjson would write other bytes than the one recorded."""
    if described["json_fingerprint"] != json_fingerprint():
        raise RecoveryError(
            f"this output was written with orjson {described.get('orjson')}, whose JSON spelling differs "
            f"from the installed orjson {orjson.__version__}; resuming would change row bytes and "
            "could duplicate rows",
            hint=f"install orjson=={described.get('orjson')} to resume this run",
        )


def json_value(value: Any) -> bytes:
    """One value as compact JSON, by the table above; call :func:`json_value_error` first."""
    return orjson.dumps(value, default=_default, option=_VALUE_OPTIONS)


def json_value_error(value: Any) -> str | None:
    """Why ``value`` cannot be written as JSON by this package, or ``None`` when it can."""
    try:
        json_value(value)
    except orjson.JSONEncodeError as exc:
        return f"a value of type {type(value).__name__} cannot be written as JSON ({exc})"
    if _has_nonfinite(value):
        return "NaN and Infinity have no JSON representation"
    return None


class JsonlEncoder(ContiguousRows):
    """JSON Lines, one object per row. See the module docstring for the exact bytes.

    A row's content identity (without ``identity_fields``) is its line with the object's keys
    sorted (version 2), so the same row handed with its keys in another order is recognised;
    outputs begun by version 1 keep its rule, the line's bytes as written.

    Args:
        columns: the decided columns (recorded; enforced only in ``fixed`` mode).
        mode: the schema mode the columns were decided under.
        headers: optional field -> display name; renames keys on output.
        version: the recorded description's version (1: identity is the line as written).
    """

    name = "jsonl"
    __slots__ = ("_allowed", "_rename", "columns", "headers", "mode", "version")

    def __init__(
        self,
        columns: Sequence[str],
        *,
        mode: str,
        headers: Mapping[str, str] | None = None,
        version: int = _VERSION,
    ) -> None:
        self.version = version
        if mode not in _MODES:
            raise ConfigError("schema.mode", f"must be one of {', '.join(_MODES)}, got {mode!r}")
        self.columns = tuple(columns)
        self.mode = mode
        self.headers = dict(headers or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ConfigError("headers", "field and display names must be strings")
        self._rename = {k: v for k, v in self.headers.items() if k != v}
        self._allowed = frozenset(self.columns) if mode == "fixed" else None

    def header(self) -> bytes:
        """JSONL has no header."""
        return b""

    def encode(self, rows: Sequence[Row]) -> list[bytes]:
        """One ``bytes`` per row: its JSON object and a ``\\n``."""
        return self.encode_packed(rows).rows()

    def encode_packed(self, rows: Sequence[Row]) -> Packed:
        """Every row's JSON object and ``\\n``, back to back in one buffer."""
        if not rows:
            return Packed(b"", [0])
        if self._allowed is not None:
            reject_undeclared(rows, self._allowed, self.columns)
        dicts: Sequence[dict[str, Any]]
        if set(map(type, rows)) == {dict}:
            dicts = cast("Sequence[dict[str, Any]]", rows)
        else:  # orjson writes dicts only; rows may be any Mapping
            dicts = [row if isinstance(row, dict) else dict(row) for row in rows]
        source = self._renamed(dicts) if self._rename else dicts
        try:
            # orjson hands back each row in an allocation of at least 4 KiB (a fresh page): a
            # slice of 3,000 rows kept as orjson returned them touches 12 MiB. Adding the newline
            # copies the row into a right-sized object and frees orjson's buffer for the next
            # row: the bytes OPT_APPEND_NEWLINE writes, 2.9x faster in 10k-row calls (1M rows:
            # 1.17 -> 0.41 s, 986k -> 51k page faults).
            dumped = map(orjson.dumps, source, repeat(_default), repeat(_VALUE_OPTIONS))
            packed = Packed.join(list(map(add, dumped, repeat(b"\n"))))
        except orjson.JSONEncodeError:
            self._raise_first_error(source)
            raise
        # orjson writes NaN/Infinity as null: only rows whose text holds "null" can hide one.
        suspects, nulls = _rows_holding_null(packed)
        if suspects:
            held = [source[index] for index in suspects]
            # Each null in the text is a None (at any depth), a non-finite float, or part of a
            # string. When the rows' own None values account for every one, none is a float.
            nones = sum(map(is_, chain.from_iterable(map(dict.values, held)), repeat(None)))
            if nones != nulls and _may_hold_nonfinite(held):
                for index, row in zip(suspects, held, strict=True):
                    if _has_nonfinite(row):
                        self._raise_first_error(source, start=index)
        return packed

    def canonical(self, rows: Sequence[Row], encoded: Packed) -> Packed:
        """The rows' identity encodings: each line with its object's keys sorted (version 2)."""
        if self.version == 1:
            return encoded
        return Packed.join([_sorted_line(line) for line in encoded.rows()])

    def row_digests(self, entry: BlockEntry, block: bytes) -> bytes:
        """The packed content digests of the rows ending ``block`` (lengths from ``entry``)."""
        from elspeth_appendsink.core.identity import content_digests  # core imports encoders.base

        lengths = entry.row_lengths()
        if self.version == 1:
            return content_digests(block, lengths)
        start = len(block) - sum(lengths)
        lines = [block[a:b] for a, b in pairwise(accumulate(lengths, initial=start))]
        return content_digests(*_packed_sorted(lines))

    def describe(self) -> dict[str, Any]:
        """The frozen decisions, JSON-safe; :func:`restore` rebuilds the identical encoder."""
        return {
            "format": self.name,
            "version": self.version,
            "mode": self.mode,
            "columns": list(self.columns),
            "headers": dict(self.headers),
            "orjson": orjson.__version__,
            "json_fingerprint": json_fingerprint(),
        }

    # -- helpers -------------------------------------------------------------------------

    def _renamed(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        rename = self._rename
        renamed = [{rename.get(k, k): v for k, v in row.items()} for row in rows]
        for index, (before, after) in enumerate(zip(rows, renamed, strict=True)):
            if len(before) != len(after):
                targets = [rename.get(k, k) for k in before]
                clashing = sorted(
                    {str(k) for k, t in zip(before, targets, strict=True) if targets.count(t) > 1}
                )
                raise UnencodableRow(
                    f"display headers map two fields of this row to the same key ({', '.join(clashing)})",
                    row_index=index,
                    hint="fix the display-header mapping so that names stay unique",
                )
        return renamed

    def _raise_first_error(self, rows: Sequence[Row], start: int = 0) -> None:
        for index in range(start, len(rows)):
            for key, value in rows[index].items():
                if not isinstance(key, str):
                    raise UnencodableRow(
                        f"field name {key!r} is a {type(key).__name__}, JSON object keys must be strings",
                        row_index=index,
                    )
                problem = json_value_error(value)
                if problem is not None:
                    raise UnencodableRow(
                        f"field {key!r}: {problem}",
                        row_index=index,
                        hint="convert the value upstream (Decimal/bytes to str, NaN to null)",
                    )
        if start == 0:
            raise InvariantViolation("jsonl: orjson refused a batch but no single value failed")


def _sorted_line(line: bytes) -> bytes:
    """``line`` (one JSON object and ``\\n``) with its keys sorted, nested objects' too."""
    return orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS) + b"\n"


def _packed_sorted(lines: Sequence[bytes]) -> tuple[bytes, list[int]]:
    """The sorted forms of ``lines`` back to back, and their lengths (for ``content_digests``)."""
    canonical = [_sorted_line(line) for line in lines]
    return b"".join(canonical), [len(line) for line in canonical]


def restore(described: Mapping[str, Any]) -> JsonlEncoder:
    """Rebuild the encoder :meth:`JsonlEncoder.describe` described (same bytes for the same rows)."""
    try:
        version = described["version"]
        if described["format"] != JsonlEncoder.name or version not in (1, _VERSION):
            raise ManifestCorruptError(f"not a jsonl encoder description this version reads: {described!r}")
        check_fingerprint(described)
        return JsonlEncoder(
            described["columns"], mode=described["mode"], headers=described["headers"], version=version
        )
    except (KeyError, TypeError, ConfigError) as exc:
        raise ManifestCorruptError(f"jsonl encoder description is unusable: {exc}") from None
