"""The encoder contract: rows in, appendable bytes out, deterministic and restorable.

An encoder owns one output format. It is created once per output from the first batch of rows
(that is when column decisions are made), its decisions are frozen in the manifest through
:meth:`Encoder.describe`, and a resumed or continued run rebuilds an identical encoder with
``restore(described)`` so that the same rows always produce the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Encoder", "Row", "SchemaSpec"]

Row = Mapping[str, Any]


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
      For Arrow they are a canonical per-row encoding used for identity and size planning.
      A row that cannot be encoded raises :class:`~elspeth_appendsink.errors.RowError`
      (``row_index`` = its index in ``rows``) before anything is sent.
    * ``block(encoded, rows)`` returns the bytes of one block holding exactly those rows
      (``b"".join(encoded)`` for CSV/JSONL; one record batch for Arrow).
    * ``describe()`` returns JSON-safe decisions (columns, delimiter, encoding, ...) and
      ``restore`` (a module-level function per format) rebuilds the identical encoder.
    """

    name: str

    def header(self) -> bytes: ...

    def encode(self, rows: Sequence[Row]) -> list[bytes]: ...

    def block(self, encoded: Sequence[bytes], rows: Sequence[Row]) -> bytes: ...

    def describe(self) -> dict[str, Any]: ...
