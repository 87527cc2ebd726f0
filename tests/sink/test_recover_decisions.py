"""The launcher's ``recover RUN_ID``: what it decides to do, against real outputs on Azurite.

The settings are handed in already loaded and ELSPETH's command line is replaced by a recorder of
the arguments it would get, so these run without ELSPETH; the landscape is the small
ELSPETH-shaped sqlite of ``tests/tools/test_runs.py``. ``tests/elspeth/test_recover.py`` runs the
whole command against real ELSPETH.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from elspeth_appendsink.elspeth import session
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.recover_run import EXIT_RETRY, recover
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.tools.test_runs import SCHEMA, _landscape, _statuses

pytestmark = pytest.mark.azurite

TEMPLATE = "out/{{ run_id }}/data.jsonl"


@pytest.fixture(autouse=True)
def _clean_session() -> Iterator[None]:
    session.clear()
    yield
    session.clear()


def _options(azurite: Azurite, container: str, *, lease: bool = True) -> dict[str, Any]:
    return {
        "connection_string": azurite.connection_string,
        "container": container,
        "blob_path": TEMPLATE,
        "format": "jsonl",
        "schema": SCHEMA,
        "lease": lease,
        "lease_duration": 60,
    }


def _settings(url: str, options: dict[str, Any], *, other: bool = False) -> Any:
    sinks: dict[str, Any] = {"out": SimpleNamespace(plugin="azure_append_blob", options=options)}
    if other:
        sinks["audit_copy"] = SimpleNamespace(plugin="csv", options={})
    return SimpleNamespace(landscape=SimpleNamespace(url=url), sinks=sinks)


def _crash(options: dict[str, Any], run_id: str, n: int = 5) -> None:
    """A run of the sink that wrote ``n`` rows and was never closed (its process was killed)."""
    sink = AzureAppendBlobSink(options)
    sink.write([{"id": i, "name": f"row{i}"} for i in range(n)], RecordingContext(run_id=run_id))


class Elspeth:
    """Stands in for ELSPETH's command line: keeps the arguments and what the session held."""

    def __init__(self, status: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.continuations: list[session.Continuation | None] = []
        self.status = status

    def __call__(self, args: list[str]) -> int:
        self.calls.append(args)
        return self.status


def _recover(
    settings: Any, run_id: str, elspeth: Elspeth, *extra: str, later: bool = False
) -> tuple[int, str]:
    err = io.StringIO()

    def now() -> datetime:
        return datetime.now(UTC) + (timedelta(seconds=120) if later else timedelta(0))

    status = recover(
        ["--no-dotenv", "recover", run_id, "-s", "settings.yaml", *extra],
        run_elspeth=elspeth,
        err=err,
        load_settings=lambda _path: settings,
        now=now,
        sleep=lambda _s: None,
    )
    return status, err.getvalue()


def test_a_failed_run_without_checkpoint_is_continued_by_a_new_run(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    """It says what it will do, registers the crashed path for the sink, then runs ELSPETH's run."""
    options = _options(azurite, container)
    _crash(options, "run-1")
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options, other=True), "run-1", elspeth)
    assert status == 0
    assert elspeth.calls == [["--no-dotenv", "run", "-s", "settings.yaml", "-x"]]
    assert "has no checkpoint, so ELSPETH cannot resume it" in err
    assert f"sink out: continues azure://{container}/out/run-1/data.jsonl" in err
    assert "sink audit_copy (csv): not azure_append_blob; the new run writes it afresh" in err
    digest = SinkConfig.from_options(options).template_digest
    assert session.continuation_for(digest) == session.Continuation(
        "run-1", container, "out/run-1/data.jsonl", "out"
    )


def test_a_failed_run_with_a_checkpoint_is_resumed_by_elspeth(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    options = _options(azurite, container)
    _crash(options, "run-1")
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {"run-1": 2})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options), "run-1", elspeth)
    assert status == 0 and "2 checkpoint(s): resuming it" in err
    assert elspeth.calls == [["--no-dotenv", "resume", "run-1", "-s", "settings.yaml", "-x"]]
    assert session.continuation_for(SinkConfig.from_options(options).template_digest) is None


def test_a_held_lease_is_refused_with_the_retry_line_and_nothing_changes(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    options = _options(azurite, container)
    _crash(options, "run-1")
    url = _landscape(tmp_path / "audit.db", {"run-1": "running"}, {})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options), "run-1", elspeth)
    assert status == EXIT_RETRY
    assert "held by run run-1" in err and "Nothing was changed" in err
    assert "python -m elspeth_appendsink.elspeth --no-dotenv recover run-1 -s settings.yaml" in err
    assert elspeth.calls == [] and _statuses(url) == {"run-1": "running"}


