"""An engine harness: ELSPETH's orchestrator, SinkExecutor and resume, as a sink sees them.

:class:`Engine` drives one or more sinks through a *run* the way ELSPETH 0.4.1 does, with no
ELSPETH dependency, so crash/resume behaviour can be tested (and demonstrated) end to end. It
imitates (sections of ``/work/shared/elspeth-contract.md``): the **grouping** of each sink's rows
by ``(outcome, error_hash)``, one ``write()`` per group (§3); the **executor**: dict copies,
required-field checks, ``write`` then ``flush`` inside one ``sink_write`` operation, then the
artifact and each row's outcome recorded row by row in a durable sqlite log, nothing recorded if
``write``/``flush`` raises (§2.4); the **lifecycle**: ``on_start``, writes, then ``on_complete``
and ``close`` for every sink in ``finally`` (§1.1) — a
:class:`~elspeth_appendsink.testing.SimulatedCrash` is a dead process, nothing after it runs;
**resume** (§4): fresh sinks from the same options, ``configure_for_resume()``,
``validate_output_target()`` (invalid → :class:`ResumeRefused`), ``on_start``, then every row
without a recorded terminal outcome replayed, grouped as above.

It does not imitate sources, transforms, tokens, forks, aggregation, re-routing, checkpoints
(a run "has one" when any outcome was recorded, :meth:`Engine.has_checkpoint`; unlike ELSPETH
it resumes without one), the run-status dance after ``kill -9``, or failsinks. ``ctx.landscape``
is None unless ``Engine(landscape=True)`` (:class:`LogLandscape` answers the sink's two queries).

As a child process, so a test or the demo can ``kill -9`` it mid-write::

    python -m elspeth_appendsink.testing.harness --options OPTIONS.json --rows ROWS.jsonl --run-id ID
        [--resume] [--state DIR] [--trace-requests] [--hold-in-write GROUP:K[:OP]]

``OPTIONS.json`` is ``{"sinks": {name: options}}`` (or one sink's options); each ``ROWS.jsonl``
line is ``{"row_id", "sink", "outcome", "error_hash", "row"}`` (only ``row`` required). Progress
goes to stdout, one flushed line per step; ``--hold-in-write N:K[:OP]`` stops just before the
K-th storage request (of kind OP, :func:`~elspeth_appendsink.testing.operation_of`) of group N's
write and waits to be killed. Exit codes: 0 completed, 1 failed (error on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elspeth_appendsink.elspeth.host import AuditIntegrityError
from elspeth_appendsink.testing import RecordingContext, SimulatedCrash

__all__ = [
    "PENDING_OUTCOMES",
    "ContractViolation",
    "Engine",
    "EngineContext",
    "EngineRow",
    "FrameworkBugError",
    "Group",
    "GroupReport",
    "LogLandscape",
    "OutcomeLog",
    "ResumeRefused",
    "RunReport",
    "Step",
    "crash_at",
    "main",
    "plan_groups",
]

#: The pending outcomes a sink-bound token can carry (COALESCED is recorded as COMPLETED).
PENDING_OUTCOMES = ("completed", "routed", "quarantined")
#: Outcomes that make a row "processed" for resume (contract §4); ``diverted`` is not one of them.
_TERMINAL = ("completed", "routed", "quarantined", "failed", "consumed_in_batch", "coalesced")


class FrameworkBugError(Exception):
    """ELSPETH's answer to a plugin misusing the framework (e.g. ``record_call`` outside ``write``)."""


class ContractViolation(Exception):
    """A row broke the sink's declared contract (``validate_input`` / ``declared_required_fields``)."""


class ResumeRefused(Exception):
    """The run cannot be resumed (unknown, completed, a sink without resume, invalid target)."""


# --------------------------------------------------------------------------------------------
# rows and groups


@dataclass(frozen=True, slots=True)
class EngineRow:
    """One source row as it reaches a sink: its id, its sink, its pending outcome, its data."""

    row_id: str
    sink: str
    data: Mapping[str, Any]
    outcome: str = "completed"
    error_hash: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in PENDING_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(PENDING_OUTCOMES)}, got {self.outcome!r}")

    @property
    def group_key(self) -> tuple[str, str]:
        """ELSPETH's sort key within a sink: ``(outcome, error_hash)``."""
        return (self.outcome, self.error_hash or "")


