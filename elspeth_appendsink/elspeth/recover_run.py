"""``recover RUN_ID -s settings.yaml``: the one command that brings any crashed run's outputs to complete.

``RUN_ID`` may be ``latest``: the run that started last (a killed process never printed its id).

It decides from what ELSPETH's landscape and the outputs say, says what it will do, then does it:

1. **Already done?** A run that ``completed``, or whose outputs a later run (started by an earlier
   ``recover``) continued and completed, needs nothing: it says which run completed them (exit 0).
2. **A run still ``running``** (its process was killed) is marked failed through ELSPETH's recorder
   only when every ``azure_append_blob`` writer of it is provably gone (lease lapsed, nothing written
   for longer than ``lease_duration``), as ``resume --mark-failed-if-dead`` does. Otherwise it
   refuses, naming the holder, with exit :data:`EXIT_RETRY` and the line to run again after the
   lease duration; ``--wait`` waits the lease out instead (re-checking, bounded by twice the
   longest ``lease_duration``).
3. **A checkpoint exists**: ELSPETH's ``resume RUN_ID -x`` (through the launcher, which corrects
   0.4.1's resume first).
4. **No checkpoint** (ELSPETH writes a lone sink once, at the end, so a crash in that write leaves
   none): a new ELSPETH ``run`` of the same settings in which each ``azure_append_blob`` sink that
   opened its output in the crashed run continues it in place: the exact path the crashed run
   rendered (its run pointer says it, whatever the template), as ``if_exists: continue`` does. The
   settings file is not edited: the redirection goes through :mod:`.session`, and each sink
   records it in the audit trail (``recover_continues``, naming the run it completes).

Exit status: ELSPETH's for the run or resume; 0 nothing to do; 1 cannot recover (the message says
why, nothing was changed); :data:`EXIT_RETRY` a writer's lease is still held.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from elspeth_appendsink.core.paths import run_pointer_name
from elspeth_appendsink.core.run_recovery import LAUNCHER, RECOVER, recover_line
from elspeth_appendsink.elspeth import session
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink, store_for
from elspeth_appendsink.errors import AppendSinkError
from elspeth_appendsink.protocol.verify import inspect_output
from elspeth_appendsink.storage import AzureStore
from elspeth_appendsink.tools.runs import LandscapeError, LandscapeRun, mark_if_gone, read_landscape, survey

__all__ = ["COMMAND", "EXIT_RETRY", "LAUNCHER", "USAGE", "recover", "recover_line"]

COMMAND = RECOVER
#: ``recover latest``: the run that started last (as ELSPETH's ``explain`` takes it).
LATEST = "latest"
#: sysexits' EX_TEMPFAIL: not now, the same command later (a writer's lease is still held).
EXIT_RETRY = 75
_PREFIX = "recover:"


USAGE = f"""\
usage: {LAUNCHER} [ELSPETH OPTIONS] {RECOVER} RUN_ID|latest [-s SETTINGS] [--wait]

Bring a crashed run's outputs to complete, from the directory the run was started in, with
its settings file (default settings.yaml). It says what it will do, then does it:
  - a run still 'running' is marked failed once every azure_append_blob writer is provably
    gone (its lease lapsed); while a lease is held it refuses (exit 75) and prints the line
    to run again after lease_duration; --wait waits the lease out instead;
  - with an ELSPETH checkpoint: ELSPETH's resume;
  - without one: a new run of the same settings whose azure_append_blob sinks continue the
    crashed run's outputs in place (each row once; verify accepts the output).
A run already completed, or whose outputs a later recover completed, is left as it is (exit 0).
latest: the run that started last. Exit: ELSPETH's status of the run or resume; 0 nothing to
do; 1 cannot recover (nothing was changed); 75 a writer's lease is still held."""


class _Refused(Exception):
    """Recovery cannot go on; the message says why. Nothing was changed."""


@dataclass
class _Request:
    run_id: str
    settings: Path
    wait: bool
    global_options: list[str] = field(default_factory=list)  # ELSPETH's, before the command

    @property
    def line(self) -> str:
        return recover_line(self.run_id, str(self.settings), self.global_options)


@dataclass
class _Output:
    """One ``azure_append_blob`` sink of the settings and what the run did with it."""

    sink: str
    cfg: SinkConfig
    store: AzureStore
    blob_path: str | None  # as the run rendered it; None: the run never opened this output

    @property
    def uri(self) -> str:
        return f"azure://{self.cfg.container}/{self.blob_path}"


