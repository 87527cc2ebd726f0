"""The elspeth-appendsink command against Azurite: exit codes, human and JSON output, credentials
from flags and environment, no secret printed, and the real entry points."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.testing import FaultyTransport
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from elspeth_appendsink.tools.cli import (
    ENV_CONNECTION_STRING,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_STORAGE,
    EXIT_USAGE,
    ProgressBar,
    build_parser,
    main,
)
from tests.tools.outputs import (
    BLOB,
    blob,
    committed_entries,
    crash_run,
    data_append_rule,
    edit_entry_sha,
    flip_byte,
    lease_state,
    segment,
    write_output,
)

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parents[2]


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


def run(azurite: Azurite | None, *argv: str, env: dict[str, str] | None = None, stdin: Any = None) -> Result:
    """Run the command in-process with the Azurite connection string in the environment."""
    environment = dict(env) if env is not None else {}
    if azurite is not None and env is None:
        environment[ENV_CONNECTION_STRING] = azurite.connection_string
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=environment, stdin=stdin or io.StringIO(""), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def where(container: str, blob_path: str = BLOB) -> list[str]:
    return ["--container", container, "--blob-path", blob_path]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestHelp:
    def test_top_level_help_explains_commands_auth_and_exit_codes(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--help names every command, every auth method with its environment variables, exit codes."""
        assert main(["--help"]) == EXIT_OK
        text = capsys.readouterr().out
        for needle in (
            "verify",
            "inspect",
            "unlock",
            ENV_CONNECTION_STRING,
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_CLIENT_SECRET",
            "--managed-identity",
            "exit codes",
            "rendered",
        ):
            assert needle in text, needle

    @pytest.mark.parametrize("command", ["verify", "inspect", "unlock"])
    def test_each_command_has_its_own_help(self, command: str, capsys: pytest.CaptureFixture[str]) -> None:
        """Each command's --help describes what it does and its options."""
        assert main([command, "--help"]) == EXIT_OK
        text = capsys.readouterr().out
        assert "--blob-path" in text and "--container" in text and "--json" in text
        assert ("--yes, -y" in text) == (command == "unlock")

    def test_missing_command_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No command: argparse's usage message and exit 2."""
        assert main([]) == EXIT_USAGE
        assert "usage:" in capsys.readouterr().err

    def test_parser_is_buildable_for_docs(self) -> None:
        """build_parser() is public so the help can be rendered into docs."""
        assert "verify" in build_parser().format_help()


