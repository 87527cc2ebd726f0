"""Running ELSPETH with ``azure_append_blob`` available: :func:`register` and :func:`main`.

ELSPETH finds its built-in plugins by scanning its own package and has no entry-point group for
third-party plugins. This module registers an object whose ``elspeth_get_sinks`` hook returns
:class:`~elspeth_appendsink.elspeth.sink.AzureAppendBlobSink` on the shared plugin manager (the
one the CLI uses), then runs ELSPETH's own command line with ELSPETH's arguments::

    python -m elspeth_appendsink.elspeth --no-dotenv run -s settings.yaml -x
    python -m elspeth_appendsink.elspeth --no-dotenv recover RUN_ID -s settings.yaml

It adds: ``resume RUN_ID --mark-failed-if-dead`` (:mod:`.recover`); ``recover RUN_ID`` (any
crashed run's outputs completed, by resume or a re-run continuing them in place,
:mod:`.recover_run`) and ``recover --prefix P -s SETTINGS…`` (:mod:`.fleet_recover`); closing
lines after ``run``, ``resume`` and ``recover`` (:mod:`.summary`). Without these flags and
commands no run's status is ever changed. ELSPETH 0.4.1's defects are corrected in memory only
where their marker is present, said once on stderr: resume (:mod:`.resume_fix`), PostgreSQL
landscapes (:mod:`.landscape_fix`; ``--widen-landscape-column`` for a landscape created narrow).
A settings file naming a renamed option is refused first (:mod:`.renamed`). The module imports
without ELSPETH; only :func:`register` and :func:`main` then fail, with
:class:`ElspethNotAvailable`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elspeth_appendsink.elspeth import renamed

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
    framework error), so ``sys.exit(main())`` behaves like the ``elspeth`` command; ``recover``
    adds 75 (a writer's lease is still held: the same command later). ``run``, ``resume`` and
    ``recover`` end with the closing lines of :mod:`.summary` on stderr.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    settings = _option(args, "-s", "--settings")
    problems = renamed.renamed_options(Path(settings)) if settings is not None else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    try:
        register()
        app = _cli_app()
    except ElspethNotAvailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from elspeth_appendsink.elspeth import fleet_recover, session

    if fleet_recover.is_fleet_recover(args):
        return fleet_recover.main(args)
    command, at = _command(args)
    if command in ("run", "resume", "recover"):
        from elspeth_appendsink.elspeth import landscape_fix

        widen = landscape_fix.take_flag(args)
        fixed = landscape_fix.apply(landscape_fix.landscape_url(args), widen=widen)
        if fixed is not None:
            return fixed
    session.clear()

    def run_elspeth(elspeth_args: list[str]) -> int:
        if _command(elspeth_args)[0] == "resume":
            from elspeth_appendsink.elspeth import resume_fix

            resume_fix.apply()
        try:
            app(args=elspeth_args, prog_name="elspeth-appendsink-elspeth")
        except SystemExit as exc:
            return _exit_status(exc.code)
        return 0

    if command == "recover":
        from elspeth_appendsink.elspeth import recover_run

        _load_dotenv(args[:at])
        status = recover_run.recover(args, run_elspeth=run_elspeth)
    else:
        if command == "resume":
            from elspeth_appendsink.elspeth import recover

            if recover.take_flag(args):
                status_now = recover.mark_failed_if_dead(args)
                if status_now is not None:
                    return status_now
        status = run_elspeth(args)
    if command in ("run", "resume", "recover") and "--help" not in args:
        _close(status, args, at)
    return status


def _command(args: Sequence[str]) -> tuple[str | None, int]:
    """ELSPETH's command in ``args`` (after its global options) and its index."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--env-file":
            i += 2
            continue
        if not arg.startswith("-"):
            return arg, i
        i += 1
    return None, len(args)


def _option(args: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        if name in names:
            return inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def _load_dotenv(global_options: Sequence[str]) -> None:
    """What ELSPETH's own entry point does before a command: ``recover`` reads the settings first."""
    if "--no-dotenv" in global_options:
        return
    from elspeth import cli

    env_file = _option(global_options, "--env-file")
    cli._load_dotenv(env_file=Path(env_file) if env_file else None)


def _close(status: int, args: Sequence[str], at: int) -> None:
    """Print the closing lines (run id, outputs, verify and recover lines) for a finished command."""
    from elspeth_appendsink.elspeth import session, summary

    outputs = session.outputs()
    if not any(o.run_id for o in outputs.values()):
        return
    settings = _option(args[at + 1 :], "-s", "--settings") or "settings.yaml"
    lines = summary.closing_lines(
        status,
        outputs,
        settings=settings,
        landscape_url=_landscape_url(settings),
        global_options=[a for a in args[:at] if a == "--no-dotenv"],
    )
    for line in lines:
        print(line, file=sys.stderr)


def _landscape_url(settings: str) -> str | None:
    """The settings' landscape url, read with ELSPETH's own loader; None when it cannot be read."""
    from elspeth_appendsink.elspeth.recover import _load_settings, _Unreadable

    try:
        return str(_load_settings(Path(settings).expanduser()).landscape.url)
    except _Unreadable:
        return None


def _exit_status(code: Any) -> int:
    """SystemExit.code as a process status, the way the interpreter reads it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
