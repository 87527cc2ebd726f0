"""``elspeth-appendsink runs``: where each ELSPETH run of an output stands, and what may be done.

It joins two views of a run: ELSPETH's (the landscape's ``runs`` status and whether a
``checkpoints`` row exists) and the sink's own (the run's manifest, read by
:func:`~elspeth_appendsink.protocol.verify.inspect_output`: entries, cursor, an unfinished step;
the lease of the segment it wrote last and the last time anything of the run was written). The
decisions are pure (:mod:`elspeth_appendsink.core.run_recovery`): a ``running`` run may be marked
``failed`` only when its writer is provably gone — its lease is not held and nothing of the run
was written for longer than ``lease_duration`` — and then resumed (checkpoint present) or re-run
with ``if_exists: continue`` (none). Marking goes through ELSPETH's own
``LandscapeRecorder.complete_run`` (so it needs ELSPETH importable); nothing here writes SQL.
The landscape is read read-only through SQLAlchemy (:mod:`.landscape`: sqlite, PostgreSQL, and
sqlcipher where ELSPETH is installed), so the report works without ELSPETH. Every action is
printed, and repeating it changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast, get_args

from elspeth_appendsink.core.run_recovery import LeaseFacts, LeaseState, WriterVerdict, next_step, writer_gone
from elspeth_appendsink.protocol.verify import InspectReport, RunReport, inspect_output
from elspeth_appendsink.storage.base import Store
from elspeth_appendsink.tools.landscape import (
    LandscapeError,
    LandscapeRun,
    display_url,
    engine_url,
    open_landscape,
)

__all__ = [
    "LandscapeError",
    "LandscapeRun",
    "RunState",
    "mark_failed",
    "mark_if_gone",
    "read_landscape",
    "survey",
]


@dataclass(frozen=True, slots=True)
class RunState:
    """One run of the output: ELSPETH's status, the sink's state and the next step."""

    landscape: LandscapeRun
    sink: RunReport | None  # None: the output holds no manifest of this run
    lease_state: str | None
    lease_holder: str | None
    last_write: datetime | None
    verdict: WriterVerdict | None
    step: str
    reason: str


def read_landscape(
    url: str, run_id: str | None = None, *, passphrase: str | None = None
) -> list[LandscapeRun]:
    """The runs the landscape holds (or the one asked for), oldest first; read-only."""
    with open_landscape(url, passphrase=passphrase) as landscape:
        return landscape.runs(run_id)


def _last_write(store: Store, names: Sequence[str]) -> datetime | None:
    stamps = [info.last_modified for name in names if (info := store.properties(name)) and info.last_modified]
    return max(stamps) if stamps else None


def survey(
    store: Store,
    blob_path: str,
    runs: Sequence[LandscapeRun],
    *,
    lease_duration: timedelta,
    now: datetime | None = None,
    report: InspectReport | None = None,
) -> list[RunState]:
    """Each landscape run joined with what the output's manifests and leases say about it
    (``report``: the output's inspection, when the caller has it already)."""
    report = report if report is not None else inspect_output(store, blob_path)
    by_run = {r.run_id: r for r in report.runs}
    clock = now or datetime.now(UTC)
    states = []
    for run in runs:
        sink = by_run.get(run.run_id)
        lease_state = holder = None
        last = None
        verdict = None
        if sink is not None:
            segment = next((s for s in report.segments if s.index == sink.last_segment), None)
            if segment is not None:
                lease_state, holder = segment.lease_state, segment.lease_holder
            last = _last_write(store, [sink.manifest, *([segment.name] if segment else [])])
            known = lease_state in get_args(LeaseState)
            facts = LeaseFacts(
                state=cast(LeaseState, lease_state if known else "available"),
                holder=f"run {holder}" if holder else None,
                last_renewal=last,
                lease_duration=lease_duration,
            )
            verdict = writer_gone(facts, clock)
        step, reason = next_step(run.status, run.checkpoints > 0, verdict)
        if sink is None and run.status == "running":
            step, reason = "refuse", "the output holds no manifest of this run: the sink cannot vouch for it"
        states.append(RunState(run, sink, lease_state, holder, last, verdict, step, reason))
    return states


def mark_failed(url: str, run_id: str, *, passphrase: str | None = None) -> str:
    """Mark ``run_id`` failed through ELSPETH's recorder; the sentence saying what was done."""
    try:
        from elspeth.contracts.enums import RunStatus
        from elspeth.core.landscape.database import LandscapeDB
        from elspeth.core.landscape.recorder import LandscapeRecorder
    except ImportError:
        raise LandscapeError(
            "marking a run failed writes ELSPETH's audit trail through ELSPETH's own recorder, and "
            "ELSPETH is not importable here (it needs Python >= 3.12): run this command from "
            "ELSPETH's environment. Nothing was changed."
        ) from None
    target = engine_url(url)  # the same driver the reads used; a bad URL was refused by them already
    try:
        db = LandscapeDB.from_url(target, passphrase=passphrase, create_tables=False)
    except Exception as exc:  # ELSPETH's constructor raises the driver's errors as they come
        raise LandscapeError(
            f"--landscape: ELSPETH cannot open {display_url(target)} to mark run {run_id} failed "
            f"({type(exc).__name__}). Nothing was changed."
        ) from None
    try:
        LandscapeRecorder(db).complete_run(run_id, RunStatus.FAILED)
    finally:
        db.close()
    return f"marked run {run_id} failed (ELSPETH LandscapeRecorder.complete_run, status failed)"


def mark_if_gone(url: str, state: RunState, *, passphrase: str | None = None) -> tuple[bool, str]:
    """Mark ``state``'s run failed if it is ``running`` and its writer provably gone.

    Returns ``(refused, action)``: ``refused`` when the run is running and its writer may be alive
    (nothing is changed); ``action`` says what was done, or why nothing was. A run that is not
    ``running`` is left as it is, so a repeated call changes nothing more.
    """
    run = state.landscape
    if run.status != "running":
        return False, f"run {run.run_id} is {run.status}: nothing to mark"
    if state.step in ("mark-failed-then-resume", "re-run-continue"):
        return False, mark_failed(url, run.run_id, passphrase=passphrase)
    return True, f"refused to mark run {run.run_id} failed: {state.reason}"
