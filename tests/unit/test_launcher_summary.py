"""The launcher's closing lines (:mod:`elspeth_appendsink.elspeth.summary`): paste-ready, never a secret."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from elspeth_appendsink.elspeth.session import Output
from elspeth_appendsink.elspeth.summary import closing_lines, verify_line

SECRET = "AccountKey=c2VjcmV0LWtleS12YWx1ZQ=="


def output(**options: Any) -> Output:
    return Output("0123456789abcdef", "out", "run-1", "results", "orders/run-1/orders.csv", options)


class TestVerifyLine:
    @pytest.mark.parametrize(
        ("options", "flags"),
        [
            ({"connection_string_env": "AZURE_STORAGE_CONNECTION_STRING"}, []),
            ({"connection_string_env": "MY_CONN"}, ["--connection-string", "$MY_CONN"]),
            (
                {"account_url": "https://acct.blob.core.windows.net", "use_managed_identity": True},
                ["--account-url", "https://acct.blob.core.windows.net", "--managed-identity"],
            ),
            (
                {"account_url": "https://acct.blob.core.windows.net", "sas_token_env": "SAS"},
                ["--account-url", "https://acct.blob.core.windows.net", "--sas-token", "$SAS"],
            ),
        ],
    )
    def test_authentication_is_given_as_variables_and_urls(
        self, options: dict[str, Any], flags: list[str]
    ) -> None:
        """The line parses to verify's arguments; secrets appear only as variable names."""
        line = verify_line(output(**options), "sqlite:///./state/audit.db")
        words = shlex.split(line.replace('"$', "'$").replace('"', "'"))
        assert words[:6] == [
            "elspeth-appendsink",
            "verify",
            "--container",
            "results",
            "--blob-path",
            words[5],
        ]
        assert words[5] == "orders/run-1/orders.csv"
        assert words[6:8] == ["--landscape", "sqlite:///./state/audit.db"]
        assert words[8:] == flags

    def test_an_inline_secret_is_never_printed(self) -> None:
        line = verify_line(output(connection_string=f"DefaultEndpointsProtocol=https;{SECRET}"), None)
        assert SECRET not in line and "c2VjcmV0" not in line
        assert "AZURE_STORAGE_CONNECTION_STRING set to the sink's connection string" in line
        line = verify_line(output(account_url="https://a.example", sas_token="sv=1&sig=abc"), None)
        assert "sig=abc" not in line and "AZURE_STORAGE_SAS_TOKEN" in line

    def test_a_landscape_url_that_may_hold_a_password_is_not_printed(self) -> None:
        line = verify_line(output(), "postgresql+psycopg://user:pw@db:5432/audit")
        assert "pw@" not in line and "$LANDSCAPE_URL" in line


class TestClosingLines:
    def test_a_completed_run_names_its_id_output_and_verify_line(self) -> None:
        lines = closing_lines(0, {"d": output()}, settings="settings.yaml", landscape_url="sqlite:///a.db")
        assert lines[0] == "elspeth-appendsink: run run-1 completed"
        assert lines[1] == "  output out: azure://results/orders/run-1/orders.csv"
        assert lines[2].startswith("    verify: elspeth-appendsink verify --container results")
        assert not any("recover" in line for line in lines)

    def test_a_failed_run_also_names_the_recover_line_and_a_start_error(self) -> None:
        failed = Output("0123456789abcdef", "out", "run-1", "results", None, {}, "sink out: container ...")
        lines = closing_lines(
            1, {"d": failed}, settings="conf/s.yaml", landscape_url=None, global_options=["--no-dotenv"]
        )
        assert lines[0] == "elspeth-appendsink: run run-1 did not complete (exit 1)"
        assert lines[1] == "  output out: not opened: sink out: container ..."
        assert lines[-1] == (
            "  to recover it: python -m elspeth_appendsink.elspeth --no-dotenv recover run-1 -s conf/s.yaml"
        )

    def test_nothing_is_printed_when_no_sink_started_a_run(self) -> None:
        assert closing_lines(1, {}, settings="s.yaml", landscape_url=None) == []