@dataclass(frozen=True, slots=True)
class Group:
    """One ``write()`` call: the rows of one sink with one pending outcome."""

    index: int  # 0-based, over every group of this run (or resume), in write order
    sink: str
    outcome: str
    error_hash: str | None
    rows: tuple[EngineRow, ...]


def plan_groups(rows: Iterable[EngineRow], sinks: Sequence[str]) -> list[Group]:
    """Group rows like ``_write_pending_to_sinks``: sinks in order, stable sort, one group per key."""
    by_sink: dict[str, list[EngineRow]] = {name: [] for name in sinks}
    for row in rows:
        if row.sink not in by_sink:
            raise ValueError(f"row {row.row_id} is for sink {row.sink!r}, which is not configured")
        by_sink[row.sink].append(row)
    groups: list[Group] = []
    for name in sinks:
        ordered = sorted(by_sink[name], key=lambda r: r.group_key)  # sorted() is stable
        for _key, members in itertools.groupby(ordered, key=lambda r: r.group_key):
            batch = tuple(members)
            first = batch[0]
            groups.append(Group(len(groups), name, first.outcome, first.error_hash, batch))
    return groups


# --------------------------------------------------------------------------------------------
# the durable outcome log (ELSPETH's rows / token_outcomes / artifacts tables, reduced)


class OutcomeLog:
    """A sqlite file in the state directory: runs, their rows, outcomes and artifacts.

    Every statement commits on its own (autocommit), so a crash after the k-th recorded outcome
    leaves exactly k outcomes, as ELSPETH's per-token recording does.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "outcomes.sqlite"
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL,
                sinks TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS rows (run_id TEXT NOT NULL, seq INTEGER NOT NULL,
                row_id TEXT NOT NULL, sink TEXT NOT NULL, outcome TEXT NOT NULL, error_hash TEXT,
                data TEXT NOT NULL, PRIMARY KEY (run_id, row_id));
            CREATE TABLE IF NOT EXISTS outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL, row_id TEXT NOT NULL, sink TEXT NOT NULL, outcome TEXT NOT NULL,
                error_hash TEXT);
            CREATE TABLE IF NOT EXISTS artifacts (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL, sink TEXT NOT NULL, path TEXT NOT NULL, content_hash TEXT NOT NULL,
                size_bytes INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        self._db.close()

    def begin_run(self, run_id: str, sinks: Sequence[str], rows: Sequence[EngineRow]) -> None:
        """Store the run and its rows (what resume will read back); refuse a run id seen before."""
        if self.status(run_id) is not None:
            raise ValueError(f"run {run_id} already exists in {self.path}; resume it or use a new run id")
        with self._transaction():
            self._db.execute("INSERT INTO runs VALUES (?, 'running', ?)", (run_id, json.dumps(list(sinks))))
            self._db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, seq, r.row_id, r.sink, r.outcome, r.error_hash, json.dumps(dict(r.data)))
                    for seq, r in enumerate(rows)
                ],
            )

    def status(self, run_id: str) -> str | None:
        found = self._db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if found is None else str(found[0])

    def set_status(self, run_id: str, status: str) -> None:
        self._db.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def rows(self, run_id: str) -> list[EngineRow]:
        """Every row of the run, in source order."""
        found = self._db.execute(
            "SELECT row_id, sink, outcome, error_hash, data FROM rows WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [EngineRow(rid, sink, json.loads(data), outcome, eh) for rid, sink, outcome, eh, data in found]

    def unprocessed(self, run_id: str) -> list[EngineRow]:
        """Rows with no terminal outcome recorded: what resume replays, in source order."""
        done = {row_id for row_id, _sink, outcome in self.outcomes(run_id) if outcome in _TERMINAL}
        return [r for r in self.rows(run_id) if r.row_id not in done]

    def record_outcome(self, run_id: str, row: EngineRow, outcome: str) -> None:
        self._db.execute(
            "INSERT INTO outcomes (run_id, row_id, sink, outcome, error_hash) VALUES (?, ?, ?, ?, ?)",
            (run_id, row.row_id, row.sink, outcome, row.error_hash),
        )

    def outcomes(self, run_id: str) -> list[tuple[str, str, str]]:
        """``(row_id, sink, outcome)`` in the order they were recorded."""
        found = self._db.execute(
            "SELECT row_id, sink, outcome FROM outcomes WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in found]

    def register_artifact(self, run_id: str, sink: str, artifact: Any) -> None:
        self._db.execute(
            "INSERT INTO artifacts (run_id, sink, path, content_hash, size_bytes) VALUES (?, ?, ?, ?, ?)",
            (run_id, sink, artifact.path_or_uri, artifact.content_hash, artifact.size_bytes),
        )

    def artifacts(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """``(sink, path, content_hash, size_bytes)`` per registered write, oldest first."""
        found = self._db.execute(
            "SELECT sink, path, content_hash, size_bytes FROM artifacts WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [(str(a), str(b), str(c), int(d)) for a, b, c, d in found]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


# --------------------------------------------------------------------------------------------
# context, steps, crash hooks


@dataclass
class EngineContext(RecordingContext):
    """The shared plugin context: a :class:`RecordingContext` that, like ELSPETH, refuses
    ``record_call`` outside a ``sink_write`` operation (``on_start``, ``on_complete``, ``close``)."""

    node_id: str | None = None
    state_id: str | None = None

    def record_call(self, *args: Any, **kwargs: Any) -> None:
        if self.operation_id is None:
            raise FrameworkBugError("record_call() called without state_id or operation_id")
        super().record_call(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class Step:
    """A point in a group's life at which the step hook is called (and may crash)."""

    point: str  # "before_write" | "after_write" | "after_flush" | "outcome_recorded"
    group: Group
    recorded: int = 0  # outcomes of this group recorded so far


