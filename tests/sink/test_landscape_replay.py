"""Resume decides the re-delivered rows from ELSPETH's recorded outcomes (issue #12 item 5).

Without ``identity_fields`` a row's identity is its bytes. Call N committed ``[a, b, c]`` and ELSPETH
recorded all three outcomes; call N+1 = ``[b, c]`` (byte-equal to N's tail) died before its
first intent reached the manifest. Storage then looks exactly as if the process had died right
after call N; only the landscape knows the difference. These tests run the sink the way ELSPETH
does (a ``configure_for_resume`` sink, a context with ``landscape``), against Azurite, with a
fake recorder that answers the two batch queries the sink uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.harness import Engine, EngineRow, crash_at
from tests.helpers import read_output
from tests.sink.conftest import Options
from tests.sink.test_engine_crashes import FORMATS, SCHEMA, Case, run_cases

pytestmark = pytest.mark.azurite

RUN = "run-1"
NODE = "sink_out_0123456789ab"
A = {"id": 1, "name": "a", "kind": "completed"}
B = {"id": 2, "name": "b", "kind": "completed"}
C = {"id": 3, "name": "c", "kind": "completed"}
X = {"id": 4, "name": "x", "kind": "completed"}


@dataclass
class State:
    token_id: str
    node_id: str
    status: str


@dataclass
class Outcome:
    token_id: str
    is_terminal: bool
    sink_name: str | None


@dataclass
class FakeLandscape:
    """The two LandscapeRecorder queries the sink asks on resume, over fixed records."""

    states: list[State] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def get_all_node_states_for_run(self, run_id: str) -> list[State]:
        self.asked.append(run_id)
        return self.states

    def get_all_token_outcomes_for_run(self, run_id: str) -> list[Outcome]:
        return self.outcomes


def landscape(written: int, recorded: int) -> FakeLandscape:
    """``written`` tokens with a completed state at this sink, the first ``recorded`` of them with
    a terminal outcome; plus another sink's token and a source-node state that must not count."""
    fake = FakeLandscape()
    for i in range(written):
        fake.states.append(State(f"t{i}", "source_csv_1", "completed"))
        fake.states.append(State(f"t{i}", NODE, "completed"))
        if i < recorded:
            fake.outcomes.append(Outcome(f"t{i}", True, "out"))
    fake.states.append(State("other", "sink_else_0123456789ab", "completed"))
    fake.outcomes.append(Outcome("other", True, "else"))
    return fake


def first_run(make_options: Options) -> dict[str, Any]:
    """Call N = [a, b, c] lands, then the process dies (or dies in call N+1 before its intent)."""
    options = make_options()
    sink = AzureAppendBlobSink(options)
    sink.node_id = NODE
    sink.write([A, B, C], RecordingContext(run_id=RUN))
    return options  # no close(): a dead process releases nothing


def resume(options: dict[str, Any], rows: list[dict[str, Any]], fake: FakeLandscape | None) -> dict[str, Any]:
    """A resumed sink gets ``rows`` as its first call; the ``replay_skip`` fact it recorded."""
    sink = AzureAppendBlobSink(options)
    sink.node_id = NODE
    sink.configure_for_resume()
    ctx = RecordingContext(run_id=RUN, landscape=fake)
    sink.write(rows, ctx)
    sink.close()
    facts = [c.response_data for c in ctx.calls if c.request_data.get("operation") == "replay_skip"]
    assert len(facts) == 1 and facts[0] is not None, facts
    return facts[0]


def output(azurite: Azurite, container: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_output(azurite, container, "out/data.jsonl").splitlines()]