class TestVerify:
    def test_clean_output_exits_0_with_counts(self, azurite: Azurite, container: str) -> None:
        """A clean output: exit 0, VERIFIED, rows / bytes / segments / runs printed."""
        writer = write_output(azurite, container)
        result = run(azurite, "verify", *where(container))
        assert result.code == EXIT_OK, result.out + result.err
        assert "VERIFIED" in result.out and "NOT VERIFIED" not in result.out
        assert "Rows     75" in result.out
        assert f"Bytes    {writer.size:,} bytes" in result.out
        assert "Segments 3" in result.out and "Runs     1: run-1" in result.out
        assert writer.content_hash in result.out

    def test_clean_output_json(self, azurite: Azurite, container: str) -> None:
        """--json: one document with ok, rows, bytes, segments, runs and the sha256."""
        writer = write_output(azurite, container)
        result = run(azurite, "verify", *where(container), "--json")
        assert result.code == EXIT_OK
        doc = result.json()
        assert doc["ok"] is True and doc["problems"] == [] and doc["needs_resume"] is False
        assert (doc["rows"], doc["bytes"], doc["sha256"]) == (75, writer.size, writer.content_hash)
        assert doc["segments_count"] == len(doc["segments"]) == 3 and doc["runs_count"] == 1

    def test_foreign_bytes_exit_1_naming_segment_and_offset(self, azurite: Azurite, container: str) -> None:
        """Bytes appended to a segment: exit 1, the segment and the offset where they start."""
        write_output(azurite, container)
        name = segment(2)
        size = blob(azurite, container, name).get_blob_properties().size
        blob(azurite, container, name).append_block(b"FOREIGN\n")
        result = run(azurite, "verify", *where(container))
        assert result.code == EXIT_PROBLEM
        assert "NOT VERIFIED: 1 problem found" in result.out
        assert f"[undescribed_bytes] {name} at offset {size}" in result.out
        doc = run(azurite, "verify", *where(container), "--json").json()
        assert doc["ok"] is False
        assert doc["problems"][0]["location"] == {
            "blob": name,
            "offset": size,
            "record": None,
            "manifest": None,
        }

    def test_flipped_byte_exits_1_naming_the_entry(self, azurite: Azurite, container: str) -> None:
        """One byte changed inside a block: exit 1 naming the segment, offset and manifest record."""
        write_output(azurite, container, seal=True)
        target = next(e for e in committed_entries(azurite, container) if e.segment == 1)
        flip_byte(azurite, container, segment(1), target.offset + 1)
        result = run(azurite, "verify", *where(container))
        assert result.code == EXIT_PROBLEM
        manifest = manifest_name(BLOB, "run-1")
        assert (
            f"[sha_mismatch] {segment(1)} at offset {target.offset}, record {target.seq} of {manifest}"
            in result.out
        )
        assert f"entry {target.seq} of run run-1" in result.out

    def test_edited_manifest_exits_1_naming_the_record(self, azurite: Azurite, container: str) -> None:
        """One digit of an entry's sha256 edited in the manifest: exit 1 naming the record."""
        write_output(azurite, container)
        target = committed_entries(azurite, container)[3]
        edit_entry_sha(azurite, container, target.seq)
        result = run(azurite, "verify", *where(container))
        assert result.code == EXIT_PROBLEM
        assert f"record {target.seq + 1}" in result.out and "[chain_broken]" in result.out
        assert f"record {target.seq} or {target.seq + 1} was edited" in result.out

    def test_progress_bar_stays_off_when_stderr_is_not_a_terminal(
        self, azurite: Azurite, container: str
    ) -> None:
        """Not a TTY: stderr stays empty."""
        write_output(azurite, container)
        result = run(azurite, "verify", *where(container))
        assert result.err == ""


class TestInspect:
    def test_crashed_run_says_resume_needed(self, azurite: Azurite, container: str) -> None:
        """A run that crashed between an intent and its block: NEEDED, with the lease holder."""
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(4, "crash-before")))
        result = run(azurite, "inspect", *where(container))
        assert result.code == EXIT_OK, result.out + result.err
        assert "resume        NEEDED:" in result.out and "did not land" in result.out
        assert "held by run run-1" in result.out
        doc = run(azurite, "inspect", *where(container), "--run-id", "run-1", "--json").json()
        assert doc["needs_resume"] is True and doc["runs"][0]["needs_resume"] is True
        assert [s["lease_holder"] for s in doc["segments"] if s["lease_state"] == "leased"] == ["run-1"]

    def test_finished_run_needs_no_resume(self, azurite: Azurite, container: str) -> None:
        """A completed, sealed run: not needed; sealed; no lease."""
        write_output(azurite, container, seal=True)
        result = run(azurite, "inspect", *where(container), "--run-id", "run-1")
        assert result.code == EXIT_OK
        assert "resume        not needed" in result.out and "sealed        yes" in result.out
        assert "Lease:" not in result.out

    def test_unknown_run_is_a_usage_error(self, azurite: Azurite, container: str) -> None:
        """--run-id that has no manifest: exit 2 naming --run-id and the runs that exist."""
        write_output(azurite, container)
        result = run(azurite, "inspect", *where(container), "--run-id", "nope")
        assert result.code == EXIT_USAGE
        assert "--run-id" in result.err and "run-1" in result.err


