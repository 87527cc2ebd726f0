"""Issue 4's acceptance test: crash anywhere in an ELSPETH-shaped run, resume, every row once.

The :mod:`~elspeth_appendsink.testing.harness` plays ELSPETH (contract §2.4, §3, §4): one sink gets three
outcome groups (completed, quarantined, routed), each written → flushed → outcomes recorded row
by row. Blocks are tiny, so each group spans at least two blocks and the output two segments.
The run dies (``SimulatedCrash``: nothing after it runs, not even cleanup) before and after
**every** storage request, after a group's flush before its outcomes, after some of its
outcomes, and before a write; then the harness resumes it as ELSPETH would (fresh sink,
``configure_for_resume``, ``validate_output_target``, replay of every row without a recorded
outcome). The output must decode, with the format's standard reader, to exactly the delivered
rows, each once, in delivery order. One test does the same with a real ``kill -9`` of a child
process in the middle of a write.

Each crash case uses its own output path, run id and outcome log, so cases run on a few threads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.testing import FaultyTransport, SimulatedCrash
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.harness import Engine, EngineRow, StepHook, crash_at, plan_groups
from tests.helpers import read_output
from tests.sink.conftest import Options

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
PER_GROUP = 6
SCHEMA: dict[str, Any] = {"mode": "fixed", "fields": ["id: int", "name: str", "kind: str"]}
#: Per format: sizes giving ≥ 2 blocks per group and 2 segments, and the row identity in use.
FORMATS: dict[str, dict[str, Any]] = {
    "csv": {"block_size": "100B", "segment_max_blocks": 4, "identity_fields": "id"},
    "jsonl": {"block_size": "160B", "segment_max_blocks": 4},  # content identity
    "arrow": {"block_size": "512B", "segment_max_blocks": 4, "identity_fields": "id"},
}


def engine_rows(per_group: int = PER_GROUP) -> list[EngineRow]:
    """Source order interleaves the outcomes, so the engine's grouping reorders the rows."""
    rows = []
    for i in range(3 * per_group):
        outcome = ("completed", "quarantined", "routed")[i % 3]
        rows.append(
            EngineRow(
                row_id=f"row-{i}",
                sink="out",
                data={"id": i, "name": f"name-{i:03d}", "kind": outcome},
                outcome=outcome,
                error_hash="9f2c4e1a0b3d5c7e" if outcome == "quarantined" else None,
            )
        )
    return rows


ROWS = engine_rows()
DELIVERED = [dict(r.data) for g in plan_groups(ROWS, ["out"]) for r in g.rows]


def decode(fmt: str, data: bytes) -> list[dict[str, Any]]:
    """The rows of an output, read with the format's standard reader."""
    if fmt == "csv":
        return [
            {"id": int(r["id"]), "name": r["name"], "kind": r["kind"]}
            for r in csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        ]
    if fmt == "jsonl":
        assert data.endswith(b"\n"), "every JSONL line is newline-terminated"
        return [json.loads(line) for line in data.splitlines()]
    # An append blob is never finalised, so the stream has no end-of-stream marker: pyarrow
    # reads a stream that ends cleanly at a message boundary without one.
    return list(pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist())


