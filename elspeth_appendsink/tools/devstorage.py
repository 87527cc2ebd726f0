"""``elspeth-appendsink dev-storage``: a local Azure Storage emulator for a first pipeline.

Starts the project's pinned Azurite (:class:`~elspeth_appendsink.testing.azurite.Azurite`: loopback
only, ``--disableTelemetry``, data in memory), creates the containers named with ``--container``,
prints the connection string and the ``export`` line to paste into another shell, and keeps
running until Ctrl-C (SIGINT) or SIGTERM, then stops the emulator it started (by its pid) and
exits 0. Everything stored is gone once it stops.

The connection string holds Azurite's account key: that key is the emulator's public, documented
development key (the same on every machine), never a real secret, so printing it is the point.

Exit codes: 0 stopped on request; 1 Azurite did not start (a ``--port`` in use) or stopped by
itself; 2 usage error or Azurite (Node.js, ``npm ci``) not installed; 3 a container could not be
created.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from elspeth_appendsink.core.paths import validate_container_name
from elspeth_appendsink.core.redact import redact
from elspeth_appendsink.errors import ConfigError
from elspeth_appendsink.storage import build_service_client
from elspeth_appendsink.testing.azurite import Azurite, AzuriteNotInstalled

__all__ = ["ENV_LINE_PREFIX", "add_parser", "run"]

PROG = "elspeth-appendsink dev-storage"

#: The line to paste starts with this; tools and tests look for it.
ENV_LINE_PREFIX = "export AZURE_STORAGE_CONNECTION_STRING="

SUMMARY = "start a local Azure Storage emulator (Azurite) for trying a pipeline; Ctrl-C stops it"
_DETAILS = """\
Starts the project's pinned Azurite on 127.0.0.1 (telemetry off, data in memory), creates the
containers given with --container, prints the connection string and the export line to paste
into the shell that runs your pipeline, and runs until Ctrl-C or SIGTERM, then stops Azurite.
The account key in the connection string is Azurite's public development key, not a secret.
Needs Node.js and the project's node_modules (`npm ci`, which `make demo` / `make test` run).

exit codes: 0 stopped on request, 1 Azurite did not start (a --port in use) or stopped by
itself, 2 usage error or Azurite not installed, 3 a container could not be created."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev-storage`` to the ``elspeth-appendsink`` command's subcommands."""
    sub = commands.add_parser(
        "dev-storage",
        help=SUMMARY,
        description=f"{SUMMARY[0].upper()}{SUMMARY[1:]}.\n\n{_DETAILS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="NAME",
        help="create this container once the emulator is up (repeatable)",
    )
    sub.add_argument(
        "--port", type=int, default=0, help="loopback port to listen on (default: any free port)"
    )


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        for name in args.container:
            validate_container_name(name)
    except ConfigError as exc:
        print(f"{PROG}: error: --container: {exc}", file=err)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: error: --port: must be 0 (any free port) to 65535, got {args.port}", file=err)
        return 2
    if args.port and not _port_is_free(args.port):
        print(f"{PROG}: error: Azurite did not start on 127.0.0.1:{args.port}: the port is in use", file=err)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(args, stop, out, err)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound now (Azurite reports a busy port only after its banner)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serve(args: argparse.Namespace, stop: threading.Event, out: TextIO, err: TextIO) -> int:
    azurite = Azurite(port=args.port)
    try:
        azurite.start()
    except AzuriteNotInstalled as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 2
    except RuntimeError as exc:  # it exited or never listened: a port in use, most often
        print(f"{PROG}: error: Azurite did not start on 127.0.0.1:{args.port or 'any port'}: {exc}", file=err)
        return 1
    try:
        service = build_service_client(connection_string=azurite.connection_string)
        for name in args.container:
            try:
                service.create_container(name)
            except Exception as exc:  # the SDK's ResourceExistsError cannot exist here: fresh emulator
                print(
                    f"{PROG}: error: cannot create container {name!r}: {redact(str(exc))}",
                    file=err,
                )
                return 3
        _announce(azurite, args.container, out)
        process = azurite.process
        assert process is not None
        # Wake up every second to notice an emulator that died on its own.
        while not stop.wait(1.0):
            if process.poll() is not None:
                print(f"{PROG}: Azurite exited ({process.returncode})", file=err)
                return 1
        print("stopping Azurite ...", file=out, flush=True)
        return 0
    finally:
        azurite.stop()


def _announce(azurite: Azurite, containers: Sequence[str], out: TextIO) -> None:
    lines = [
        f"Azurite (pid {azurite.pid}) is listening on {azurite.blob_endpoint}",
        f"containers: {', '.join(containers)}" if containers else "containers: none (add --container NAME)",
        "data is kept in memory: it is gone when this command stops",
        "",
        "connection string:",
        f"  {azurite.connection_string}",
        "",
        "paste this into the shell that runs your pipeline:",
        f"{ENV_LINE_PREFIX}'{azurite.connection_string}'",
        "",
        "Ctrl-C stops the emulator.",
    ]
    print("\n".join(lines), file=out, flush=True)
