"""Decisions of core.run_recovery, with fake landscape / lease facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from elspeth_appendsink.core.run_recovery import LeaseFacts, next_step, writer_gone

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
D = timedelta(seconds=60)


def test_held_lease_refuses_naming_holder() -> None:
    v = writer_gone(LeaseFacts("leased", "writer-42", NOW - timedelta(hours=1), D), NOW)
    assert not v.gone and "writer-42" in v.reason
    step, why = next_step("running", True, v)
    assert step == "refuse" and "writer-42" in why


def test_recent_renewal_refuses_even_if_lease_not_held() -> None:
    v = writer_gone(LeaseFacts("expired", "w", NOW - timedelta(seconds=30), D), NOW)
    assert not v.gone


def test_expired_and_quiet_is_gone() -> None:
    v = writer_gone(LeaseFacts("expired", "w", NOW - timedelta(seconds=61), D), NOW)
    assert v.gone
    assert next_step("running", True, v)[0] == "mark-failed-then-resume"
    assert next_step("running", False, v)[0] == "re-run-continue"


def test_never_taken_is_gone() -> None:
    assert writer_gone(LeaseFacts("available", None, None, D), NOW).gone


def test_other_statuses() -> None:
    assert next_step("completed", True, None)[0] == "nothing"
    assert next_step("failed", True, None)[0] == "resume"
    assert next_step("failed", False, None)[0] == "re-run-continue"
    assert next_step("running", True, None)[0] == "refuse"
