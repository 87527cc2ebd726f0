"""The landscape readers on every backend ELSPETH accepts: the same contract on sqlite and on a real
PostgreSQL server, read-only, and bad URLs refused with the password hidden.

Each landscape holds ELSPETH's three tables the tools read (``runs``, ``checkpoints``,
``artifacts``), created here through SQLAlchemy with ELSPETH's column names; the CLI tests write
a real output on Azurite and check ``verify --landscape`` and ``runs --landscape`` against a
PostgreSQL landscape as against a sqlite one.
"""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from elspeth_appendsink.testing.postgres import PASSWORD, Postgres
from elspeth_appendsink.tools.cli import ENV_CONNECTION_STRING, EXIT_OK, EXIT_USAGE, main
from elspeth_appendsink.tools.landscape import LandscapeError, display_url, open_landscape

URI = "azure://results/out/data.jsonl"

_schema = sa.MetaData()
_runs = sa.Table(
    "runs",
    _schema,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(32)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
)
_checkpoints = sa.Table(
    "checkpoints",
    _schema,
    sa.Column("checkpoint_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64)),
)
_artifacts = sa.Table(
    "artifacts",
    _schema,
    sa.Column("artifact_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64)),
    sa.Column("sink_node_id", sa.String(64)),
    sa.Column("path_or_uri", sa.String(512)),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("size_bytes", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)


def build_landscape(
    url: str,
    runs: dict[str, str],
    checkpoints: dict[str, int] | None = None,
    artifacts: dict[str, list[tuple[str, str, int]]] | None = None,
) -> None:
    """Create ELSPETH's tables at ``url`` and fill them: run -> status, run -> checkpoints, run ->
    artifacts (uri, content_hash, size_bytes) in write order."""
    from datetime import UTC, datetime, timedelta

    engine = sa.create_engine(url)
    base = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as connection:
        _schema.create_all(connection)
        for n, (run_id, status) in enumerate(runs.items()):
            connection.execute(
                _runs.insert().values(run_id=run_id, status=status, started_at=base + timedelta(days=n))
            )
            for k in range((checkpoints or {}).get(run_id, 0)):
                connection.execute(
                    _checkpoints.insert().values(checkpoint_id=f"{run_id}-c{k}", run_id=run_id)
                )
            for k, (uri, content_hash, size) in enumerate((artifacts or {}).get(run_id, [])):
                connection.execute(
                    _artifacts.insert().values(
                        artifact_id=f"{run_id}-a{k}",
                        run_id=run_id,
                        sink_node_id="sink_output_0123abcd",
                        path_or_uri=uri,
                        content_hash=content_hash,
                        size_bytes=size,
                        created_at=base + timedelta(days=n, seconds=k),
                    )
                )
    engine.dispose()


def statuses(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = {str(r): str(s) for r, s in connection.execute(sa.select(_runs.c.run_id, _runs.c.status))}
    engine.dispose()
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def landscape_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend: a sqlite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class TestSameContractOnEveryBackend:
    def test_runs_come_oldest_first_with_their_checkpoint_counts(self, landscape_url: str) -> None:
        """runs(): every run, oldest first, status lower-cased, checkpoints counted per run."""
        build_landscape(landscape_url, {"r-old": "COMPLETED", "r-new": "running"}, {"r-new": 2})
        with open_landscape(landscape_url) as landscape:
            found = [(r.run_id, r.status, r.checkpoints) for r in landscape.runs()]
            (one,) = landscape.runs("r-new")
        assert found == [("r-old", "completed", 0), ("r-new", "running", 2)]
        assert one.checkpoints == 2

    def test_artifacts_of_the_asked_outputs_come_in_write_order(self, landscape_url: str) -> None:
        """artifacts(): only the outputs asked for, in the order the writes were recorded."""
        other = "azure://results/other.jsonl"
        build_landscape(
            landscape_url,
            {"r1": "completed"},
            artifacts={"r1": [(URI, "a" * 64, 10), (other, "b" * 64, 5), (URI, "c" * 64, 30)]},
        )
        with open_landscape(landscape_url) as landscape:
            rows = landscape.artifacts([URI])
        assert [(a.content_hash[0], a.size_bytes) for a in rows] == [("a", 10), ("c", 30)]
        assert {a.sink_node_id for a in rows} == {"sink_output_0123abcd"}

    def test_an_unknown_run_is_refused_naming_the_option(self, landscape_url: str) -> None:
        """A run the landscape does not hold: LandscapeError naming --run-id; nothing changed."""
        build_landscape(landscape_url, {"r1": "running"})
        with open_landscape(landscape_url) as landscape, pytest.raises(LandscapeError, match="--run-id: "):
            landscape.runs("r9")
        assert statuses(landscape_url) == {"r1": "running"}

    def test_a_database_without_elspeths_tables_is_not_a_landscape(self, landscape_url: str) -> None:
        """An empty database: a clear 'not an ELSPETH landscape', and no table is created."""
        if landscape_url.startswith("sqlite"):
            sa.create_engine(landscape_url).connect().close()  # an empty sqlite file
        with open_landscape(landscape_url) as landscape, pytest.raises(LandscapeError) as caught:
            landscape.check()
        assert "is not an ELSPETH landscape" in str(caught.value)
        engine = sa.create_engine(landscape_url)
        assert sa.inspect(engine).get_table_names() == []
        engine.dispose()

    def test_the_reader_cannot_write(self, landscape_url: str) -> None:
        """The engine it opens refuses writes (sqlite mode=ro; PostgreSQL read-only sessions)."""
        build_landscape(landscape_url, {"r1": "running"})
        with (
            open_landscape(landscape_url) as landscape,
            landscape.engine.connect() as connection,
            pytest.raises(sa.exc.DBAPIError),
        ):
            connection.execute(_runs.update().values(status="failed"))
        assert statuses(landscape_url) == {"r1": "running"}


class TestBadUrls:
    def test_a_wrong_scheme_is_refused_with_the_password_hidden(self) -> None:
        """mysql:// is not a backend ELSPETH accepts: the message says which are, without the password."""
        with pytest.raises(LandscapeError) as caught:
            open_landscape("mysql://user:hunter2-db-secret@db/audit")
        text = str(caught.value)
        assert "--landscape: " in text and "not a landscape ELSPETH accepts" in text
        assert "hunter2-db-secret" not in text and "mysql://user:***@db/audit" in text

    def test_a_value_that_is_not_a_url_is_refused(self) -> None:
        with pytest.raises(LandscapeError, match="not a database URL"):
            open_landscape("./state/audit.db")

    def test_a_missing_sqlite_file_is_refused_and_not_created(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.db"
        with pytest.raises(LandscapeError, match="no landscape database at"):
            open_landscape(f"sqlite:///{missing}")
        assert not missing.exists()

    def test_a_missing_driver_is_named(self) -> None:
        """A driver that is not installed: named, with the fix; no connection attempted."""
        pytest.importorskip("sqlalchemy")
        try:
            import psycopg2  # noqa: F401

            pytest.skip("psycopg2 is installed here")
        except ImportError:
            pass
        with pytest.raises(LandscapeError, match=r"driver .* is not installed") as caught:
            open_landscape("postgresql+psycopg2://u:hunter2-db-secret@127.0.0.1:1/audit")
        assert "hunter2-db-secret" not in str(caught.value)

    def test_an_unreachable_server_is_named_without_the_password(self) -> None:
        """Nothing listens on the port: 'cannot connect to' the URL, password hidden."""
        with socket.socket() as probe:  # a port that was free a moment ago, with no listener
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"postgresql+psycopg://elspeth:{PASSWORD}@127.0.0.1:{port}/audit"
        with open_landscape(url) as landscape, pytest.raises(LandscapeError) as caught:
            landscape.check()
        text = str(caught.value)
        assert "cannot connect to postgresql+psycopg://elspeth:***@127.0.0.1" in text
        assert PASSWORD not in text

    def test_a_wrong_password_is_refused_and_not_shown(self, postgres_server: Postgres) -> None:
        """The server refuses the password: the error says so and never shows either password."""
        url = postgres_server.url("postgres", password="wrong-hunter2-password")
        with open_landscape(url) as landscape, pytest.raises(LandscapeError) as caught:
            landscape.check()
        text = str(caught.value)
        assert "password authentication failed" in text
        assert "wrong-hunter2-password" not in text and PASSWORD not in text

    def test_display_url_hides_the_password(self) -> None:
        assert (
            display_url("postgresql+psycopg://u:pw-secret-1@h:5432/d")
            == "postgresql+psycopg://u:***@h:5432/d"
        )


# --- the commands on a PostgreSQL landscape ----------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def written(azurite: Any, container: str) -> Iterator[list[tuple[str, int]]]:
    """A completed run of the real writer (3 write calls); the artifacts the sink returned."""
    from tests.helpers import make_store, make_writer
    from tests.tools.outputs import BLOB, batches

    writer = make_writer(make_store(azurite, container), run_id="run-1", blob_path=BLOB)
    recorded = []
    for batch in batches(3):
        writer.write(batch)
        recorded.append((writer.content_hash, writer.size))
    writer.finish(seal=True)
    writer.close()
    yield recorded


@pytest.mark.azurite
class TestCommandsOnPostgres:
    def _cli(self, azurite: Any, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            list(args), env={ENV_CONNECTION_STRING: azurite.connection_string}, stdout=out, stderr=err
        )
        return code, out.getvalue(), err.getvalue()

    def test_verify_landscape_anchors_an_output_on_postgres(
        self, azurite: Any, container: str, postgres_url: str, written: list[tuple[str, int]]
    ) -> None:
        """verify --landscape postgresql+psycopg://…: ANCHORED, exit 0, the password never printed."""
        from tests.tools.outputs import BLOB

        uri = f"azure://{container}/{BLOB}"
        build_landscape(
            postgres_url, {"run-1": "completed"}, artifacts={"run-1": [(uri, h, s) for h, s in written]}
        )
        code, out, err = self._cli(
            azurite, "verify", "--container", container, "--blob-path", BLOB, "--no-progress",
            "--landscape", postgres_url,
        )  # fmt: skip
        assert code == EXIT_OK, out + err
        assert "Anchor   ANCHORED: 1 run matches the artifacts ELSPETH recorded" in out
        assert "postgresql+psycopg://elspeth:***@127.0.0.1" in out
        assert PASSWORD not in out + err

    def test_a_read_only_role_with_a_short_password_works_and_is_never_shown(
        self, azurite: Any, container: str, postgres_url: str, written: list[tuple[str, int]]
    ) -> None:
        """A role that may only SELECT is enough; its password (too short for the redactor's
        registry) is still never printed: every URL shown is rendered with it hidden."""
        from tests.tools.outputs import BLOB

        uri = f"azure://{container}/{BLOB}"
        build_landscape(
            postgres_url, {"run-1": "completed"}, artifacts={"run-1": [(uri, h, s) for h, s in written]}
        )
        engine = sa.create_engine(postgres_url)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE ROLE reader LOGIN PASSWORD 'pw1'")
            connection.exec_driver_sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        engine.dispose()
        url = sa.make_url(postgres_url).set(username="reader", password="pw1").render_as_string(False)
        code, out, err = self._cli(
            azurite, "verify", "--container", container, "--blob-path", BLOB, "--no-progress",
            "--landscape", url, "--json",
        )  # fmt: skip
        assert code == EXIT_OK, out + err
        assert "pw1" not in out + err and "reader:***@" in out

    def test_runs_reads_a_postgres_landscape(
        self, azurite: Any, container: str, postgres_url: str, written: list[tuple[str, int]]
    ) -> None:
        """runs --landscape postgresql…: ELSPETH's status and checkpoints joined with the manifest."""
        from tests.tools.outputs import BLOB

        build_landscape(postgres_url, {"run-1": "completed"}, {"run-1": 1})
        code, out, err = self._cli(
            azurite, "runs", "--container", container, "--blob-path", BLOB, "--landscape", postgres_url
        )
        assert code == EXIT_OK, out + err
        assert "run run-1: ELSPETH status completed, 1 checkpoint(s)" in out
        assert PASSWORD not in out + err

    def test_a_wrong_password_is_a_usage_error_before_any_scan(
        self, azurite: Any, container: str, postgres_server: Postgres, written: list[tuple[str, int]]
    ) -> None:
        """verify --landscape with a refused password: exit 2, the reason, neither password shown."""
        from tests.tools.outputs import BLOB

        url = postgres_server.url("postgres", password="wrong-hunter2-password")
        code, out, err = self._cli(
            azurite,
            "verify",
            "--container",
            container,
            "--blob-path",
            BLOB,
            "--no-progress",
            "--landscape",
            url,
        )
        assert code == EXIT_USAGE
        assert "password authentication failed" in err
        assert "wrong-hunter2-password" not in out + err and PASSWORD not in out + err
