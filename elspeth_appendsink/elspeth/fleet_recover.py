"""``recover --prefix P -s A.yaml [-s B.yaml …] [--wait]``: recover every crashed run of a fleet.

After a host crash that killed many runs, one command instead of one per run:

1. each settings file is loaded with ELSPETH's own loader and matched to the runs it started by
   the hash ELSPETH gave them (``runs.config_hash`` = ``stable_hash(resolve_config(settings))``):
   exact, where the sinks' template or node ids are not (shards of one fleet share their sink
   options and differ only in their source);
2. the outputs under ``P`` are found from the sink's run pointers and manifests
   (:func:`~elspeth_appendsink.tools.fleet.find_outputs`, in every container the settings'
   ``azure_append_blob`` sinks name), and with them their runs; every run ELSPETH has not
   recorded ``completed`` is a candidate;
3. each candidate is recovered in a child process of the launcher (one ELSPETH run per
   process), ``--workers`` at a time: ``recover RUN -s SETTINGS`` where the launcher has the
   single-run recovery command, else ``resume RUN -s SETTINGS -x --mark-failed-if-dead`` (which
   resumes a run with a checkpoint and only marks one without). A live writer is never touched:
   the child refuses while its lease is held; with ``--wait`` it is asked again until the lease
   has lapsed (bounded by twice the longest ``lease_duration`` plus a minute).

Every action and every child's output is printed on stderr. Exit status: 0 every candidate
recovered (or none); :data:`EXIT_RETRY` only leases held some back (run it again later, or with
``--wait``); 1 otherwise (a run no settings file matches, a refused or failed recovery). Running
it again changes nothing more: completed runs are not candidates.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.recover import Unreadable, load_elspeth_settings
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink, store_for
from elspeth_appendsink.errors import AppendSinkError
from elspeth_appendsink.protocol.verify import inspect_output
from elspeth_appendsink.storage import AzureStore
from elspeth_appendsink.tools.fleet import find_outputs
from elspeth_appendsink.tools.landscape import LandscapeError, display_url, open_landscape

__all__ = ["COMMAND", "EXIT_RETRY", "is_fleet_recover", "main"]

COMMAND = "recover"
#: sysexits' EX_TEMPFAIL, as the single-run recovery command uses it: a lease is still held.
EXIT_RETRY = 75
_PREFIX = "recover --prefix:"
_HELD = ("held by run", "writer may be alive")


class _Refused(Exception):
    """The fleet cannot be recovered as asked; the message says why. Nothing was changed."""


@dataclass
class _Request:
    prefix: str
    settings: list[Path]
    wait: bool
    workers: int
    global_options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Settings:
    path: Path
    config_hash: str
    url: str
    passphrase: str | None
    stores: dict[str, AzureStore]  # container -> store, from the azure_append_blob sinks
    lease_duration: int  # the longest of its sinks (seconds; -1 counts as 60)


def is_fleet_recover(args: Sequence[str]) -> bool:
    """Whether ``args`` is ``[GLOBAL OPTIONS] recover --prefix …`` (the fleet form)."""
    return COMMAND in args and any(a == "--prefix" or a.startswith("--prefix=") for a in args)


def _parse(args: Sequence[str]) -> _Request:
    at = list(args).index(COMMAND)
    rest = list(args[at + 1 :])
    prefix: str | None = None
    settings: list[Path] = []
    wait = False
    workers = 2
    i = 0
    while i < len(rest):
        name, eq, inline = rest[i].partition("=")
        takes_value = name in ("--prefix", "-s", "--settings", "--workers")
        if takes_value and not eq and i + 1 >= len(rest):
            raise _Refused(f"{name} needs a value")
        value = inline if eq else (rest[i + 1] if takes_value else "")
        i += 1 if takes_value and not eq else 0
        if name == "--prefix":
            prefix = value
        elif name in ("-s", "--settings"):
            settings.append(Path(value).expanduser())
        elif name == "--workers":
            if not value.isdigit() or int(value) < 1:
                raise _Refused("--workers must be a positive number")
            workers = int(value)
        elif name == "--wait":
            wait = True
        else:
            raise _Refused(
                f"unexpected {rest[i]!r} (recover --prefix P -s SETTINGS [-s SETTINGS …] [--wait])"
            )
        i += 1
    if prefix is None or not settings:
        raise _Refused("usage: recover --prefix P -s SETTINGS [-s SETTINGS …] [--wait] [--workers N]")
    return _Request(prefix, settings, wait, workers, list(args[:at]))


def _config_hash(settings: Any) -> str:
    """The hash ELSPETH records as ``runs.config_hash`` for a run started with ``settings``."""
    from elspeth.core.canonical import stable_hash
    from elspeth.core.config import resolve_config

    return str(stable_hash(resolve_config(settings)))


def _load(path: Path) -> _Settings:
    from elspeth_appendsink.elspeth.recover import _passphrase

    settings = load_elspeth_settings(path)
    stores: dict[str, AzureStore] = {}
    lease = 0
    for sink in settings.sinks.values():
        if sink.plugin != AzureAppendBlobSink.name:
            continue
        cfg = SinkConfig.from_options(sink.options)
        stores.setdefault(cfg.container, store_for(cfg))
        lease = max(lease, cfg.lease_duration if cfg.lease_duration > 0 else 60)
    if not stores:
        raise _Refused(f"{path} has no {AzureAppendBlobSink.name} sink")
    return _Settings(
        path, _config_hash(settings), str(settings.landscape.url), _passphrase(settings), stores, lease
    )


def _child_command(run_id: str, settings: Path, wait: bool) -> list[str]:
    """The single-run recovery the launcher offers for ``run_id``."""
    if importlib.util.find_spec("elspeth_appendsink.elspeth.recover_run") is not None:
        return [COMMAND, run_id, "-s", str(settings), *(["--wait"] if wait else [])]
    return ["resume", run_id, "-s", str(settings), "-x", "--mark-failed-if-dead"]


def _run_child(argv: list[str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "elspeth_appendsink.elspeth", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def main(
    args: Sequence[str],
    *,
    err: TextIO = sys.stderr,
    run_child: Callable[[list[str]], tuple[int, str]] = _run_child,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Recover every crashed run of the fleet ``args`` names; the exit status (module docstring)."""

    def say(text: str) -> None:
        print(f"{_PREFIX} {text}", file=err, flush=True)

    try:
        request = _parse(args)
        loaded = [_load(path) for path in request.settings]
        urls = {s.url for s in loaded}
        if len(urls) != 1:
            raise _Refused(
                "the settings name different landscapes ("
                + ", ".join(sorted(display_url(u) for u in urls))
                + "): recover one landscape's fleet at a time"
            )
        first = loaded[0]
        by_hash: dict[str, _Settings] = {}
        for s in loaded:
            by_hash.setdefault(s.config_hash, s)
        stores: dict[str, AzureStore] = {}
        for s in loaded:
            for container, store in s.stores.items():
                stores.setdefault(container, store)
        runs_of: dict[str, list[str]] = {}  # run id -> its outputs (container/blob path)
        for container, store in sorted(stores.items()):
            for blob_path in find_outputs(store, request.prefix):
                for report in inspect_output(store, blob_path).runs:
                    runs_of.setdefault(report.run_id, []).append(f"{container}/{blob_path}")
        if not runs_of:
            raise _Refused(
                f"no output of this sink under {request.prefix!r} in "
                + ", ".join(f"container {c}" for c in sorted(stores))
            )
        with open_landscape(first.url, passphrase=first.passphrase, option="landscape.url") as landscape:
            shown = landscape.url
            known = {r.run_id: r for r in landscape.runs()}
            hashes = landscape.config_hashes(r for r in runs_of if r in known)
    except (_Refused, Unreadable, LandscapeError, AppendSinkError) as exc:
        say(f"{exc}. Nothing was changed.")
        return 1
    say(f"{len(runs_of)} run(s) wrote the outputs under {request.prefix!r}; landscape {shown}")
    plan: list[tuple[str, _Settings]] = []
    unmatched = 0
    for run_id in sorted(runs_of):
        recorded = known.get(run_id)
        if recorded is None:
            say(f"run {run_id}: not in the landscape: skipped ({len(runs_of[run_id])} output(s))")
            unmatched += 1
        elif recorded.status == "completed":
            say(f"run {run_id}: completed: nothing to do")
        elif (match := by_hash.get(hashes.get(run_id, ""))) is None:
            say(
                f"run {run_id}: {recorded.status}, but no settings file given started it "
                "(its config hash differs from theirs): skipped"
            )
            unmatched += 1
        else:
            say(
                f"run {run_id}: {recorded.status}, {recorded.checkpoints} checkpoint(s), "
                f"settings {match.path}: recovering"
            )
            plan.append((run_id, match))

    def recover_one(item: tuple[str, _Settings]) -> tuple[str, int, str]:
        run_id, match = item
        argv = [*request.global_options, *_child_command(run_id, match.path, request.wait)]
        deadline = time.monotonic() + 2 * match.lease_duration + 60
        while True:
            code, output = run_child(argv)
            held = code == EXIT_RETRY or (code == 1 and any(h in output for h in _HELD))
            if not (held and request.wait and time.monotonic() < deadline):
                return run_id, (EXIT_RETRY if held else code), output
            pause = min(5.0, max(1.0, match.lease_duration / 3))
            say(f"run {run_id}: its writer's lease is still held; asking again in {pause:.0f}s (--wait)")
            sleep(pause)

    results: list[tuple[str, int, str]] = []
    with ThreadPoolExecutor(max_workers=request.workers) as pool:
        for run_id, code, output in pool.map(recover_one, plan):
            results.append((run_id, code, output))
            for line in output.rstrip("\n").splitlines():
                say(f"  {run_id[:12]}… | {line}")
            outcome = {0: "recovered", EXIT_RETRY: "a writer's lease is still held: run this again later"}
            say(f"run {run_id}: exit {code}: {outcome.get(code, 'NOT recovered (see its output above)')}")
    failed = [r for r, c, _ in results if c not in (0, EXIT_RETRY)]
    held = [r for r, c, _ in results if c == EXIT_RETRY]
    say(
        f"{len(results)} run(s) acted on: {len(results) - len(failed) - len(held)} recovered, "
        f"{len(held)} held by a live lease, {len(failed)} not recovered; {unmatched} skipped"
    )
    if failed or unmatched:
        return 1
    return EXIT_RETRY if held else 0