StepHook = Callable[[Step], None]
POINTS = ("before_write", "after_write", "after_flush", "outcome_recorded")


def crash_at(
    point: str,
    *,
    group: int | None = None,
    sink: str | None = None,
    recorded: int | None = None,
    exc: type[BaseException] = SimulatedCrash,
) -> StepHook:
    """A step hook that raises ``exc`` at the first matching step.

    ``crash_at("after_flush", group=1)`` dies after group 1's flush, before any outcome;
    ``crash_at("outcome_recorded", group=1, recorded=3)`` dies once 3 of its outcomes are recorded.
    ``exc=RuntimeError`` is an ordinary failure instead (the run is marked failed and cleanup runs).
    """
    if point not in POINTS:
        raise ValueError(f"point must be one of {', '.join(POINTS)}")

    def hook(step: Step) -> None:
        if (
            step.point == point
            and (group is None or step.group.index == group)
            and (sink is None or step.group.sink == sink)
            and (recorded is None or step.recorded == recorded)
        ):
            raise exc(f"injected at {point} of group {step.group.index} ({step.recorded} recorded)")

    return hook


@dataclass(slots=True)
class GroupReport:
    group: Group
    artifact: Any
    diverted: int = 0


@dataclass(slots=True)
class RunReport:
    run_id: str
    resumed: bool
    groups: list[GroupReport] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(len(g.group.rows) for g in self.groups)


SinkFactory = Callable[[str, dict[str, Any]], Any]


# --------------------------------------------------------------------------------------------
# the engine


