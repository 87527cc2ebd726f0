"""What the launcher and the sinks of one process tell each other: continuations in, outputs out.

ELSPETH builds its sinks itself, from the settings file, so the launcher cannot hand a sink an
argument. This module is the one channel between them, for the life of the process:

* **In: continuations.** The launcher's ``recover`` (:mod:`.recover_run`) starts a new run whose
  ``azure_append_blob`` sinks continue a crashed run's outputs in place, without editing the
  settings. Before calling ELSPETH's ``run`` it registers one :class:`Continuation` per output,
  keyed by the sink's template digest (which covers ``container`` and the ``blob_path``
  template); each sink looks its own up (:func:`continuation_for`) when it opens its output, and
  then writes to the crashed run's rendered path as ``if_exists: continue`` does.
* **Out: outputs.** Each sink reports the run and output it opened, or why it could not start
  (:func:`report`), so that the launcher's closing lines (:mod:`.summary`) name every output's
  rendered path and, for a failed start, its one-line cause.

Nothing here talks to storage or ELSPETH; a registry filled by nobody changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Continuation", "Output", "clear", "continuation_for", "continue_outputs", "outputs", "report"]


@dataclass(frozen=True, slots=True)
class Continuation:
    """Write this sink's output at ``blob_path`` (the crashed run's), continuing run ``completes``."""

    completes: str
    container: str
    blob_path: str
    sink: str  # the sink's name in the settings, for messages and the audit record


@dataclass(frozen=True, slots=True)
class Output:
    """What one sink of this process reported: its run, the output it opened, or its start error."""

    template_digest: str
    sink: str | None = None  # the sink's name in the settings (from ELSPETH's node id)
    run_id: str | None = None
    container: str | None = None
    blob_path: str | None = None  # as rendered for the run (None: not opened yet)
    options: Mapping[str, Any] | None = None  # the sink's options as ELSPETH gave them (never printed)
    error: str | None = None  # one line, no secret: why the sink could not start


_lock = threading.Lock()
_continuations: dict[str, Continuation] = {}
_outputs: dict[str, Output] = {}


def continue_outputs(continuations: Mapping[str, Continuation]) -> None:
    """Register the continuations of the next run, keyed by template digest (replaces any earlier)."""
    with _lock:
        _continuations.clear()
        _continuations.update(continuations)


def continuation_for(template_digest: str) -> Continuation | None:
    """The continuation registered for the output with ``template_digest``, if any."""
    with _lock:
        return _continuations.get(template_digest)


def report(template_digest: str, **facts: Any) -> None:
    """Record (or update) what the sink with ``template_digest`` knows of its run and output."""
    with _lock:
        current = _outputs.get(template_digest, Output(template_digest))
        _outputs[template_digest] = replace(current, **facts)


def outputs() -> dict[str, Output]:
    """Every sink's report so far, keyed by template digest."""
    with _lock:
        return dict(_outputs)


def clear() -> None:
    """Forget every continuation and report (tests; the launcher before a command)."""
    with _lock:
        _continuations.clear()
        _outputs.clear()
