"""The launcher's run-time resume correction: applied only where the buggy code is there."""

from __future__ import annotations

import io
import types

from elspeth_appendsink.elspeth import resume_fix

_BUGGY = """
def resume(run_id):
    validation_graph, execution_graph = _build_resume_graphs(settings_config, plugins)
    return _execute_resume_with_instances(
        graph=execution_graph,
    )
"""
_FIXED = _BUGGY.replace("graph=execution_graph", "graph=validation_graph")


def _fake_cli(source: str) -> types.ModuleType:
    module = types.ModuleType("fake_elspeth_cli")
    exec(compile(source, "<fake>", "exec"), module.__dict__)
    module.__dict__["_build_resume_graphs"] = lambda *_a, **_k: ("validation", "execution")
    return module


def test_needs_fix_is_precise() -> None:
    assert resume_fix.needs_fix(_BUGGY)
    assert not resume_fix.needs_fix(_FIXED)
    assert not resume_fix.needs_fix("")


def test_applied_once_with_notice_where_needed() -> None:
    cli = _fake_cli(_BUGGY)
    import inspect

    real_getsource = inspect.getsource
    try:
        inspect.getsource = lambda obj: _BUGGY if obj is cli.resume else real_getsource(obj)  # type: ignore[assignment]
        err = io.StringIO()
        assert resume_fix.apply(cli, stderr=err)
        assert resume_fix.apply(cli, stderr=err)  # idempotent
    finally:
        inspect.getsource = real_getsource  # type: ignore[assignment]
    assert err.getvalue().count(resume_fix.NOTICE) == 1
    assert cli._build_resume_graphs() == ("validation", "validation")


def test_not_applied_where_the_bug_is_gone() -> None:
    cli = _fake_cli(_FIXED)
    import inspect

    real_getsource = inspect.getsource
    try:
        inspect.getsource = lambda obj: _FIXED if obj is cli.resume else real_getsource(obj)  # type: ignore[assignment]
        err = io.StringIO()
        assert not resume_fix.apply(cli, stderr=err)
    finally:
        inspect.getsource = real_getsource  # type: ignore[assignment]
    assert err.getvalue() == ""
    assert cli._build_resume_graphs() == ("validation", "execution")
