"""Running ELSPETH with ``azure_append_blob`` available: :func:`register` and :func:`main`.

ELSPETH finds its built-in plugins by scanning its own package and has no entry-point group for
third-party plugins. This module takes the route its plugin manager does support: it registers
an object whose ``elspeth_get_sinks`` hook returns :class:`~elspeth_appendsink.sink.AzureAppendBlobSink`
on the shared plugin manager (the one the CLI uses), then runs ELSPETH's own command line::

    python -m elspeth_appendsink.elspeth --no-dotenv run -s settings.yaml -x
    python -m elspeth_appendsink.elspeth --no-dotenv resume RUN_ID -s settings.yaml -x
    python -m elspeth_appendsink.elspeth --no-dotenv resume RUN_ID -s settings.yaml -x --mark-failed-if-dead
    elspeth-appendsink-elspeth run -s settings.yaml -x        # the same, as a console script

Every argument is ELSPETH's but one: ``resume RUN_ID --mark-failed-if-dead`` first marks a run
that is still ``running`` failed when every ``azure_append_blob`` sink proves its writer gone,
and refuses (exit 1, naming the lease holder) otherwise (:mod:`elspeth_appendsink.elspeth.recover`);
without the flag no run's status is ever changed. For ``resume`` on an ELSPETH whose
``cli.resume`` still has 0.4.1's bug, the launcher corrects it in memory first and says so on
stderr (:mod:`elspeth_appendsink.elspeth.resume_fix`). For ``run`` and ``resume`` on a PostgreSQL
landscape it corrects 0.4.1's narrow ``runs.schema_contract_hash`` and its table-creation race
the same way, and refuses a landscape already created narrow unless given
``--widen-landscape-column`` (:mod:`elspeth_appendsink.elspeth.landscape_fix`).
``recover --prefix P -s SETTINGS…`` recovers every crashed run of a fleet
(:mod:`elspeth_appendsink.elspeth.fleet_recover`). The module
imports without ELSPETH (which needs Python 3.12 or later and is installed from its
repository, not from PyPI); only :func:`register` and :func:`main` then fail, with
:class:`ElspethNotAvailable`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["ElspethNotAvailable", "main", "register"]

_INSTALL_HINT = (
    "ELSPETH is required to run pipelines with the azure_append_blob sink: it needs Python >= 3.12 and is "
    "installed from its repository (it is not on PyPI), e.g. "
    "`git clone https://github.com/tachyon-beep/elspeth && pip install -e './elspeth[azure,web,rag]'`"
)


class ElspethNotAvailable(ImportError):
    """ELSPETH (or a module its plugin discovery imports) cannot be imported here."""


def _hook_marker() -> Any:
    try:
        from elspeth.plugins.infrastructure.hookspecs import hookimpl
    except ImportError as exc:
        raise ElspethNotAvailable(f"{_INSTALL_HINT}. Import failed: {exc}", name=exc.name) from exc
    return hookimpl


def _plugin_manager() -> Any:
    """ELSPETH's process-wide plugin manager (its first use imports every built-in plugin)."""
    try:
        from elspeth.plugins.infrastructure.manager import get_shared_plugin_manager

        return get_shared_plugin_manager()
    except ImportError as exc:
        # Discovery imports every built-in plugin module; e.g. web_scrape needs html2text and
        # chroma_sink needs chromadb, which only ELSPETH's [web] and [rag] extras install.
        raise ElspethNotAvailable(
            f"{_INSTALL_HINT}. ELSPETH's plugin discovery could not import {exc.name or exc}: "
            "install ELSPETH with at least the [azure,web,rag] extras",
            name=exc.name,
        ) from exc


def _sink_class() -> type[Any]:
    from elspeth_appendsink.elspeth import host
    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink

    if not host.HAVE_ELSPETH:  # pragma: no cover - elspeth imported above, so host found it too
        raise ElspethNotAvailable(
            f"{_INSTALL_HINT}. elspeth_appendsink.elspeth.host could not import ELSPETH's BaseSink "
            "and result types"
        )
    sink_cls: type[Any] = AzureAppendBlobSink
    return sink_cls


def _cli_app() -> Any:
    try:
        from elspeth.cli import app
    except ImportError as exc:
        message = f"{_INSTALL_HINT}. Importing elspeth.cli failed: {exc}"
        raise ElspethNotAvailable(message, name=exc.name) from exc
    return app


def register() -> type[Any]:
    """Make ``plugin: azure_append_blob`` resolve in this process's ELSPETH; return the sink class.

    Idempotent: when a sink named ``azure_append_blob`` is already registered (by an earlier
    call, or by a copy of the module placed among ELSPETH's own plugins), nothing is registered
    and the class already in place is returned.

    Raises:
        ElspethNotAvailable: ELSPETH (or a module its plugin discovery needs) is not importable.
    """
    hookimpl = _hook_marker()
    sink_cls = _sink_class()
    manager = _plugin_manager()
    name = sink_cls.name
    registered = {cls.name: cls for cls in manager.get_sinks()}
    if name in registered:
        return registered[name]  # type: ignore[no-any-return]

    class AppendSinkHooks:
        """The pluggy hook object contributing ``azure_append_blob``."""

        @hookimpl  # type: ignore[untyped-decorator,unused-ignore]
        def elspeth_get_sinks(self) -> list[type[Any]]:
            return [sink_cls]

    manager.register(AppendSinkHooks())
    return sink_cls


def main(argv: Sequence[str] | None = None) -> int:
    """Register the sink, then run ELSPETH's command line on ``argv`` (default: ``sys.argv[1:]``).

    Returns ELSPETH's exit status (0 completed; 1 failed or invalid; 3 interrupted; 4 audit or
    framework error), so ``sys.exit(main())`` behaves like the ``elspeth`` command.
    """
    try:
        register()
        app = _cli_app()
    except ElspethNotAvailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args = list(sys.argv[1:] if argv is None else argv)
    from elspeth_appendsink.elspeth import fleet_recover

    if fleet_recover.is_fleet_recover(args):
        return fleet_recover.main(args)
    if "run" in args or "resume" in args:
        from elspeth_appendsink.elspeth import landscape_fix

        widen = landscape_fix.take_flag(args)
        status = landscape_fix.apply(landscape_fix.landscape_url(args), widen=widen)
        if status is not None:
            return status
    if "resume" in args:
        from elspeth_appendsink.elspeth import recover, resume_fix

        if recover.take_flag(args):
            status = recover.mark_failed_if_dead(args)
            if status is not None:
                return status
        resume_fix.apply()
    try:
        app(args=args, prog_name="elspeth-appendsink-elspeth")
    except SystemExit as exc:
        return _exit_status(exc.code)
    return 0


def _exit_status(code: Any) -> int:
    """SystemExit.code as a process status, the way the interpreter reads it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
