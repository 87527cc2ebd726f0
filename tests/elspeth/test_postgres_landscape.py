"""Real ELSPETH 0.4.1 (unpatched) on a real PostgreSQL landscape, through the launcher.

The pipelines and the killing relay are :mod:`tests.elspeth.test_real_pipeline`'s; here the
landscape is a fresh database on the session's PostgreSQL server (``postgres_url``). The URL in
the settings carries no password: ELSPETH's own ``resume`` prints the landscape URL it uses, so
the password goes in ``PGPASSWORD`` (libpq reads it), as the notes tell operators to do.

What is shown: ELSPETH alone fails its first run on PostgreSQL (the narrow column); through the
launcher the same run completes, the corrections announced once each and no file changed; a
landscape created narrow is refused naming the column and its ``ALTER TABLE``, and widened only
with the flag; four processes creating tables at once all succeed with the lock; kill -9
mid-write → ``resume --mark-failed-if-dead`` → every row once; ``verify --landscape`` on the
PostgreSQL URL anchors the outputs and never prints its password.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.postgres import PASSWORD
from tests.elspeth.test_real_pipeline import (
    COMMAND_TIMEOUT,
    KillingRelay,
    Pipeline,
    SinkSpec,
    assert_exactly_once,
    assert_resumed_exactly_once,
    blob_bytes,
    input_rows,
    kill_mid_write,
    parse_output,
    two_sinks,
    write_input,
)

pytest.importorskip("elspeth", reason="needs ELSPETH (Python >= 3.12, installed from its repository)")
pytestmark = [pytest.mark.elspeth, pytest.mark.azurite]

ELSPETH_FILES = ("core/landscape/schema.py", "core/landscape/database.py", "cli.py")


class PgPipeline(Pipeline):
    """A :class:`Pipeline` whose landscape is a PostgreSQL database (URL without its password)."""

    url: str  # with the password: what an operator hands the tools

    def use_postgres(self, url: str) -> None:
        self.url = url
        self.env["PGPASSWORD"] = PASSWORD
        text = self.settings.read_text(encoding="utf-8")
        bare = url.replace(f":{PASSWORD}@", "@")  # URL.set(password=None) would keep it
        text = text.replace(f"url: sqlite:///{self.db}", f"url: {bare}")
        assert bare in text and PASSWORD not in text
        self.settings.write_text(text, encoding="utf-8")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        sql = sql.replace("created_at, rowid", "created_at, size_bytes")  # PostgreSQL has no rowid
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as connection:
                names = {f"p{i}": value for i, value in enumerate(params)}
                for i in range(len(params)):
                    sql = sql.replace("?", f":p{i}", 1)
                return [tuple(r) for r in connection.execute(sa.text(sql), names)]
        finally:
            engine.dispose()

    def verify_landscape(self, container: str, blob: str, *extra: str) -> tuple[int, str]:
        return self.verify(container, blob, "--landscape", self.url, *extra)


@pytest.fixture()
def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture()
def relay(azurite: Azurite) -> Iterator[KillingRelay]:
    r = KillingRelay(azurite)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture()
def pg(tmp_path: Path, azurite: Azurite, postgres_url: str) -> PgPipeline:
    """test_real_pipeline's pipeline fixture, with a PostgreSQL landscape (a fresh database)."""
    write_input(tmp_path / "input.csv", input_rows())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ELSPETH_", "PG"))}
    env.update(
        {"ELSPETH_FINGERPRINT_KEY": "test", "AZ_DIRECT": azurite.connection_string, "PYTHONUNBUFFERED": "1"}
    )
    pipeline = PgPipeline(tmp_path, env)
    pipeline.url = postgres_url
    return pipeline


