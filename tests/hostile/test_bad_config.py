"""Bad configuration fails at construction, with no network call, naming the option and the rule.

Every case builds the real sink (``AzureAppendBlobSink(options, transport=...)``) with a
:class:`FaultyTransport` whose request log must stay empty, while every socket connect in the
process is refused and recorded — so a credential fetch or a client that ignored the transport
would be caught too. The endpoint is a closed loopback port: no Azurite is needed. The options
carry real-looking secrets (account key, SAS signature, client secret); no message may show one.
A hostile run id (from the engine, at the first write) is refused the same way, before any request.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import ConfigError, StorageUnavailableError
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from tests.hostile.conftest import (
    ATTEMPTS,
    CLIENT_SECRET,
    FAST_RETRY,
    HOSTILE_SECRETS,
    SAS_SIGNATURE,
    TALLY,
    WRONG_ACCOUNT_KEY,
    assert_no_secret,
)

CLOSED = "http://127.0.0.1:9/devstoreaccount1"  # discard port: nothing listens
CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={WRONG_ACCOUNT_KEY};"
    f"BlobEndpoint={CLOSED};"
)
SAS = f"sv=2024-11-04&ss=b&srt=co&sp=rwac&se=2099-01-01T00:00:00Z&sig={SAS_SIGNATURE}"
HTTPS = "https://acct.blob.core.windows.net"
SCHEMA = {"mode": "fixed", "fields": ["id: int", "name: str"]}
BASE: dict[str, Any] = {
    "connection_string": CONNECTION_STRING,
    "container": "output",
    "blob_path": "out/{{ run_id }}/rows.csv",
    "format": "csv",
    "schema": SCHEMA,
    "retry": FAST_RETRY,
}
DROP = object()  # an override that removes the option


def options(**overrides: Any) -> dict[str, Any]:
    merged = {**BASE, **overrides}
    return {key: value for key, value in merged.items() if value is not DROP}


NO_CS = {"connection_string": DROP}
MIB = 1024 * 1024

#: (case id, options, the option named, text of the rule)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # authentication
    ("no-auth", options(**NO_CS), "auth", "No authentication method configured"),
    ("two-methods-cs-and-sas", options(sas_token=SAS, account_url=HTTPS), "auth", "Multiple authentication"),
    (
        "two-methods-sas-and-mi",
        options(**NO_CS, sas_token=SAS, account_url=HTTPS, use_managed_identity=True),
        "auth",
        "Multiple authentication methods configured: sas_token, managed_identity",
    ),
    (
        "two-methods-cs-and-sp",
        options(tenant_id="t", client_id="c", client_secret=CLIENT_SECRET, account_url=HTTPS),
        "auth",
        "Multiple authentication",
    ),
    (
        "partial-sp-no-secret",
        options(**NO_CS, account_url=HTTPS, tenant_id="t", client_id="c"),
        "client_secret",
        "Service Principal auth requires all fields. Missing: client_secret",
    ),
    (
        "partial-sp-secret-only",
        options(**NO_CS, account_url=HTTPS, client_secret=CLIENT_SECRET),
        "tenant_id",
        "Missing: tenant_id, client_id",
    ),
    (
        "sp-without-account-url",
        options(**NO_CS, tenant_id="t", client_id="c", client_secret=CLIENT_SECRET),
        "account_url",
        "requires account_url",
    ),
    ("sas-without-account-url", options(**NO_CS, sas_token=SAS), "account_url", "requires account_url"),
    (
        "token-auth-over-http",
        options(**NO_CS, use_managed_identity=True, account_url=CLOSED),
        "account_url",
        "only allowed over https",
    ),
    (
        "sp-over-http",
        options(**NO_CS, tenant_id="t", client_id="c", client_secret=CLIENT_SECRET, account_url=CLOSED),
        "account_url",
        "only allowed over https",
    ),
    (
        "sas-without-signature",
        options(**NO_CS, sas_token="sv=1&sp=r", account_url=HTTPS),
        "sas_token",
        "sig=",
    ),
    # container
    ("container-empty", options(container=""), "container", "is 0 characters long"),
    ("container-too-short", options(container="ab"), "container", "3-63 characters"),
    ("container-uppercase", options(container="Bad_Name"), "container", "characters other than lowercase"),
    ("container-double-hyphen", options(container="a--b"), "container", "consecutive hyphens"),
    # blob_path
    ("path-dot-segment", options(blob_path="out/./rows.csv"), "blob_path", "'.' or '..' segment"),
    ("path-dotdot-segment", options(blob_path="out/../rows.csv"), "blob_path", "'.' or '..' segment"),
    ("path-trailing-dot", options(blob_path="out/rows."), "blob_path", "must not end with '.'"),
    ("path-trailing-slash", options(blob_path="out/rows/"), "blob_path", "must not end with '/'"),
    ("path-backslash", options(blob_path="out\\rows.csv"), "blob_path", "backslash"),
    ("path-1025-chars", options(blob_path="a" * 1025), "blob_path", "1025 characters long"),
    (
        "path-255-segments",
        options(blob_path="/".join(["a"] * 255)),
        "blob_path",
        "255 '/'-separated segments",
    ),
    ("path-empty", options(blob_path=""), "blob_path", "non-empty"),
    ("template-syntax", options(blob_path="out/{{ run_id"), "blob_path", "invalid template syntax"),
    ("template-unknown-variable", options(blob_path="out/{{ user }}.csv"), "blob_path", "unknown variable"),
    ("template-sandbox-escape", options(blob_path="{{ run_id.__class__ }}"), "blob_path", "SecurityError"),
    (
        "template-renders-dotdot",
        options(blob_path="out/{{ run_id }}/../x.csv"),
        "blob_path",
        "'.' or '..' segment",
    ),
    # format and CSV options
    ("format-json", options(format="json"), "format", "cannot be appended to"),
    ("format-unknown", options(format="parquet"), "format", "must be one of csv, jsonl, arrow"),
    ("csv-delimiter-two-chars", options(csv_options={"delimiter": ";;"}), "csv_options", "single character"),
    ("csv-delimiter-empty", options(csv_options={"delimiter": ""}), "csv_options", "single character"),
    ("csv-delimiter-quote", options(csv_options={"delimiter": '"'}), "csv_options", "quote or a line break"),
    (
        "csv-encoding-unknown",
        options(csv_options={"encoding": "klingon"}),
        "csv_options",
        "unknown text encoding",
    ),
    ("csv-encoding-bom", options(csv_options={"encoding": "utf-16"}), "csv_options", "byte-order mark"),
    ("csv-unknown-key", options(csv_options={"quote": "'"}), "csv_options", "unknown key 'quote'"),
    ("csv-options-for-jsonl", options(format="jsonl", csv_options={}), "csv_options", "applies only to"),
    # block size
    ("block-size-zero", options(block_size=0), "block_size", "greater than 0"),
    ("block-size-negative", options(block_size=-4096), "block_size", "greater than 0"),
    ("block-size-zero-unit", options(block_size="0KiB"), "block_size", "greater than 0"),
    ("block-size-over-100mib", options(block_size=100 * MIB + 1), "block_size", "limit of 100 MiB"),
    ("block-size-101mib-text", options(block_size="101MiB"), "block_size", "limit of 100 MiB"),
    ("block-size-not-a-size", options(block_size="lots"), "block_size", "a byte count"),
    ("block-size-boolean", options(block_size=True), "block_size", "a byte count"),
    # schema and identity_fields
    (
        "identity-fields-not-in-schema",
        options(identity_fields="email"),
        "identity_fields",
        "'email' is not declared",
    ),
    (
        "identity-fields-one-of-two-missing",
        options(identity_fields=["id", "nope"]),
        "identity_fields",
        "'nope' is not declared",
    ),
    ("identity-fields-empty-list", options(identity_fields=[]), "identity_fields", "non-empty list"),
    ("row-key-renamed", options(row_key="id"), "row_key", "renamed 'identity_fields'"),
    ("unknown-option-suggests", options(containr="x"), "containr", "did you mean 'container'"),
    ("schema-missing", options(schema=DROP), "schema", "required option is missing"),
    ("schema-bad-type", options(schema={"mode": "fixed", "fields": ["id: uuid"]}), "schema", "Unknown type"),
    # unknown options
    ("unknown-option", options(blob_name="x.csv"), "blob_name", "unknown option 'blob_name'"),
    (
        "unknown-secret-looking-option",
        options(account_key=WRONG_ACCOUNT_KEY),
        "account_key",
        "unknown option",
    ),
]


@pytest.fixture()
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Refuse (and record) every socket connect the test's own thread makes while it runs.

    Other threads are not the construction under test: a lease heartbeat left by an earlier
    test's writer may wake up meanwhile (it is refused too, but not recorded)."""
    attempts: list[Any] = []
    mine = threading.get_ident()

    def refuse(self: socket.socket, address: Any) -> None:
        if threading.get_ident() == mine:
            attempts.append(address)
        raise ConnectionRefusedError(f"test forbids network access (connect to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts


@pytest.mark.parametrize(("case", "opts", "option", "rule"), CASES, ids=[c[0] for c in CASES])
def test_bad_option_fails_at_construction_naming_option_and_rule(
    no_sockets: list[Any], case: str, opts: dict[str, Any], option: str, rule: str
) -> None:
    """ConfigError names the option (``.option`` and the message) and the rule; nothing was sent."""
    transport = FaultyTransport()
    with pytest.raises(ConfigError) as info:
        AzureAppendBlobSink(opts, transport=transport)
    error = info.value
    assert error.option == option, str(error)
    assert f"option '{option}'" in str(error)
    assert rule in str(error), str(error)
    assert isinstance(error, ValueError)  # ELSPETH's plugin loader treats ValueError as bad config
    assert transport.count == 0 and transport.log == []
    assert no_sockets == []
    assert_no_secret(error, secrets=(*HOSTILE_SECRETS, SAS))
    TALLY["bad configurations refused"] += 1


def test_every_rule_of_the_issue_is_covered() -> None:
    """The list above covers each kind of bad configuration issue 7 names."""
    named = {option for _case, _opts, option, _rule in CASES}
    assert named >= {
        "auth", "client_secret", "container", "blob_path", "format", "csv_options", "block_size",
        "identity_fields", "blob_name",
    }  # fmt: skip
    assert len(CASES) >= 45


def test_valid_options_construct_without_a_request_and_use_the_given_transport(
    no_sockets: list[Any],
) -> None:
    """Control: the same options, fixed, construct silently; the first write goes through the
    injected transport (so an empty request log above means "no request", not "another client")."""
    transport = FaultyTransport(rule=lambda n, op, request: "reset")
    sink = AzureAppendBlobSink(options(), transport=transport)
    assert transport.count == 0 and no_sockets == []
    with pytest.raises(StorageUnavailableError) as info:
        sink.write([{"id": 1, "name": "a"}], RecordingContext(run_id="run-1"))
    sink.close()
    # the run pointer and segment 0 go out together, each until the retry budget is spent
    assert sorted(transport.operations()) == ["create"] * ATTEMPTS + ["upload"] * ATTEMPTS
    assert no_sockets == []  # every attempt was refused by the transport itself
    assert_no_secret(info.value, secrets=HOSTILE_SECRETS)


@pytest.mark.parametrize(
    ("blob_path", "run_id", "rule"),
    [
        ("out/{{ run_id }}/rows.csv", "..", "ends with '.'"),
        ("out/{{ run_id }}/rows.csv", ".", "ends with '.'"),
        ("out/{{ run_id }}/rows.csv", "a/b", "single name segment"),
        ("out/{{ run_id }}/rows.csv", "a\\b", "single name segment"),
        ("out/{{ run_id }}/rows.csv", "", "it is empty"),
        ("out/{{ run_id }}/rows.csv", "a\x00b", "control or surrogate"),
        ("out/{{ run_id }}/rows.csv", "r" * 201, "201 characters long"),
        ("out/rows.csv", "../../x", "single name segment"),
        ("out/rows.csv", "..", "ends with '.'"),
    ],
    ids=[
        "dotdot",
        "dot",
        "slash",
        "backslash",
        "empty",
        "nul",
        "too-long",
        "static-traversal",
        "static-dotdot",
    ],
)
def test_hostile_run_id_is_refused_before_any_request(
    no_sockets: list[Any], blob_path: str, run_id: str, rule: str
) -> None:
    """A run id that would make a bad blob name is refused at the first write, as the run id's
    problem (``option == "run_id"``, whatever the template), before any request is sent."""
    transport = FaultyTransport()
    sink = AzureAppendBlobSink(options(blob_path=blob_path), transport=transport)
    with pytest.raises(ConfigError) as info:
        sink.write([{"id": 1, "name": "a"}], RecordingContext(run_id=run_id))
    sink.close()
    assert info.value.option == "run_id", str(info.value)
    assert rule in str(info.value)
    assert transport.count == 0 and no_sockets == []
    assert_no_secret(info.value, secrets=HOSTILE_SECRETS)
    TALLY["hostile run ids refused"] += 1
