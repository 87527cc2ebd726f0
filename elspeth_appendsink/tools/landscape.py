"""Read-only access to an ELSPETH landscape (its audit database) through SQLAlchemy Core.

Owns the three things every landscape reader needs: turning a landscape URL into a read-only
engine, the few tables and columns the tools read (declared here as ELSPETH 0.4.1 names them; no
SQL is built from strings), and the errors. The backends are the ones ELSPETH accepts:

* ``sqlite:///PATH``: the file must exist and is opened ``mode=ro`` (SQLite refuses every write);
* ``postgresql[+psycopg|+psycopg2]://USER[:PASSWORD]@HOST:PORT/DB``: sessions are opened with
  ``default_transaction_read_only=on``; a bare ``postgresql://`` uses psycopg 3 when psycopg2 is
  not installed (the driver this package depends on); libpq's ``PGPASSWORD`` and ``~/.pgpass``
  work as usual, so the password need not be in the URL at all;
* sqlcipher (``sqlite:///PATH`` plus the passphrase): opened through ELSPETH's own
  ``LandscapeDB`` (it needs ELSPETH and its ``sqlcipher3``), which issues only our SELECTs.

A password in a URL never leaves this module: every message shows the URL as
:func:`display_url` renders it (password ``***``), the password is registered with the redactor,
and driver messages are passed through it. Every error is a :class:`LandscapeError` naming the
option it came from (``--landscape`` unless told otherwise); nothing is ever written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from elspeth_appendsink.core.redact import redact, register_secret

__all__ = [
    "Landscape",
    "LandscapeArtifact",
    "LandscapeError",
    "LandscapeRun",
    "display_url",
    "engine_url",
    "open_landscape",
]

#: Seconds to wait for a PostgreSQL server before calling it unreachable.
CONNECT_TIMEOUT = 10


class LandscapeError(Exception):
    """The landscape cannot be read or written as asked; the message names the option."""


@dataclass(frozen=True, slots=True)
class LandscapeRun:
    """One run as ELSPETH recorded it."""

    run_id: str
    status: str
    checkpoints: int


@dataclass(frozen=True, slots=True)
class LandscapeArtifact:
    """One artifact row: what a sink's write returned, for the output at ``path_or_uri``."""

    run_id: str
    sink_node_id: str
    path_or_uri: str
    content_hash: str
    size_bytes: int


# The columns read, as ELSPETH 0.4.1's core/landscape/schema.py declares them (types for binding
# and results only: nothing here creates a table).
_metadata = MetaData()
_runs = Table(
    "runs",
    _metadata,
    Column("run_id", String(64), primary_key=True),
    Column("status", String(32)),
    Column("started_at", String),  # ordered by, never read: its stored form differs between backends
    Column("config_hash", String(64)),  # stable_hash of the run's resolved settings
)
_checkpoints = Table(
    "checkpoints", _metadata, Column("checkpoint_id", String(64)), Column("run_id", String(64))
)
_artifacts = Table(
    "artifacts",
    _metadata,
    Column("run_id", String(64)),
    Column("sink_node_id", String(64)),
    Column("path_or_uri", String(512)),
    Column("content_hash", String(64)),
    Column("size_bytes", Integer),
    Column("created_at", String),  # ordered by, never read
)


def display_url(url: str | URL) -> str:
    """``url`` as it may be shown: the password replaced by ``***``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return "(a value that is not a database URL)"
    return parsed.render_as_string(hide_password=True)


def _driver_available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _parse(url: str, option: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise LandscapeError(
            f"{option}: not a database URL (give ELSPETH's landscape url, e.g. sqlite:///./state/audit.db "
            "or postgresql+psycopg://USER@HOST:5432/DB). Nothing was changed."
        ) from None
    if parsed.password is not None:
        register_secret(str(parsed.password))
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise LandscapeError(
            f"{option}: {display_url(parsed)} is not a landscape ELSPETH accepts: its backends are "
            "sqlite (sqlite:///PATH; sqlcipher is a sqlite URL plus a passphrase) and postgresql "
            "(postgresql+psycopg://USER@HOST:PORT/DB). Nothing was changed."
        )
    if (
        parsed.drivername == "postgresql"
        and not _driver_available("psycopg2")
        and _driver_available("psycopg")
    ):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(parsed: URL, option: str) -> Engine:
    if not parsed.database or parsed.database == ":memory:":
        raise LandscapeError(f"{option}: {display_url(parsed)} names no database file. Nothing was changed.")
    path = Path(parsed.database).expanduser().resolve()
    if not path.is_file():
        raise LandscapeError(f"{option}: no landscape database at {path}. Nothing was changed.")
    read_only = URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})
    return create_engine(read_only, poolclass=NullPool)


def _postgres_engine(parsed: URL, option: str) -> Engine:
    try:
        return create_engine(
            parsed,
            poolclass=NullPool,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT,
                "options": "-c default_transaction_read_only=on",
            },
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise LandscapeError(
            f"{option}: the database driver of {display_url(parsed)} is not installed ({redact(str(exc))}); "
            "install psycopg 3 (`pip install 'psycopg[binary]'`) and use postgresql+psycopg://. "
            "Nothing was changed."
        ) from None


def _sqlcipher_engine(parsed: URL, passphrase: str, option: str) -> Engine:
    register_secret(passphrase)
    try:
        from elspeth.core.landscape.database import LandscapeDB
    except ImportError:
        raise LandscapeError(
            f"{option}: an encrypted (sqlcipher) landscape is opened through ELSPETH's own LandscapeDB, "
            "and ELSPETH is not importable here: run this command from ELSPETH's environment. "
            "Nothing was changed."
        ) from None
    try:
        db = LandscapeDB.from_url(
            parsed.render_as_string(hide_password=False), passphrase=passphrase, create_tables=False
        )
    except Exception as exc:  # ELSPETH raises ImportError, ValueError, SchemaCompatibilityError, ...
        raise LandscapeError(
            f"{option}: cannot open the encrypted landscape {display_url(parsed)} "
            f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0]}). Nothing was changed."
        ) from None
    engine: Engine = db.engine
    return engine


def _reason(exc: BaseException) -> str:
    """The driver's own first line (libpq's messages name host and user, never the password)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return redact(lines[0] if lines else type(orig).__name__)


