"""What ``elspeth-appendsink`` prints for people: reports, problems, segments, anchors, progress.

The commands in :mod:`.cli` decide and return exit codes; this module only renders their reports
(:class:`~elspeth_appendsink.protocol.verify.VerifyReport`, ``InspectReport``, the anchor
report) as text, through :class:`Out`, which redacts every line it writes. ``--json`` output is
the reports' ``as_dict``, written through :meth:`Out.json`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from elspeth_appendsink.core.redact import redact, redact_value
from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.protocol.verify import (
    InspectReport,
    Problem,
    RunReport,
    SegmentReport,
    UnverifiedBase,
    VerifyReport,
)
from elspeth_appendsink.tools.anchor import AnchorReport
from elspeth_appendsink.tools.fleet import FleetVerdict, OutputVerdict

__all__ = [
    "PROG",
    "Out",
    "ProgressBar",
    "isatty",
    "print_anchor",
    "print_fleet_line",
    "print_fleet_summary",
    "print_inspect",
    "print_verify",
]

PROG = "elspeth-appendsink"


class ProgressBar:
    """A one-line progress bar on a terminal stream; silent on anything that is not a TTY.

    It draws only once ``delay`` seconds have passed (short verifications stay quiet) and at most
    every ``interval`` seconds. Call it as ``bar(done, total)``; :meth:`close` erases the line.
    """

    def __init__(
        self,
        stream: TextIO,
        label: str = "verifying",
        *,
        enabled: bool | None = None,
        delay: float = 0.5,
        interval: float = 0.1,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.enabled = isatty(stream) if enabled is None else enabled
        self.delay = delay
        self.interval = interval
        self.width = width
        self.clock = clock
        self.started = clock()
        self.last = float("-inf")
        self.shown = 0  # characters on the line now

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.delay or (now - self.last < self.interval and done < total):
            return
        self.last = now
        fraction = 1.0 if total <= 0 else min(done / total, 1.0)
        filled = int(self.width * fraction)
        rate = done / max(now - self.started, 1e-9)
        line = (
            f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {fraction:4.0%}  "
            f"{_human(done)} / {_human(total)}  {_human(int(rate))}/s"
        )
        pad = max(self.shown - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self.shown = len(line)

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _bytes(size: int) -> str:
    return f"{size:,} bytes" if size < 1024 else f"{size:,} bytes ({_human(size)})"


class Out:
    """Everything printed goes through here, and through the redactor."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def line(self, text: str = "") -> None:
        self.stdout.write(redact(text) + "\n")

    def error(self, text: str) -> None:
        self.stderr.write(redact(text) + "\n")

    def json(self, value: Mapping[str, Any]) -> None:
        self.stdout.write(json.dumps(redact_value(dict(value)), indent=2, sort_keys=False) + "\n")


def _segment_range(run: RunReport) -> str:
    if run.first_segment is None or run.last_segment is None:
        return "-"
    if run.first_segment == run.last_segment:
        return f"segment {run.first_segment}"
    return f"segments {run.first_segment}-{run.last_segment}"


def print_problems(out: Out, problems: Sequence[Problem]) -> None:
    for number, problem in enumerate(problems, 1):
        out.line(f"  {number}. [{problem.kind}] {problem.location}")
        out.line(f"     {problem.message}")


def print_segments(out: Out, segments: Sequence[SegmentReport], *, leases: bool) -> None:
    out.line("Segments")
    based = any(s.base for s in segments)  # a column for the unverified base only where there is one
    header = f"  {'#':>3}  {'bytes':>12}  {'described':>12}  " + (f"{'base':>12}  " if based else "")
    out.line(header + f"{'entries':>7}  {'sealed':<6}" + ("  lease" if leases else "") + "  name")
    for s in segments:
        sealed = "yes" if s.sealed else "no"
        size = f"{s.size:,}" if s.exists else "missing"
        row = f"  {s.index:>3}  {size:>12}  {s.described:>12,}  " + (f"{s.base:>12,}  " if based else "")
        row += f"{s.entries:>7}  {sealed:<6}"
        if leases:
            state = s.lease_state or "-"
            if s.lease_holder:
                state += f" by run {s.lease_holder}"
            row += f"  {state}"
        out.line(f"{row}  {s.name}")


def print_resume(out: Out, runs: Sequence[RunReport]) -> None:
    for run in runs:
        if run.needs_resume:
            out.line(f"Resume needed: run {run.run_id}: {run.pending}.")
            out.line("  Recover it (from the run's directory, with its settings file):")
            out.line(f"    {recover_line(run.run_id)}")
            out.line("  It resumes the run if ELSPETH has a checkpoint, else continues this output in a new")
            out.line("  run; the sink settles the step and writes every row exactly once.")