class TestUnlock:
    @pytest.fixture()
    def crashed(self, azurite: Azurite, container: str) -> str:
        """A crashed run still holding its lease; the leased segment's name."""
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(4, "crash-before")))
        (name,) = [
            s
            for s in (segment(0), segment(1))
            if _exists(azurite, container, s) and lease_state(azurite, container, s) == "leased"
        ]
        return name

    def test_refuses_without_yes_when_no_one_can_be_asked(
        self, azurite: Azurite, container: str, crashed: str
    ) -> None:
        """No --yes and stdin not a terminal: exit 2, holder shown, lease untouched."""
        result = run(azurite, "unlock", *where(container))
        assert result.code == EXIT_USAGE
        assert f"{crashed}: lease leased, held by run run-1" in result.out
        assert "--yes" in result.err
        assert lease_state(azurite, container, crashed) == "leased"

    def test_declined_prompt_changes_nothing(self, azurite: Azurite, container: str, crashed: str) -> None:
        """On a terminal, answering no: exit 1 and the lease stays."""
        result = run(azurite, "unlock", *where(container), stdin=FakeTty("n\n"))
        assert result.code == EXIT_PROBLEM and "Nothing was changed" in result.out
        assert lease_state(azurite, container, crashed) == "leased"

    def test_confirmed_prompt_breaks_the_lease(self, azurite: Azurite, container: str, crashed: str) -> None:
        """On a terminal, answering y: exit 0 and the lease is broken."""
        result = run(azurite, "unlock", *where(container), stdin=FakeTty("y\n"))
        assert result.code == EXIT_OK, result.out + result.err
        assert lease_state(azurite, container, crashed) == "broken"

    def test_yes_breaks_the_lease(self, azurite: Azurite, container: str, crashed: str) -> None:
        """--yes: exit 0, the lease is broken, and the JSON lists what was broken."""
        result = run(azurite, "unlock", *where(container), "--yes", "--json")
        assert result.code == EXIT_OK
        doc = result.json()
        assert doc["broken"] == [crashed] and doc["leases"][0]["holder"] == "run-1"
        assert lease_state(azurite, container, crashed) == "broken"

    def test_run_id_limits_which_leases_are_broken(
        self, azurite: Azurite, container: str, crashed: str
    ) -> None:
        """--run-id of another run: the lease is left alone."""
        result = run(azurite, "unlock", *where(container), "--run-id", "other", "--yes")
        assert result.code == EXIT_OK and "Leaving" in result.out
        assert lease_state(azurite, container, crashed) == "leased"

    def test_nothing_to_unlock(self, azurite: Azurite, container: str) -> None:
        """A closed run holds no lease: exit 0, nothing to break."""
        write_output(azurite, container)
        result = run(azurite, "unlock", *where(container))
        assert result.code == EXIT_OK and "No lease to break" in result.out


