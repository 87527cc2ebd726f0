"""``elspeth-appendsink runs``: ELSPETH's status joined with the sink's manifest and lease, and a
``running`` run marked failed only when its writer is provably gone.

The landscape here is a small sqlite file with the two tables the command reads (``runs``,
``checkpoints``), shaped as ELSPETH's; outputs are written by the real sink on Azurite. The
real-ELSPETH path (marking through its recorder, then resuming) is in ``tests/elspeth``.
"""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.tools.cli import ENV_CONNECTION_STRING, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, main

pytestmark = pytest.mark.azurite

BLOB = "out/data.jsonl"
SCHEMA: dict[str, Any] = {"mode": "fixed", "fields": ["id: int", "name: str"]}


def _landscape(path: Path, runs: dict[str, str], checkpoints: dict[str, int]) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT, started_at TEXT)")
        db.execute("CREATE TABLE checkpoints (checkpoint_id TEXT PRIMARY KEY, run_id TEXT)")
        for n, (run_id, status) in enumerate(runs.items()):
            db.execute("INSERT INTO runs VALUES (?, ?, ?)", (run_id, status, f"2026-12-0{n + 1}"))
            for k in range(checkpoints.get(run_id, 0)):
                db.execute("INSERT INTO checkpoints VALUES (?, ?)", (f"{run_id}-{k}", run_id))
    return f"sqlite:///{path}"


def _statuses(url: str) -> dict[str, str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        return dict(db.execute("SELECT run_id, status FROM runs").fetchall())


def _write(azurite: Azurite, container: str, run_id: str, *, lease: bool) -> AzureAppendBlobSink:
    """A run of the sink that wrote one group and was never closed (its process was killed)."""
    sink = AzureAppendBlobSink(
        {
            "connection_string": azurite.connection_string,
            "container": container,
            "blob_path": BLOB,
            "format": "jsonl",
            "schema": SCHEMA,
            "lease": lease,
            "lease_duration": 60,
        }
    )
    sink.write([{"id": i, "name": f"row{i}"} for i in range(5)], RecordingContext(run_id=run_id))
    return sink


def _runs(azurite: Azurite, container: str, url: str, *args: str, now: datetime | None = None) -> Any:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["runs", "--container", container, "--blob-path", BLOB, "--landscape", url, *args],
        env={ENV_CONNECTION_STRING: azurite.connection_string},
        stdout=out,
        stderr=err,
        now=now,
    )
    return code, out.getvalue(), err.getvalue()


class TestRunsReport:
    def test_a_live_writer_is_named_and_marking_it_failed_is_refused(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """A run whose lease is held: the report names the holder and --mark-failed changes nothing."""
        _write(azurite, container, "run-live", lease=True)
        url = _landscape(tmp_path / "audit.db", {"run-live": "running"}, {"run-live": 1})
        code, out, _ = _runs(azurite, container, url, "--run-id", "run-live", "--mark-failed")
        assert code == EXIT_PROBLEM
        assert "lease: leased, held by run run-live" in out
        assert "refused to mark run run-live failed" in out and "held by run run-live" in out
        assert _statuses(url) == {"run-live": "running"}

    def test_a_recent_write_keeps_the_writer_presumed_alive(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """No lease, but a write within lease_duration: not provably gone, so refuse."""
        _write(azurite, container, "run-quiet", lease=False)
        url = _landscape(tmp_path / "audit.db", {"run-quiet": "running"}, {"run-quiet": 1})
        code, out, _ = _runs(azurite, container, url, "--run-id", "run-quiet")
        assert code == EXIT_OK
        assert "next: refuse" in out and "within lease_duration (60s)" in out

    @pytest.mark.parametrize(
        ("checkpoints", "step"), [(1, "mark-failed-then-resume"), (0, "re-run-continue")]
    )
    def test_a_writer_gone_longer_than_the_lease_gets_the_right_next_step(
        self, azurite: Azurite, container: str, tmp_path: Path, checkpoints: int, step: str
    ) -> None:
        """Nothing written for longer than lease_duration: resume with a checkpoint, re-run without."""
        _write(azurite, container, "run-dead", lease=False)
        url = _landscape(tmp_path / "audit.db", {"run-dead": "running"}, {"run-dead": checkpoints})
        later = datetime.now(UTC) + timedelta(seconds=120)
        code, out, _ = _runs(azurite, container, url, "--run-id", "run-dead", now=later)
        assert code == EXIT_OK
        assert f"next: {step}" in out and "5 rows" in out

    def test_marking_without_elspeth_changes_nothing_and_says_why(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """--mark-failed writes only through ELSPETH's recorder: without ELSPETH it refuses cleanly."""
        try:
            import elspeth  # noqa: F401

            pytest.skip("ELSPETH is importable here: tests/elspeth covers marking through its recorder")
        except ImportError:
            pass
        _write(azurite, container, "run-dead", lease=False)
        url = _landscape(tmp_path / "audit.db", {"run-dead": "running"}, {"run-dead": 1})
        later = datetime.now(UTC) + timedelta(seconds=120)
        code, _, err = _runs(azurite, container, url, "--run-id", "run-dead", "--mark-failed", now=later)
        assert code == EXIT_USAGE
        assert "ELSPETH's own recorder" in err and "Nothing was changed" in err
        assert _statuses(url) == {"run-dead": "running"}

    def test_completed_and_failed_runs_need_no_marking(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """Marking a run that is not running is a no-op, said as such (idempotent)."""
        _write(azurite, container, "run-1", lease=False)
        url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {"run-1": 1})
        code, out, _ = _runs(azurite, container, url, "--run-id", "run-1", "--mark-failed")
        assert code == EXIT_OK
        assert "next: resume" in out and "run run-1 is failed: nothing to mark" in out
        assert _statuses(url) == {"run-1": "failed"}


class TestRunsErrors:
    def test_a_wrong_landscape_url_is_a_usage_error(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """A landscape that does not exist: exit 2 naming --landscape, and no file is created."""
        missing = tmp_path / "nope.db"
        code, _, err = _runs(azurite, container, f"sqlite:///{missing}")
        assert code == EXIT_USAGE and "--landscape: no landscape database" in err
        assert not missing.exists()

    def test_an_unknown_run_id_is_a_usage_error(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """A run id the landscape does not hold: exit 2 naming --run-id, the landscape unchanged."""
        _write(azurite, container, "run-1", lease=False)
        url = _landscape(tmp_path / "audit.db", {"run-1": "running"}, {})
        code, _, err = _runs(azurite, container, url, "--run-id", "run-9", "--mark-failed")
        assert code == EXIT_USAGE and "--run-id: the landscape has no run 'run-9'" in err
        assert _statuses(url) == {"run-1": "running"}