def column_width(url: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()
    return columns["schema_contract_hash"].length  # type: ignore[no-any-return]


def elspeth_digest() -> str:
    import elspeth

    root = Path(elspeth.__file__).parent
    return hashlib.sha256(b"".join((root / name).read_bytes() for name in ELSPETH_FILES)).hexdigest()


def one_sink(pg: PgPipeline, container: str, fmt: str = "jsonl") -> str:
    pg.write_settings(
        [SinkSpec("output", container, "pg/{{ run_id }}/rows." + fmt, fmt, "AZ_DIRECT")], gate=False
    )
    pg.use_postgres(pg.url)
    return "pg/{run_id}/rows." + fmt


def test_elspeth_alone_fails_its_first_run_on_postgres(pg: PgPipeline, container: str) -> None:
    """The defect is real: plain ELSPETH (no launcher, a built-in csv sink) cannot complete a run
    on PostgreSQL: ``value too long for type character varying(16)``."""
    one_sink(pg, container)
    text = pg.settings.read_text(encoding="utf-8")
    out = pg.root / "out.csv"
    sink = text[text.index("  output:") : text.index("landscape:")]
    text = text.replace(
        sink,
        f"  output:\n    plugin: csv\n    on_write_failure: discard\n    options:\n      path: {out}\n"
        "      schema: {mode: observed}\n",
    )
    pg.settings.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from elspeth.cli import app; app()",
            "--no-dotenv",
            "run",
            "-s",
            str(pg.settings),
            "-x",
        ],
        cwd=pg.root,
        env=pg.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    assert "value too long for type character varying(16)" in done.stdout + done.stderr
    assert column_width(pg.url) == 16


def test_a_run_on_postgres_completes_through_the_launcher(
    pg: PgPipeline, service: BlobServiceClient, container: str
) -> None:
    """Through the launcher the same ELSPETH completes on PostgreSQL: every row once, the artifact
    anchors the output (verify --landscape with the password in the URL, never printed), each
    correction announced once, the column created VARCHAR(32), and no ELSPETH file changed."""
    from elspeth_appendsink.elspeth import landscape_fix

    blob_template = one_sink(pg, container)
    before = elspeth_digest()
    code, output = pg.run("run", "-s", str(pg.settings), "-x")
    assert code == 0, output[-4000:]
    assert output.count(landscape_fix.LOCK_NOTICE) == 1
    assert output.count("applied ELSPETH's landscape column correction") == 1
    assert elspeth_digest() == before
    assert column_width(pg.url) == 32
    run_id, status = pg.only_run()
    assert status == "completed"
    blob = blob_template.format(run_id=run_id)
    assert_exactly_once(parse_output(blob_bytes(service, container, blob), "jsonl"), input_rows())
    code, verified = pg.verify_landscape(container, blob)
    assert code == 0 and "Anchor   ANCHORED: 1 run matches" in verified, verified
    assert "postgresql+psycopg://elspeth:***@127.0.0.1" in verified and PASSWORD not in verified