def _base_line(base: UnverifiedBase) -> str:
    """What an unverified base is, and what was (not) checked of it."""
    checked = {
        True: f"their sha256 matches the one run {base.run_id} recorded",
        False: f"they do NOT match the sha256 run {base.run_id} recorded",
        None: "no sha256 was recorded for them" if base.sha256 is None else "verify checks their sha256",
    }[base.matches]
    who = (
        f"written by run {base.written_by} of this sink, whose manifest is missing"
        if base.written_by
        else "written by something else"
    )
    return (
        f"bytes [{base.offset}, {base.offset + base.length}) of {base.blob} were there before run "
        f"{base.run_id} appended to them ({who}): {checked}; no manifest entry describes them, so "
        "their rows are not counted and their content is not proven"
    )


def print_verify(out: Out, report: VerifyReport) -> None:
    out.line(f"Output   azure://{report.container}/{report.blob_path}")
    n = len(report.segments)
    base = report.base
    if report.ok and base is None:
        out.line(
            f"Verdict  VERIFIED: every byte of {n} segment{'s' * (n != 1)} is described by the manifests "
            "and matches its sha256"
        )
    elif report.ok and base is not None:
        out.line(
            f"Verdict  VERIFIED, except an unverified base of {base.length:,} bytes at offset {base.offset} "
            f"of {base.blob} written by something else: every other byte of {n} segment{'s' * (n != 1)} "
            "is described by the manifests and matches its sha256"
        )
    else:
        count = len(report.problems)
        out.line(f"Verdict  NOT VERIFIED: {count} problem{'s' * (count != 1)} found")
    if base is not None:
        out.line(f"Base     {_base_line(base)}")
    out.line(f"Rows     {report.rows:,}" + (" (written by this sink; not the base's)" if base else ""))
    out.line(f"Bytes    {_bytes(report.bytes)}")
    sealed = sum(1 for s in report.segments if s.sealed)
    out.line(f"Segments {n} ({sealed} sealed)")
    out.line(f"Runs     {len(report.runs)}: {', '.join(r.run_id for r in report.runs) or '-'}")
    out.line(f"SHA-256  {report.sha256}  (the whole output, all segments in order)")
    if report.problems:
        out.line("")
        out.line("Problems")
        print_problems(out, report.problems)
    if report.notes:
        out.line("")
        for note in report.notes:
            out.line(f"Note: {note}")
    if report.needs_resume:
        out.line("")
        print_resume(out, report.runs)
    out.line("")
    print_segments(out, report.segments, leases=False)
    out.line("")
    out.line("Runs (oldest first)")
    for run in report.runs:
        out.line(
            f"  {run.run_id}: {run.entries} entries, {run.rows:,} rows, {run.bytes:,} bytes, "
            f"{_segment_range(run)}, {'sealed' if run.sealed else 'not sealed'}"
            + (", NEEDS RESUME" if run.needs_resume else "")
        )


def print_inspect(out: Out, report: InspectReport) -> None:
    out.line(f"Output   azure://{report.container}/{report.blob_path}")
    if report.base is not None:
        out.line(f"Base     {_base_line(report.base)}")
    if not report.runs:
        out.line("Runs     none (no manifest describes this output)")
    for run in report.runs:
        out.line("")
        out.line(f"Run {run.run_id}")
        out.line(f"  manifest      {run.manifest} ({run.records} records)")
        if not run.readable:
            out.line("  state         unreadable manifest (see the problems below; run `verify`)")
            continue
        if run.created_at:
            out.line(f"  started       {run.created_at}")
        if run.continues:
            out.line(f"  continues     {', '.join(run.continues)}")
        out.line(f"  entries       {run.entries} committed, {run.voided} voided")
        out.line(f"  rows          {run.rows:,}")
        out.line(f"  bytes         {_bytes(run.bytes)} in {_segment_range(run)}")
        out.line(
            "  sealed        "
            + ("yes: the run completed and sealed its last segment" if run.sealed else "no")
        )
        cursor = run.cursor
        if cursor is not None:
            out.line(
                f"  cursor        segment {cursor.segment} at offset {cursor.offset:,}, next row "
                f"{cursor.next_token:,}, next manifest record {cursor.next_seq} "
                f"(manifest {cursor.manifest_length:,} bytes, head {cursor.head[:12]})"
            )
        if run.needs_resume:
            out.line(f"  resume        NEEDED: {run.pending}; recover it:")
            out.line(f"                {recover_line(run.run_id)}")
        else:
            detail = f" ({run.pending})" if run.pending else ""
            out.line(
                "  resume        not needed: the manifest ends at a completed step"
                + detail
                + ("" if run.sealed else "; if the pipeline did not finish, recover it:")
            )
            if not run.sealed:
                out.line(f"                {recover_line(run.run_id)}")
    out.line("")
    print_segments(out, report.segments, leases=True)
    leases = report.leases
    if leases:
        out.line("")
        for segment in leases:
            holder = (
                f"run {segment.lease_holder}"
                if segment.lease_holder
                else "a writer that is not a run of this output"
            )
            out.line(f"Lease: {segment.name} is {segment.lease_state}, held by {holder}.")
        out.line(
            "  A crashed writer's lease expires by itself (lease_duration, 60 s by default); "
            f"`{PROG} unlock` breaks it now."
        )
    if report.problems:
        out.line("")
        out.line("Problems (run `verify` for a full check)")
        print_problems(out, report.problems)
    for note in report.notes:
        out.line(f"Note: {note}")


