"""Pure decisions for recovering a killed ELSPETH run of this sink (issue #12, item 2).

No I/O: the thin shells (the ``elspeth-appendsink`` tools, the launcher) gather the facts -- the
run's status from ELSPETH's landscape, whether a checkpoint exists, the blob's lease state and the
manifest's last renewal -- and ask these functions what may be done. :func:`recover_line` is
the one command line every message names for it (the launcher's ``recover``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "LAUNCHER",
    "RECOVER",
    "LeaseFacts",
    "LeaseState",
    "WriterVerdict",
    "next_step",
    "recover_line",
    "writer_gone",
]

LAUNCHER = "python -m elspeth_appendsink.elspeth"
RECOVER = "recover"


def recover_line(run_id: str, settings: str = "settings.yaml", global_options: Sequence[str] = ()) -> str:
    """The exact command line that recovers ``run_id`` (resume, or a re-run continuing its outputs)."""
    return shlex.join([*LAUNCHER.split(), *global_options, RECOVER, run_id, "-s", str(settings)])


LeaseState = Literal["available", "leased", "expired", "broken", "breaking"]


@dataclass(frozen=True)
class LeaseFacts:
    """What storage says about the output blob's lease and the writer's last sign of life."""

    state: LeaseState
    holder: str | None  # the lease id's owner as the manifest records it (never a secret)
    last_renewal: datetime | None  # last renewal / manifest record by the holder; None: never taken
    lease_duration: timedelta


@dataclass(frozen=True)
class WriterVerdict:
    gone: bool
    reason: str


def writer_gone(facts: LeaseFacts, now: datetime) -> WriterVerdict:
    """Whether the sink can *prove* no live writer holds the output.

    Gone only when the lease is not held (never taken, expired or broken) and nothing was renewed
    for longer than ``lease_duration``. A held lease, or a renewal within ``lease_duration``, means
    a writer may be alive: refuse, naming the holder.
    """
    holder = facts.holder or "an unknown holder"
    if facts.state in ("leased", "breaking"):
        return WriterVerdict(False, f"the output's lease is {facts.state}, held by {holder}")
    if facts.last_renewal is not None:
        quiet = now - facts.last_renewal
        if quiet <= facts.lease_duration:
            return WriterVerdict(
                False,
                f"{holder} renewed {quiet.total_seconds():.0f}s ago, within lease_duration "
                f"({facts.lease_duration.total_seconds():.0f}s)",
            )
        return WriterVerdict(
            True,
            f"lease {facts.state}; last renewal by {holder} {quiet.total_seconds():.0f}s ago, longer "
            f"than lease_duration ({facts.lease_duration.total_seconds():.0f}s)",
        )
    return WriterVerdict(True, f"lease {facts.state} and never renewed")


Step = Literal["nothing", "mark-failed-then-resume", "refuse", "resume", "re-run-continue"]


def next_step(status: str, has_checkpoint: bool, verdict: WriterVerdict | None) -> tuple[Step, str]:
    """What the operator (or the launcher) should do next with a run in ELSPETH ``status``."""
    if status == "completed":
        return "nothing", "the run completed"
    if status == "running":
        if verdict is None or not verdict.gone:
            why = verdict.reason if verdict is not None else "the writer's state is unknown"
            return "refuse", f"run is running and its writer may be alive: {why}"
        if has_checkpoint:
            return "mark-failed-then-resume", f"writer provably gone ({verdict.reason}); checkpoint present"
        return (
            "re-run-continue",
            f"writer provably gone ({verdict.reason}); no checkpoint: the launcher's recover "
            "continues the output in a new run",
        )
    if has_checkpoint:
        return "resume", f"run is {status}; checkpoint present"
    return "re-run-continue", (
        f"run is {status}; no checkpoint: the launcher's recover continues the output in a new run"
    )