def test_wait_re_checks_within_a_bound_then_refuses(azurite: Azurite, container: str, tmp_path: Path) -> None:
    """With --wait a lease still held at every check is refused once the bound has passed."""
    options = {**_options(azurite, container), "lease_duration": 15}
    _crash(options, "run-1")
    url = _landscape(tmp_path / "audit.db", {"run-1": "running"}, {})
    checks = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        checks.append(seconds)
        clock[0] += seconds

    err = io.StringIO()
    status = recover(
        ["recover", "run-1", "-s", "settings.yaml", "--wait"],
        run_elspeth=Elspeth(),
        err=err,
        load_settings=lambda _path: _settings(url, options),
        sleep=sleep,
        monotonic=lambda: clock[0],
    )
    assert status == EXIT_RETRY and checks and sum(checks) >= 2 * 15
    assert err.getvalue().count("waiting for the lease to lapse") == 1
    assert err.getvalue().count("held by run run-1;") == 2  # the first and the last check


def test_a_completed_run_needs_nothing(azurite: Azurite, container: str, tmp_path: Path) -> None:
    options = _options(azurite, container)
    url = _landscape(tmp_path / "audit.db", {"run-1": "completed"}, {})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options), "run-1", elspeth)
    assert status == 0 and "run run-1 is completed: nothing to recover" in err
    assert elspeth.calls == []


def test_a_second_recover_reports_the_run_that_completed_the_output(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    """After a recover's run completed the output, recovering the crashed run changes nothing."""
    options = _options(azurite, container, lease=False)
    _crash(options, "run-1")
    digest = SinkConfig.from_options(options).template_digest
    session.continue_outputs(
        {digest: session.Continuation("run-1", container, "out/run-1/data.jsonl", "out")}
    )
    rerun = AzureAppendBlobSink(options)
    rerun.write([{"id": i, "name": f"row{i}"} for i in range(8)], RecordingContext(run_id="run-2"))
    rerun.close()
    session.clear()
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed", "run-2": "completed"}, {})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options), "run-1", elspeth)
    assert status == 0 and elspeth.calls == []
    assert "run run-2 already completed the output of run run-1" in err

    url = _landscape(tmp_path / "audit2.db", {"run-1": "failed", "run-2": "failed"}, {})
    status, err = _recover(_settings(url, options), "run-1", elspeth)
    assert status == 1 and elspeth.calls == []
    assert "recover that run instead" in err and "recover run-2 -s settings.yaml" in err


def test_a_running_run_no_sink_wrote_cannot_be_proven_gone(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    url = _landscape(tmp_path / "audit.db", {"run-early": "running"}, {})
    status, err = _recover(_settings(url, _options(azurite, container)), "run-early", Elspeth(), later=True)
    assert status == 1 and "nothing can prove its process gone" in err
    assert _statuses(url) == {"run-early": "running"}


def test_bad_arguments_and_unknown_runs_are_refused_naming_them(tmp_path: Path) -> None:
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {})
    settings = SimpleNamespace(landscape=SimpleNamespace(url=url), sinks={})
    status, err = _recover(settings, "run-9", Elspeth())
    assert status == 1 and "no run 'run-9'" in err
    status, err = _recover(settings, "run-1", Elspeth(), "--force")
    assert status == 1 and "unknown option --force" in err
    status, err = _recover(settings, "run-1", Elspeth())
    assert status == 1 and "no azure_append_blob sink in settings.yaml" in err


def test_latest_is_the_run_that_started_last(azurite: Azurite, container: str, tmp_path: Path) -> None:
    """A killed process never printed its run id: ``recover latest`` names and takes the last run."""
    options = _options(azurite, container)
    _crash(options, "run-2")
    url = _landscape(tmp_path / "audit.db", {"run-1": "completed", "run-2": "failed"}, {})
    elspeth = Elspeth()
    status, err = _recover(_settings(url, options), "latest", elspeth)
    assert status == 0 and "the latest run in the landscape is run-2" in err
    assert f"continues azure://{container}/out/run-2/data.jsonl" in err
    assert elspeth.calls == [["--no-dotenv", "run", "-s", "settings.yaml", "-x"]]


def test_help_describes_the_command_and_changes_nothing() -> None:
    err = io.StringIO()
    status = recover(["recover", "--help"], run_elspeth=Elspeth(), err=err)
    assert status == 0 and "RUN_ID|latest" in err.getvalue() and "--wait" in err.getvalue()
