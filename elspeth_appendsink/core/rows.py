"""The value types rows travel in: a row as the host hands it, and rows encoded back to back.

:data:`Row` is one row (a mapping of field name to value). :class:`Packed` is many encoded rows
in one buffer with their offsets: the writer's unit of work, what block planning cuts and what
content identities are computed from. :data:`Part` is what an encoder's ``block`` takes for some
consecutive rows. Pure values: the encoders (:mod:`elspeth_appendsink.encoders.base`) re-export them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import sub
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # only named in an annotation: the core never loads pyarrow
    import pyarrow as pa

__all__ = ["Packed", "Part", "Row"]

Row = Mapping[str, Any]
#: Some consecutive rows of a :class:`Packed`, as an encoder's ``block`` takes them: their bytes
#: for CSV and JSONL, the slice of the record batch built while planning for Arrow.
Part: TypeAlias = "bytes | memoryview | pa.RecordBatch"


@dataclass(frozen=True, slots=True)
class Packed:
    """Rows encoded back to back: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    The writer's unit of work. One buffer and a list of offsets instead of one ``bytes`` per
    row: a block is a single slice-and-join, row sizes are offset differences, and a million
    rows cost no million small objects. ``offsets[0]`` is 0 and ``offsets[-1] == len(data)``.
    """

    data: bytes
    offsets: list[int]

    @classmethod
    def join(cls, encoded: Sequence[bytes]) -> Packed:
        """Pack per-row encodings (copies them once, which also drops any over-allocation)."""
        return cls(b"".join(encoded), list(accumulate(map(len, encoded), initial=0)))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self) -> list[bytes]:
        """One ``bytes`` per row."""
        data, offsets = self.data, self.offsets
        return [data[start:end] for start, end in pairwise(offsets)]

    def span(self, start: int, stop: int) -> memoryview:
        """Rows ``start`` to ``stop - 1`` as one contiguous view (no copy)."""
        return memoryview(self.data)[self.offsets[start] : self.offsets[stop]]

    def part(self, start: int, stop: int) -> Part:
        """Rows ``start`` to ``stop - 1`` for an encoder's ``block``: here their :meth:`span`."""
        return self.span(start, stop)

    def lengths(self, start: int, stop: int) -> bytes:
        """The byte lengths of rows ``start`` to ``stop - 1``, 4 bytes big-endian each."""
        offsets = self.offsets
        return struct.pack(f">{stop - start}I", *map(sub, offsets[start + 1 : stop + 1], offsets[start:stop]))

    def select(self, keep: Sequence[int]) -> Packed:
        """Only the rows at the indices ``keep`` (ascending), packed anew."""
        data, offsets = self.data, self.offsets
        return Packed.join([data[offsets[i] : offsets[i + 1]] for i in keep])
