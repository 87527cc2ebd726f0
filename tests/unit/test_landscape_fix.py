"""The launcher's landscape corrections act only where their marker is, and do exactly their fix.

Real ELSPETH on PostgreSQL is in ``tests/elspeth/test_postgres_landscape.py``; here the pieces are
checked without ELSPETH: an ELSPETH without the defects (a wide column, a locked creation, a
sqlite landscape) is left untouched and nothing is announced; the lock really serialises
creation on a real PostgreSQL server; a narrow existing column is refused and widened only on
request.
"""

from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from elspeth_appendsink.elspeth import landscape_fix


class TestMarkers:
    def test_the_width_marker_is_a_declared_length_shorter_than_the_hash(self) -> None:
        assert landscape_fix.needs_width(16, 32)
        assert not landscape_fix.needs_width(32, 32)
        assert not landscape_fix.needs_width(64, 32)
        assert not landscape_fix.needs_width(None, 32)  # unbounded (TEXT-like): nothing to widen

    def test_the_lock_marker_is_an_unguarded_create_all(self) -> None:
        assert landscape_fix.needs_lock("def from_url(...):\n    metadata.create_all(engine)\n")
        assert not landscape_fix.needs_lock(
            "def from_url(...):\n    pg_advisory_lock(k)\n    metadata.create_all(e)"
        )
        assert not landscape_fix.needs_lock("def from_url(...):\n    run_migrations(engine)\n")


class TestNothingChangesWithoutTheDefect:
    def test_a_wide_enough_column_is_left_alone_and_nothing_is_said(self) -> None:
        column = SimpleNamespace(type=SimpleNamespace(length=64))
        err = io.StringIO()
        assert not landscape_fix.widen_in_memory(column, 32, err)
        assert column.type.length == 64 and err.getvalue() == ""

    def test_a_narrow_column_is_widened_in_memory_and_said_once(self) -> None:
        column = SimpleNamespace(type=SimpleNamespace(length=16))
        err = io.StringIO()
        assert landscape_fix.widen_in_memory(column, 32, err)
        assert not landscape_fix.widen_in_memory(column, 32, err)
        assert column.type.length == 32
        assert err.getvalue().count("runs.schema_contract_hash is declared VARCHAR(16)") == 1
        assert "No file was changed." in err.getvalue()

    def test_a_sqlite_or_unparseable_landscape_gets_no_correction(self) -> None:
        """apply() returns at once for anything but PostgreSQL: no ELSPETH import, nothing said."""
        err = io.StringIO()
        for url in ("sqlite:///./state/audit.db", None, "not a url"):
            assert landscape_fix.apply(url, err=err) is None
        assert err.getvalue() == ""

    def test_the_lock_wrapper_passes_other_backends_through_and_is_installed_once(self) -> None:
        calls: list[Any] = []
        metadata = SimpleNamespace(create_all=lambda bind, tables=None, checkfirst=True: calls.append(bind))
        err = io.StringIO()
        assert landscape_fix.serialise_create_all(metadata, err)
        assert not landscape_fix.serialise_create_all(metadata, err)
        engine = sa.create_engine("sqlite://")
        metadata.create_all(engine)
        assert calls == [engine]  # the original, with the same bind: no lock, no transaction
        assert err.getvalue().count(landscape_fix.LOCK_NOTICE) == 1

    def test_the_flag_is_taken_out_of_elspeths_arguments(self) -> None:
        args = ["--no-dotenv", "run", "-s", "s.yaml", "-x", landscape_fix.FLAG]
        assert landscape_fix.take_flag(args) and args == ["--no-dotenv", "run", "-s", "s.yaml", "-x"]
        assert not landscape_fix.take_flag(args)


def _waiting_for_advisory_lock(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).scalar_one()
    engine.dispose()
    return int(count)


class TestOnPostgres:
    def test_creation_waits_for_the_lock_then_creates_once(self, postgres_url: str) -> None:
        """While another session holds the lock, create_all waits (seen in pg_locks); once it is
        released, the tables are created, inside the lock's transaction."""
        metadata = sa.MetaData()
        sa.Table("runs", metadata, sa.Column("run_id", sa.String(64), primary_key=True))
        landscape_fix.serialise_create_all(metadata, io.StringIO())
        engine = sa.create_engine(postgres_url)
        holder = engine.connect()
        holder.execute(sa.select(sa.func.pg_advisory_lock(landscape_fix.LOCK_KEY)))
        done = threading.Event()
        worker = threading.Thread(target=lambda: (metadata.create_all(engine), done.set()))
        worker.start()
        deadline = time.monotonic() + 30
        while _waiting_for_advisory_lock(postgres_url) == 0:  # a condition, polled with a deadline
            assert time.monotonic() < deadline, "create_all never waited for the advisory lock"
        assert not done.is_set() and not sa.inspect(engine).has_table("runs")
        holder.execute(sa.select(sa.func.pg_advisory_unlock(landscape_fix.LOCK_KEY)))
        holder.close()
        worker.join(30)
        assert done.is_set() and sa.inspect(engine).has_table("runs")
        engine.dispose()

    def test_an_existing_narrow_column_is_refused_then_widened_on_request(self, postgres_url: str) -> None:
        """A landscape created narrow: exit 1 naming the column and the statement, nothing changed;
        with widen=True exactly that statement is applied."""
        engine = sa.create_engine(postgres_url)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE runs (run_id VARCHAR(64), schema_contract_hash VARCHAR(16))"
            )
        err = io.StringIO()
        assert landscape_fix._check_existing(postgres_url, 32, False, err) == 1
        assert "runs.schema_contract_hash VARCHAR(16)" in err.getvalue()
        assert landscape_fix.WIDEN_STATEMENT in err.getvalue() and "Nothing was changed" in err.getvalue()
        width = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("runs")}["schema_contract_hash"]
        assert width.length == 16
        assert landscape_fix._check_existing(postgres_url, 32, True, err) is None
        width = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("runs")}["schema_contract_hash"]
        assert width.length == 32 and f"applied `{landscape_fix.WIDEN_STATEMENT}`" in err.getvalue()
        assert landscape_fix._check_existing(postgres_url, 32, False, err) is None  # idempotent
        engine.dispose()

    def test_an_unreachable_landscape_is_refused_without_its_password(self, postgres_server: Any) -> None:
        from elspeth_appendsink.testing.postgres import PASSWORD

        url = postgres_server.url("postgres", password="wrong-hunter2-password")
        err = io.StringIO()
        assert landscape_fix._check_existing(url, 32, False, err) == 1
        assert "password authentication failed" in err.getvalue()
        assert "wrong-hunter2-password" not in err.getvalue() and PASSWORD not in err.getvalue()
