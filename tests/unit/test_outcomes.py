"""Counting this sink's recorded outcomes in a landscape (elspeth/outcomes.py), with fake recorders."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from elspeth_appendsink.elspeth.outcomes import RecordedOutcomes, recorded_outcomes

NODE = "sink_out_0123456789ab"


class Recorder:
    def __init__(self, states: list[Any], outcomes: list[Any]) -> None:
        self.states, self.outcomes = states, outcomes

    def get_all_node_states_for_run(self, run_id: str) -> list[Any]:
        return self.states

    def get_all_token_outcomes_for_run(self, run_id: str) -> list[Any]:
        return self.outcomes


def state(token: str, node: str = NODE, status: str = "completed") -> Any:
    return SimpleNamespace(token_id=token, node_id=node, status=SimpleNamespace(value=status))


def outcome(token: str, terminal: bool = True, sink: str | None = "out") -> Any:
    return SimpleNamespace(token_id=token, is_terminal=terminal, sink_name=sink)


def test_counts_tokens_written_here_with_a_terminal_outcome() -> None:
    recorder = Recorder(
        [state("t1"), state("t2"), state("t3"), state("t4", status="open"), state("u1", node="sink_else_1")],
        [outcome("t1"), outcome("t2", terminal=False), outcome("t4"), outcome("u1", sink="else")],
    )
    assert recorded_outcomes(recorder, "run", NODE) == RecordedOutcomes(1, ("out",))


def test_unknown_without_a_landscape_a_node_id_or_the_queries() -> None:
    assert recorded_outcomes(None, "run", NODE) == "no ctx.landscape"
    assert recorded_outcomes(Recorder([], []), "run", None) == "the sink has no node_id"
    older = recorded_outcomes(object(), "run", NODE)
    assert isinstance(older, str) and "get_all_token_outcomes_for_run" in older
