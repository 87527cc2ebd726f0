"""The ``elspeth-appendsink`` command: verify, inspect and unlock outputs; ``runs`` (:mod:`.runs`).

A thin shell over :mod:`verify` (which holds the checks) and :mod:`storage` (which talks to
Azure): it parses arguments, resolves credentials, prints for people (default) or machines
(``--json``), and turns outcomes into exit codes:

== ==============================================================================
0  verified / nothing wrong / lease broken (or none to break)
1  a problem was found (verify, inspect; with ``verify --landscape`` also an artifact ELSPETH
   recorded that the output does not match), the unlock prompt was declined, or ``runs``
   refused to mark a run failed (its writer may be alive)
2  usage error: bad or missing option, nothing at the path, unknown run,
   ``unlock`` without ``--yes`` where no one can be asked
3  storage error: unreachable account, refused credentials, missing container
4  internal error (a bug in elspeth-appendsink)
== ==============================================================================

Every secret (connection string, account key, SAS token, client secret) is registered with
:func:`~elspeth_appendsink.core.redact.register_secret` as soon as it is read, and everything printed
passes through :func:`~elspeth_appendsink.core.redact.redact`.

Why one piece (~670 lines): the argument parser, credential resolution and the five commands
share one set of options, exit codes and error mapping; what the commands print for people is
:mod:`.render`, the landscape readers are :mod:`.runs` and :mod:`.anchor`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from elspeth_appendsink._version import __version__
from elspeth_appendsink.core.paths import validate_blob_path, validate_container_name, validate_run_id
from elspeth_appendsink.core.redact import redact
from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.errors import AppendSinkError, ConfigError, StorageError
from elspeth_appendsink.protocol.verify import (
    inspect_output,
    verify_output,
)
from elspeth_appendsink.storage.base import Store
from elspeth_appendsink.storage.credentials import (
    AuthSettings,
    auth_settings,
    open_store,
    register_credential,
)
from elspeth_appendsink.tools import devstorage
from elspeth_appendsink.tools.anchor import anchor_runs, output_uri, read_artifacts
from elspeth_appendsink.tools.fleet import OutputVerdict, find_outputs, survey_outputs, verify_outputs
from elspeth_appendsink.tools.landscape import display_url, open_landscape
from elspeth_appendsink.tools.render import (
    PROG,
    Out,
    ProgressBar,
    isatty,
    print_anchor,
    print_fleet_line,
    print_fleet_summary,
    print_inspect,
    print_verify,
)
from elspeth_appendsink.tools.runs import LandscapeError, RunState, mark_if_gone, read_landscape, survey

__all__ = ["EXIT_INTERNAL", "EXIT_OK", "EXIT_PROBLEM", "EXIT_STORAGE", "EXIT_USAGE", "ProgressBar", "main"]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3
EXIT_INTERNAL = 4

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"
ENV_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"
ENV_TENANT_ID = "AZURE_TENANT_ID"
ENV_CLIENT_ID = "AZURE_CLIENT_ID"
ENV_CLIENT_SECRET = "AZURE_CLIENT_SECRET"

_DESCRIPTION = """\
Check and manage the outputs of the azure_append_blob sink (ELSPETH).

An output is one append blob, the segments that follow it when it grew too large
(rows.seg000001.csv, rows.seg000002.csv, ...) and one manifest per run that wrote it
(rows.csv.manifest/<run id>): the manifest records, for every block of rows, where it went
and its sha256, chained so that no record can be changed unnoticed.