def test_a_landscape_created_narrow_is_refused_then_widened_only_on_the_flag(
    pg: PgPipeline, container: str
) -> None:
    """A landscape plain ELSPETH created (VARCHAR(16)): the launcher refuses, naming the column and
    the one ALTER TABLE, and changes nothing; with --widen-landscape-column it applies exactly that
    statement and the run completes."""
    from elspeth_appendsink.elspeth import landscape_fix

    one_sink(pg, container)
    engine = sa.create_engine(pg.url)  # the narrow table, as ELSPETH 0.4.1 declares it
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE runs (run_id VARCHAR(64) PRIMARY KEY, schema_contract_hash VARCHAR(16))"
        )
    engine.dispose()

    code, output = pg.run("run", "-s", str(pg.settings), "-x")
    assert code == 1, output[-4000:]
    assert "runs.schema_contract_hash VARCHAR(16)" in output and landscape_fix.WIDEN_STATEMENT in output
    assert "Nothing was changed" in output
    assert column_width(pg.url) == 16

    engine = sa.create_engine(pg.url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE runs")
    engine.dispose()
    code, output = pg.run("run", "-s", str(pg.settings), "-x")  # ELSPETH's own tables, narrow
    assert code == 0, output[-4000:]  # created wide by the corrected process
    engine = sa.create_engine(pg.url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE runs ALTER COLUMN schema_contract_hash TYPE VARCHAR(16) "
            "USING left(schema_contract_hash, 16)"
        )
    engine.dispose()
    code, output = pg.run("run", "-s", str(pg.settings), "-x")
    assert code == 1 and landscape_fix.WIDEN_STATEMENT in output, output[-4000:]
    code, output = pg.run("run", "-s", str(pg.settings), "-x", landscape_fix.FLAG)
    assert code == 0, output[-4000:]
    assert f"applied `{landscape_fix.WIDEN_STATEMENT}`" in output
    assert column_width(pg.url) == 32
    assert [s for (s,) in pg.query("SELECT status FROM runs ORDER BY started_at")] == [
        "completed",
        "completed",
    ]


CREATE_TABLES = """\
import sys
from elspeth_appendsink.elspeth import landscape_fix
if sys.argv[2] == "corrected":
    assert landscape_fix.apply(sys.argv[1]) is None
sys.stdin.readline()  # the barrier: every process is imported and waiting
from elspeth.core.landscape.database import LandscapeDB
LandscapeDB.from_url(sys.argv[1]).close()
print("created")
"""


def create_tables_together(url: str, mode: str, n: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """``n`` processes call ``LandscapeDB.from_url(url)`` at the same moment (released together)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_TABLES, url, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    results = []
    for proc in procs:  # one line each: they all block on it, so they start together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_processes_creating_tables_together_all_succeed_with_the_lock(postgres_server: Any) -> None:
    """Four processes create ELSPETH's tables on one empty PostgreSQL landscape at once: with the
    launcher's correction all four succeed. Without it, the failures are the race's (reported)."""
    url = postgres_server.url(postgres_server.create_database())
    results = create_tables_together(url, "corrected")
    assert all(r.returncode == 0 and "created" in r.stdout for r in results), [
        r.stderr[-2000:] for r in results
    ]
    plain = create_tables_together(postgres_server.url(postgres_server.create_database()), "plain")
    failed = [r for r in plain if r.returncode != 0]
    print(f"uncorrected: {len(failed)} of {len(plain)} processes failed creating the tables")
    for r in failed:
        assert "already exists" in r.stderr or "pg_type_typname_nsp_index" in r.stderr, r.stderr[-2000:]


def test_sigkill_mid_write_then_mark_failed_if_dead_resumes_each_row_once(
    pg: PgPipeline, service: BlobServiceClient, container: str, relay: KillingRelay
) -> None:
    """kill -9 at ``high``'s 2nd append, PostgreSQL landscape: ``resume --mark-failed-if-dead``
    refuses while the lease is live, then marks the run failed through ELSPETH's recorder and
    resumes it; every row once; verify --landscape postgresql://… anchors both outputs."""
    pg.env["AZ_RELAYED"] = relay.connection_string
    two_sinks(pg, container, container, "jsonl", "AZ_RELAYED")
    pg.use_postgres(pg.url)
    run_id = kill_mid_write(pg, relay, "jsonl")
    command = ("resume", run_id, "-s", str(pg.settings), "-x", "--mark-failed-if-dead")

    code, output = pg.run(*command)
    assert code == 1 and f"held by run {run_id}" in output and "Nothing was changed" in output, output[-4000:]
    assert pg.only_run() == (run_id, "running")
    deadline = time.monotonic() + 90  # lease expiry is wall-clock time: wait for it, with a deadline
    while code == 1 and "held by run" in output and time.monotonic() < deadline:
        code, output = pg.run(*command)  # each attempt is a full, real check (seconds each)
    assert code == 0, output[-4000:]
    assert "marked run" in output and "LandscapeRecorder.complete_run" in output
    assert PASSWORD not in output
    assert_resumed_exactly_once(pg, service, run_id, {"low": container, "high": container}, "jsonl")
    for blob in (f"high/{run_id}/rows.jsonl", f"low/{run_id}/rows.jsonl"):
        code, verified = pg.verify_landscape(container, blob)
        assert code == 0 and "Anchor   ANCHORED: 1 run matches" in verified, verified
        assert PASSWORD not in verified
