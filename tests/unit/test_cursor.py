"""The writer's cursor: a value that only moves forward, and only by the steps storage confirmed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.core.cursor import Cursor
from elspeth_appendsink.core.manifest import GENESIS
from elspeth_appendsink.errors import InvariantViolation

START = Cursor(
    segment=0,
    offset=0,
    blocks=0,
    next_token=0,
    write_call=-1,
    manifest_length=0,
    next_seq=0,
    head=GENESIS,
    total_bytes=0,
)

records = st.tuples(
    st.just("record"), st.integers(1, 10_000), st.text("0123456789abcdef", min_size=64, max_size=64)
)
blocks = st.tuples(st.just("block"), st.integers(1, 10_000), st.integers(0, 500), st.booleans())
rollovers = st.tuples(st.just("next_segment"))
steps = st.lists(st.one_of(records, blocks, rollovers), max_size=40)


def apply(cursor: Cursor, step: tuple[object, ...]) -> Cursor:
    if step[0] == "record":
        _, length, digest = step
        return cursor.after_record(int(length), str(digest))  # type: ignore[call-overload]
    if step[0] == "block":
        _, length, rows, reported = step
        committed = cursor.blocks + 1 if reported else None  # the service's count, when it gives one
        return cursor.after_block(int(length), int(rows), committed)  # type: ignore[call-overload]
    return cursor.next_segment()


class TestCursor:
    @given(steps)
    def test_the_cursor_never_goes_backwards(self, script: list[tuple[object, ...]]) -> None:
        """Through any sequence of confirmed steps, every position only grows (segment, then offset)."""
        cursor = START
        for step in script:
            after = apply(cursor, step)
            assert (after.segment, after.offset) >= (cursor.segment, cursor.offset)
            assert after.next_token >= cursor.next_token
            assert after.total_bytes >= cursor.total_bytes
            assert after.manifest_length >= cursor.manifest_length
            assert after.next_seq >= cursor.next_seq
            assert after.segment > cursor.segment or after.blocks >= cursor.blocks
            cursor = after

    @given(steps)
    def test_totals_are_the_sums_of_the_confirmed_steps(self, script: list[tuple[object, ...]]) -> None:
        """Bytes, rows, records and manifest length add up exactly; the head is the last record's hash."""
        cursor = START
        for step in script:
            cursor = apply(cursor, step)
        data = [s for s in script if s[0] == "block"]
        recs = [s for s in script if s[0] == "record"]
        assert cursor.total_bytes == sum(int(s[1]) for s in data)  # type: ignore[call-overload]
        assert cursor.next_token == sum(int(s[2]) for s in data)  # type: ignore[call-overload]
        assert cursor.next_seq == len(recs)
        assert cursor.manifest_length == sum(int(s[1]) for s in recs)  # type: ignore[call-overload]
        assert cursor.head == (recs[-1][2] if recs else GENESIS)
        assert cursor.segment == sum(1 for s in script if s[0] == "next_segment")

    def test_a_new_segment_starts_empty(self) -> None:
        """After a rollover the cursor is at offset 0 of the next segment, with no blocks in it."""
        cursor = START.after_block(100, 3, 1).next_segment()
        assert (cursor.segment, cursor.offset, cursor.blocks) == (1, 0, 0)
        assert cursor.total_bytes == 100 and cursor.next_token == 3

    def test_a_block_count_going_backwards_is_our_bug(self) -> None:
        """If the service reports fewer committed blocks than we counted, the writer stops."""
        cursor = START.after_block(10, 1, 5)
        with pytest.raises(InvariantViolation, match="went backwards"):
            cursor.after_block(10, 1, 4)

    @pytest.mark.parametrize(
        "step",
        [
            lambda c: c.after_block(-1, 0, None),
            lambda c: c.after_block(10, -1, None),
            lambda c: c.after_record(-1, GENESIS),
        ],
        ids=["negative-block-length", "negative-rows", "negative-record-length"],
    )
    def test_a_negative_step_is_our_bug(self, step: object) -> None:
        """A step that would move any position backwards raises instead of moving the cursor."""
        cursor = START.after_block(100, 5, None).after_record(50, GENESIS)
        with pytest.raises(InvariantViolation):
            step(cursor)  # type: ignore[operator]

    def test_the_cursor_is_an_immutable_value(self) -> None:
        """Steps return new cursors; the old one is unchanged (safe to keep as a checkpoint)."""
        before = START
        after = before.after_block(10, 1, None)
        assert before == START and after != before
        with pytest.raises(AttributeError):
            before.offset = 5  # type: ignore[misc]
