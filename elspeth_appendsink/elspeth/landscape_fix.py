"""Run-time corrections of ELSPETH 0.4.x's PostgreSQL landscape defects (no file is ever changed).

Two upstream defects stop ELSPETH 0.4.1 on a PostgreSQL landscape; SQLite hides both:

1. **Width.** ``core/landscape/schema.py`` declares ``runs.schema_contract_hash`` ``String(16)``
   and ELSPETH stores ``SchemaContract.version_hash()``, 32 characters: PostgreSQL refuses the
   first run (``value too long for type character varying(16)``). Marker: the declared length is
   shorter than a hash this ELSPETH computes. Correction: that one column's ``type.length`` is
   raised to the hash's length in memory, before ELSPETH creates any table.
2. **Race.** ``LandscapeDB`` calls ``metadata.create_all(engine)`` unguarded; its
   check-then-create is not atomic across connections, so processes started together on an
   empty landscape die (``DuplicateTable``, ``UniqueViolation … pg_type_typname_nsp_index``).
   Marker: ``LandscapeDB.from_url``'s source calls ``metadata.create_all(`` and takes no lock.
   Correction: on a PostgreSQL engine, ``create_all`` runs in one transaction holding a
   transaction-scoped advisory lock (:data:`LOCK_KEY`); whoever comes second waits, then finds the
   tables and creates nothing. DDL is transactional in PostgreSQL, so a process killed while
   holding the lock leaves no half-made schema. Other backends are passed through unchanged.

:func:`apply` does both only for a PostgreSQL landscape and only where its marker is present,
announcing each once on stderr. A landscape created earlier with the narrow column (by a plain
``elspeth run``) is refused with :data:`WIDEN_STATEMENT`, applied only with :data:`FLAG`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from elspeth_appendsink.tools.landscape import display_url, engine_url

__all__ = [
    "FLAG",
    "LOCK_KEY",
    "LOCK_NOTICE",
    "WIDEN_STATEMENT",
    "apply",
    "needs_lock",
    "needs_width",
    "serialise_create_all",
    "landscape_url",
    "take_flag",
    "widen_in_memory",
]

FLAG = "--widen-landscape-column"
#: The one statement that widens a landscape created with the narrow column.
WIDEN_STATEMENT = "ALTER TABLE runs ALTER COLUMN schema_contract_hash TYPE VARCHAR(32)"
WIDTH = 32  # what WIDEN_STATEMENT widens to: ELSPETH 0.4.1's version_hash() length
#: pg_advisory_xact_lock key serialising table creation across the launcher's processes
#: (the first 8 bytes of sha256("elspeth-appendsink:landscape-create-all"), as a signed bigint).
LOCK_KEY = 0x5145482C101DF807
_PREFIX = "elspeth-appendsink"
LOCK_NOTICE = (
    f"{_PREFIX}: applied ELSPETH's landscape table-creation correction for this process only: "
    "LandscapeDB creates its tables unguarded, so runs started together on an empty PostgreSQL "
    "landscape race and fail; creation now holds a PostgreSQL advisory lock. No file was changed."
)
_FLAG_ATTR = "__elspeth_appendsink_create_all_lock__"


def take_flag(args: list[str]) -> bool:
    """Remove :data:`FLAG` from ``args`` (ELSPETH does not know it); whether it was there."""
    present = FLAG in args
    while FLAG in args:
        args.remove(FLAG)
    return present


def landscape_url(args: list[str]) -> str | None:
    """The landscape URL a ``run``/``resume`` command line will use (None: a SQLite ``--database``,
    or settings that cannot be loaded, which ELSPETH then reports itself)."""
    from elspeth_appendsink.elspeth import recover

    settings, database = None, None
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        if name in ("-s", "--settings"):
            settings = value
        elif name in ("-d", "--database"):
            database = value
    if database is not None:
        return None  # ELSPETH's --database is a SQLite file
    try:
        loaded = recover.load_elspeth_settings(Path(settings or "settings.yaml").expanduser())
    except recover.Unreadable:
        return None
    return str(loaded.landscape.url)


# --- width ------------------------------------------------------------------------------------


def needs_width(declared: int | None, written: int) -> bool:
    """Whether a column declared ``declared`` long is too narrow for ``written`` characters."""
    return declared is not None and declared < written


def _written_hash_length() -> int:
    """The length of the hash this ELSPETH stores in ``runs.schema_contract_hash``, measured."""
    from elspeth.contracts.schema_contract import SchemaContract

    return len(SchemaContract(mode="OBSERVED", fields=()).version_hash())


def widen_in_memory(column: Any, written: int, err: TextIO) -> bool:
    """Raise ``column.type.length`` to ``written`` when it is shorter; True when widened now."""
    declared = column.type.length
    if not needs_width(declared, written):
        return False
    column.type.length = written
    print(
        f"{_PREFIX}: applied ELSPETH's landscape column correction for this process only: "
        f"runs.schema_contract_hash is declared VARCHAR({declared}) and this ELSPETH stores "
        f"{written}-character hashes, which PostgreSQL refuses; tables this process creates get "
        f"VARCHAR({written}). No file was changed.",
        file=err,
    )
    return True


# --- the create_all race ----------------------------------------------------------------------


def needs_lock(from_url_source: str) -> bool:
    """Whether ``LandscapeDB.from_url`` creates tables without any lock (pure: its source text)."""
    return "metadata.create_all(" in from_url_source and "advisory" not in from_url_source


def serialise_create_all(metadata: Any, err: TextIO) -> bool:
    """Make ``metadata.create_all`` take :data:`LOCK_KEY` on PostgreSQL; True when done now."""
    original: Callable[..., None] = metadata.create_all
    if getattr(original, _FLAG_ATTR, False):
        return False

    def create_all(bind: Any, tables: Any = None, checkfirst: bool = True) -> None:
        if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
            with bind.begin() as connection:  # one transaction: the lock, the checks, the DDL
                connection.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
                original(connection, tables=tables, checkfirst=checkfirst)
            return
        original(bind, tables=tables, checkfirst=checkfirst)

    setattr(create_all, _FLAG_ATTR, True)
    metadata.create_all = create_all
    print(LOCK_NOTICE, file=err)
    return True


# --- an existing landscape --------------------------------------------------------------------


def _existing_width(engine: Engine) -> int | None:
    """The declared length of ``runs.schema_contract_hash`` in the database (None: no such table)."""
    inspector = sa_inspect(engine)
    if not inspector.has_table("runs"):
        return None
    for column in inspector.get_columns("runs"):
        if column["name"] == "schema_contract_hash":
            length: int | None = getattr(column["type"], "length", None)
            return length
    return None


def _check_existing(url: str, written: int, widen: bool, err: TextIO) -> int | None:
    shown = display_url(url)
    engine = create_engine(engine_url(url), poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        declared = _existing_width(engine)
        if not needs_width(declared, written):
            return None
        if not widen:
            print(
                f"{_PREFIX}: the landscape {shown} was created with runs.schema_contract_hash "
                f"VARCHAR({declared}), and this ELSPETH stores {written}-character hashes, so runs "
                f"would fail on it. Widen that column with the one statement\n    {WIDEN_STATEMENT};\n"
                f"(or run this command again with {FLAG} to have it applied). Nothing was changed.",
                file=err,
            )
            return 1
        with engine.begin() as connection:
            connection.exec_driver_sql(WIDEN_STATEMENT)  # a constant statement
        print(f"{_PREFIX}: {FLAG}: applied `{WIDEN_STATEMENT}` to {shown}.", file=err)
        return None
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        print(f"{_PREFIX}: cannot read the landscape {shown}: {reason}. Nothing was changed.", file=err)
        return 1
    finally:
        engine.dispose()


def apply(url: str | None, *, widen: bool = False, err: TextIO | None = None) -> int | None:
    """Correct this process's ELSPETH for the landscape ``url``; None to go on, else an exit status.

    Nothing is done unless ``url`` is a PostgreSQL URL. Exit status 1: the existing landscape has
    the narrow column (and ``widen`` is false), or cannot be read; the message says which.
    """
    stream = err if err is not None else sys.stderr
    try:
        if url is None or make_url(url).get_backend_name() != "postgresql":
            return None
    except (ArgumentError, ValueError):
        return None  # ELSPETH reports a URL it cannot use
    from elspeth.core.landscape import database, schema

    written = _written_hash_length()
    if written > WIDTH:  # pragma: no cover - a future ELSPETH with longer hashes
        return None
    widen_in_memory(schema.runs_table.c.schema_contract_hash, written, stream)
    try:
        source = inspect.getsource(database.LandscapeDB.from_url)
    except (OSError, TypeError):
        source = ""  # cannot prove the race is there: leave ELSPETH alone
    if needs_lock(source):
        serialise_create_all(schema.metadata, stream)
    try:
        return _check_existing(url, written, widen, stream)
    except (NoSuchModuleError, ImportError) as exc:
        print(f"{_PREFIX}: the driver of {display_url(url)} is not installed ({exc}).", file=stream)
        return 1