def test_next_call_equal_to_the_committed_tail_is_appended_when_the_landscape_recorded_all(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    options = first_run(make_options)
    fake = landscape(written=3, recorded=3)
    fact = resume(options, [B, C], fake)
    assert output(azurite, container) == [A, B, C, B, C]
    assert fake.asked == [RUN]
    assert fact["scope"] == "landscape"
    assert (fact["rows_in"], fact["rows_skipped"], fact["rows_appended"]) == (2, 0, 2)
    assert (fact["call_committed_rows"], fact["landscape_pending_rows"], fact["same_call"]) == (3, 0, False)
    assert fact["landscape"] == {"recorded_rows": 3, "sink_names": ["out"]}
    assert fact["manifest_rule_skip"] == 2  # what today's rule would have dropped


def test_without_the_landscape_the_same_rows_are_taken_for_durable_ones(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Today's rule on the same storage state: [b, c] is a tail of N's rows, so it is skipped --
    right if ELSPETH had recorded only a's outcome, rows lost if it had recorded all three. The
    fact says the manifest decided, and why the landscape could not."""
    options = first_run(make_options)
    fact = resume(options, [B, C], None)
    assert output(azurite, container) == [A, B, C]
    assert fact["scope"] == "manifest" and fact["rows_skipped"] == 2
    assert fact["landscape"] == {"recorded_rows": None, "unknown_because": "no ctx.landscape"}
    assert fact["landscape_pending_rows"] is None


def test_a_tail_followed_by_later_rows_is_skipped_exactly(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Crash after a's outcome was recorded: b, c are durable but unrecorded and come back first,
    followed by x. The landscape rule skips exactly b, c (the manifest rule cannot see a tail that
    is followed by more rows, and would append b, c again)."""
    options = first_run(make_options)
    fact = resume(options, [B, C, X], landscape(written=3, recorded=1))
    assert output(azurite, container) == [A, B, C, X]
    assert fact["scope"] == "landscape" and fact["rows_skipped"] == 2 and fact["same_call"] is True
    assert fact["landscape_pending_rows"] == 2


def test_states_without_outcomes_are_not_recorded_rows(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Crash after ELSPETH completed the sink states but before any outcome: all three replayed."""
    options = first_run(make_options)
    fact = resume(options, [A, B, C, X], landscape(written=3, recorded=0))
    assert output(azurite, container) == [A, B, C, X]
    assert fact["scope"] == "landscape" and fact["rows_skipped"] == 3


def test_a_landscape_that_disagrees_with_the_manifest_leaves_the_decision_to_the_manifest(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """More recorded outcomes than committed rows (not a state ELSPETH produces): today's rule."""
    options = first_run(make_options)
    fact = resume(options, [A, B, C, X], landscape(written=5, recorded=5))
    assert output(azurite, container) == [A, B, C, X]
    assert fact["scope"] == "manifest" and fact["rows_skipped"] == 3
    assert fact["landscape_pending_rows"] == -2 and "disagrees" in fact["reason"]


# ----------------------------------------------------------------------------------------------
# the engine harness: crash anywhere in a run whose groups are byte-equal at the junction


def junction_rows() -> tuple[EngineRow, ...]:
    """completed = rows 0..5; quarantined = copies of rows 4, 5 (the completed group's tail);
    routed = rows 6..8. Content identity (no identity_fields): the copies have the same bytes."""
    data = [{"id": i, "name": f"name-{i}", "kind": "same"} for i in range(9)]
    rows = [EngineRow(f"c{i}", "out", data[i], "completed") for i in range(6)]
    rows += [EngineRow(f"q{i}", "out", data[i], "quarantined", "9f2c4e1a0b3d5c7e") for i in (4, 5)]
    rows += [EngineRow(f"r{i}", "out", data[i], "routed") for i in (6, 7, 8)]
    return tuple(rows)


@pytest.fixture(name="junction_case")
def _junction_case(
    azurite: Azurite, container: str, make_options: Options, tmp_path: Path
) -> Callable[..., Case]:
    def build(tag: str, landscape: bool) -> Case:
        options = make_options(
            format="jsonl", blob_path=f"{tag}/data.jsonl", schema=SCHEMA, **FORMATS["jsonl"]
        )
        return Case(
            azurite, container, tmp_path / tag, options, "jsonl", f"run-{tag}", junction_rows(), landscape
        )

    return build


def test_crash_anywhere_with_the_landscape_is_exact_where_the_manifest_rule_loses_rows(
    junction_case: Callable[..., Case],
) -> None:
    """With the landscape, a crash before or after every storage request, and around every
    group's outcome recording, resumes to exactly the delivered rows (copies included). Without
    it, the crash just before the quarantined group's write loses the two copies."""
    clean = junction_case("clean", True)
    transport = FaultyTransport()
    engine = Engine({"out": clean.sink(transport)}, clean.state, landscape=True)
    engine.run(clean.run_id, clean.rows)
    engine.close()
    total = transport.count
    cases = [
        (
            f"{mode} at request {k}/{total}",
            partial(junction_case(f"{mode}-{k}", True), transport=FaultyTransport(at={k: mode})),
        )
        for k in range(1, total + 1)
        for mode in ("crash-before", "crash-after")
    ]
    cases += [
        (
            f"{point} of group {group} ({recorded} recorded)",
            partial(
                junction_case(f"{point}-{group}-{recorded}", True),
                hook=crash_at(point, group=group, recorded=recorded),
            ),
        )
        for group in range(3)
        for point, recorded in (("before_write", None), ("after_flush", None), ("outcome_recorded", 1))
    ]
    assert run_cases(cases) == []

    hole = junction_case("manifest-only", False)(hook=crash_at("before_write", group=1))
    assert len(hole) == 1 and "9 rows, not 11" in hole[0], hole  # the copies of rows 4, 5: lost


def test_a_resume_that_dies_is_resumed_again_exactly_with_the_landscape(
    junction_case: Callable[..., Case],
) -> None:
    """The run dies just before the quarantined group's write; its resume dies before (or after)
    any one of its storage requests; the next resume (a fresh landscape count, outcomes of the
    first resume included) is exact."""
    probe = junction_case("probe", True)
    counter = FaultyTransport(at={10_000: "crash-before"})  # never fires: counts the resume's requests
    hook = crash_at("before_write", group=1)
    assert probe(hook=hook, resume_transport=counter) == ["the injected crash during resume never happened"]
    cases = [
        (
            f"resume {mode} request {k}/{counter.count}",
            partial(
                junction_case(f"resume-{mode}-{k}", True),
                hook=crash_at("before_write", group=1),
                resume_transport=FaultyTransport(at={k: mode}),
            ),
        )
        for k in range(1, counter.count + 1)
        for mode in ("crash-before", "crash-after")
    ]
    assert run_cases(cases) == []