@dataclass
class Landscape:
    """An open, read-only landscape. Use as a context manager, or call :meth:`close`."""

    url: str  # for display: the password hidden
    engine: Engine
    option: str = "--landscape"

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            connection = self.engine.connect()
        except DBAPIError as exc:
            raise LandscapeError(
                f"{self.option}: cannot connect to {self.url}: {_reason(exc)}. Nothing was changed."
            ) from None
        try:
            yield connection
        except DBAPIError as exc:
            raise LandscapeError(
                f"{self.option}: {self.url} is not an ELSPETH landscape ({_reason(exc)}). "
                "Nothing was changed."
            ) from None
        finally:
            connection.close()

    def check(self) -> None:
        """Connect once and read the ``runs`` table: fail early, before any long work."""
        with self._connection() as connection:
            connection.execute(select(func.count()).select_from(_runs)).scalar_one()

    def runs(self, run_id: str | None = None, *, option: str = "--run-id") -> list[LandscapeRun]:
        """The runs the landscape holds (or the one asked for, else ``option`` is named), oldest first."""
        checkpoints = (
            select(func.count())
            .select_from(_checkpoints)
            .where(_checkpoints.c.run_id == _runs.c.run_id)
            .scalar_subquery()
        )
        query = select(_runs.c.run_id, _runs.c.status, checkpoints).order_by(_runs.c.started_at)
        if run_id is not None:
            query = query.where(_runs.c.run_id == run_id)
        with self._connection() as connection:
            rows = connection.execute(query).all()
        found = [LandscapeRun(str(r), str(s).lower(), int(c)) for r, s, c in rows]
        if run_id is not None and not found:
            raise LandscapeError(
                f"{option}: the landscape has no run {run_id!r} ({self.url}). Nothing was changed."
            )
        return found

    def config_hashes(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Each run's ``config_hash`` (ELSPETH's hash of the settings it was started with)."""
        wanted = sorted(set(run_ids))
        if not wanted:
            return {}
        query = select(_runs.c.run_id, _runs.c.config_hash).where(_runs.c.run_id.in_(wanted))
        with self._connection() as connection:
            return {str(r): str(h) for r, h in connection.execute(query).all()}

    def artifacts(self, uris: Iterable[str]) -> list[LandscapeArtifact]:
        """The artifacts recorded for any of ``uris``, in the order they were recorded.

        Within one sink node the output only grows, so ``size_bytes`` breaks a tie of
        ``created_at`` the way the writes happened.
        """
        wanted = sorted(set(uris))
        if not wanted:
            return []
        query = (
            select(
                _artifacts.c.run_id,
                _artifacts.c.sink_node_id,
                _artifacts.c.path_or_uri,
                _artifacts.c.content_hash,
                _artifacts.c.size_bytes,
            )
            .where(_artifacts.c.path_or_uri.in_(wanted))
            .order_by(_artifacts.c.created_at, _artifacts.c.size_bytes)
        )
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [LandscapeArtifact(str(r), str(n), str(u), str(h), int(s)) for r, n, u, h, s in rows]

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Landscape:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_landscape(url: str, *, passphrase: str | None = None, option: str = "--landscape") -> Landscape:
    """A read-only :class:`Landscape` for ``url`` (``passphrase``: a sqlcipher landscape).

    Raises :class:`LandscapeError` naming ``option`` for a value that is not a URL, a backend
    ELSPETH does not accept, a missing sqlite file or a missing driver. Connecting happens on
    first use (:meth:`Landscape.check` forces it): an unreachable server or a refused password
    is a :class:`LandscapeError` then.
    """
    parsed = _parse(url, option)
    try:
        if passphrase is not None:
            if parsed.get_backend_name() != "sqlite":
                raise LandscapeError(
                    f"{option}: a passphrase (sqlcipher) goes with a sqlite:/// landscape, not "
                    f"{display_url(parsed)}. Nothing was changed."
                )
            engine = _sqlcipher_engine(parsed, passphrase, option)
        elif parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed, option)
        else:
            engine = _postgres_engine(parsed, option)
    except SQLAlchemyError as exc:
        raise LandscapeError(
            f"{option}: cannot use {display_url(parsed)} ({_reason(exc)}). Nothing was changed."
        ) from None
    return Landscape(display_url(parsed), engine, option)


def engine_url(url: str, option: str = "--landscape") -> str:
    """``url`` as ELSPETH should be given it (the driver chosen as :func:`open_landscape` does)."""
    return _parse(url, option).render_as_string(hide_password=False)