class Engine:
    """Runs and resumes runs over ``sinks`` (name → sink instance, in configuration order).

    Args:
        sinks: the sinks of the first run. Their ``config`` (the raw options) is kept to build
            fresh instances for :meth:`resume`.
        state_dir: where the :class:`OutcomeLog` lives (shared by a run and its resumes).
        factory: ``(name, options) -> sink`` for resume; default ``type(sink)(deepcopy(options))``.
        step_hook: called at every :class:`Step`; raise from it to crash there.
        progress: receives one line per step (the CLI prints them).
        field_resolution: given to sinks that ask for it on resume.
        landscape: give the context a :class:`LogLandscape` (as ELSPETH gives its recorder).
    """

    def __init__(
        self,
        sinks: Mapping[str, Any],
        state_dir: str | os.PathLike[str],
        *,
        factory: SinkFactory | None = None,
        step_hook: StepHook | None = None,
        progress: Callable[[str], None] | None = None,
        field_resolution: Mapping[str, str] | None = None,
        landscape: bool = False,
    ) -> None:
        if not sinks:
            raise ValueError("an engine needs at least one sink")
        self.sinks: dict[str, Any] = dict(sinks)
        self.options: dict[str, dict[str, Any]] = {n: copy.deepcopy(dict(s.config)) for n, s in sinks.items()}
        self._classes = {name: type(sink) for name, sink in sinks.items()}
        self.log = OutcomeLog(state_dir)
        self.factory = factory or self._default_factory
        self.step_hook = step_hook
        self.progress = progress
        self.field_resolution = dict(field_resolution or {})
        self.landscape = landscape
        self.context: EngineContext | None = None  # the last run's context, with every recorded call

    def _default_factory(self, name: str, options: dict[str, Any]) -> Any:
        return self._classes[name](copy.deepcopy(options))

    # --- public --------------------------------------------------------------------------------
    def run(self, run_id: str, rows: Sequence[EngineRow]) -> RunReport:
        """A fresh run: store the rows, start the sinks, write every group, clean up."""
        names = list(self.sinks)
        groups = plan_groups(rows, names)  # validates sinks before anything is stored
        self.log.begin_run(run_id, names, rows)
        self._say(f"run {run_id} start sinks={','.join(names)} rows={len(rows)} groups={len(groups)}")
        return self._execute(run_id, groups, resumed=False)

    def resume(self, run_id: str) -> RunReport:
        """ELSPETH's ``resume --execute``: fresh sinks, resume checks, replay unrecorded rows."""
        status = self.log.status(run_id)
        if status is None:
            raise ResumeRefused(f"run {run_id} is not in {self.log.path}")
        if status == "completed":
            raise ResumeRefused(f"run {run_id} already completed")
        fresh: dict[str, Any] = {}
        for name, options in self.options.items():
            sink = self.factory(name, copy.deepcopy(options))
            if not sink.supports_resume:
                raise ResumeRefused(f"sink {name!r} ({sink.name}) does not support resume")
            sink.configure_for_resume()
            if sink.needs_resume_field_resolution:
                sink.set_resume_field_resolution(dict(self.field_resolution))
            result = sink.validate_output_target()
            if not result.valid:
                raise ResumeRefused(
                    f"sink {name!r}: output target is not valid for resume: {result.error_message} "
                    f"(missing={list(result.missing_fields)}, extra={list(result.extra_fields)}, "
                    f"order_mismatch={result.order_mismatch})"
                )
            fresh[name] = sink
        self.sinks = fresh
        rows = self.log.unprocessed(run_id)
        groups = plan_groups(rows, list(fresh))
        self._say(f"resume {run_id} replay rows={len(rows)} groups={len(groups)}")
        return self._execute(run_id, groups, resumed=True)

    def has_checkpoint(self, run_id: str) -> bool:
        """Whether ELSPETH would find a checkpoint (one is taken per recorded sink outcome)."""
        return bool(self.log.outcomes(run_id))

    def close(self) -> None:
        self.log.close()

    # --- the run -------------------------------------------------------------------------------
    def _execute(self, run_id: str, groups: list[Group], *, resumed: bool) -> RunReport:
        ctx = self.context = EngineContext(run_id=run_id, operation_id=None)
        report = RunReport(run_id, resumed)
        for name, sink in self.sinks.items():
            sink.node_id = _node_id(name, self.options[name])
        if self.landscape:
            ctx.landscape = LogLandscape(self.log, {n: _node_id(n, o) for n, o in self.options.items()})
        try:
            for sink in self.sinks.values():
                sink.on_start(ctx)
        except Exception:
            self.log.set_status(run_id, "failed")  # the run aborts without cleanup (as ELSPETH)
            raise
        try:
            for group in groups:
                report.groups.append(self._write_group(run_id, group, ctx))
        except SimulatedCrash:
            raise  # the process is dead: no status change, no cleanup
        except BaseException:
            self.log.set_status(run_id, "failed")
            self._cleanup(ctx, failing=True)
            raise
        self._cleanup(ctx, failing=False)
        self.log.set_status(run_id, "completed")
        self._say(f"run {run_id} completed")
        return report

    def _write_group(self, run_id: str, group: Group, ctx: EngineContext) -> GroupReport:
        sink = self.sinks[group.sink]
        rows = [copy.deepcopy(dict(r.data)) for r in group.rows]
        if sink.node_id is None:
            raise FrameworkBugError(f"sink {group.sink!r} has no node_id")
        self._check_rows(sink, rows)
        self._say(f"writing group {group.index} sink={group.sink} outcome={group.outcome} rows={len(rows)}")
        self._step(Step("before_write", group))
        ctx.state_id = None
        ctx.operation_id = f"op-sink-write-{run_id}-{group.index}"
        try:
            sink._reset_diversion_log()
            seen = len(ctx.calls)
            result = sink.write(rows, ctx)
            skipped = sum(
                int((call.response_data or {}).get("rows_skipped", 0))
                for call in ctx.calls[seen:]
                if call.request_data.get("operation") == "replay_skip"
            )
            note = f" (skipped {skipped} already durable)" if skipped else ""
            self._say(f"wrote group {group.index} rows={len(rows)}{note}")
            self._step(Step("after_write", group))
            sink.flush()
        finally:
            ctx.operation_id = None
        self._say(f"flushed group {group.index}")
        self._step(Step("after_flush", group))
        diverted = {d.row_index for d in result.diversions}
        self.log.register_artifact(run_id, group.sink, result.artifact)
        recorded = 0
        for index, row in enumerate(group.rows):
            self.log.record_outcome(run_id, row, "diverted" if index in diverted else row.outcome)
            recorded += 1
            self._step(Step("outcome_recorded", group, recorded))
        self._say(f"recorded group {group.index} rows={recorded}")
        return GroupReport(group, result.artifact, len(diverted))

    def _check_rows(self, sink: Any, rows: list[dict[str, Any]]) -> None:
        """The executor's pre-write checks (§2.4 step 7): violations crash the run."""
        for index, row in enumerate(rows):
            if sink.validate_input:
                try:
                    sink.input_schema.model_validate(row)
                except Exception as exc:
                    raise ContractViolation(f"row {index} fails {sink.name}'s input_schema: {exc}") from exc
            missing = sorted(set(sink.declared_required_fields) - set(row))
            if missing:
                raise ContractViolation(f"row {index} lacks required fields {missing} of {sink.name}")

    def _cleanup(self, ctx: EngineContext, *, failing: bool) -> None:
        """on_complete for every sink, then close for every sink, each protected (§1.1)."""
        errors: list[BaseException] = []
        for method in ("on_complete", "close"):
            for name, sink in self.sinks.items():
                try:
                    if method == "on_complete":
                        sink.on_complete(ctx)
                    else:
                        sink.close()
                except AuditIntegrityError:
                    raise
                except Exception as exc:
                    errors.append(exc)
                    self._say(f"cleanup {method} of {name} failed: {type(exc).__name__}")
        if errors and not failing:
            raise RuntimeError(f"plugin cleanup failed: {errors!r}") from errors[0]

    def _step(self, step: Step) -> None:
        if self.step_hook is not None:
            self.step_hook(step)

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


