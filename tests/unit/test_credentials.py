"""One credentials path: the sink's options and the command line make the same settings, checked by
the same rules, and reach storage through the same client construction (no request is sent here)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from azure.identity import ClientSecretCredential

from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.storage.credentials import (
    AuthSettings,
    auth_settings,
    credential_for,
    open_store,
    service_client,
)
from elspeth_appendsink.tools.cli import EXIT_USAGE, build_parser, main, resolve_credentials

ACCOUNT_URL = "https://acct.blob.core.windows.net"
SIGNATURE = "U2FzU2lnbmF0dXJlU2VjcmV0MTIz"
SAS_TOKEN = f"sv=2024-05-04&sp=rl&se=2030-01-01T00:00:00Z&sig={SIGNATURE}"
ACCOUNT_KEY = "QWNjb3VudEtleVNlY3JldFZhbHVlMDEyMzQ1Njc4OQ=="
CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};"
    "EndpointSuffix=core.windows.net"
)
CLIENT_SECRET = "cl13nt~S3cretValue_9876543210"
PRINCIPAL = {"account_url": ACCOUNT_URL, "tenant_id": "t", "client_id": "c", "client_secret": CLIENT_SECRET}
WHERE = ["verify", "--container", "out", "--blob-path", "a.csv"]


def sink_auth(**auth: Any) -> AuthSettings:
    options = {"container": "out", "blob_path": "a.csv", "schema": {"mode": "observed"}, **auth}
    return SinkConfig.from_options(options).auth


def cli_auth(*flags: str, env: dict[str, str] | None = None) -> AuthSettings:
    return resolve_credentials(build_parser().parse_args([*WHERE, *flags]), env or {})


def run(*flags: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*WHERE, *flags], env={}, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


class TestSameSettings:
    def test_a_sas_token_gives_the_sink_and_the_command_equal_settings(self) -> None:
        """Flags, environment variables and sink options for one SAS token make equal settings."""
        expected = sink_auth(account_url=ACCOUNT_URL, sas_token=f"?{SAS_TOKEN}")
        assert cli_auth("--account-url", ACCOUNT_URL, "--sas-token", f"?{SAS_TOKEN}") == expected
        env = {"AZURE_STORAGE_ACCOUNT_URL": ACCOUNT_URL, "AZURE_STORAGE_SAS_TOKEN": SAS_TOKEN}
        assert cli_auth(env=env) == expected

    @pytest.mark.parametrize(
        ("flags", "options"),
        [
            (["--connection-string", CONNECTION_STRING], {"connection_string": CONNECTION_STRING}),
            (
                ["--account-url", ACCOUNT_URL, "--tenant-id", "t", "--client-id", "c", "--client-secret",
                 CLIENT_SECRET],
                PRINCIPAL,
            ),
            (["--account-url", ACCOUNT_URL, "--managed-identity"], {"account_url": ACCOUNT_URL,
                                                                     "use_managed_identity": True}),
        ],
        ids=["connection_string", "service_principal", "managed_identity"],
    )  # fmt: skip
    def test_every_method_gives_equal_settings(self, flags: list[str], options: dict[str, Any]) -> None:
        """Whatever the method, the command's settings are the sink's."""
        assert cli_auth(*flags) == sink_auth(**options)


class TestSameRules:
    @pytest.mark.parametrize(
        ("flags", "option"),
        [
            (["--account-url", "https://user:pw@acct.blob.core.windows.net", "--sas-token", SAS_TOKEN],
             "--account-url"),
            (["--account-url", f"{ACCOUNT_URL}#x", "--sas-token", SAS_TOKEN], "--account-url"),
            (["--account-url", ACCOUNT_URL, "--sas-token", f"sv=1&sk={ACCOUNT_KEY}"], "--sas-token"),
            (["--connection-string", f"AccountKey={ACCOUNT_KEY}"], "--connection-string"),
            (["--account-url", "http://127.0.0.1:10000/acct", "--managed-identity"], "--account-url"),
            (["--connection-string", CONNECTION_STRING, "--account-url", ACCOUNT_URL], "--account-url"),
        ],
        ids=["url-with-user", "url-with-fragment", "sas-without-sig", "connection-string-without-account",
             "token-over-http", "url-with-connection-string"],
    )  # fmt: skip
    def test_the_command_refuses_what_the_sink_refuses(self, flags: list[str], option: str) -> None:
        """The sink's checks hold on the command line: exit 2 naming the flag, no secret shown."""
        code, text = run(*flags)
        assert code == EXIT_USAGE and option in text, text
        for secret in (ACCOUNT_KEY, SIGNATURE, "pw@"):
            assert secret not in text


class TestClientConstruction:
    def test_a_sas_token_is_the_credential_itself(self) -> None:
        """The SDK is handed the token (without '?'), nothing else."""
        assert credential_for(auth_settings(account_url=ACCOUNT_URL, sas_token=f"?{SAS_TOKEN}")) == SAS_TOKEN

    def test_a_service_principal_becomes_a_client_secret_credential(self) -> None:
        """azure-identity's ClientSecretCredential, made from the settings."""
        auth = auth_settings(
            account_url=ACCOUNT_URL, tenant_id="t", client_id="c", client_secret=CLIENT_SECRET
        )
        assert isinstance(credential_for(auth), ClientSecretCredential)

    def test_a_connection_string_names_the_account_and_the_store_its_container(self) -> None:
        """The service client points at the connection string's account; the store at the container."""
        auth = auth_settings(connection_string=CONNECTION_STRING)
        assert service_client(auth).account_name == "acct"
        store = open_store(auth, "out", validate_content=True)
        assert (store.container, store.validate_content) == ("out", True)
        assert store.service.url.startswith("https://acct.blob.core.windows.net")
