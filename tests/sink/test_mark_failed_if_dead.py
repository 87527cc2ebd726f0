"""``resume RUN --mark-failed-if-dead`` (the launcher): the decisions, against real outputs on Azurite.

The settings are handed in already loaded (ELSPETH's loader needs ELSPETH); the landscape is the
small ELSPETH-shaped sqlite of ``tests/tools/test_runs.py``. Marking itself goes through ELSPETH's
recorder, so here it can only refuse cleanly; ``tests/elspeth`` marks and resumes for real.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from elspeth_appendsink.elspeth.recover import FLAG, mark_failed_if_dead, take_flag
from elspeth_appendsink.testing.azurite import Azurite
from tests.tools.test_runs import BLOB, SCHEMA, _landscape, _statuses, _write

pytestmark = pytest.mark.azurite


def _later() -> datetime:
    """A moment past any lease_duration of the writes below (taken when the test runs)."""
    return datetime.now(UTC) + timedelta(seconds=120)


def _settings(azurite: Azurite, container: str, url: str, *plugins: str) -> Any:
    options = {
        "connection_string": azurite.connection_string,
        "container": container,
        "blob_path": BLOB,
        "format": "jsonl",
        "schema": SCHEMA,
        "lease_duration": 60,
    }
    sinks = {f"s{i}": SimpleNamespace(plugin=p, options=options) for i, p in enumerate(plugins)}
    return SimpleNamespace(landscape=SimpleNamespace(url=url), sinks=sinks)


def _mark(settings: Any, run_id: str, *extra: str, now: datetime | None = None) -> tuple[int | None, str]:
    err = io.StringIO()
    args = ["--no-dotenv", "resume", run_id, "-s", "settings.yaml", "-x", *extra]
    status = mark_failed_if_dead(args, err=err, load_settings=lambda _path: settings, now=now)
    return status, err.getvalue()


def test_the_flag_is_taken_out_of_elspeths_arguments() -> None:
    args = ["resume", "r1", FLAG, "-x"]
    assert take_flag(args) and args == ["resume", "r1", "-x"]
    assert not take_flag(args) and args == ["resume", "r1", "-x"]


def test_a_live_lease_is_named_and_the_run_left_running(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    _write(azurite, container, "run-live", lease=True)
    url = _landscape(tmp_path / "audit.db", {"run-live": "running"}, {"run-live": 1})
    status, err = _mark(_settings(azurite, container, url, "azure_append_blob"), "run-live")
    assert status == 1
    assert "held by run run-live" in err and "Nothing was changed" in err
    assert _statuses(url) == {"run-live": "running"}


def test_a_run_that_is_not_running_is_handed_to_elspeth_unchanged(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    _write(azurite, container, "run-1", lease=True)
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {"run-1": 1})
    status, err = _mark(_settings(azurite, container, url, "azure_append_blob"), "run-1")
    assert status is None and "run run-1 is failed: nothing to mark" in err
    assert _statuses(url) == {"run-1": "failed"}


def test_no_sink_that_has_written_the_run_proves_nothing(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    """A run killed before any of its sinks opened may still be reading its source: refuse."""
    url = _landscape(tmp_path / "audit.db", {"run-early": "running"}, {})
    settings = _settings(azurite, container, url, "azure_append_blob", "csv")
    status, err = _mark(settings, "run-early", now=_later())
    assert status == 1 and "has written anything of run run-early yet" in err
    assert _statuses(url) == {"run-early": "running"}


def test_settings_without_this_sink_cannot_prove_anything(tmp_path: Path) -> None:
    url = _landscape(tmp_path / "audit.db", {"run-1": "running"}, {"run-1": 1})
    csv_only = {"out": SimpleNamespace(plugin="csv")}
    settings = SimpleNamespace(landscape=SimpleNamespace(url=url), sinks=csv_only)
    status, err = _mark(settings, "run-1")
    assert status == 1 and "no azure_append_blob sink in settings.yaml" in err
    assert _statuses(url) == {"run-1": "running"}


def test_an_unknown_run_or_landscape_is_refused_naming_it(tmp_path: Path) -> None:
    url = _landscape(tmp_path / "audit.db", {"run-1": "running"}, {})
    settings = SimpleNamespace(landscape=SimpleNamespace(url=url), sinks={})
    status, err = _mark(settings, "run-9")
    assert status == 1 and "no run 'run-9'" in err
    missing = tmp_path / "nope.db"
    status, err = _mark(settings, "run-1", "--database", str(missing))
    assert status == 1 and "no landscape database" in err and not missing.exists()


def test_a_gone_writer_is_marked_only_through_elspeths_recorder(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    """Writer provably gone; without ELSPETH the recorder is missing, so nothing is written."""
    try:
        import elspeth  # noqa: F401

        pytest.skip("ELSPETH is importable here: tests/elspeth marks through its recorder")
    except ImportError:
        pass
    _write(azurite, container, "run-dead", lease=False)
    url = _landscape(tmp_path / "audit.db", {"run-dead": "running"}, {"run-dead": 1})
    status, err = _mark(_settings(azurite, container, url, "azure_append_blob"), "run-dead", now=_later())
    assert status == 1
    assert "writer provably gone" in err  # the sink's verdict is printed before the refusal
    assert "ELSPETH's own recorder" in err and "Nothing was changed" in err
    assert _statuses(url) == {"run-dead": "running"}