@dataclass(frozen=True, slots=True)
class _State:
    token_id: str
    node_id: str
    status: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    token_id: str
    is_terminal: bool
    sink_name: str


class LogLandscape:
    """The outcome log seen through ELSPETH's recorder queries ``get_all_node_states_for_run``
    and ``get_all_token_outcomes_for_run``; a row id stands for its token id. ELSPETH completes a
    token's sink state just before recording its outcome; the harness has no state of its own,
    so a row with a recorded outcome has a completed state at its sink's node, and no other."""

    def __init__(self, log: OutcomeLog, node_ids: Mapping[str, str]) -> None:
        self.log = log
        self.node_ids = dict(node_ids)

    def get_all_node_states_for_run(self, run_id: str) -> list[_State]:
        return [_State(r, self.node_ids[sink], "completed") for r, sink, _ in self.log.outcomes(run_id)]

    def get_all_token_outcomes_for_run(self, run_id: str) -> list[_Outcome]:
        return [_Outcome(r, outcome in _TERMINAL, sink) for r, sink, outcome in self.log.outcomes(run_id)]


def _node_id(name: str, options: Mapping[str, Any]) -> str:
    """ELSPETH's sink node id: ``sink_{name}_{sha256(canonical options)[:12]}``."""
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return f"sink_{name}_{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------------------------
# command line


