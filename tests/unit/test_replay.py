"""The re-delivery decision (core.replay): the landscape rule, and the manifest rule it falls back to."""

from __future__ import annotations

import pytest

from elspeth_appendsink.core.replay import decide_replay

D = 8


def digests(*names: str) -> bytes:
    """Packed 8-byte digests; equal names are byte-equal rows."""
    return b"".join(n.encode().ljust(D, b".")[:D] for n in names)


def decide(committed: list[str], delivered: list[str], pending: int | None) -> tuple[int, bool, str]:
    size = len(committed)
    head = digests(*delivered[:size])
    d = decide_replay(digests(*committed), head, len(delivered), D, pending)
    return d.skip, d.same_call, d.rule


COMMITTED = ["a", "b", "c"]


def test_pending_zero_means_the_rows_are_new_even_when_they_equal_the_committed_ones() -> None:
    """The ambiguous case: call N+1 = [a, b, c, d] died before its first intent, N = [a, b, c]
    was fully recorded. The manifest rule takes [a, b, c] for N's rows; the landscape says no."""
    assert decide(COMMITTED, ["a", "b", "c", "d"], None) == (3, True, "manifest")
    assert decide(COMMITTED, ["a", "b", "c", "d"], 0) == (0, False, "landscape")


def test_pending_zero_with_a_call_that_equals_the_committed_tail() -> None:
    """N+1 = [b, c] equals N's tail: the manifest rule skips both (lost), the landscape none."""
    assert decide(COMMITTED, ["b", "c"], None) == (2, True, "manifest")
    assert decide(COMMITTED, ["b", "c"], 0) == (0, False, "landscape")


def test_pending_all_skips_every_committed_row() -> None:
    """Crash during the write: nothing recorded, the call comes back whole (plus later rows)."""
    assert decide(COMMITTED, ["a", "b", "c", "x"], 3) == (3, True, "landscape")
    assert decide(COMMITTED, ["a", "b", "c"], 3) == (3, True, "landscape")


def test_pending_tail_skips_exactly_the_unrecorded_rows() -> None:
    """Crash after one outcome was recorded: [b, c] are durable but unrecorded; the re-delivered
    call may carry later rows too (the manifest rule cannot see a tail followed by more rows)."""
    assert decide(COMMITTED, ["b", "c", "x", "y"], 2) == (2, True, "landscape")
    assert decide(COMMITTED, ["b", "c", "x", "y"], None) == (0, False, "manifest")
    assert decide(COMMITTED, ["c"], 1) == (1, True, "landscape")


def test_pending_tail_with_a_shorter_call_skips_what_it_has() -> None:
    assert decide(COMMITTED, ["b"], 2) == (1, True, "landscape")


@pytest.mark.parametrize("pending", [4, -1])
def test_a_count_outside_the_call_falls_back_to_the_manifest_rule(pending: int) -> None:
    """The landscape disagrees with the manifest (more unrecorded rows than the call committed,
    or more outcomes than rows): today's rule decides, and says why."""
    size = len(COMMITTED)
    d = decide_replay(digests(*COMMITTED), digests("a", "b", "c"), 4, D, pending)
    assert (d.skip, d.same_call, d.rule, d.pending) == (size, True, "manifest", pending)
    assert "disagrees" in d.reason


def test_a_count_the_bytes_contradict_falls_back_to_the_manifest_rule() -> None:
    d = decide_replay(digests(*COMMITTED), digests("x", "y", "z"), 3, D, 2)
    assert (d.skip, d.same_call, d.rule) == (0, False, "manifest")
    assert "does not start with the last committed rows" in d.reason


def test_nothing_committed() -> None:
    """The interrupted call's intents were all voided: it is re-delivered whole, nothing to skip."""
    assert decide([], ["a"], 0) == (0, True, "landscape")
    assert decide([], ["a"], None) == (0, True, "manifest")


def test_facts_name_the_rule_and_the_counts() -> None:
    d = decide_replay(digests(*COMMITTED), digests("b", "c"), 2, D, 0)
    assert d.facts() == {
        "scope": "landscape",
        "call_committed_rows": 3,
        "landscape_pending_rows": 0,
        "same_call": False,
        "reason": d.reason,
        "manifest_rule_skip": 2,  # the manifest rule alone would have taken [b, c] for durable rows
    }
    assert decide_replay(digests(*COMMITTED), digests("b", "c"), 2, D, None).facts()["scope"] == "manifest"