def parse(args: Sequence[str]) -> _Request:
    """``[GLOBAL OPTIONS] recover RUN_ID|latest [-s SETTINGS] [--wait]``."""
    at = list(args).index(COMMAND)
    rest = list(args[at + 1 :])
    run_id = None
    settings = "settings.yaml"
    wait = False
    i = 0
    while i < len(rest):
        name, eq, inline = rest[i].partition("=")
        if name in ("-s", "--settings"):
            if not eq and i + 1 >= len(rest):
                raise _Refused(f"{name} needs a settings file")
            settings = inline if eq else rest[i + 1]
            i += 0 if eq else 1
        elif name == "--wait":
            wait = True
        elif name.startswith("-"):
            raise _Refused(f"unknown option {name} (recover takes RUN_ID, -s/--settings and --wait)")
        elif run_id is None:
            run_id = name
        else:
            raise _Refused(f"one run at a time: {run_id} and {name} given")
        i += 1
    if run_id is None:
        raise _Refused(f"usage: {recover_line('RUN_ID', settings)} [--wait]")
    return _Request(run_id, Path(settings).expanduser(), wait, list(args[:at]))


def recover(
    args: Sequence[str],
    *,
    run_elspeth: Callable[[list[str]], int],
    err: TextIO = sys.stderr,
    load_settings: Callable[[Path], Any] | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Recover the run named in ``args`` (the launcher's command line); the exit status.

    ``run_elspeth`` runs ELSPETH's own command line in this process (the launcher's, which makes
    its resume correction before a ``resume``); the other keywords are for tests.
    """

    def say(text: str) -> None:
        print(f"{_PREFIX} {text}", file=err)

    if {"-h", "--help"} & set(args[list(args).index(COMMAND) + 1 :]):
        print(USAGE, file=err)
        return 0

    try:
        request = parse(args)
        if load_settings is None:
            from elspeth_appendsink.elspeth.recover import _load_settings

            load_settings = _load_settings
        settings = load_settings(request.settings)
        url = str(settings.landscape.url)
        if request.run_id == LATEST:
            runs = read_landscape(url)
            if not runs:
                raise _Refused(f"the landscape {url} holds no run")
            request.run_id = runs[-1].run_id
            say(f"the latest run in the landscape is {request.run_id}")
        (run,) = read_landscape(url, request.run_id)
        outputs = _outputs(settings, run.run_id, request.settings)
        if run.status == "completed":
            say(f"run {run.run_id} is completed: nothing to recover. Nothing was changed.")
            return 0
        if run.status != "running":
            done = _already_completed(url, run, outputs, request)
            if done is not None:
                say(done)
                return 0
        else:
            refused = _prove_gone_and_mark(url, run, outputs, request, say, now, (sleep, monotonic))
            if refused is not None:
                return refused
    except (_Refused, LandscapeError, AppendSinkError) as exc:
        say(f"{exc}. Nothing was changed.")
        return 1
    settings_arg = str(request.settings)
    if run.checkpoints > 0:
        say(
            f"run {run.run_id} has {run.checkpoints} checkpoint(s): resuming it with ELSPETH's resume "
            "(each azure_append_blob sink skips the rows already in its output)"
        )
        return run_elspeth([*request.global_options, "resume", run.run_id, "-s", settings_arg, "-x"])
    opened = [o for o in outputs if o.blob_path is not None]
    say(
        f"run {run.run_id} has no checkpoint, so ELSPETH cannot resume it: starting a new run of "
        f"{settings_arg} whose azure_append_blob sinks continue run {run.run_id}'s outputs in place"
    )
    for o in outputs:
        if o.blob_path is None:
            say(f"  sink {o.sink}: run {run.run_id} never opened its output; the new run writes it afresh")
        else:
            say(f"  sink {o.sink}: continues {o.uri} (if_exists: continue; rows already there are skipped)")
    for name, sink in settings.sinks.items():
        if sink.plugin != AzureAppendBlobSink.name:
            say(f"  sink {name} ({sink.plugin}): not azure_append_blob; the new run writes it afresh")
    session.continue_outputs(
        {
            o.cfg.template_digest: session.Continuation(run.run_id, o.cfg.container, str(o.blob_path), o.sink)
            for o in opened
        }
    )
    return run_elspeth([*request.global_options, "run", "-s", settings_arg, "-x"])


def _outputs(settings: Any, run_id: str, path: Path) -> list[_Output]:
    outputs = []
    for name, sink in settings.sinks.items():
        if sink.plugin != AzureAppendBlobSink.name:
            continue
        cfg = SinkConfig.from_options(sink.options)
        store = store_for(cfg)
        raw = store.get(run_pointer_name(cfg.template_digest, run_id))
        outputs.append(_Output(name, cfg, store, None if raw is None else str(json.loads(raw)["blob_path"])))
    if not outputs:
        raise _Refused(f"no {AzureAppendBlobSink.name} sink in {path}: nothing to recover with this command")
    return outputs


def _already_completed(url: str, run: LandscapeRun, outputs: list[_Output], request: _Request) -> str | None:
    """Whether a later run continued ``run``'s outputs: completed → the sentence; else refuse."""
    statuses = {r.run_id: r.status for r in read_landscape(url)}
    later: dict[str, str] = {}
    for o in outputs:
        if o.blob_path is None:
            continue
        for report in inspect_output(o.store, o.blob_path).runs:
            if run.run_id in report.continues and report.run_id != run.run_id:
                later[report.run_id] = statuses.get(report.run_id, "unknown to the landscape")
    if not later:
        return None
    done = [r for r, status in later.items() if status == "completed"]
    if done and len(done) == len(later):
        where = ", ".join(o.uri for o in outputs if o.blob_path is not None)
        return (
            f"run {', '.join(done)} already completed the output of run {run.run_id} ({where}): "
            "nothing to recover. Nothing was changed."
        )
    pending = next(r for r, status in later.items() if status != "completed")
    line = recover_line(pending, str(request.settings), request.global_options)
    raise _Refused(
        f"run {pending} ({later[pending]}) continued run {run.run_id}'s output after it and did not "
        f"complete: recover that run instead: {line}"
    )


def _prove_gone_and_mark(
    url: str,
    run: LandscapeRun,
    outputs: list[_Output],
    request: _Request,
    say: Callable[[str], None],
    now: Callable[[], datetime] | None,
    timing: tuple[Callable[[float], None], Callable[[], float]],
) -> int | None:
    """Mark the ``running`` run failed once every writer is provably gone; else the exit status."""
    sleep, monotonic = timing
    opened = [o for o in outputs if o.blob_path is not None]
    if not opened:
        raise _Refused(
            f"run {run.run_id} is running and no {AzureAppendBlobSink.name} sink has written anything "
            "of it yet, so nothing can prove its process gone. If it is gone, run the pipeline again "
            "(nothing of this run is in the outputs)"
        )
    durations = [o.cfg.lease_duration for o in opened]
    finite = all(d > 0 for d in durations)
    longest = max(durations)
    deadline = monotonic() + 2 * longest + 5 if request.wait and finite else None
    waited = 0
    while True:
        refusals = []
        gone = []
        lines = []
        for o in opened:
            lease = timedelta(seconds=max(o.cfg.lease_duration, 0))  # -1, infinite: never lapses
            clock = now() if now is not None else None
            (state,) = survey(o.store, str(o.blob_path), [run], lease_duration=lease, now=clock)
            holder = f", held by run {state.lease_holder}" if state.lease_holder else ""
            lease_state = state.lease_state or "none"
            lines.append(f"sink {o.sink} ({o.uri}): lease {lease_state}{holder}; {state.reason}")
            if state.step in ("mark-failed-then-resume", "re-run-continue"):
                gone.append(state)
            else:
                refusals.append(f"sink {o.sink}: {state.reason}")
        waiting = bool(refusals) and deadline is not None and monotonic() < deadline
        if not (waiting and waited):  # while waiting, only the first and the last checks are shown
            for line in lines:
                say(line)
        if not refusals:
            break
        if waiting:
            if not waited:
                say(f"waiting for the lease to lapse (at most {2 * longest + 5} s), checking every few s")
            waited += 1
            sleep(min(5.0, max(longest / 3, 1.0)))
            continue
        if not finite:
            say(f"not recovering run {run.run_id}: {refusals[0]}. Nothing was changed.")
            say(
                "an infinite lease (lease_duration: -1) never lapses: once you are sure the writer is gone, "
                "break it with `elspeth-appendsink unlock … --yes`, then run again: " + request.line
            )
            return 1
        say(f"not recovering run {run.run_id} yet: {refusals[0]}. Nothing was changed.")
        say(
            f"a killed writer's lease lapses within lease_duration ({longest} s): run the same command "
            f"again after that, or add --wait to wait it out: {request.line}"
        )
        return EXIT_RETRY
    refused, action = mark_if_gone(url, gone[0])  # one process wrote all sinks: mark once
    say(action)
    return 1 if refused else None
