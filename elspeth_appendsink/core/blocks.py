"""Block planning: cut encoded rows into blocks of whole rows under the size limit.

Pure code, no I/O. :class:`BlockCutter` plans as rows stream in, slice by slice (what the writer
uses); :func:`plan_blocks` is the same plan for one batch whose row sizes are all known. A block
never splits a row (invariant 2, "never torn"), never exceeds the limit, and is never empty
(Azure refuses an empty append). A single row larger than the limit is refused with
:class:`~elspeth_appendsink.errors.RowTooLarge` before anything is sent. The format header,
written once at the very start of the output, travels in the first block.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from elspeth_appendsink.errors import RowTooLarge

__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_SEGMENT_BLOCKS",
    "BlockCutter",
    "BlockPlan",
    "needs_rollover",
    "plan_blocks",
]

#: Largest append Azure accepts (API version 2022-11-02 and later).
MAX_BLOCK_SIZE = 100 * 1024 * 1024
#: Committed blocks an append blob can hold.
MAX_SEGMENT_BLOCKS = 50_000


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """Rows ``[start, end)`` of the batch, plus whether the format header leads the block."""

    start: int
    end: int
    with_header: bool
    size: int  # planned size in bytes (exact for CSV/JSONL, an estimate for Arrow)


class BlockCutter:
    """Greedy block planning over rows that arrive a slice at a time; a block may span slices.

    Each block takes as many whole rows as fit within ``limit`` after what it already holds
    (the format header, for the output's first block). :meth:`feed` takes one slice's row
    offsets and says where the current block stops taking rows of that slice.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: int, header_size: int = 0) -> None:
        self.limit = limit
        self.used = header_size  # bytes in the block being filled

    def feed(self, offsets: Sequence[int]) -> list[tuple[int, bool]]:
        """Cut points for one slice: ``(stop, full)`` pairs in order, the last with ``stop == n``.

        ``offsets`` are the slice's prefix sums (``offsets[0] == 0``, ``n + 1`` values for ``n``
        rows). Each pair means: the current block takes the slice's rows up to ``stop``; when
        ``full``, it is complete and the next block starts at ``stop`` (it may take no row of this
        slice at all: a header-only first block). Prefix sums and a bisection per block, so the
        cost is per block, not per row.

        Raises:
            RowTooLarge: a row is larger than ``limit`` (``row_index`` within the slice).
        """
        cuts: list[tuple[int, bool]] = []
        i, n = 0, len(offsets) - 1
        while i < n:
            j = bisect_right(offsets, offsets[i] + self.limit - self.used, i) - 1
            if j > i:
                self.used += offsets[j] - offsets[i]
                i = j
            elif self.used == 0:
                raise RowTooLarge(
                    f"encoded row is {offsets[i + 1] - offsets[i]} bytes, larger than the block limit "
                    f"of {self.limit} bytes",
                    row_index=i,
                    hint="raise block_size (up to 100MiB) or shrink the row",
                )
            if i < n:  # row i does not fit: the block is complete
                cuts.append((i, True))
                self.used = 0
        cuts.append((n, False))
        return cuts


def plan_blocks(sizes: Sequence[int], limit: int, header_size: int = 0) -> list[BlockPlan]:
    """The whole plan for one batch: fill each block with as many whole rows as fit within ``limit``.

    ``sizes`` are the encoded sizes of the rows, in order. ``header_size`` > 0 means this batch
    starts the output, so the first block carries the header (alone, if header plus the first
    row would not fit). Raises :class:`RowTooLarge` for any row (or a header) bigger than ``limit``.
    """
    for index, size in enumerate(sizes):
        if size > limit:
            raise RowTooLarge(
                f"encoded row is {size} bytes, larger than the block limit of {limit} bytes",
                row_index=index,
                hint="raise block_size (up to 100MiB) or shrink the row",
            )
    if header_size > limit:
        raise RowTooLarge(
            f"the format header is {header_size} bytes, larger than the block limit of {limit} bytes",
            hint="raise block_size (up to 100MiB) or use fewer/shorter columns",
        )
    offsets = list(accumulate(sizes, initial=0))
    plans: list[BlockPlan] = []
    start, with_header, used = 0, header_size > 0, header_size
    for stop, full in BlockCutter(limit, header_size).feed(offsets):
        used += offsets[stop] - offsets[start]
        if full:
            plans.append(BlockPlan(start, stop, with_header, used))
            start, with_header, used = stop, False, 0
    if start < len(sizes) or with_header:
        plans.append(BlockPlan(start, len(sizes), with_header, used))
    return plans


def needs_rollover(
    blocks_in_segment: int, segment_length: int, block_size: int, max_blocks: int, max_bytes: int | None
) -> bool:
    """True when the next block would break the segment's block-count or byte cap."""
    if blocks_in_segment >= max_blocks:
        return True
    return max_bytes is not None and segment_length > 0 and segment_length + block_size > max_bytes
