"""``resume RUN_ID --mark-failed-if-dead``: mark a killed run failed, then let ELSPETH resume it.

ELSPETH resumes only a run whose status is ``failed``; a run whose process was killed stays
``running`` for ever. The launcher's opt-in flag does what ``elspeth-appendsink runs
--mark-failed`` does, for every ``azure_append_blob`` sink of the settings, before handing the
command to ELSPETH:

1. load the settings the way ELSPETH's ``resume`` does (its own loader: ``${VAR}`` and Key Vault
   secrets resolved), and take the landscape from ``--database`` or ``landscape.url``;
2. if the run is not ``running``, there is nothing to mark: ELSPETH decides the rest;
3. for each ``azure_append_blob`` sink that opened its output in this run (its run pointer
   says which blob path the run resolved), ask :func:`~elspeth_appendsink.tools.runs.survey`
   whether the writer is provably gone (lease not held, nothing renewed for longer than
   ``lease_duration``);
4. only when at least one sink proves it and none doubts it, mark the run failed through
   ELSPETH's ``LandscapeRecorder``; otherwise refuse, naming the live holder, and change nothing.

One process writes all sinks of a run, so one sink's proof is the run's; a sink that has not
opened yet proves nothing (the process may still be reading its source), hence "at least one".

Every step is printed on stderr. Without the flag the launcher never touches a run's status.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from elspeth_appendsink.core.paths import run_pointer_name
from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink, store_for
from elspeth_appendsink.errors import AppendSinkError
from elspeth_appendsink.tools.runs import (
    LandscapeError,
    LandscapeRun,
    RunState,
    mark_if_gone,
    read_landscape,
    survey,
)

__all__ = ["FLAG", "Unreadable", "load_elspeth_settings", "mark_failed_if_dead", "take_flag"]

FLAG = "--mark-failed-if-dead"


def take_flag(args: list[str]) -> bool:
    """Remove :data:`FLAG` from ``args`` (ELSPETH does not know it); whether it was there."""
    present = FLAG in args
    while FLAG in args:
        args.remove(FLAG)
    return present


def mark_failed_if_dead(
    args: list[str],
    *,
    err: TextIO = sys.stderr,
    load_settings: Callable[[Path], Any] | None = None,
    now: datetime | None = None,
) -> int | None:
    """Act on ``resume`` ``args`` (ELSPETH's own); None to go on resuming, else the exit status.

    Exit status 1 (ELSPETH's "failed or invalid"): the writer may be alive, or the run, the
    settings or the landscape cannot be read; the message says which, and nothing was changed.
    ``load_settings`` (default: ELSPETH's own loader) and ``now`` are for tests.
    """
    try:
        run_id, settings_path, database = _resume_arguments(args)
        settings = (load_settings or load_elspeth_settings)(settings_path)
        # As ELSPETH's resume does: --database is a SQLite file, else the settings' landscape url
        # (any backend); a sqlcipher passphrase comes from the variable the settings name.
        url = f"sqlite:///{Path(database).expanduser().resolve()}" if database else settings.landscape.url
        passphrase = _passphrase(settings)
        (run,) = read_landscape(url, run_id, passphrase=passphrase)
        if run.status != "running":
            print(f"{FLAG}: run {run_id} is {run.status}: nothing to mark", file=err)
            return None
        sinks = {
            name: sink.options
            for name, sink in settings.sinks.items()
            if sink.plugin == AzureAppendBlobSink.name
        }
        if not sinks:
            why = f"no {AzureAppendBlobSink.name} sink in {settings_path}: nothing can prove the writer gone"
            return _refuse(err, why)
        states = [_state(name, options, run, err, now) for name, options in sinks.items()]
    except (LandscapeError, AppendSinkError, Unreadable) as exc:
        return _refuse(err, str(exc))
    gone: list[RunState] = []
    for name, state in states:
        if state is None:
            continue  # this sink never opened its output in this run: it has nothing to say
        if state.step not in ("mark-failed-then-resume", "re-run-continue"):
            return _refuse(err, f"sink {name}: {state.reason}")
        gone.append(state)
    if not gone:
        return _refuse(err, f"no {AzureAppendBlobSink.name} sink has written anything of run {run_id} yet")
    try:
        # all sinks' writer (one process) is gone: mark once
        refused, action = mark_if_gone(url, gone[0], passphrase=passphrase)
    except LandscapeError as exc:
        return _refuse(err, str(exc))
    print(f"{FLAG}: {action}", file=err)
    if not refused and gone[0].step == "re-run-continue":
        line = recover_line(run_id, str(settings_path), [a for a in args[: args.index("resume")]])
        print(
            f"{FLAG}: run {run_id} has no checkpoint, so ELSPETH cannot resume it; this continues its "
            f"output in a new run: {line}",
            file=err,
        )
    return 1 if refused else None


class Unreadable(Exception):
    """The resume command's arguments or settings cannot be read; the message says which."""


def _refuse(err: TextIO, why: str) -> int:
    print(f"{FLAG}: not marking the run failed: {why}. Nothing was changed.", file=err)
    return 1


def _resume_arguments(args: list[str]) -> tuple[str, Path, str | None]:
    """RUN_ID, the settings file and ``--database`` from ELSPETH's ``resume`` arguments."""
    rest = args[args.index("resume") + 1 :]
    run_id = settings = database = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        name, eq, inline = arg.partition("=")
        if name in ("-s", "--settings", "-d", "--database"):
            value = inline if eq else (rest[i + 1] if i + 1 < len(rest) else None)
            i += 0 if eq else 1
            if name in ("-s", "--settings"):
                settings = value
            else:
                database = value
        elif not arg.startswith("-") and run_id is None:
            run_id = arg
        i += 1
    if run_id is None:
        raise Unreadable("resume needs RUN_ID")
    return run_id, Path(settings or "settings.yaml").expanduser(), database


def _passphrase(settings: Any) -> str | None:
    """The sqlcipher passphrase, read as ELSPETH reads it (``landscape.encryption_key_env``)."""
    landscape = settings.landscape
    if getattr(landscape, "backend", "sqlite") != "sqlcipher":
        return None
    name = getattr(landscape, "encryption_key_env", "ELSPETH_AUDIT_KEY")
    value = os.environ.get(name, "").strip()
    if not value:
        raise Unreadable(f"the landscape is sqlcipher and {name} (landscape.encryption_key_env) is not set")
    return value


def load_elspeth_settings(path: Path) -> Any:
    """ELSPETH's settings, loaded by the same function its ``run`` and ``resume`` commands use."""
    from elspeth import cli

    try:
        settings, _resolutions = cli._load_settings_with_secrets(path)
    except Exception as exc:  # ELSPETH's loader raises many kinds; the resume that follows reports them too
        # The type only: a validation message may quote an option's value, and values hold secrets.
        raise Unreadable(
            f"cannot load settings {path} ({type(exc).__name__}; `elspeth validate -s {path}` says why)"
        ) from None
    return settings


def _state(
    name: str, options: dict[str, Any], run: LandscapeRun, err: TextIO, now: datetime | None
) -> tuple[str, RunState | None]:
    cfg = SinkConfig.from_options(options)
    store = store_for(cfg)
    raw = store.get(run_pointer_name(cfg.template_digest, run.run_id))
    if raw is None:
        return name, None
    blob_path = json.loads(raw)["blob_path"]
    lease_duration = timedelta(seconds=max(cfg.lease_duration, 0))  # -1, infinite: never lapses
    (state,) = survey(store, blob_path, [run], lease_duration=lease_duration, now=now)
    holder = f", held by run {state.lease_holder}" if state.lease_holder else ""
    print(
        f"{FLAG}: sink {name} ({cfg.container}/{blob_path}): lease {state.lease_state or 'none'}{holder}; "
        f"{state.reason}",
        file=err,
    )
    return name, state


# The names these had before they became public (other modules of the package still import them).
_load_settings = load_elspeth_settings
_Unreadable = Unreadable