def _load_options(path: Path) -> dict[str, dict[str, Any]]:
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a JSON object")
    sinks = loaded.get("sinks", {"output": loaded})
    if not isinstance(sinks, dict) or not all(isinstance(v, dict) for v in sinks.values()):
        raise ValueError(f"{path}: 'sinks' must map sink names to option objects")
    return sinks


def load_rows(path: Path, default_sink: str) -> list[EngineRow]:
    """Rows from a JSONL file (see the module docstring for the line format)."""
    rows = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            rows.append(
                EngineRow(
                    row_id=str(item.get("row_id", f"row-{number}")),
                    sink=str(item.get("sink", default_sink)),
                    data=item["row"],
                    outcome=str(item.get("outcome", "completed")),
                    error_hash=item.get("error_hash"),
                )
            )
    return rows


class _Watch:
    """Request tracing and the ``--hold-in-write`` stop, shared by every sink's transport."""

    def __init__(
        self, trace: bool, hold: tuple[int, int, str | None] | None, say: Callable[[str], None]
    ) -> None:
        self.trace, self.hold, self.say = trace, hold, say
        self.count = 0
        self.group: int | None = None  # the group being written, None outside write()
        self.in_group = 0  # requests of the hold's operation (or all) since the group's write began
        self._lock = threading.Lock()

    def step(self, step: Step) -> None:
        if step.point == "before_write":
            self.group, self.in_group = step.group.index, 0
        elif step.point == "after_write":
            self.group = None

    def rule(self, _n: int, op: str, _request: Any) -> str | None:
        with self._lock:
            self.count += 1
            if self.trace:
                self.say(f"request {self.count} op={op}")
            if self.group is None or self.hold is None:
                return None
            group, k, only = self.hold
            if only is not None and op != only:
                return None
            self.in_group += 1
            if (group, k) == (self.group, self.in_group):
                self.say(f"holding group {group} request {k} op={op}")
                threading.Event().wait(600)  # wait to be killed; never resume on our own
                os._exit(70)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m elspeth_appendsink.testing.harness",
        description="Run (or resume) an ELSPETH-shaped run over azure_append_blob sinks, printing "
        "one progress line per step; see the module docstring for the file formats.",
        epilog="exit codes: 0 completed, 1 the run failed (error on stderr), 2 bad arguments",
    )
    parser.add_argument("--options", required=True, type=Path, help="JSON: {'sinks': {name: options}}")
    parser.add_argument("--rows", type=Path, help="JSONL rows (required unless --resume)")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--resume", action="store_true", help="resume the run instead of starting it")
    parser.add_argument("--state", type=Path, default=Path("harness-state"), help="outcome log directory")
    parser.add_argument("--trace-requests", action="store_true", help="print a line per storage request")
    parser.add_argument(
        "--hold-in-write", metavar="GROUP:K[:OP]", help="stop before request K (of OP) of GROUP's write"
    )
    args = parser.parse_args(argv)
    if not args.resume and args.rows is None:
        parser.error("--rows is required for a new run")
    hold = None
    if args.hold_in_write:
        parts = args.hold_in_write.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
            parser.error("--hold-in-write takes GROUP:K or GROUP:K:OP (two integers, an operation name)")
        hold = (int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else None)

    def say(line: str) -> None:
        print(line, flush=True)

    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
    from elspeth_appendsink.testing import FaultyTransport

    watch = _Watch(args.trace_requests, hold, say)
    watched = args.trace_requests or hold is not None

    def build(name: str, options: dict[str, Any]) -> Any:
        transport = FaultyTransport(rule=watch.rule) if watched else None
        return AzureAppendBlobSink(options, transport=transport)

    engine: Engine | None = None
    try:
        options = _load_options(args.options)
        sinks = {name: build(name, dict(opts)) for name, opts in options.items()}
        engine = Engine(sinks, args.state, factory=build, step_hook=watch.step, progress=say)
        if args.resume:
            engine.resume(args.run_id)
        else:
            engine.run(args.run_id, load_rows(args.rows, next(iter(options))))
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if engine is not None:
            engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