# --------------------------------------------------------------------------------------------
# commands


def print_anchor(out: Out, anchor: AnchorReport) -> None:
    first = anchor.mismatch
    count = len(anchor.runs)
    if first is None:
        runs = f"{count} runs match" if count != 1 else "1 run matches"
        out.line(f"Anchor   ANCHORED: {runs} the artifacts ELSPETH recorded ({anchor.landscape})")
    else:
        call = "no write call ends there" if first.call is None else f"write call {first.call}"
        out.line(
            f"Anchor   NOT ANCHORED: the output does not match what ELSPETH recorded ({anchor.landscape})"
        )
        out.line(f"  run      {first.run_id}")
        out.line(f"  call     {call}")
        out.line(f"  offset   {first.offset:,} (in the whole output)")
        out.line(f"  expected {first.expected}")
        out.line(f"  found    {first.found}")
        out.line("  (expected: what ELSPETH recorded; found: what the output holds)")
    for run in anchor.runs:
        status = "unknown to the landscape" if run.status is None else f"ELSPETH {run.status}"
        nodes = f" of {', '.join(run.nodes)}" if run.nodes else ""
        out.line(f"  {run.run_id}: {status}, {run.artifacts} artifact(s){nodes}: {run.note}")


def print_fleet_line(out: Out, verdict: OutputVerdict) -> None:
    """One line per output of ``verify --prefix``: verdict, anchor, rows, bytes, runs, first problem."""
    report, anchor = verdict.report, verdict.anchor
    if report is None:
        out.line(f"ERROR         {verdict.blob_path}: {verdict.error}")
        return
    word = "VERIFIED" if report.ok else "NOT VERIFIED"
    if anchor is not None:
        word += ", ANCHORED" if anchor.ok else ", NOT ANCHORED"
    runs = len(report.runs)
    resume = f", {sum(r.needs_resume for r in report.runs)} need resume" if report.needs_resume else ""
    out.line(
        f"{'ok' if verdict.ok else 'FAILED':<6}  {verdict.blob_path}  {word}: {report.rows:,} rows, "
        f"{report.bytes:,} bytes, {runs} run{'s' * (runs != 1)}{resume}"
    )
    if report.problems:
        out.line(
            f"        {report.problems[0]}"
            + (f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else "")
        )
    if anchor is not None and anchor.mismatch is not None:
        first = anchor.mismatch
        out.line(
            f"        run {first.run_id} at offset {first.offset:,}: "
            f"expected {first.expected}; found {first.found}"
        )


def print_fleet_summary(out: Out, fleet: FleetVerdict) -> None:
    """The closing summary of ``verify --prefix``."""
    total = len(fleet.outputs)
    failed = [o for o in fleet.outputs if not o.ok]
    rows = sum(o.report.rows for o in fleet.outputs if o.report is not None)
    seconds = max(fleet.seconds, 1e-9)
    out.line("")
    verdict = "ALL VERIFIED" if not failed else f"{len(failed)} of {total} FAILED"
    if fleet.landscape is not None and not failed:
        verdict += " AND ANCHORED"
    out.line(f"Fleet    {verdict}: {total} output{'s' * (total != 1)} under {fleet.prefix!r}")
    out.line(
        f"Totals   {rows:,} rows, {fleet.bytes:,} bytes in {fleet.seconds:.2f}s "
        f"({total / seconds:.1f} outputs/s, {fleet.bytes / seconds / 1e6:.1f} MB/s)"
    )
    if fleet.landscape is not None:
        runs = {r.run_id for o in fleet.outputs if o.report is not None for r in o.report.runs}
        out.line(
            f"Landscape {fleet.landscape}: holds {fleet.landscape_runs} of the {len(runs)} "
            "runs of these outputs"
        )
        if runs and fleet.landscape_runs == 0:
            out.line("  it holds none of them: is it the landscape these runs used?")
    for o in failed:
        out.line(f"  failed: {o.blob_path}")
