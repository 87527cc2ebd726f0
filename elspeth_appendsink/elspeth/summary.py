"""The launcher's closing lines: what the operator needs after every ``run``, ``resume`` and ``recover``.

After ELSPETH returns, the launcher prints (on stderr, so ``--format json`` output stays clean):
the run id and how it ended, each ``azure_append_blob`` output's rendered path (as its sink
reported it through :mod:`.session`), a ready-to-paste ``elspeth-appendsink verify …
--landscape …`` line per output and, for a run that did not complete, the ``recover`` line.

The verify line carries authentication only as what is safe to print: an environment variable's
name (``--connection-string "$VAR"`` for ``connection_string_env: VAR``, nothing when that is
``AZURE_STORAGE_CONNECTION_STRING``, which ``verify`` reads by default), an account URL, a tenant
or client id. A secret given inline in the options is never printed: the line then says which
variable to set. A landscape URL that is not ``sqlite:///`` (it may hold a password) is shown as
``"$LANDSCAPE_URL"``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.elspeth.session import Output

__all__ = ["closing_lines", "verify_line"]

PROG = "elspeth-appendsink"
_DEFAULT_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def _auth_flags(options: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """``verify``'s authentication flags for a sink's options, and a note when a secret is inline."""
    account_url = options.get("account_url")
    if options.get("connection_string_env"):
        var = str(options["connection_string_env"]).strip()
        return ([] if var == _DEFAULT_ENV else ["--connection-string", f"${var}"]), None
    if options.get("connection_string"):
        return [], f"with ${_DEFAULT_ENV} set to the sink's connection string"
    flags = ["--account-url", str(account_url)] if account_url else []
    if options.get("sas_token_env"):
        return [*flags, "--sas-token", f"${str(options['sas_token_env']).strip()}"], None
    if options.get("sas_token"):
        return flags, "with $AZURE_STORAGE_SAS_TOKEN set to the sink's SAS token"
    if options.get("use_managed_identity") and not options.get("client_id"):
        return [*flags, "--managed-identity"], None
    if options.get("tenant_id") or options.get("client_id"):
        flags += ["--tenant-id", str(options.get("tenant_id")), "--client-id", str(options.get("client_id"))]
        if options.get("client_secret_env"):
            return [*flags, "--client-secret", f"${str(options['client_secret_env']).strip()}"], None
        return flags, "with $AZURE_CLIENT_SECRET set to the service principal's secret"
    return [*flags, "--managed-identity"], None


def _quote(arg: str) -> str:
    """Shell-quote ``arg``, leaving a lone ``$VAR`` expandable (in double quotes)."""
    if arg.startswith("$") and arg[1:].replace("_", "").isalnum():
        return f'"{arg}"'
    return shlex.quote(arg)


def verify_line(output: Output, landscape_url: str | None) -> str:
    """The ``elspeth-appendsink verify`` line for one output (no secret, ever)."""
    flags, note = _auth_flags(output.options or {})
    args = [PROG, "verify", "--container", str(output.container), "--blob-path", str(output.blob_path)]
    if landscape_url is not None:
        shown = landscape_url if landscape_url.startswith("sqlite:///") else "$LANDSCAPE_URL"
        args += ["--landscape", shown]
    line = " ".join(_quote(a) for a in [*args, *flags])
    return f"{line}   # {note}" if note else line


def closing_lines(
    status: int,
    outputs: Mapping[str, Output],
    *,
    settings: str | Path,
    landscape_url: str | None,
    global_options: Sequence[str] = (),
) -> list[str]:
    """The closing lines for a command that exited ``status``; none when no sink started a run."""
    reported = [o for o in outputs.values() if o.run_id is not None]
    if not reported:
        return []
    run_id = str(reported[0].run_id)
    ended = "completed" if status == 0 else f"did not complete (exit {status})"
    lines = [f"{PROG}: run {run_id} {ended}"]
    for output in reported:
        sink = output.sink or "azure_append_blob"
        if output.blob_path is None:
            if output.error:
                lines.append(f"  output {sink}: not opened: {output.error}")
            else:
                lines.append(f"  output {sink}: no rows in this command (the output is as the run left it)")
            continue
        lines.append(f"  output {sink}: azure://{output.container}/{output.blob_path}")
        lines.append(f"    verify: {verify_line(output, landscape_url)}")
    if status != 0:
        lines.append(f"  to recover it: {recover_line(run_id, str(settings), global_options)}")
    return lines
