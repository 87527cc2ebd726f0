"""The project's PostgreSQL lifecycle: a private cluster on a free loopback port, never as root,
password authentication on, stopped by pid with nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from elspeth_appendsink.testing.postgres import PASSWORD, USER, Postgres


class TestPostgresLifecycle:
    def test_start_serves_loopback_unprivileged_and_stop_leaves_nothing(self) -> None:
        """A started server listens on 127.0.0.1 only, runs as a non-root user, answers SQL with the
        password; after stop() its pid is gone and its cluster directory removed."""
        server = Postgres().start()
        pid = server.pid
        assert pid is not None and psutil.pid_exists(pid)
        process = psutil.Process(pid)
        assert process.uids().real != 0 or os.geteuid() != 0
        assert f"listen_addresses={server.host}" in " ".join(process.cmdline()) and server.host == "127.0.0.1"
        workdir = Path(process.cmdline()[process.cmdline().index("-D") + 1]).parent
        engine = sa.create_engine(server.url())
        with engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.current_user())).scalar_one() == USER
        engine.dispose()
        server.stop()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not workdir.exists()

    def test_a_wrong_password_is_refused(self, postgres_server: Postgres) -> None:
        """scram-sha-256 is enforced, as on a production server."""
        engine = sa.create_engine(postgres_server.url(password="not-" + PASSWORD[:4]))
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            engine.connect()
        engine.dispose()

    def test_each_test_gets_its_own_empty_database(
        self, postgres_url: str, postgres_server: Postgres
    ) -> None:
        engine = sa.create_engine(postgres_url)
        assert sa.inspect(engine).get_table_names() == []
        engine.dispose()
        assert postgres_url.startswith(f"postgresql+psycopg://{USER}:")
        assert f":{postgres_server.port}/db_" in postgres_url
