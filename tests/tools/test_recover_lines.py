"""``inspect``, ``verify`` and ``runs`` name the launcher's ``recover`` line, never a resume they
cannot know is possible; each command's ``--help`` refers to the one shared authentication section."""

from __future__ import annotations

from pathlib import Path

import pytest

from elspeth_appendsink.core.run_recovery import recover_line
from elspeth_appendsink.testing import FaultyTransport
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.tools.cli import EXIT_OK, main
from tests.tools.outputs import crash_run, data_append_rule, write_output
from tests.tools.test_cli import run, where
from tests.tools.test_runs import _landscape

RECOVER = "python -m elspeth_appendsink.elspeth recover run-1 -s settings.yaml"


def test_the_recover_line_is_the_launchers_command() -> None:
    assert recover_line("run-1") == RECOVER
    assert recover_line("r 2", "my settings.yaml", ["--no-dotenv"]) == (
        "python -m elspeth_appendsink.elspeth --no-dotenv recover 'r 2' -s 'my settings.yaml'"
    )


@pytest.mark.parametrize("command", ["verify", "inspect", "unlock", "runs"])
def test_a_command_help_refers_to_the_shared_auth_section(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Own options and examples; the authentication methods and exit codes are not repeated."""
    assert main([command, "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "--connection-string" in text and f"elspeth-appendsink {command}" in text
    assert "authentication methods and exit codes: `elspeth-appendsink --help`" in text
    assert "service principal   --account-url" not in text and "exit codes:\n  0" not in text
    assert len(text.splitlines()) < 90  # verify's own options include the fleet's --prefix/--workers


@pytest.mark.azurite
def test_inspect_of_an_unsealed_run_names_recover_not_elspeth_resume(
    azurite: Azurite, container: str
) -> None:
    write_output(azurite, container)
    result = run(azurite, "inspect", *where(container))
    assert result.code == EXIT_OK, result.out + result.err
    assert "elspeth resume" not in result.out
    assert "if the pipeline did not finish, recover it:" in result.out and RECOVER in result.out


@pytest.mark.azurite
def test_a_run_that_needs_resume_is_told_the_recover_line(azurite: Azurite, container: str) -> None:
    crash_run(azurite, container, FaultyTransport(rule=data_append_rule(4, "crash-before")))
    for command in ("inspect", "verify"):
        result = run(azurite, command, *where(container), *(["--no-progress"] if command == "verify" else []))
        assert "elspeth resume" not in result.out, command
        assert RECOVER in result.out, (command, result.out)


@pytest.mark.azurite
def test_runs_prints_the_recover_line_for_a_run_without_checkpoint(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    write_output(azurite, container)
    url = _landscape(tmp_path / "audit.db", {"run-1": "failed"}, {})
    result = run(azurite, "runs", *where(container), "--landscape", url)
    assert result.code == EXIT_OK, result.out + result.err
    assert "next: re-run-continue" in result.out and f"recover: {RECOVER}" in result.out
    assert "if_exists: continue" not in result.out
    doc = run(azurite, "runs", *where(container), "--landscape", url, "--json").json()
    assert doc["recover"] == RECOVER
