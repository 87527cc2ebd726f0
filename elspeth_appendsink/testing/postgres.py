"""Lifecycle of a throw-away PostgreSQL server: initdb, start, wait until ready, connect, stop.

Owns one ``postgres`` child process for tests and benchmarks, as :mod:`.azurite` owns Azurite.
It uses the server binaries of the machine (Debian's ``postgresql-NN`` package, found under
``/usr/lib/postgresql/*/bin``, or ``$ELSPETH_APPENDSINK_PG_BIN``), keeps its cluster in a private
temporary directory, listens on 127.0.0.1 only, on a free port, with its socket in that
directory, and is stopped by its pid (SIGINT: PostgreSQL's fast shutdown) — never by name.

PostgreSQL refuses to run as root. Run as root (CI is), the cluster is created and the server
started as the unprivileged ``postgres`` system user that the package creates (``Popen(user=)``:
the child sets its uid itself, so the pid we hold is the server's). Durability settings are
off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the cluster dies with the tests.
Password authentication (scram-sha-256) is on, so a wrong password is refused as in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from elspeth_appendsink.testing.process import stop_process

__all__ = ["PASSWORD", "USER", "Postgres", "PostgresNotInstalled", "find_postgres_bin"]

#: The superuser the cluster is created with, and its password (a test value, treated as a secret).
USER = "elspeth"
PASSWORD = "pg-hunter2-test-password"

_READY = re.compile(rb"database system is ready to accept connections")
_SYSTEM_USER = "postgres"


class PostgresNotInstalled(RuntimeError):
    """The PostgreSQL server binaries (or an unprivileged user to run them as root) are missing."""


def find_postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (the newest installed major version)."""
    override = os.environ.get("ELSPETH_APPENDSINK_PG_BIN")
    candidates = [Path(override)] if override else []
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(
        installed, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True
    )
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresNotInstalled(
        "PostgreSQL server binaries not found (looked in $ELSPETH_APPENDSINK_PG_BIN and "
        "/usr/lib/postgresql/*/bin): install Debian's postgresql package (`apt-get install postgresql`; "
        ".ci/run does this on CI)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Postgres:
    """One running PostgreSQL server on 127.0.0.1. A context manager, or :meth:`start`/:meth:`stop`."""

    startup_timeout: float = 60.0
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _workdir: str | None = field(default=None, init=False)
    _log: bytearray = field(default_factory=bytearray, init=False)

    # --- lifecycle -------------------------------------------------------------------------
    def _run_as(self) -> str | None:
        """The user to run the server as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            raise PostgresNotInstalled(
                f"running as root, and there is no {_SYSTEM_USER!r} system user to run PostgreSQL as "
                "(PostgreSQL refuses root; Debian's postgresql package creates that user)"
            ) from None
        return _SYSTEM_USER

    def start(self) -> Postgres:
        """initdb a new cluster, start the server, and block until it accepts connections."""
        if self.process is not None:
            return self
        binaries = find_postgres_bin()
        user = self._run_as()
        self._workdir = tempfile.mkdtemp(prefix="postgres-")
        work = Path(self._workdir)
        data, sockets = work / "data", work / "sockets"
        sockets.mkdir()
        password_file = work / "password"
        password_file.write_text(PASSWORD + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (work, sockets, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = subprocess.run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=work,
            user=user,
            capture_output=True,
            check=False,
        )
        password_file.unlink()
        if initdb.returncode != 0:
            output = (initdb.stdout + initdb.stderr).decode(errors="replace")
            self.stop()
            raise RuntimeError(f"initdb failed (exit {initdb.returncode}):\n{output[-4000:]}")
        for _attempt in range(5):  # the free port may be taken between the probe and the bind
            self.port = _free_port()
            if self._spawn(binaries, data, sockets, user):
                return self
        log = bytes(self._log).decode(errors="replace")
        self.stop()
        raise RuntimeError(f"PostgreSQL did not become ready within {self.startup_timeout}s; output:\n{log}")

    def _spawn(self, binaries: Path, data: Path, sockets: Path, user: str | None) -> bool:
        self._log.clear()
        self.process = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(sockets),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ],
            cwd=data.parent,
            user=user,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if ready.wait(self.startup_timeout) and self.process.poll() is None and _READY.search(self._log):
            return True
        self._terminate()
        return False

    def _pump(self, ready: threading.Event) -> None:
        """Read the server's log (so its pipe never fills) and signal once it is ready."""
        proc = self.process
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            if len(self._log) < 64_000:
                self._log += line
            if _READY.search(line):
                ready.set()
        ready.set()  # the server exited: unblock start(), which reports it

    def _terminate(self, timeout: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:  # SIGINT: fast shutdown (roll back sessions, checkpoint, exit)
            stop_process(proc, signal.SIGINT, timeout)

    def stop(self) -> None:
        """Stop the server we started (by its pid) and remove its cluster."""
        self._terminate()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- connection ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        """A SQLAlchemy URL for ``database`` (psycopg 3); ``password=None`` leaves it out."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{USER}{secret}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name unless given); its name."""
        import psycopg
        from psycopg import sql

        name = name or "db_" + uuid.uuid4().hex[:16]
        with contextlib.closing(
            psycopg.connect(
                host=self.host,
                port=self.port,
                user=USER,
                password=PASSWORD,
                dbname="postgres",
                autocommit=True,
            )
        ) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name
