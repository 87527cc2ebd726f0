"""Block planning: whole rows only, never over the limit, nothing lost or reordered; the rollover decision."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from elspeth_appendsink.core.blocks import BlockCutter, BlockPlan, needs_rollover, plan_blocks
from elspeth_appendsink.errors import RowTooLarge


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[int], int, int]:
    """Row sizes up to the limit (exact fits included), a limit, and a header that fits alone (or none)."""
    limit = draw(st.integers(1, 500))
    sizes = draw(st.lists(st.integers(1, limit) | st.just(limit), max_size=40))
    header = draw(st.just(0) | st.integers(1, limit))
    return sizes, limit, header


def rows_of(sizes: list[int], plans: list[BlockPlan]) -> list[list[int]]:
    return [sizes[p.start : p.end] for p in plans]


class TestPlanBlocks:
    @given(batches())
    def test_blocks_concatenate_back_to_the_batch_in_order(self, batch: tuple[list[int], int, int]) -> None:
        """Blocks are contiguous, in order, and cover every row exactly once."""
        sizes, limit, header = batch
        plans = plan_blocks(sizes, limit, header)
        position = 0
        for plan in plans:
            assert plan.start == position
            position = plan.end
        assert position == len(sizes)
        assert [s for block in rows_of(sizes, plans) for s in block] == sizes

    @given(batches())
    def test_no_block_exceeds_the_limit(self, batch: tuple[list[int], int, int]) -> None:
        """Each planned block, header included, is at most ``limit`` bytes, and its size is exact."""
        sizes, limit, header = batch
        for plan in plan_blocks(sizes, limit, header):
            assert plan.size == sum(sizes[plan.start : plan.end]) + (header if plan.with_header else 0)
            assert plan.size <= limit

    @given(batches())
    def test_no_block_is_empty_except_a_header_that_travels_alone(
        self, batch: tuple[list[int], int, int]
    ) -> None:
        """A block holds at least one whole row — or is the header alone, when header plus row won't fit."""
        sizes, limit, header = batch
        for plan in plan_blocks(sizes, limit, header):
            assert plan.end > plan.start or (plan.with_header and (not sizes or header + sizes[0] > limit))

    @given(batches())
    def test_the_header_leads_the_first_block_only_and_exactly_once(
        self, batch: tuple[list[int], int, int]
    ) -> None:
        """With a header, the first block carries it and no other does; without one, none does."""
        sizes, limit, header = batch
        plans = plan_blocks(sizes, limit, header)
        flags = [p.with_header for p in plans]
        if header:
            assert flags[:1] == [True] and not any(flags[1:])
        else:
            assert not any(flags)
            assert (plans == []) == (sizes == [])

    @given(batches())
    def test_blocks_are_filled_greedily(self, batch: tuple[list[int], int, int]) -> None:
        """A block is cut only when its next row would not fit (the fewest appends for the order)."""
        sizes, limit, header = batch
        plans = plan_blocks(sizes, limit, header)
        for plan, following in itertools.pairwise(plans):
            assert plan.size + sizes[following.start] > limit

    @given(batches(), st.data())
    def test_a_row_over_the_limit_is_refused_naming_it(
        self, batch: tuple[list[int], int, int], data: st.DataObject
    ) -> None:
        """Any row larger than the limit is refused before anything is planned, with its index."""
        sizes, limit, header = batch
        index = data.draw(st.integers(0, len(sizes)), label="where")
        big = data.draw(st.integers(limit + 1, limit * 3), label="size")
        oversized = [*sizes[:index], big, *sizes[index:]]
        with pytest.raises(RowTooLarge) as info:
            plan_blocks(oversized, limit, header)
        assert info.value.row_index == index
        assert f"block limit of {limit} bytes" in str(info.value)

    def test_a_header_that_does_not_fit_with_the_first_row_travels_alone(self) -> None:
        """Header 30 + row 80 > 100: the header is a block by itself, then the row."""
        assert plan_blocks([80, 20], 100, 30) == [
            BlockPlan(0, 0, True, 30),
            BlockPlan(0, 2, False, 100),
        ]

    def test_an_empty_batch_with_a_header_plans_the_header_only(self) -> None:
        """A header with no rows still makes one block (the output's start)."""
        assert plan_blocks([], 100, 7) == [BlockPlan(0, 0, True, 7)]

    def test_an_empty_batch_without_a_header_plans_nothing(self) -> None:
        """No rows, no header: no append at all (Azure refuses empty blocks)."""
        assert plan_blocks([], 100) == []

    @given(st.integers(1, 500), st.integers(1, 500))
    def test_a_header_larger_than_the_limit_is_refused(self, limit: int, excess: int) -> None:
        """A header that cannot fit any block is refused rather than planned over the limit."""
        with pytest.raises(RowTooLarge):
            plan_blocks([1], limit, limit + excess)


class TestNeedsRollover:
    @given(st.integers(0, 60_000), st.integers(0, 10**9), st.integers(1, 10**8), st.integers(1, 50_000))
    def test_the_block_count_cap_forces_a_rollover(
        self, blocks: int, length: int, size: int, cap: int
    ) -> None:
        """At or past ``max_blocks`` committed blocks the next block goes to a new segment."""
        assert needs_rollover(blocks, length, size, cap, None) == (blocks >= cap)

    @given(st.integers(0, 10), st.integers(0, 10**6), st.integers(1, 10**5), st.integers(1, 10**6))
    def test_the_byte_cap_forces_a_rollover_unless_the_segment_is_empty(
        self, blocks: int, length: int, size: int, cap: int
    ) -> None:
        """A non-empty segment rolls over when the next block would take it past ``max_bytes``."""
        assume(blocks < 50_000)
        expected = length > 0 and length + size > cap
        assert needs_rollover(blocks, length, size, 50_000, cap) == expected

    def test_an_empty_segment_takes_a_block_larger_than_the_byte_cap(self) -> None:
        """A fresh segment always accepts its first block, or a large block could never be placed."""
        assert needs_rollover(0, 0, 500, 10, 100) is False


class TestBlockCutter:
    @given(batches(), st.lists(st.integers(1, 15), max_size=10))
    def test_streaming_slices_cuts_where_the_whole_batch_plan_does(
        self, batch: tuple[list[int], int, int], slice_sizes: list[int]
    ) -> None:
        """Fed in arbitrary slices, the cutter ends blocks exactly where ``plan_blocks`` does."""
        sizes, limit, header = batch
        expected = [plan.end for plan in plan_blocks(sizes, limit, header)][:-1]
        cutter, found = BlockCutter(limit, header), []
        cuts = list(itertools.accumulate(slice_sizes, initial=0))
        bounds = [c for c in cuts if c < len(sizes)] + [len(sizes)]
        for start, stop in itertools.pairwise(bounds):
            offsets = list(itertools.accumulate(sizes[start:stop], initial=0))
            found += [start + cut for cut, full in cutter.feed(offsets) if full]
        if len(bounds) == 1:  # an empty batch: nothing fed
            found = []
        assert found == expected

    def test_a_row_over_the_limit_is_refused_with_its_index_in_the_slice(self) -> None:
        """The cutter cannot place a row larger than the limit: RowTooLarge names it."""
        with pytest.raises(RowTooLarge) as info:
            BlockCutter(100).feed([0, 60, 120, 290])
        assert info.value.row_index == 2
