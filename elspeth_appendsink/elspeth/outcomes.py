"""What ELSPETH's landscape recorded for this sink in a run: the count the resume decision needs.

On resume the writer must know how many of this run's rows at this sink already have a terminal
token outcome (:mod:`elspeth_appendsink.core.replay`). ELSPETH's ``SinkExecutor.write`` records,
after ``sink.write()`` and ``flush()`` returned, a completed node_state *at the sink's node* for
every token, then the artifact, then one terminal outcome per token, in order.

How the sink finds its own tokens: it knows its ``node_id`` (assigned by the orchestrator; the
settings name of the sink is not given to the plugin, and the name inside the node id is a
builder convention, not a contract). So a token counts when it has a *completed* node_state at
this node **and** a terminal outcome: the first says this sink wrote it, the second that ELSPETH
recorded it (a crash between the two leaves the token unrecorded, and ELSPETH replays it). Both
lists come from the recorder's public batch queries, ``get_all_node_states_for_run`` and
``get_all_token_outcomes_for_run``, read once per resume. The outcomes' ``sink_name`` values are
reported with the count, so the audit trail names the sink ELSPETH recorded them for.

This sink never diverts rows (``SinkWriteResult.diversions`` is always empty), so every token
with a completed state at its node is a row of its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RecordedOutcomes", "recorded_outcomes"]


@dataclass(frozen=True)
class RecordedOutcomes:
    """This sink's tokens in one run that ELSPETH recorded a terminal outcome for."""

    rows: int
    sink_names: tuple[str, ...]  # the outcomes' sink_name values (one, unless the landscape is odd)

    def facts(self) -> dict[str, Any]:
        return {"recorded_rows": self.rows, "sink_names": list(self.sink_names)}


def _value(status: Any) -> Any:
    return getattr(status, "value", status)


def recorded_outcomes(landscape: Any, run_id: str, node_id: str | None) -> RecordedOutcomes | str:
    """The count from ``landscape`` (ELSPETH's ``LandscapeRecorder``), or why there is none.

    A string (the reason) when the count cannot be known: no landscape (the engine harness, a
    bare context), no node id, or a recorder without these queries (an older ELSPETH). Errors
    of the queries themselves propagate: an audit store that fails to answer is not "unknown".
    """
    if landscape is None:
        return "no ctx.landscape"
    if node_id is None:
        return "the sink has no node_id"
    states_of = getattr(landscape, "get_all_node_states_for_run", None)
    outcomes_of = getattr(landscape, "get_all_token_outcomes_for_run", None)
    if states_of is None or outcomes_of is None:
        return "the landscape recorder has no get_all_node_states_for_run/get_all_token_outcomes_for_run"
    states = states_of(run_id)
    written = {s.token_id for s in states if s.node_id == node_id and _value(s.status) == "completed"}
    recorded: set[str] = set()
    names: set[str] = set()
    for outcome in outcomes_of(run_id):
        if outcome.is_terminal and outcome.token_id in written:
            recorded.add(outcome.token_id)
            if outcome.sink_name is not None:
                names.add(str(outcome.sink_name))
    return RecordedOutcomes(len(recorded), tuple(sorted(names)))
