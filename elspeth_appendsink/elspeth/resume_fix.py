"""Run-time correction of ELSPETH 0.4.x's resume bug (no file on disk is ever changed).

ELSPETH 0.4.1 (commit de732358) builds two graphs in ``elspeth.cli._build_resume_graphs``: a
*validation* graph over the original source (whose node ids the original run registered) and an
*execution* graph over ``NullSource``; ``resume()`` then executes on the execution graph, whose
``source_null_…`` node id was never registered in the landscape, so every resume fails. The
upstream fix is to execute on the validation graph (``graph=validation_graph``).

:func:`apply` makes exactly that change for this process only: when, and only when, the source
of ``elspeth.cli.resume`` still contains the precise marker ``graph=execution_graph`` *and*
unpacks ``validation_graph, execution_graph = _build_resume_graphs(...)``, it replaces the module
attribute ``_build_resume_graphs`` with a wrapper returning ``(validation, validation)``.
``_build_resume_graphs`` has no other caller, so nothing else changes. On a version where the
bug is gone the marker is absent and nothing is done.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TextIO

__all__ = ["MARKER_EXECUTE", "MARKER_UNPACK", "NOTICE", "apply", "needs_fix"]

MARKER_EXECUTE = "graph=execution_graph"
MARKER_UNPACK = "validation_graph, execution_graph = _build_resume_graphs("
NOTICE = (
    "elspeth-appendsink: applied ELSPETH's resume correction for this process only "
    "(resume now executes on the validation graph, as upstream's fix does): this ELSPETH's "
    "cli.resume executes on the NullSource execution graph, whose source node id the original "
    "run never registered, so resume would fail. No file was changed."
)
_FLAG = "__elspeth_appendsink_resume_fix__"


def needs_fix(resume_source: str) -> bool:
    """Whether ``resume``'s source has the 0.4.1 bug (pure: decided on the source text alone)."""
    return MARKER_EXECUTE in resume_source and MARKER_UNPACK in resume_source


def apply(cli: ModuleType | None = None, *, stderr: TextIO | None = None) -> bool:
    """Correct ``cli`` (default ``elspeth.cli``) when it needs it; True when corrected now or before.

    Says so once on ``stderr`` (default ``sys.stderr``). Idempotent.
    """
    if cli is None:
        import elspeth.cli as cli_module

        cli = cli_module
    original: Any = getattr(cli, "_build_resume_graphs", None)
    if original is None:
        return False
    if getattr(original, _FLAG, False):
        return True
    resume = getattr(cli, "resume", None)
    if resume is None:
        return False
    try:
        source = inspect.getsource(inspect.unwrap(resume))
    except (OSError, TypeError):
        return False  # cannot prove the bug is there: leave ELSPETH alone
    if not needs_fix(source):
        return False

    def _build_resume_graphs(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        validation_graph, _execution_graph = original(*args, **kwargs)
        return validation_graph, validation_graph

    wrapper: Callable[..., tuple[Any, Any]] = _build_resume_graphs
    setattr(wrapper, _FLAG, True)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cli, "_build_resume_graphs", wrapper)  # noqa: B010 - module attribute replaced at run time
    print(NOTICE, file=stderr if stderr is not None else sys.stderr)
    return True
