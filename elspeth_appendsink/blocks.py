"""Block planning: cut a batch of encoded rows into blocks of whole rows under the size limit.

Pure functions, no I/O. A block never splits a row (invariant 2, "never torn"), never exceeds
the limit, and is never empty (Azure refuses an empty append). A single row larger than the
limit is refused with :class:`~elspeth_appendsink.errors.RowTooLarge` before anything is sent.
The format header, written once at the very start of the output, travels in the first block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from elspeth_appendsink.errors import RowTooLarge

__all__ = ["MAX_BLOCK_SIZE", "MAX_SEGMENT_BLOCKS", "BlockPlan", "needs_rollover", "plan_blocks"]

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


def plan_blocks(sizes: Sequence[int], limit: int, header_size: int = 0) -> list[BlockPlan]:
    """Greedy plan: fill each block with as many whole rows as fit within ``limit``.

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
    plans: list[BlockPlan] = []
    start = 0
    used = header_size
    with_header = header_size > 0
    if with_header and sizes and header_size + sizes[0] > limit:
        plans.append(BlockPlan(0, 0, True, header_size))
        used, with_header = 0, False
    for index, size in enumerate(sizes):
        if used + size > limit and index > start:
            plans.append(BlockPlan(start, index, with_header, used))
            start, used, with_header = index, 0, False
        used += size
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