@dataclass
class Case:
    """One run on its own output path, run id and outcome log: crash it, resume it, check it."""

    azurite: Azurite
    container: str
    state: Path
    options: dict[str, Any]
    fmt: str
    run_id: str
    rows: tuple[EngineRow, ...] = tuple(ROWS)
    landscape: bool = False  # give the sink ELSPETH's recorder view (harness LogLandscape)

    @property
    def path(self) -> str:
        return str(self.options["blob_path"])

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [dict(r.data) for g in plan_groups(self.rows, ["out"]) for r in g.rows]

    def sink(self, transport: FaultyTransport | None = None) -> AzureAppendBlobSink:
        return AzureAppendBlobSink(self.options, transport=transport)

    def __call__(
        self,
        *,
        transport: FaultyTransport | None = None,
        hook: StepHook | None = None,
        failure: type[Exception] | None = None,
        resume_transport: FaultyTransport | None = None,
    ) -> list[str]:
        """Run until the injected crash (or ``failure``), optionally crash the first resume too
        (``resume_transport``), resume, and return every problem with the result."""
        engine = Engine({"out": self.sink(transport)}, self.state, step_hook=hook, landscape=self.landscape)
        try:
            try:
                engine.run(self.run_id, self.rows)
                return ["the injected crash never happened"]
            except SimulatedCrash:
                pass
            except Exception as exc:
                if failure is None or not isinstance(exc, failure):
                    raise
            engine.step_hook = None
            if resume_transport is not None:
                engine.factory = lambda _name, options: AzureAppendBlobSink(
                    options, transport=resume_transport
                )
                try:
                    engine.resume(self.run_id)
                    return ["the injected crash during resume never happened"]
                except SimulatedCrash:
                    pass
            engine.factory = lambda _name, options: AzureAppendBlobSink(options)
            try:
                engine.resume(self.run_id)
            except Exception as exc:
                return [f"resume failed: {type(exc).__name__}: {exc}"]
            return self.problems(engine)
        finally:
            engine.close()

    def problems(self, engine: Engine) -> list[str]:
        found = []
        output = read_output(self.azurite, self.container, self.path)
        try:
            rows = decode(self.fmt, output)
        except Exception as exc:
            return [f"output does not decode: {type(exc).__name__}: {exc}"]
        expected = self.delivered
        if rows != expected:
            counts = Counter(json.dumps(r, sort_keys=True) for r in rows)
            missing = [r["id"] for r in expected if json.dumps(r, sort_keys=True) not in counts]
            twice = sorted(json.loads(r)["id"] for r, n in counts.items() if n > 1)
            found.append(
                f"{len(rows)} rows, not {len(expected)}: missing ids {missing}, duplicated ids {twice}, "
                f"order {[r['id'] for r in rows]}"
            )
        recorded = [row_id for row_id, _sink, _outcome in engine.log.outcomes(self.run_id)]
        if sorted(recorded) != sorted(r.row_id for r in self.rows):
            found.append(f"outcomes: {len(recorded)} recorded, {len(set(recorded))} distinct")
        _sink, _path, content_hash, size = engine.log.artifacts(self.run_id)[-1]
        if (content_hash, size) != (hashlib.sha256(output).hexdigest(), len(output)):
            found.append("the last registered artifact does not describe the output")
        if engine.log.status(self.run_id) != "completed":
            found.append(f"run status is {engine.log.status(self.run_id)}")
        return found


CaseFactory = Callable[..., Case]


@pytest.fixture(name="new_case")
def _new_case(azurite: Azurite, container: str, make_options: Options, tmp_path: Path) -> CaseFactory:
    def build(fmt: str, tag: str, **extra: Any) -> Case:
        options = make_options(
            format=fmt, blob_path=f"{tag}/data.{fmt}", schema=SCHEMA, **{**FORMATS[fmt], **extra}
        )
        return Case(azurite, container, tmp_path / tag, options, fmt, f"run-{tag}")

    return build


def run_cases(cases: Iterable[tuple[str, Callable[[], list[str]]]]) -> list[str]:
    """Run labelled cases on a few threads; every problem, prefixed with its case's label."""
    jobs = list(cases)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda job: job[1](), jobs))
    return [
        f"{label}: {problem}" for (label, _), found in zip(jobs, results, strict=True) for problem in found
    ]


def count_requests(case: Case) -> int:
    """Storage requests of a clean run (the crash schedule covers each one), checking its shape."""
    transport = FaultyTransport()
    engine = Engine({"out": case.sink(transport)}, case.state)
    try:
        engine.run(case.run_id, case.rows)
    finally:
        engine.close()
    assert decode(case.fmt, read_output(case.azurite, case.container, case.path)) == DELIVERED
    assert transport.per_op["seal"] >= 1, "the configuration must roll over to a second segment"
    blocks = [s for s in transport.log if s.operation == "append" and ".manifest/" not in s.url]
    assert len(blocks) >= 2 * 3, "each group must span at least two blocks"
    return transport.count


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_crash_at_every_storage_request_then_resume(new_case: CaseFactory, fmt: str) -> None:
    """Crash before, and after, each storage request of the run; the resumed run is exact."""
    total = count_requests(new_case(fmt, "clean"))
    failures = run_cases(
        (
            f"{mode} at request {k}/{total}",
            partial(new_case(fmt, f"{mode}-{k}"), transport=FaultyTransport(at={k: mode})),
        )
        for k in range(1, total + 1)
        for mode in ("crash-before", "crash-after")
    )
    assert not failures, "\n".join(failures)


