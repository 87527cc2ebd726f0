"""Lifecycle of a local Azurite blob emulator: start, wait until ready, connect, stop.

Owns one ``azurite-blob`` child process for tests, the demo and benchmarks. It is bound to a
loopback address on an ephemeral port (``--blobPort 0`` unless ``port`` is given; the real port
is read from Azurite's log line), always runs with ``--disableTelemetry`` (Azurite phones home otherwise) and
``--skipApiVersionCheck`` (the SDK speaks a newer API version than Azurite knows), keeps its
data in memory or in a private temporary directory, and is stopped by its pid with SIGTERM —
never by name, so other people's emulators are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from elspeth_appendsink.testing.process import stop_process

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteNotInstalled", "find_azurite_binary"]

#: Azurite's well-known development account. Not a secret, but treated as one by the redactor.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_READY = re.compile(rb"Azurite Blob service (?:is starting|successfully listens) on http://([0-9.]+):(\d+)")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # elspeth_appendsink/testing/azurite.py


class AzuriteNotInstalled(RuntimeError):
    """Raised when Node.js or the pinned ``azurite`` npm package is not installed."""


def find_azurite_binary(root: Path | None = None) -> Path:
    """Return the path of the project's ``azurite-blob`` launcher, or explain how to get it."""
    base = root or Path(os.environ.get("ELSPETH_APPENDSINK_ROOT", _PROJECT_ROOT))
    candidate = base / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None:
        raise AzuriteNotInstalled(
            "Node.js is not installed: Azurite (the Azure Storage emulator used by tests and the demo) "
            "needs Node 20+ and npm. Install them, then run `npm ci` in the project root."
        )
    if not candidate.exists():
        raise AzuriteNotInstalled(
            f"Azurite is not installed at {candidate}. Run `npm ci` in {base} (the Makefile does this)."
        )
    return candidate


@dataclass
class Azurite:
    """One running Azurite blob service on 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``in_memory=False`` keeps
    data in a temporary ``--location`` directory that is removed on stop.
    """

    in_memory: bool = True
    extent_memory_limit_mb: int | None = None
    startup_timeout: float = 30.0
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _workdir: str | None = field(default=None, init=False)
    _log: bytearray = field(default_factory=bytearray, init=False)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Azurite:
        """Spawn Azurite and block until its blob endpoint accepts requests."""
        if self.process is not None:
            return self
        binary = find_azurite_binary()
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        args = [
            str(binary),
            "--blobHost",
            self.host,
            "--blobPort",
            str(self.port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--loose",
        ]
        if self.in_memory:
            args.append("--inMemoryPersistence")
            if self.extent_memory_limit_mb is not None:
                args += ["--extentMemoryLimit", str(self.extent_memory_limit_mb)]
        else:
            args += ["--location", self._workdir]
        # cwd is the private temp dir: Azurite writes debug/db files to its cwd by default.
        self.process = subprocess.Popen(
            args, cwd=self._workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(self.startup_timeout) or self.port == 0:
            log = bytes(self._log).decode(errors="replace")
            self.stop()
            raise RuntimeError(f"Azurite did not become ready within {self.startup_timeout}s; output:\n{log}")
        return self

    def _pump(self, ready: threading.Event) -> None:
        """Read Azurite's output (so its pipe never fills) and signal once the port is known."""
        proc = self.process
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            if len(self._log) < 64_000:
                self._log += line
            match = _READY.search(line)
            if match and not ready.is_set():
                self.port = int(match.group(2))
                ready.set()
        ready.set()  # process ended: unblock start(), which then reports the failure

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process we started (by pid), wait for it, and remove its workspace."""
        proc, self.process = self.process, None
        if proc is not None:
            stop_process(proc, signal.SIGTERM, timeout)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- connection ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )
