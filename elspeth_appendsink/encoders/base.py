"""The encoder contract: rows in, appendable bytes out, deterministic and restorable.

An encoder owns one output format. It is created once per output from the first batch of rows
(that is when column decisions are made), its decisions are frozen in the manifest through
:meth:`Encoder.describe`, and a resumed or continued run rebuilds an identical encoder with
``restore(described)`` so that the same rows always produce the same bytes. The value types
rows travel in (:data:`Row`, :class:`Packed`, :data:`Part`) belong to the core
(:mod:`~elspeth_appendsink.core.rows`) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

from elspeth_appendsink.core.identity import content_digests
from elspeth_appendsink.core.manifest import BlockEntry
from elspeth_appendsink.core.rows import Packed, Part, Row

__all__ = ["Encoder", "Packed", "Part", "Row", "SchemaSpec"]


class SchemaSpec(Protocol):
    """**Protocol:** the part of an ELSPETH schema an encoder needs."""

    @property
    def mode(self) -> str:  # "fixed" | "flexible" | "observed"
        ...

    @property
    def field_names(self) -> tuple[str, ...]:  # declared fields, in order (empty when observed)
        ...


class Encoder(Protocol):
    """**Protocol:** one output format.

    * ``header()`` is written exactly once, at offset 0 of the whole output (CSV header line,
      Arrow IPC schema message; ``b""`` for JSONL).
    * ``encode(rows)`` returns one ``bytes`` per row, in order. For CSV and JSONL these are the
      row's exact output bytes (line terminator included), so blocks are plain concatenations.
      For Arrow they are a canonical per-row encoding that defines identity.
      A row that cannot be encoded raises :class:`~elspeth_appendsink.errors.RowError`
      (``row_index`` = its index in ``rows``) before anything is sent.
    * ``encode_packed(rows)`` is the form the writer uses, one :class:`Packed` buffer: for CSV
      and JSONL ``encode``'s bytes (produced without per-row objects where possible); for Arrow
      validated rows with estimated sizes and their record batch (placeholder bytes, nothing hashed).
    * ``block(encoded, rows)`` returns the bytes of one block holding exactly those rows.
      ``encoded`` is their encodings in order, several rows per item (:meth:`Packed.part`):
      the concatenation for CSV/JSONL; for Arrow one record batch, from the planned batch
      slices when ``encoded`` holds them, else built from ``rows``.
    * ``contiguous_rows`` says whether a block is exactly its rows' encodings back to back
      (after the header, if it carries one): true for CSV and JSONL, false for Arrow.
    * ``canonical(rows, encoded)`` returns the rows' canonical encodings, the bytes content
      identity digests (:mod:`~elspeth_appendsink.core.identity`): ``encoded`` itself for
      CSV/JSONL; for Arrow, ``encode(rows)`` packed (its ``encode_packed`` holds no per-row bytes).
    * ``derivable(encoded)`` says whether those rows' content digests can be recomputed from a
      block holding them (always for CSV/JSONL; for Arrow, unless a value reads back differently).
    * ``row_digests(entry, block)`` recomputes them at recovery: the packed content digests of
      the rows of ``entry`` from ``block``, its verified bytes (CSV/JSONL from the entry's row
      lengths, Arrow by decoding the record batch).
    * ``describe()`` returns JSON-safe decisions (columns, delimiter, encoding, ...) and
      ``restore`` (a module-level function per format) rebuilds the identical encoder.
    """

    name: str
    contiguous_rows: bool

    def header(self) -> bytes: ...

    def encode(self, rows: Sequence[Row]) -> list[bytes]: ...

    def encode_packed(self, rows: Sequence[Row]) -> Packed: ...

    def block(self, encoded: Sequence[Part], rows: Sequence[Row]) -> bytes: ...

    def canonical(self, rows: Sequence[Row], encoded: Packed) -> Packed: ...

    def derivable(self, encoded: Packed) -> bool: ...

    def row_digests(self, entry: BlockEntry, block: bytes) -> bytes: ...

    def describe(self) -> dict[str, Any]: ...


class ContiguousRows:
    """The part of :class:`Encoder` shared by formats whose block is its rows' bytes back to back
    (CSV, JSONL): ``block`` concatenates, a row's canonical encoding is its output bytes, and at
    recovery its identity digest follows from the block and the entry's row lengths."""

    __slots__ = ()

    contiguous_rows = True

    def block(self, encoded: Sequence[Part], rows: Sequence[Row]) -> bytes:
        """The block holding exactly these rows: the concatenation of their lines."""
        return b"".join(cast("Sequence[bytes | memoryview]", encoded))  # a line format's parts are bytes

    def canonical(self, rows: Sequence[Row], encoded: Packed) -> Packed:
        """The rows' canonical encodings: their output bytes, ``encoded`` itself."""
        return encoded

    def derivable(self, encoded: Packed) -> bool:
        """Always: a block holds its rows' bytes, so their digests follow from it and their lengths."""
        return True

    def row_digests(self, entry: BlockEntry, block: bytes) -> bytes:
        """The packed content digests of the rows of ``block`` (they end it; lengths from ``entry``)."""
        return content_digests(block, entry.row_lengths())