ENGINE_POINTS = [
    (point, group, recorded)
    for group in range(3)
    for point, recorded in (
        ("before_write", None),
        ("after_flush", None),
        ("outcome_recorded", 1),
        ("outcome_recorded", PER_GROUP - 1),
    )
]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_crash_around_outcome_recording_then_resume(new_case: CaseFactory, fmt: str) -> None:
    """Crash after a group's flush (no outcome recorded), after some of its outcomes, or just
    before a write: replayed rows already in the blob are recognised and not appended again."""
    failures = run_cases(
        (
            f"{point} of group {group} ({recorded} recorded)",
            partial(
                new_case(fmt, f"{point}-{group}-{recorded}"),
                hook=crash_at(point, group=group, recorded=recorded),
            ),
        )
        for point, group, recorded in ENGINE_POINTS
    )
    assert not failures, "\n".join(failures)


def test_crash_during_resume_then_resume_again(new_case: CaseFactory) -> None:
    """A resume that itself dies before any one of its storage requests is resumed again, exactly."""
    first_crash = {("append", 7): "crash-after"}  # inside group 1's write, a block of it durable
    probe = new_case("jsonl", "probe")
    transport = FaultyTransport(at={10_000: "crash-before"})  # counts the resume's requests
    assert probe(transport=FaultyTransport(on=first_crash), resume_transport=transport) == [
        "the injected crash during resume never happened"
    ]
    failures = run_cases(
        (
            f"resume crash before request {k}/{transport.count}",
            partial(
                new_case("jsonl", f"resume-crash-{k}"),
                transport=FaultyTransport(on=first_crash),
                resume_transport=FaultyTransport(at={k: "crash-before"}),
            ),
        )
        for k in range(1, transport.count + 1)
    )
    assert not failures, "\n".join(failures)


def test_replayed_rows_are_counted_in_the_audit_trail(new_case: CaseFactory) -> None:
    """After a crash between flush and outcomes, the resumed write records the rows it skipped."""
    case = new_case("jsonl", "audit")
    engine = Engine({"out": case.sink()}, case.state, step_hook=crash_at("after_flush", group=1))
    with pytest.raises(SimulatedCrash):
        engine.run(case.run_id, case.rows)
    engine.step_hook = None
    engine.resume(case.run_id)
    assert case.problems(engine) == []
    engine.close()
    assert engine.context is not None
    skips = [c for c in engine.context.calls if c.request_data.get("operation") == "replay_skip"]
    assert [c.response_data["rows_skipped"] for c in skips if c.response_data] == [PER_GROUP]


@pytest.mark.parametrize("seal", [False, True], ids=["plain", "seal_on_complete"])
def test_failed_run_is_cleaned_up_then_resumed(new_case: CaseFactory, seal: bool) -> None:
    """An ordinary failure (not a dead process) runs on_complete and close, as ELSPETH's finally
    does — with ``seal_on_complete`` that seals the segment — and the run still resumes exactly."""
    case = new_case("jsonl", f"failed-{seal}", seal_on_complete=seal)
    hook = crash_at("outcome_recorded", group=1, recorded=3, exc=RuntimeError)
    assert case(hook=hook, failure=RuntimeError) == []