Name the output with --container and --blob-path, the blob path as rendered for the run
(e.g. out/run-42/rows.csv, as the run's artifact shows it), not the sink's {{ run_id }}
template."""

_AUTH_HELP = f"""\
authentication (one method; a flag wins over its environment variable):
  connection string   --connection-string, or ${ENV_CONNECTION_STRING}
  SAS token           --account-url and --sas-token, or
                      ${ENV_ACCOUNT_URL} and ${ENV_SAS_TOKEN}
  managed identity    --account-url and --managed-identity (DefaultAzureCredential: managed
                      identity, workload identity, Azure CLI login, ...)
  service principal   --account-url, --tenant-id, --client-id, --client-secret, or
                      ${ENV_TENANT_ID}, ${ENV_CLIENT_ID}, ${ENV_CLIENT_SECRET}
  Prefer environment variables for secrets: a command line is visible to other users."""

_EXIT_HELP = """\
exit codes:
  0  verified / nothing wrong / lease broken (or no lease to break)
  1  a problem was found (verify, inspect; verify --landscape: the output does not match what
     ELSPETH recorded), the unlock prompt was declined, or runs refused --mark-failed (the
     run's writer may be alive)
  2  usage error (bad option, nothing at --blob-path, unknown --run-id, unlock without --yes,
     a --landscape that cannot be read: not a URL, a backend ELSPETH does not accept, a
     missing file or driver, an unreachable server, a refused password)
  3  storage error (account unreachable, credentials refused, container missing)
  4  internal error"""

_COMMAND_EXAMPLES = {
    "verify": [
        f"{PROG} verify  --container results --blob-path out/run-42/rows.csv",
        f"{PROG} verify  --container results --blob-path out/run-42/rows.csv \\\n"
        "      --landscape sqlite:///./state/audit.db",
        f"{PROG} verify  --container results --prefix out/ --landscape postgresql+psycopg://elspeth@db/audit",
    ],
    "inspect": [f"{PROG} inspect --container results --blob-path out/run-42/rows.csv --run-id run-42"],
    "unlock": [f"{PROG} unlock  --container results --blob-path out/run-42/rows.csv --yes"],
    "runs": [
        f"{PROG} runs    --container results --blob-path out/run-42/rows.csv \\\n"
        "      --landscape sqlite:///./state/audit.db --run-id run-42 --mark-failed",
        f"{PROG} runs    --container results --prefix out/ --landscape postgresql+psycopg://elspeth@db/audit",
    ],
}
_EXAMPLES = "\n".join(
    [
        "examples:",
        f"  export {ENV_CONNECTION_STRING}='DefaultEndpointsProtocol=https;AccountName=...'",
        *(f"  {line}" for lines in _COMMAND_EXAMPLES.values() for line in lines),
    ]
)

_COMMANDS = {
    "verify": (
        "prove that every byte of an output is described by its manifests and intact",
        """\
Read every manifest and stream every segment of the output once, and check:
  - each manifest decodes and its hash chain is unbroken (no record edited, dropped or moved);
  - the runs of the output continue one another (if_exists: continue);
  - every byte of every segment is described by exactly one manifest entry (or was there
    before the first run), so no byte was appended by anything else;
  - each entry's bytes match its sha256, and sealed segments are sealed at the recorded length.
It reports rows, bytes, segments and runs, the sha256 of the whole output, each problem with
its location (blob, byte offset, manifest record), and whether a run needs recovering (the
launcher's `recover`; a crashed run that stopped mid-step is not a problem, but it is reported).

With --landscape (ELSPETH's landscape url, read-only), it also checks the output against what
ELSPETH recorded: every artifact the sink returned for this output (its content hash and size,
one per write) must be the output as one of the run's write calls left it, and the last
artifact of a completed run must be where the run left the output (the whole output, for the
last run). Every run of the output must be known to the landscape. This finds what the manifests
alone cannot: their last records removed together with their bytes, or foreign rows appended
under a forged record. The first mismatch is reported with its run, write call, offset in the
whole output, the landscape's value (expected) and the output's (found). --run-id checks only
that run.

With --prefix P instead of --blob-path, every output whose blob path starts with P is verified
(found from the sink's run pointers and manifests), --workers at a time, with one line per
output as it finishes and a summary (outputs, rows, bytes, seconds, MB/s); with --landscape
each is also anchored (the landscape is read once). Exit 1 if any output fails; a prefix with
no output is a usage error (2).
Nothing is written. A progress bar is shown on a terminal (stderr) for long outputs.""",
    ),
    "inspect": (
        "show where the runs of an output stand: entries, rows, cursor, lease, resume needed?",
        """\
Read the manifests and the segments' properties (not the data) and show, for each run (or
the one given with --run-id): its entries, rows and bytes, the segments it wrote, whether it
sealed its output, the cursor a resume would continue from, and whether a resume is needed
(the manifest ends in an unfinished step). For each segment: size, bytes described, sealed,
and the lease state with the run holding it. Sizes are compared with the manifests; use
`verify` to check the bytes themselves. Nothing is written.""",
    ),
    "unlock": (
        "break a stale lease left on an output by a crashed writer (asks first)",
        """\
A writer fences the segment it appends to with a blob lease. A crashed writer's lease expires
by itself after lease_duration (60 s by default), and a resume of the same run takes its own
lease back; an infinite lease, or one held by a run that will never resume, must be broken.
This command lists the leased segments of the output and the run holding each lease, then
breaks them — only with --yes, or after you confirm at the prompt. Breaking the lease of a
writer that is still running makes its next append fail (it never corrupts the output: every
append is guarded by its expected position).""",
    ),
    "runs": (
        "show each ELSPETH run of an output (status, manifest, lease) and what may be done next",
        """\
Join ELSPETH's landscape (--landscape, read-only) with the output's manifests and leases and show,
for each run (or the one given with --run-id): ELSPETH's status and checkpoints, the sink's
entries, rows, cursor and unfinished step, the lease of the segment it wrote last and who holds
it, and the next step with the line to paste: the launcher's `recover RUN_ID -s settings.yaml`
(it resumes when a checkpoint exists, else continues the output in a new run), or nothing.
A run still 'running' whose process was killed can be marked failed with --mark-failed, but only
when its writer is provably gone: its lease is not held and nothing of the run was written for
longer than --lease-duration. Otherwise it refuses, naming the holder.
Marking goes through ELSPETH's own recorder (run it from ELSPETH's environment); repeating it
changes nothing more.

With --prefix P instead of --blob-path, every run of every output under P is shown, grouped by
output, with a summary of the next steps; runs of these outputs that the landscape does not
hold are listed too (a landscape holding none of them is probably the wrong one).""",
    ),
}


class UsageError(Exception):
    """A command line that cannot be acted on. The message says which option and why."""


# --------------------------------------------------------------------------------------------
# arguments


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("output")
    where.add_argument("--container", required=True, help="the container holding the output")
    where.add_argument(
        "--blob-path",
        metavar="PATH",
        help="the output's blob path as rendered for the run (e.g. out/run-42/rows.csv), "
        "not the {{ run_id }} template (verify and runs: or --prefix)",
    )
    auth = common.add_argument_group(
        f"authentication (one method; a flag wins over its variable; `{PROG} --help` explains them)"
    )
    auth.add_argument(
        "--connection-string", metavar="STRING", help=f"storage connection string [${ENV_CONNECTION_STRING}]"
    )
    auth.add_argument(
        "--account-url",
        metavar="URL",
        help=f"account endpoint, e.g. https://myaccount.blob.core.windows.net [${ENV_ACCOUNT_URL}]",
    )
    auth.add_argument(
        "--sas-token", metavar="TOKEN", help=f"SAS token, with --account-url [${ENV_SAS_TOKEN}]"
    )
    auth.add_argument(
        "--managed-identity",
        action="store_true",
        help="use DefaultAzureCredential (managed identity, workload identity, Azure CLI login...)",
    )
    auth.add_argument("--tenant-id", metavar="ID", help=f"service principal tenant [${ENV_TENANT_ID}]")
    auth.add_argument("--client-id", metavar="ID", help=f"service principal client id [${ENV_CLIENT_ID}]")
    auth.add_argument(
        "--client-secret", metavar="SECRET", help=f"service principal secret [${ENV_CLIENT_SECRET}]"
    )
    common.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (for machines)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``elspeth-appendsink`` (exposed for documentation and tests)."""
    epilog = f"{_AUTH_HELP}\n\n{_EXIT_HELP}\n\n{_EXAMPLES}"
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.\n\n{epilog}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True
    common = _common_options()
    for name, (summary, details) in _COMMANDS.items():
        # A command's help shows its own options and examples; the authentication methods and the
        # exit codes are explained once, in the top-level help.
        own = "\n".join(["examples:", *(f"  {line}" for line in _COMMAND_EXAMPLES.get(name, []))])
        shared = f"authentication methods and exit codes: `{PROG} --help`"
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=f"{summary[0].upper()}{summary[1:].rstrip('?')}.\n\n{details}",
            epilog=f"{own}\n\n{shared}" if own else shared,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "verify":
            sub.add_argument("--no-progress", action="store_true", help="never show the progress bar")
            sub.add_argument(
                "--landscape",
                metavar="URL",
                help="also check the output against ELSPETH's recorded artifacts (its landscape url: "
                "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB; read-only)",
            )
            sub.add_argument("--run-id", "--run", metavar="RUN", help="with --landscape: check only this run")
        if name in ("verify", "runs"):
            sub.add_argument(
                "--prefix",
                metavar="P",
                help="every output whose blob path starts with P (found from the sink's run pointers "
                "and manifests), instead of --blob-path",
            )
            sub.add_argument(
                "--workers",
                type=int,
                default=4,
                metavar="N",
                help="with --prefix: outputs checked at a time (default 4)",
            )
        if name in ("inspect", "unlock"):
            sub.add_argument(
                "--run-id",
                metavar="RUN",
                help="only this run" if name == "inspect" else "only break leases held by this run",
            )
        if name == "unlock":
            sub.add_argument("--yes", "-y", action="store_true", help="break without asking")
        if name == "runs":
            sub.add_argument(
                "--landscape",
                required=True,
                metavar="URL",
                help="ELSPETH's landscape url (sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB)",
            )
            sub.add_argument("--run-id", metavar="RUN", help="only this run")
            sub.add_argument(
                "--mark-failed",
                action="store_true",
                help="mark a 'running' run failed when its writer is provably gone",
            )
            sub.add_argument(
                "--lease-duration",
                type=int,
                default=60,
                metavar="SECONDS",
                help="the sink's lease_duration option (default 60)",
            )
    devstorage.add_parser(commands)
    return parser


# --------------------------------------------------------------------------------------------
# credentials


def resolve_credentials(args: argparse.Namespace, env: Mapping[str, str]) -> AuthSettings:
    """Pick exactly one authentication method: flags first, then environment variables.

    Which values to take is the command's business (its flags and variables); their checks and
    the settings they make are the sink's own (:func:`~elspeth_appendsink.storage.credentials.auth_settings`).
    """
    for value in (
        args.connection_string,
        env.get(ENV_CONNECTION_STRING),
        args.sas_token,
        env.get(ENV_SAS_TOKEN),
        args.client_secret,
        env.get(ENV_CLIENT_SECRET),
    ):
        register_credential(value)  # every secret we can see, used or not, so none can be printed
    method = _chosen_method(args, env)
    if method == "connection_string":
        value = (args.connection_string or env.get(ENV_CONNECTION_STRING, "")).strip()
        return auth_settings(connection_string=value, account_url=args.account_url or None)
    url = (args.account_url or env.get(ENV_ACCOUNT_URL, "")).strip()
    if not url:
        raise UsageError(
            f"--account-url (or {ENV_ACCOUNT_URL}) is required with {method.replace('_', ' ')} "
            "authentication, e.g. https://myaccount.blob.core.windows.net"
        )
    if method == "sas_token":
        return auth_settings(
            account_url=url, sas_token=(args.sas_token or env.get(ENV_SAS_TOKEN, "")).strip()
        )
    if method == "managed_identity":
        return auth_settings(account_url=url, use_managed_identity=True)
    fields = {
        "--tenant-id": args.tenant_id or env.get(ENV_TENANT_ID),
        "--client-id": args.client_id or env.get(ENV_CLIENT_ID),
        "--client-secret": args.client_secret or env.get(ENV_CLIENT_SECRET),
    }
    missing = [flag for flag, value in fields.items() if not value]
    if missing:
        raise UsageError(f"service principal authentication also needs {', '.join(missing)}")
    return auth_settings(
        account_url=url,
        tenant_id=fields["--tenant-id"],
        client_id=fields["--client-id"],
        client_secret=fields["--client-secret"],
    )


def _chosen_method(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    flagged = [
        method
        for method, given in (
            ("connection_string", args.connection_string),
            ("sas_token", args.sas_token),
            ("managed_identity", args.managed_identity),
            ("service_principal", args.tenant_id or args.client_id or args.client_secret),
        )
        if given
    ]
    if len(flagged) > 1:
        raise UsageError(
            f"give one authentication method, not {' and '.join(m.replace('_', ' ') for m in flagged)}"
        )
    if flagged:
        return flagged[0]
    if env.get(ENV_CONNECTION_STRING):
        return "connection_string"
    if env.get(ENV_SAS_TOKEN):
        return "sas_token"
    if env.get(ENV_TENANT_ID) and env.get(ENV_CLIENT_ID) and env.get(ENV_CLIENT_SECRET):
        return "service_principal"
    raise UsageError(
        "no credentials: give --connection-string (or set "
        f"{ENV_CONNECTION_STRING}), --account-url with --sas-token, --managed-identity or a "
        "service principal (--tenant-id, --client-id, --client-secret); see --help"
    )


# --------------------------------------------------------------------------------------------
# output


def _cmd_verify_prefix(args: argparse.Namespace, store: Store, out: Out) -> int:
    if args.run_id is not None:
        raise UsageError("--run-id cannot be combined with --prefix: a fleet is checked whole")
    outputs = find_outputs(store, args.prefix)
    if not outputs:
        raise UsageError(
            f"--prefix: no output of this sink under {args.prefix!r} in container {store.container} "
            "(no run pointer or manifest names one)"
        )

    def show(verdict: OutputVerdict) -> None:
        if not args.json:
            print_fleet_line(out, verdict)

    fleet = verify_outputs(
        store, args.prefix, outputs, landscape=args.landscape, workers=args.workers, on_done=show
    )
    if args.json:
        out.json(fleet.as_dict())
    else:
        print_fleet_summary(out, fleet)
    return EXIT_OK if fleet.ok else EXIT_PROBLEM


def _cmd_verify(args: argparse.Namespace, store: Store, out: Out) -> int:
    if args.prefix is not None:
        return _cmd_verify_prefix(args, store, out)
    if args.run_id is not None and args.landscape is None:
        raise UsageError("--run-id needs --landscape: verify checks every byte of every run")
    landscape = None
    if args.landscape is not None:  # read first: a wrong url fails before the long scan
        landscape = read_artifacts(args.landscape, output_uri(store.container, args.blob_path), args.run_id)
    bar = ProgressBar(out.stderr, enabled=False if args.no_progress else None)
    try:
        report = verify_output(store, args.blob_path, progress=bar)
    finally:
        bar.close()
    anchor = None
    if landscape is not None:
        if args.run_id is not None and all(r.run_id != args.run_id for r in report.runs):
            raise LandscapeError(
                f"--run-id: the output has no manifest of run {args.run_id!r} "
                f"(runs: {', '.join(r.run_id for r in report.runs) or 'none'})"
            )
        runs, nodes = landscape
        anchor = anchor_runs(
            display_url(args.landscape), report, report.prefixes, runs, nodes, run_id=args.run_id
        )
    ok = report.ok and (anchor is None or anchor.ok)
    if args.json:
        document = report.as_dict()
        if anchor is not None:
            document["verified"] = report.ok
            document["ok"] = ok
            document["anchor"] = anchor.as_dict()
        out.json(document)
    else:
        print_verify(out, report)
        if anchor is not None:
            out.line("")
            print_anchor(out, anchor)
    return EXIT_OK if ok else EXIT_PROBLEM


def _cmd_inspect(args: argparse.Namespace, store: Store, out: Out) -> int:
    report = inspect_output(store, args.blob_path, run_id=args.run_id)
    if args.json:
        out.json(report.as_dict())
    else:
        print_inspect(out, report)
    return EXIT_PROBLEM if report.problems else EXIT_OK


def _state_document(state: RunState, action: str | None) -> dict[str, Any]:
    run, sink = state.landscape, state.sink
    return {
        "run_id": run.run_id,
        "status": run.status,
        "checkpoints": run.checkpoints,
        "sink": None if sink is None else sink.as_dict(),
        "lease_state": state.lease_state,
        "lease_holder": state.lease_holder,
        "last_write": None if state.last_write is None else state.last_write.isoformat(),
        "writer_gone": None if state.verdict is None else state.verdict.gone,
        "next": state.step,
        "reason": state.reason,
        "recover": None if state.step == "nothing" else recover_line(run.run_id),
        "action": action,
    }


def _print_state(out: Out, state: RunState, action: str | None, indent: str = "") -> None:
    run, sink = state.landscape, state.sink
    out.line(f"{indent}run {run.run_id}: ELSPETH status {run.status}, {run.checkpoints} checkpoint(s)")
    if sink is None:
        out.line(f"{indent}  sink: no manifest of this run in the output")
    else:
        pending = f"; unfinished: {sink.pending}" if sink.pending else ""
        out.line(f"{indent}  sink: {sink.entries} entries, {sink.rows} rows, {sink.bytes} bytes{pending}")
        holder = f", held by run {state.lease_holder}" if state.lease_holder else ""
        last = "never" if state.last_write is None else state.last_write.isoformat(timespec="seconds")
        out.line(f"{indent}  lease: {state.lease_state or 'none'}{holder}; last write {last}")
    out.line(f"{indent}  next: {state.step} ({state.reason})")
    if state.step != "nothing":
        out.line(
            f"{indent}  recover: {recover_line(run.run_id)}   # from the run's directory, its settings file"
        )
    if action:
        out.line(f"{indent}  action: {action}")


def _cmd_runs_prefix(args: argparse.Namespace, store: Store, out: Out, now: datetime | None) -> int:
    if args.mark_failed or args.run_id is not None:
        raise UsageError(
            "--prefix lists every run of every output: --run-id and --mark-failed take --blob-path"
        )
    with open_landscape(args.landscape) as landscape:
        shown = landscape.url
        runs = landscape.runs()
    outputs = find_outputs(store, args.prefix)
    if not outputs:
        raise UsageError(
            f"--prefix: no output of this sink under {args.prefix!r} in container {store.container} "
            "(no run pointer or manifest names one)"
        )
    surveyed = survey_outputs(
        store,
        outputs,
        runs,
        lease_duration=timedelta(seconds=args.lease_duration),
        now=now,
        workers=args.workers,
    )
    steps: dict[str, int] = {}
    unknown_total = 0
    documents = []
    for blob_path, states, unknown in surveyed:
        unknown_total += len(unknown)
        for state in states:
            steps[state.step] = steps.get(state.step, 0) + 1
        if args.json:
            documents.append(
                {
                    "blob_path": blob_path,
                    "runs": [_state_document(state, None) for state in states],
                    "unknown_to_landscape": unknown,
                }
            )
            continue
        out.line(f"output {blob_path}")
        for state in states:
            _print_state(out, state, None, indent="  ")
        for run_id in unknown:
            out.line(f"  run {run_id}: not in the landscape {shown} (its manifest is in the output)")
    known_total = sum(len(states) for _, states, _ in surveyed)
    if args.json:
        out.json(
            {
                "container": store.container,
                "prefix": args.prefix,
                "landscape": shown,
                "outputs": documents,
                "summary": {
                    "outputs": len(outputs),
                    "runs": known_total,
                    "next": steps,
                    "unknown": unknown_total,
                },
            }
        )
        return EXIT_OK
    summary = ", ".join(f"{count} {step}" for step, count in sorted(steps.items())) or "none"
    out.line(f"{len(outputs)} output(s), {known_total} run(s) known to the landscape; next steps: {summary}")
    if unknown_total:
        out.line(
            f"{unknown_total} run(s) of these outputs are not in {shown}"
            + (": is it the landscape these runs used?" if known_total == 0 else "")
        )
    return EXIT_OK


def _cmd_runs(args: argparse.Namespace, store: Store, out: Out, now: datetime | None) -> int:
    if args.prefix is not None:
        return _cmd_runs_prefix(args, store, out, now)
    if args.mark_failed and args.run_id is None:
        raise UsageError("--mark-failed needs --run-id: one run is marked at a time")
    states = survey(
        store,
        args.blob_path,
        read_landscape(args.landscape, args.run_id),
        lease_duration=timedelta(seconds=args.lease_duration),
        now=now,
    )
    refused = False
    for state in states:
        action = None
        if args.mark_failed:  # with --run-id, checked above: one run at a time
            refused, action = mark_if_gone(args.landscape, state)
        if args.json:
            out.json(_state_document(state, action))
        else:
            _print_state(out, state, action)
    return EXIT_PROBLEM if refused else EXIT_OK


def _cmd_unlock(args: argparse.Namespace, store: Store, out: Out, stdin: TextIO) -> int:
    report = inspect_output(store, args.blob_path)
    leases = list(report.leases)
    skipped = []
    if args.run_id is not None:
        skipped = [s for s in leases if s.lease_holder != args.run_id]
        leases = [s for s in leases if s.lease_holder == args.run_id]
    result: dict[str, Any] = {
        "container": report.container,
        "blob_path": report.blob_path,
        "leases": [
            {"segment": s.name, "lease_state": s.lease_state, "holder": s.lease_holder} for s in leases
        ],
        "skipped": [
            {"segment": s.name, "lease_state": s.lease_state, "holder": s.lease_holder} for s in skipped
        ],
        "broken": [],
    }
    if not args.json:
        for s in skipped:
            holder = (
                f"run {s.lease_holder}" if s.lease_holder else "a writer that is not a run of this output"
            )
            out.line(f"Leaving {s.name}: its lease is held by {holder}, not by run {args.run_id}.")
    if not leases:
        if args.json:
            out.json(result)
        else:
            out.line(f"No lease to break on azure://{report.container}/{report.blob_path}.")
        return EXIT_OK
    if not args.json:
        for s in leases:
            holder = (
                f"run {s.lease_holder}" if s.lease_holder else "a writer that is not a run of this output"
            )
            out.line(f"{s.name}: lease {s.lease_state}, held by {holder}.")
    if not args.yes:
        if args.json or not isatty(stdin):
            message = (
                "refusing to break a lease without confirmation: re-run with --yes "
                "(make sure the writer holding it is not running)"
            )
            if args.json:
                out.json({**result, "error": {"message": message, "exit_code": EXIT_USAGE}})
            out.error(f"{PROG}: {message}")
            return EXIT_USAGE
        count = len(leases)
        out.stdout.write(
            f"Break {'this lease' if count == 1 else f'these {count} leases'}? A writer that is still "
            "running will fail its next append. [y/N] "
        )
        out.stdout.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            out.line("Nothing was changed.")
            return EXIT_PROBLEM
    for s in leases:
        store.break_lease(s.name)
        result["broken"].append(s.name)
        if not args.json:
            out.line(f"Broke the lease on {s.name}.")
    if args.json:
        out.json(result)
    else:
        out.line("A resume of the run takes the output over again (`elspeth resume`).")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# entry point


def _check_target(args: argparse.Namespace) -> None:
    prefix = getattr(args, "prefix", None)
    if prefix is not None and args.blob_path is not None:
        raise UsageError("give --blob-path (one output) or --prefix (every output under it), not both")
    if prefix is None and args.blob_path is None:
        also = " or --prefix" if args.command in ("verify", "runs") else ""
        raise UsageError(f"--blob-path{also} is required")
    if prefix is not None and getattr(args, "workers", 1) < 1:
        raise UsageError("--workers must be at least 1")
    try:
        validate_container_name(args.container)
        if prefix is not None:
            if "{{" in prefix or "{%" in prefix:
                raise UsageError("--prefix looks like a template: give the rendered start of the blob paths")
            return
        validate_blob_path(args.blob_path, option="blob-path")
        if getattr(args, "run_id", None) is not None:
            validate_run_id(args.run_id)
    except ConfigError as exc:
        raise UsageError(_config_message(exc)) from None
    if "{{" in args.blob_path or "{%" in args.blob_path:
        raise UsageError(
            "--blob-path looks like a template: give the path as rendered for the run "
            "(e.g. out/run-42/rows.csv), as the sink's artifact shows it"
        )


def _config_message(exc: ConfigError) -> str:
    flag = "--" + exc.option.replace("_", "-")
    text = str(exc).removeprefix(f"option '{exc.option}': ")
    return f"{flag}: {text}"


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    """Run ``elspeth-appendsink`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    out = Out(stdout or sys.stdout, stderr or sys.stderr)
    environment = os.environ if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error argparse reported (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "dev-storage":  # a local emulator: none of the output options below apply
        return devstorage.run(args, out.stdout, out.stderr)
    json_mode = bool(getattr(args, "json", False))

    def fail(code: int, message: str) -> int:
        if json_mode:
            out.json({"ok": False, "error": {"message": redact(message), "exit_code": code}})
        out.error(f"{PROG} {args.command}: error: {message}")
        return code

    try:
        _check_target(args)
        credentials = resolve_credentials(args, environment)
        try:
            store = open_store(credentials, args.container)
        except ValueError as exc:  # the SDK refused the connection string or URL
            raise UsageError(f"cannot use the credentials given: {redact(str(exc))}") from None
        if args.command == "verify":
            return _cmd_verify(args, store, out)
        if args.command == "inspect":
            return _cmd_inspect(args, store, out)
        if args.command == "runs":
            return _cmd_runs(args, store, out, now)
        return _cmd_unlock(args, store, out, stdin or sys.stdin)
    except (UsageError, LandscapeError) as exc:
        return fail(EXIT_USAGE, str(exc))
    except ConfigError as exc:
        return fail(EXIT_USAGE, _config_message(exc))
    except StorageError as exc:
        return fail(EXIT_STORAGE, str(exc))
    except AppendSinkError as exc:  # not raised by verify/inspect for data problems; be safe
        return fail(EXIT_PROBLEM, str(exc))
    except KeyboardInterrupt:
        out.error(f"{PROG}: interrupted")
        return 130
    except Exception as exc:  # a bug: say so, without a traceback that could carry a secret
        return fail(
            EXIT_INTERNAL,
            f"unexpected {type(exc).__name__}: {redact(str(exc))} (a bug in {PROG}; please report it)",
        )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