class TestUsageAndCredentials:
    def test_no_credentials_is_a_usage_error_naming_the_variable(self, container: str) -> None:
        """Nothing given: exit 2, and the message says how to authenticate."""
        result = run(None, "verify", *where(container), env={})
        assert result.code == EXIT_USAGE and ENV_CONNECTION_STRING in result.err

    def test_two_methods_are_refused(self, azurite: Azurite, container: str) -> None:
        """A connection string and a SAS token on the command line: exit 2."""
        result = run(
            azurite,
            "verify",
            *where(container),
            "--connection-string",
            azurite.connection_string,
            "--sas-token",
            "sv=2020&sig=abcdefgh12345678",
        )
        assert result.code == EXIT_USAGE and "one authentication method" in result.err
        assert (
            ACCOUNT_KEY not in result.out + result.err and "abcdefgh12345678" not in result.out + result.err
        )

    def test_template_path_is_refused(self, azurite: Azurite, container: str) -> None:
        """A {{ run_id }} template instead of the rendered path: exit 2 explaining the difference."""
        result = run(azurite, "verify", *where(container, "out/{{ run_id }}/rows.csv"))
        assert result.code == EXIT_USAGE and "rendered" in result.err

    def test_invalid_container_name_is_refused(self, azurite: Azurite) -> None:
        """An impossible container name: exit 2 naming --container."""
        result = run(azurite, "verify", "--container", "Bad_Name", "--blob-path", BLOB)
        assert result.code == EXIT_USAGE and "--container" in result.err

    def test_nothing_at_the_path_is_a_usage_error(self, azurite: Azurite, container: str) -> None:
        """A path with nothing there: exit 2 naming --blob-path."""
        result = run(azurite, "verify", *where(container, "no/such.csv"), "--json")
        assert result.code == EXIT_USAGE and "--blob-path" in result.err
        assert result.json()["error"]["exit_code"] == EXIT_USAGE

    def test_missing_container_is_a_storage_error_without_secrets(self, azurite: Azurite) -> None:
        """A container that does not exist: exit 3; the account key appears nowhere."""
        result = run(
            None,
            "verify",
            "--container",
            "absent-container",
            "--blob-path",
            BLOB,
            "--connection-string",
            azurite.connection_string,
            env={},
        )
        assert result.code == EXIT_STORAGE, result.err
        assert ACCOUNT_KEY not in result.out + result.err

    def test_plain_http_to_a_remote_host_is_refused(self, container: str) -> None:
        """A SAS token must not travel over plain http to a remote host."""
        result = run(
            None,
            "verify",
            *where(container),
            "--account-url",
            "http://example.com",
            "--sas-token",
            "sv=1&sig=secretsig123456",
            env={},
        )
        assert result.code == EXIT_USAGE and "http" in result.err
        assert "secretsig123456" not in result.err

    def test_sas_token_from_the_environment_works_and_is_never_printed(
        self, azurite: Azurite, container: str
    ) -> None:
        """AZURE_STORAGE_ACCOUNT_URL + AZURE_STORAGE_SAS_TOKEN authenticate; the signature never shows."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        write_output(azurite, container)
        sas = generate_container_sas(
            ACCOUNT_NAME,
            container,
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
        env = {"AZURE_STORAGE_ACCOUNT_URL": azurite.blob_endpoint, "AZURE_STORAGE_SAS_TOKEN": sas}
        ok = run(None, "verify", *where(container), "--json", env=env)
        assert ok.code == EXIT_OK, ok.err
        refused = run(None, "unlock", *where(container), "--yes", env=env)  # nothing leased: still fine
        assert refused.code == EXIT_OK
        missing = run(None, "verify", *where("absent-container"), env=env)
        assert missing.code == EXIT_STORAGE
        for text in (ok.out, ok.err, missing.out, missing.err):
            assert signature not in text and ACCOUNT_KEY not in text


class TestProgressBar:
    def test_silent_when_not_a_terminal(self) -> None:
        """On a pipe or file the bar never writes."""
        stream = io.StringIO()
        bar = ProgressBar(stream, clock=lambda: 10.0)
        bar(50, 100)
        bar.close()
        assert stream.getvalue() == ""

    def test_draws_after_the_delay_and_erases_itself(self) -> None:
        """On a terminal: nothing before the delay, a bar after it, a clean line at close."""
        now = [0.0]
        stream = FakeTty()
        bar = ProgressBar(stream, clock=lambda: now[0], delay=0.5, interval=0.1)
        bar(10, 100)
        assert stream.getvalue() == ""
        now[0] = 1.0
        bar(50, 100)
        assert "[###############---------------]  50%" in stream.getvalue()
        bar.close()
        assert stream.getvalue().endswith("\r")


class TestEntryPoints:
    def test_python_m_runs_the_cli(self, azurite: Azurite, container: str) -> None:
        """`python -m elspeth_appendsink verify --json` in a child process: exit 0 and JSON."""
        write_output(azurite, container)
        env = {**os.environ, ENV_CONNECTION_STRING: azurite.connection_string}
        proc = subprocess.run(
            [sys.executable, "-m", "elspeth_appendsink", "verify", *where(container), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert proc.returncode == EXIT_OK, proc.stderr
        assert json.loads(proc.stdout)["rows"] == 75
        assert proc.stderr == ""

    def test_console_script_reports_a_problem_with_exit_1(self, azurite: Azurite, container: str) -> None:
        """The installed `elspeth-appendsink` script: exit 1 on foreign bytes."""
        script = Path(sys.executable).with_name("elspeth-appendsink")
        if not script.exists():
            pytest.skip(f"console script not installed at {script} (pip install -e .)")
        write_output(azurite, container)
        blob(azurite, container, segment(2)).append_block(b"x")
        env = {**os.environ, ENV_CONNECTION_STRING: azurite.connection_string}
        proc = subprocess.run(
            [str(script), "verify", *where(container)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert proc.returncode == EXIT_PROBLEM, proc.stdout + proc.stderr
        assert "undescribed_bytes" in proc.stdout and ACCOUNT_KEY not in proc.stdout + proc.stderr


def _exists(azurite: Azurite, container: str, name: str) -> bool:
    return bool(blob(azurite, container, name).exists())