def test_two_sinks_crash_in_the_second_then_resume(new_case: CaseFactory) -> None:
    """Two sinks in configuration order: the first completes, the second dies mid-write; resume
    sends the first nothing and finishes the second exactly."""
    first, second = new_case("csv", "two-a"), new_case("jsonl", "two-b")
    rows = [EngineRow(f"a-{r.row_id}", "a", r.data, r.outcome, r.error_hash) for r in ROWS]
    rows += [EngineRow(f"b-{r.row_id}", "b", r.data, r.outcome, r.error_hash) for r in ROWS]
    engine = Engine(
        {"a": first.sink(), "b": second.sink(FaultyTransport(on={("append", 4): "crash-before"}))},
        first.state,
    )
    with pytest.raises(SimulatedCrash):
        engine.run("two", rows)
    assert engine.has_checkpoint("two")  # sink a's outcomes: ELSPETH too would resume this run
    report = engine.resume("two")
    engine.close()
    assert {g.group.sink for g in report.groups} == {"b"}
    assert report.rows_written == len(ROWS)
    for case in (first, second):
        assert decode(case.fmt, read_output(case.azurite, case.container, case.path)) == DELIVERED


SAME = {"id": 1, "name": "same", "kind": "x"}  # content identity: two rows with equal content
EQUAL_ROWS = (
    EngineRow("a", "out", SAME, "completed"),
    EngineRow("b", "out", {"id": 2, "name": "b", "kind": "x"}, "completed"),
    EngineRow("c", "out", {"id": 3, "name": "c", "kind": "x"}, "completed"),
    EngineRow("d", "out", SAME, "routed"),
    EngineRow("e", "out", {"id": 4, "name": "e", "kind": "x"}, "routed"),
)


@pytest.mark.parametrize(
    "point",
    [
        # group 0 recorded, group 1 not started: group 1 is not a re-delivery of group 0
        crash_at("before_write", group=1),
        # group 0 partly recorded: its replayed tail is skipped; group 1's equal row is written
        crash_at("outcome_recorded", group=0, recorded=1),
    ],
    ids=["before-next-write", "leftover-scope"],
)
def test_equal_rows_in_two_groups_survive_a_crash(new_case: CaseFactory, point: StepHook) -> None:
    """Content identity and the same row content in two groups: resume writes the second one."""
    case = new_case("jsonl", "equal-rows")
    case.options.pop("identity_fields", None)
    case.rows = EQUAL_ROWS
    assert case(hook=point) == []


def test_sigkill_in_the_middle_of_a_write_then_resume(
    azurite: Azurite, container: str, make_options: Options, tmp_path: Path
) -> None:
    """A child process is SIGKILLed while group 1's write is under way (before its 4th append, so
    one of its blocks is durable); resuming in-process gives every row once, in order."""
    options = make_options(blob_path="killed/data.jsonl", schema=SCHEMA, **FORMATS["jsonl"])
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps({"sinks": {"out": options}}))
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text(
        "".join(
            json.dumps(
                {"row_id": r.row_id, "sink": r.sink, "outcome": r.outcome, "error_hash": r.error_hash}
                | {"row": dict(r.data)}
            )
            + "\n"
            for r in ROWS
        )
    )
    state = tmp_path / "state"
    command = [sys.executable, "-m", "elspeth_appendsink.testing.harness", "--options", str(options_file)]
    command += ["--rows", str(rows_file), "--run-id", "killed", "--state", str(state)]
    command += ["--hold-in-write", "1:4:append"]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seen.append(line.rstrip())
            if line.startswith("holding group 1 "):
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        if child.poll() is None:  # it never reached the holding line: do not leave it behind
            child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL, (seen, child.stderr.read() if child.stderr else "")
    assert f"recorded group 0 rows={PER_GROUP}" in seen
    assert f"wrote group 1 rows={PER_GROUP}" not in seen
    # Killed mid-write: the output holds group 0 and part of group 1; only group 0 is recorded.
    partial = decode("jsonl", read_output(azurite, container, "killed/data.jsonl"))
    assert PER_GROUP < len(partial) < 2 * PER_GROUP
    engine = Engine({"out": AzureAppendBlobSink(options)}, state)
    assert len(engine.log.outcomes("killed")) == PER_GROUP
    engine.resume("killed")
    output = read_output(azurite, container, "killed/data.jsonl")
    assert decode("jsonl", output) == DELIVERED
    assert sorted(r for r, _s, _o in engine.log.outcomes("killed")) == sorted(r.row_id for r in ROWS)
    assert engine.log.artifacts("killed")[-1][2] == hashlib.sha256(output).hexdigest()
    engine.close()
