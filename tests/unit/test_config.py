"""SinkConfig: every option validated at construction, every failure a ConfigError naming its option."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from elspeth_appendsink.core.paths import BlobPathTemplate
from elspeth_appendsink.core.redact import redact
from elspeth_appendsink.elspeth.options import (
    DEFAULT_BLOCK_SIZE,
    MAX_BLOCK_SIZE,
    AuthSettings,
    SinkConfig,
    parse_size,
)
from elspeth_appendsink.elspeth.schema import RowSchema
from elspeth_appendsink.errors import ConfigError

ACCOUNT_KEY = "QWNjb3VudEtleVNlY3JldFZhbHVlMDEyMzQ1Njc4OQ=="
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=acct;"
    f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
SAS_TOKEN = "sv=2024-05-04&ss=b&srt=co&sp=rwac&se=2030-01-01T00:00:00Z&sig=U2FzU2lnbmF0dXJlU2VjcmV0MTIz"
CLIENT_SECRET = "cl13nt~S3cretValue_9876543210"
ACCOUNT_URL = "https://acct.blob.core.windows.net"
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
SECRETS = (ACCOUNT_KEY, SAS_TOKEN, "U2FzU2lnbmF0dXJlU2VjcmV0MTIz", CLIENT_SECRET)

SAS_AUTH: dict[str, Any] = {"sas_token": SAS_TOKEN, "account_url": ACCOUNT_URL}
MI_AUTH: dict[str, Any] = {"use_managed_identity": True, "account_url": ACCOUNT_URL}
SP_AUTH: dict[str, Any] = {
    "tenant_id": "tenant-1",
    "client_id": "client-1",
    "client_secret": CLIENT_SECRET,
    "account_url": ACCOUNT_URL,
}
CS_AUTH: dict[str, Any] = {"connection_string": CONNECTION_STRING}
ALL_AUTH = {
    "connection_string": CS_AUTH,
    "sas_token": SAS_AUTH,
    "managed_identity": MI_AUTH,
    "service_principal": SP_AUTH,
}

TARGET: dict[str, Any] = {
    "container": "output",
    "blob_path": "out/{{ run_id }}/rows.csv",
    "schema": {"mode": "observed"},
}
FIXED_SCHEMA: dict[str, Any] = {"mode": "fixed", "fields": ["id: int", "name: str", "score: float?"]}


def options(auth: Mapping[str, Any] = CS_AUTH, **overrides: Any) -> dict[str, Any]:
    """Valid options (connection string auth by default) with ``overrides`` applied; None removes a key."""
    merged: dict[str, Any] = {**auth, **TARGET, **overrides}
    return {key: value for key, value in merged.items() if value is not None}


def config_error(opts: Mapping[str, Any]) -> ConfigError:
    """The ConfigError ``from_options`` raises for ``opts``; fails the test if it accepts them."""
    with pytest.raises(ConfigError) as info:
        SinkConfig.from_options(opts)
    return info.value


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


class TestFromOptions:
    @pytest.mark.parametrize("method", sorted(ALL_AUTH))
    def test_minimal_options_parse_with_defaults(self, method: str) -> None:
        """Auth + container + blob_path + schema is a complete config; everything else has a default."""
        config = SinkConfig.from_options(options(ALL_AUTH[method]))
        assert config.auth.method == method
        assert config.format == "csv" and config.if_exists == "fail" and config.headers == "normalized"
        assert config.block_size == DEFAULT_BLOCK_SIZE == 4 * 1024 * 1024
        assert config.segment_max_blocks == 49_000 and config.segment_max_bytes is None
        assert config.lease is True and config.lease_duration == 60
        assert config.seal_on_complete is False and config.validate_content is False
        assert config.identity_fields is None and config.api_version is None
        assert config.retry.total == 5 and config.retry.read_timeout == 60

    def test_config_is_frozen(self) -> None:
        """No option can be changed after construction."""
        config = SinkConfig.from_options(options())
        with pytest.raises(ValueError, match="frozen"):
            config.container = "other"

    def test_unknown_option_is_named_and_allowed_ones_listed(self) -> None:
        """A typo is refused naming the unknown option; the hint lists every option."""
        error = config_error(options(overwrite=True))
        assert error.option == "overwrite"
        assert "unknown option 'overwrite'" in str(error)
        for name in ("blob_path", "schema", "if_exists", "identity_fields", "block_size", "retry"):
            assert name in error.hint
        assert "row_schema" not in error.hint

    @pytest.mark.parametrize("missing", ["container", "blob_path", "schema"])
    def test_required_options(self, missing: str) -> None:
        """container, blob_path and schema have no default."""
        removed: dict[str, Any] = {missing: None}
        error = config_error(options(**removed))
        assert error.option == missing and "required" in str(error)

    def test_options_must_be_a_mapping(self) -> None:
        """Anything but a mapping is refused."""
        assert config_error(["container"]).option == "options"  # type: ignore[arg-type]

    def test_config_error_is_a_value_error(self) -> None:
        """Callers catching ValueError (as ELSPETH does for config) see our errors."""
        assert isinstance(config_error(options(format="xml")), ValueError)

    def test_input_mapping_is_not_kept(self) -> None:
        """Mutating the options after construction does not change the config."""
        opts = options(schema={"mode": "fixed", "fields": ["id: int"]}, identity_fields=["id"])
        config = SinkConfig.from_options(opts)
        opts["schema"]["fields"].append("x: int")
        assert config.row_schema.field_names == ("id",)
        assert config.schema_options == {"mode": "fixed", "fields": ["id: int"]}


class TestAuth:
    def test_no_method(self) -> None:
        """Without credentials the error lists the four methods."""
        error = config_error(options(auth={}))
        assert error.option == "auth"
        assert "No authentication method configured" in str(error)
        assert "service principal" in str(error)

    def test_account_url_alone_is_no_method(self) -> None:
        """An account URL is not a credential."""
        assert "No authentication method" in str(config_error(options(auth={"account_url": ACCOUNT_URL})))

    @pytest.mark.parametrize(
        ("auth", "named"),
        [
            ({**CS_AUTH, **SAS_AUTH}, "connection_string, sas_token"),
            ({**SAS_AUTH, "use_managed_identity": True}, "sas_token, managed_identity"),
            ({**SP_AUTH, "use_managed_identity": True}, "managed_identity, service_principal"),
        ],
    )
    def test_multiple_methods(self, auth: dict[str, Any], named: str) -> None:
        """Two methods at once are refused, naming the ones found."""
        error = config_error(options(auth=auth))
        assert error.option == "auth"
        assert f"Multiple authentication methods configured: {named}" in str(error)

    def test_sas_requires_account_url(self) -> None:
        """A SAS token alone says what is missing."""
        error = config_error(options(auth={"sas_token": SAS_TOKEN}))
        assert error.option == "account_url" and "SAS token auth requires account_url" in str(error)

    def test_managed_identity_requires_account_url(self) -> None:
        """Managed identity needs to know the account."""
        error = config_error(options(auth={"use_managed_identity": True}))
        assert error.option == "account_url" and "Managed Identity auth requires account_url" in str(error)

    @pytest.mark.parametrize(
        ("given", "missing"),
        [
            ({"tenant_id": "t"}, "client_id, client_secret"),
            ({"tenant_id": "t", "client_secret": CLIENT_SECRET}, "client_id"),
            ({"client_id": "c", "client_secret": CLIENT_SECRET}, "tenant_id"),
        ],
    )
    def test_service_principal_names_missing_fields(self, given: dict[str, Any], missing: str) -> None:
        """A partial service principal lists the fields it lacks; option is the first of them."""
        error = config_error(options(auth={**given, "account_url": ACCOUNT_URL}))
        assert f"Service Principal auth requires all fields. Missing: {missing}" in str(error)
        assert error.option == missing.split(",", maxsplit=1)[0]

    def test_service_principal_requires_account_url(self) -> None:
        """All three service-principal fields still need an account URL."""
        auth = {key: value for key, value in SP_AUTH.items() if key != "account_url"}
        error = config_error(options(auth=auth))
        assert error.option == "account_url" and "Service Principal auth requires account_url" in str(error)

    @pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
    def test_whitespace_only_counts_as_unset(self, blank: str) -> None:
        """A blank credential (an empty ${ENV}) is not a second method."""
        config = SinkConfig.from_options(
            options(auth={**SAS_AUTH, "connection_string": blank, "tenant_id": blank})
        )
        assert config.auth.method == "sas_token"
        assert "No authentication method" in str(config_error(options(auth={"connection_string": blank})))

    @pytest.mark.parametrize(
        "url",
        ["http://127.0.0.1:10000/devstoreaccount1", "http://localhost:10000/acct", "http://[::1]:10000/a"],
    )
    def test_plain_http_is_allowed_for_loopback(self, url: str) -> None:
        """Azurite on a loopback address may use http."""
        assert SinkConfig.from_options(options(auth={**SAS_AUTH, "account_url": url})).auth.account_url == url

    @pytest.mark.parametrize(
        ("url", "rule"),
        [
            ("http://acct.blob.core.windows.net", "only allowed for a loopback host"),
            ("http://10.0.0.5:10000/a", "only allowed for a loopback host"),
            ("ftp://acct.blob.core.windows.net", "http(s) URL"),
            ("acct.blob.core.windows.net", "http(s) URL"),
            ("https://", "http(s) URL"),
            (f"{ACCOUNT_URL}?{SAS_TOKEN}", "query string"),
            ("https://user:pw@acct.blob.core.windows.net", "user name or password"),
            ("https://acct.blob.core.windows.net:99999", "not a valid URL"),
        ],
    )
    def test_account_url_rules(self, url: str, rule: str) -> None:
        """account_url is https, or http to loopback, without query or credentials."""
        error = config_error(options(auth={**MI_AUTH, "account_url": url}))
        assert error.option == "account_url" and rule in str(error)
        assert_no_secret(str(error))

    def test_account_url_with_connection_string_is_refused(self) -> None:
        """A connection string names its own endpoint; a second one would be silently ignored."""
        error = config_error(options(auth={**CS_AUTH, "account_url": ACCOUNT_URL}))
        assert error.option == "account_url" and "connection_string" in str(error)

    @pytest.mark.parametrize(
        ("value", "rule"),
        [
            ("not a connection string", "key=value"),
            ("AccountKey=abcdefgh;EndpointSuffix=core.windows.net", "AccountName or BlobEndpoint"),
            (f"AccountName=a;AccountKey={ACCOUNT_KEY};BlobEndpoint=http://evil.example/a", "loopback"),
            (f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={ACCOUNT_KEY}", "https"),
        ],
    )
    def test_connection_string_shape(self, value: str, rule: str) -> None:
        """An unusable connection string is refused without echoing it."""
        error = config_error(options(auth={"connection_string": value}))
        assert error.option == "connection_string" and rule in str(error)
        assert ACCOUNT_KEY not in str(error) and "abcdefgh" not in str(error)

    @pytest.mark.parametrize("value", [AZURITE_CONNECTION_STRING, "UseDevelopmentStorage=true"])
    def test_emulator_connection_strings_are_accepted(self, value: str) -> None:
        """Azurite's well-known connection strings work."""
        assert (
            SinkConfig.from_options(options(auth={"connection_string": value})).auth.method
            == "connection_string"
        )

    def test_sas_token_must_carry_a_signature(self) -> None:
        """An account key passed as sas_token is caught (and not echoed)."""
        error = config_error(options(auth={**SAS_AUTH, "sas_token": ACCOUNT_KEY}))
        assert error.option == "sas_token" and "sig=" in str(error)
        assert ACCOUNT_KEY not in str(error)

    def test_sas_token_leading_question_mark_is_dropped(self) -> None:
        """'?sv=…' and 'sv=…' are the same token."""
        config = SinkConfig.from_options(options(auth={**SAS_AUTH, "sas_token": f"?{SAS_TOKEN}"}))
        assert config.auth.sas_token is not None and config.auth.sas_token.get_secret_value() == SAS_TOKEN

    def test_auth_settings_carry_the_fields_a_client_needs(self) -> None:
        """The service-principal settings hold every field; secrets as SecretStr."""
        auth = SinkConfig.from_options(options(auth=SP_AUTH)).auth
        assert isinstance(auth, AuthSettings)
        assert (auth.tenant_id, auth.client_id, auth.account_url) == ("tenant-1", "client-1", ACCOUNT_URL)
        assert (
            isinstance(auth.client_secret, SecretStr)
            and auth.client_secret.get_secret_value() == CLIENT_SECRET
        )
        with pytest.raises(AttributeError):
            auth.method = "sas_token"  # type: ignore[misc]


INVALID_EXTRAS: list[dict[str, Any]] = [
    {"nope": 1},
    {"format": "json"},
    {"container": "BAD"},
    {"blob_path": "{{ x }}"},
    {"block_size": "lots"},
    {"retry": {"total": 99}},
    {"csv_options": {"delimiter": ";;"}},
    {"schema": {"mode": "strict"}},
    {"account_url": "http://storage.example.com"},
    {"identity_fields": []},
    {"lease": "sometimes"},
]


class TestSecrets:
    @pytest.mark.parametrize("method", sorted(ALL_AUTH))
    @pytest.mark.parametrize("extra", INVALID_EXTRAS, ids=lambda extra: next(iter(extra)))
    def test_secrets_never_appear_in_errors(self, method: str, extra: dict[str, Any]) -> None:
        """Whatever goes wrong, no secret option value is in the message, hint, or chained errors."""
        error = config_error({**options(ALL_AUTH[method]), **extra})
        assert_no_secret(str(error))
        assert_no_secret(repr(error))
        assert_no_secret(error.hint)
        assert error.__cause__ is None and error.__suppress_context__

    @pytest.mark.parametrize("method", sorted(ALL_AUTH))
    @pytest.mark.parametrize(
        "extra",
        [
            *INVALID_EXTRAS,
            {"sas_token": ACCOUNT_KEY, "account_url": ACCOUNT_URL},
            {"connection_string": f"AccountKey={ACCOUNT_KEY}"},
            {"connection_string": f"AccountName=a;AccountKey={ACCOUNT_KEY};BlobEndpoint=http://x.example/a"},
            {"client_secret": CLIENT_SECRET, "client_id": "   "},
        ],
        ids=lambda extra: next(iter(extra)),
    )
    def test_messages_do_not_echo_secrets_even_unredacted(
        self, method: str, extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the redactor switched off, messages still hold no secret: they never quote one."""
        monkeypatch.setattr("elspeth_appendsink.errors.redact", lambda text: text)
        error = config_error({**options(ALL_AUTH[method]), **extra})
        assert_no_secret(str(error))

    @pytest.mark.parametrize("method", sorted(ALL_AUTH))
    def test_secrets_never_appear_in_repr_str_summary_or_dump(self, method: str) -> None:
        """repr, str, public_summary and model_dump_json show secrets masked."""
        config = SinkConfig.from_options(options(ALL_AUTH[method]))
        for text in (repr(config), str(config), repr(config.auth), json.dumps(config.public_summary())):
            assert_no_secret(text)
        assert_no_secret(config.model_dump_json())

    def test_summary_masks_each_configured_secret(self) -> None:
        """Configured secrets show as '***', unset ones as None."""
        summary = SinkConfig.from_options(options(SP_AUTH)).public_summary()
        assert summary["client_secret"] == "***"
        assert summary["connection_string"] is None and summary["sas_token"] is None
        assert summary["tenant_id"] == "tenant-1" and summary["auth_method"] == "service_principal"

    def test_secret_values_are_registered_for_redaction(self) -> None:
        """After construction, the redactor removes each secret from any text (logs, audit)."""
        for auth in (CS_AUTH, SAS_AUTH, SP_AUTH):
            SinkConfig.from_options(options(auth))
        for secret in SECRETS:
            assert secret not in redact(f"before {secret} after")

    def test_secret_in_a_misspelt_option_is_not_echoed(self) -> None:
        """An unknown option's value is never shown, only its name."""
        error = config_error(options(sas_tokn=SAS_TOKEN))
        assert error.option == "sas_tokn"
        assert_no_secret(str(error))


class TestTarget:
    def test_container_is_validated(self) -> None:
        """Container naming rules are applied locally (Azurite enforces them, Azure too)."""
        error = config_error(options(container="Bad_Name"))
        assert error.option == "container" and "lowercase" in str(error)

    @pytest.mark.parametrize(
        ("blob_path", "rule"),
        [
            ("out/{{ run_id ", "syntax"),
            ("out/{{ date }}.csv", "'date'"),
            ("out/../{{ run_id }}.csv", "'..' segment"),
            ("out/{{ run_id }}/", "end with '/'"),
            ("", "non-empty"),
            (7, "non-empty"),
        ],
    )
    def test_blob_path_is_compiled_and_checked(self, blob_path: Any, rule: str) -> None:
        """Template problems are found when the options are read, not at the first write."""
        error = config_error(options(blob_path=blob_path))
        assert error.option == "blob_path" and rule in str(error)

    def test_blob_path_template_and_digest(self) -> None:
        """The compiled template and its digest (keyed by container) are exposed."""
        config = SinkConfig.from_options(options())
        assert isinstance(config.path_template, BlobPathTemplate)
        assert config.path_template.render("r1", "t") == "out/r1/rows.csv"
        assert config.template_digest == BlobPathTemplate(TARGET["blob_path"], "output").template_digest

    @pytest.mark.parametrize("fmt", ["csv", "jsonl", "arrow"])
    def test_formats(self, fmt: str) -> None:
        """csv, jsonl and arrow are the appendable formats."""
        assert SinkConfig.from_options(options(format=fmt)).format == fmt

    def test_json_is_refused_with_the_reason(self) -> None:
        """One JSON array cannot be appended to; the message says so and suggests jsonl."""
        error = config_error(options(format="json"))
        assert error.option == "format" and "JSON array" in str(error) and "jsonl" in str(error)

    @pytest.mark.parametrize("fmt", ["xml", "CSV", 1])
    def test_unknown_format_lists_the_allowed(self, fmt: Any) -> None:
        """Any other value names the allowed formats."""
        error = config_error(options(format=fmt))
        assert error.option == "format" and "csv, jsonl, arrow" in str(error)


class TestCsvOptions:
    def test_defaults(self) -> None:
        """Comma, utf-8, a header, CRLF."""
        csv = SinkConfig.from_options(options()).csv_options
        assert (csv.delimiter, csv.encoding, csv.include_header, csv.line_terminator) == (
            ",",
            "utf-8",
            True,
            "\r\n",
        )

    def test_valid_values(self) -> None:
        """A one-character delimiter, a text codec, LF."""
        opts = {"delimiter": "\t", "encoding": "latin-1", "include_header": False, "line_terminator": "\n"}
        csv = SinkConfig.from_options(options(csv_options=opts)).csv_options
        assert csv.model_dump() == opts

    @pytest.mark.parametrize(
        ("csv_options", "rule"),
        [
            ({"delimiter": ";;"}, "single character"),
            ({"delimiter": ""}, "single character"),
            ({"delimiter": '"'}, "quote or a line break"),
            ({"delimiter": "\n"}, "quote or a line break"),
            ({"encoding": "no-such-codec"}, "unknown text encoding"),
            ({"encoding": "base64"}, "unknown text encoding"),
            ({"encoding": "utf-16"}, "byte-order mark"),
            ({"encoding": "utf-8-sig"}, "byte-order mark"),
            ({"line_terminator": "\r"}, "CRLF"),
            ({"line_terminator": "crlf"}, "CRLF"),
            ({"include_header": "perhaps"}, "include_header"),
            ({"quote": "'"}, "unknown key 'quote'"),
            ("delimiter=;", "must be a mapping"),
        ],
    )
    def test_invalid_values_name_the_rule(self, csv_options: Any, rule: str) -> None:
        """Each csv_options rule fails with option 'csv_options' and the rule in the message."""
        error = config_error(options(csv_options=csv_options))
        assert error.option == "csv_options" and rule in str(error)

    def test_unknown_key_lists_the_allowed_keys(self) -> None:
        """The hint names delimiter, encoding, include_header and line_terminator."""
        hint = config_error(options(csv_options={"quote": "'"})).hint
        assert all(key in hint for key in ("delimiter", "encoding", "include_header", "line_terminator"))

    def test_csv_options_with_another_format_is_refused(self) -> None:
        """csv_options only mean something for csv; with jsonl they would be silently ignored."""
        error = config_error(options(format="jsonl", csv_options={"delimiter": ";"}))
        assert error.option == "csv_options" and "only to format 'csv'" in str(error)


class TestHeaders:
    @pytest.mark.parametrize("mode", ["normalized", "original"])
    def test_modes(self, mode: str) -> None:
        """The two named header modes are accepted."""
        assert SinkConfig.from_options(options(headers=mode)).headers == mode

    def test_mapping_is_kept_read_only(self) -> None:
        """A field -> display name mapping is accepted and cannot be mutated."""
        config = SinkConfig.from_options(options(headers={"id": "ID", "name": "Name"}))
        assert not isinstance(config.headers, str)
        assert dict(config.headers) == {"id": "ID", "name": "Name"}
        with pytest.raises(TypeError):
            config.headers["id"] = "x"  # type: ignore[index]
        assert config.model_dump()["headers"] == {"id": "ID", "name": "Name"}

    @pytest.mark.parametrize(
        ("headers", "rule"),
        [
            ({"a": "X", "b": "X"}, "duplicate display names ['X']"),
            ({"a": ""}, "non-empty display name"),
            ({"a": 1}, "non-empty display name"),
            ("upper", "invalid header mode 'upper'"),
            (["a"], "got list"),
        ],
    )
    def test_invalid_headers(self, headers: Any, rule: str) -> None:
        """Bad header settings name the rule."""
        error = config_error(options(headers=headers))
        assert error.option == "headers" and rule in str(error)


class TestSchemaOption:
    def test_schema_is_parsed_and_kept(self) -> None:
        """The parsed schema and the raw option (for ELSPETH) are both available."""
        config = SinkConfig.from_options(options(schema=FIXED_SCHEMA))
        assert isinstance(config.row_schema, RowSchema)
        assert config.row_schema.field_names == ("id", "name", "score")
        assert config.row_schema.required_fields() == frozenset({"id", "name"})
        assert config.schema_options == FIXED_SCHEMA
        assert config.schema_options is not config.schema_options

    @pytest.mark.parametrize(
        ("schema", "rule"),
        [
            ({"fields": ["id: int"]}, "'mode' is required"),
            ({"mode": "fixed", "fields": ["id: integer"]}, "Unknown type 'integer'"),
            ("observed", "must be a dict"),
        ],
    )
    def test_invalid_schema(self, schema: Any, rule: str) -> None:
        """Schema problems fail with option 'schema'."""
        error = config_error(options(schema=schema))
        assert error.option == "schema" and rule in str(error)


class TestIfExistsAndRowKey:
    @pytest.mark.parametrize("policy", ["fail", "append"])
    def test_policies(self, policy: str) -> None:
        """fail and append work with any blob_path."""
        assert SinkConfig.from_options(options(if_exists=policy)).if_exists == policy

    def test_unknown_policy(self) -> None:
        """Other values (such as the stock sink's 'overwrite' idea) are refused listing the allowed ones."""
        error = config_error(options(if_exists="overwrite"))
        assert error.option == "if_exists" and "fail, append, continue" in str(error)

    def test_continue_needs_a_path_shared_by_runs(self) -> None:
        """'continue' resumes an earlier run's blob, which a per-run path never names."""
        error = config_error(options(if_exists="continue"))
        assert error.option == "if_exists" and "{{ run_id }}" in str(error)
        assert (
            SinkConfig.from_options(options(if_exists="continue", blob_path="out/all.csv")).if_exists
            == "continue"
        )

    @pytest.mark.parametrize(
        ("identity_fields", "expected"), [("id", ("id",)), (["id", "name"], ("id", "name"))]
    )
    def test_identity_fields_forms(self, identity_fields: Any, expected: tuple[str, ...]) -> None:
        """A single name or a list of names becomes a tuple."""
        config = SinkConfig.from_options(options(schema=FIXED_SCHEMA, identity_fields=identity_fields))
        assert config.identity_fields == expected

    def test_identity_fields_must_be_declared_in_explicit_schemas(self) -> None:
        """With a fixed/flexible schema, every key field must be declared."""
        error = config_error(options(schema=FIXED_SCHEMA, identity_fields=["id", "uuid"]))
        assert (
            error.option == "identity_fields" and "'uuid'" in str(error) and "id, name, score" in error.hint
        )

    def test_observed_schema_accepts_any_key(self) -> None:
        """With an observed schema, key fields cannot be checked in advance."""
        assert SinkConfig.from_options(options(identity_fields="anything")).identity_fields == ("anything",)

    @pytest.mark.parametrize(
        ("identity_fields", "rule"),
        [
            ([], "non-empty list"),
            (["id", "id"], "more than once: id"),
            ([""], "non-empty strings"),
            (5, "field name"),
        ],
    )
    def test_invalid_identity_fields(self, identity_fields: Any, rule: str) -> None:
        """identity_fields is one or more distinct, non-empty names."""
        error = config_error(options(identity_fields=identity_fields))
        assert error.option == "identity_fields" and rule in str(error)


class TestSizes:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (4096, 4096),
            ("4096", 4096),
            ("4MiB", 4 * 1024 * 1024),
            ("512KiB", 512 * 1024),
            ("100MiB", 100 * 1024 * 1024),
            ("4 mib", 4 * 1024 * 1024),
            ("1.5KiB", 1536),
            ("2KB", 2000),
            ("3MB", 3_000_000),
            ("10B", 10),
            ("1GiB", 1024**3),
        ],
    )
    def test_parse_size(self, value: Any, expected: int) -> None:
        """Byte counts, binary (KiB/MiB/GiB) and decimal (KB/MB/GB) units."""
        assert parse_size(value, "block_size") == expected

    @pytest.mark.parametrize("value", ["lots", "4 MiBs", "-1MiB", "1.1B", True, 4.0, None])
    def test_parse_size_refuses(self, value: Any) -> None:
        """Anything else is a ConfigError for the option being parsed."""
        with pytest.raises(ConfigError) as info:
            parse_size(value, "segment_max_bytes")
        assert info.value.option == "segment_max_bytes"

    def test_block_size_accepts_the_size_syntax(self) -> None:
        """block_size: '8MiB' is stored as an int."""
        assert (
            SinkConfig.from_options(options(block_size="8MiB", api_version="2025-01-05")).block_size
            == 8 * 1024**2
        )

    @pytest.mark.parametrize(
        ("value", "rule"),
        [
            (0, "greater than 0"),
            (-5, "greater than 0"),
            ("101MiB", "100 MiB"),
            (MAX_BLOCK_SIZE + 1, "100 MiB"),
            (True, "byte count"),
        ],
    )
    def test_block_size_limits(self, value: Any, rule: str) -> None:
        """0 < block_size <= 100 MiB."""
        error = config_error(options(block_size=value))
        assert error.option == "block_size" and rule in str(error)

    def test_block_size_upper_limit_is_inclusive(self) -> None:
        """Exactly 100 MiB is allowed."""
        assert SinkConfig.from_options(options(block_size="100MiB")).block_size == MAX_BLOCK_SIZE

    @pytest.mark.parametrize("value", [1, 50_000])
    def test_segment_max_blocks_bounds_are_inclusive(self, value: int) -> None:
        """1..50,000 blocks per segment."""
        assert SinkConfig.from_options(options(segment_max_blocks=value)).segment_max_blocks == value

    @pytest.mark.parametrize("value", [0, 50_001, True, "many"])
    def test_segment_max_blocks_out_of_range(self, value: Any) -> None:
        """Outside 1..50,000 (or not an integer) is refused."""
        assert config_error(options(segment_max_blocks=value)).option == "segment_max_blocks"

    def test_segment_max_bytes(self) -> None:
        """A size cap uses the size syntax and must hold at least one block."""
        assert SinkConfig.from_options(options(segment_max_bytes="1GiB")).segment_max_bytes == 1024**3
        error = config_error(options(segment_max_bytes="1MiB"))
        assert error.option == "segment_max_bytes" and "smaller than block_size" in str(error)


class TestLeaseRetryAndVersion:
    @pytest.mark.parametrize("value", [-1, 15, 60])
    def test_lease_duration_valid(self, value: int) -> None:
        """15-60 seconds, or -1 for infinite."""
        assert SinkConfig.from_options(options(lease_duration=value)).lease_duration == value

    @pytest.mark.parametrize("value", [0, 14, 61, -2, True])
    def test_lease_duration_invalid(self, value: Any) -> None:
        """Anything else is refused."""
        assert config_error(options(lease_duration=value)).option == "lease_duration"

    def test_retry_values(self) -> None:
        """Every retry key can be set."""
        retry = {
            "total": 0,
            "initial_backoff": 0,
            "increment_base": 3,
            "jitter": 0,
            "connection_timeout": 1.5,
            "read_timeout": 2,
        }
        assert SinkConfig.from_options(options(retry=retry)).retry.model_dump() == retry

    @pytest.mark.parametrize(
        ("retry", "rule"),
        [
            ({"total": 21}, "total"),
            ({"total": -1}, "total"),
            ({"total": True}, "not a boolean"),
            ({"initial_backoff": -0.1}, "initial_backoff"),
            ({"increment_base": -1}, "increment_base"),
            ({"jitter": -1}, "jitter"),
            ({"connection_timeout": 0}, "connection_timeout"),
            ({"read_timeout": float("nan")}, "read_timeout"),
            ({"read_timeout": float("inf")}, "read_timeout"),
            ({"backoff": 1}, "unknown key 'backoff'"),
            (5, "must be a mapping"),
        ],
    )
    def test_retry_invalid(self, retry: Any, rule: str) -> None:
        """Retry keys have bounds; unknown keys are refused."""
        error = config_error(options(retry=retry))
        assert error.option == "retry" and rule in str(error)

    def test_api_version(self) -> None:
        """A pinned service version is a date no older than 2019-12-12 (Append Blob Seal)."""
        assert SinkConfig.from_options(options(api_version="2021-08-06")).api_version == "2021-08-06"
        assert "Seal" in str(config_error(options(api_version="2019-02-02")))
        assert "date" in str(config_error(options(api_version="v12")))
        assert "date" in str(config_error(options(api_version="2021-13-01")))

    def test_large_blocks_need_a_recent_service_version(self) -> None:
        """Blocks over 4 MiB need 2022-11-02 or later when a version is pinned."""
        error = config_error(options(block_size="8MiB", api_version="2021-08-06"))
        assert error.option == "block_size" and "2022-11-02" in str(error)

    @pytest.mark.parametrize(
        "option", ["seal_on_complete", "lease", "validate_content", "use_managed_identity"]
    )
    def test_booleans_refuse_nonsense(self, option: str) -> None:
        """Boolean options accept booleans (and YAML-ish strings), not arbitrary text."""
        nonsense: dict[str, Any] = {option: "sometimes"}
        assert config_error(options(**nonsense)).option == option


class TestPublicSummary:
    def test_summary_is_json_and_names_every_option(self) -> None:
        """The summary serialises to JSON and has an entry for each option."""
        config = SinkConfig.from_options(
            options(
                SAS_AUTH, schema=FIXED_SCHEMA, identity_fields="id", headers={"id": "ID"}, retry={"total": 2}
            )
        )
        summary = json.loads(json.dumps(config.public_summary()))
        for name in SinkConfig.OPTION_NAMES:
            assert name in summary or name.endswith("_env")  # *_env only say where a secret came from
        assert summary["sas_token"] == "***" and summary["account_url"] == ACCOUNT_URL
        assert summary["schema"] == FIXED_SCHEMA and summary["identity_fields"] == ["id"]
        assert summary["headers"] == {"id": "ID"} and summary["retry"]["total"] == 2
        assert summary["template_digest"] == config.template_digest

    def test_csv_options_are_summarised_only_for_csv(self) -> None:
        """For other formats csv_options are shown as None (they do not apply)."""
        assert SinkConfig.from_options(options(format="jsonl")).public_summary()["csv_options"] is None


class TestSecretsFromEnvironment:
    BASE: ClassVar[dict[str, Any]] = {
        "container": "out",
        "blob_path": "a.csv",
        "schema": {"mode": "observed"},
    }

    def test_secret_is_taken_from_the_named_environment_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """connection_string_env names a variable; the secret never has to be in the options."""
        monkeypatch.setenv(
            "MY_CS", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0c2VjcmV0;"
        )
        config = SinkConfig.from_options({**self.BASE, "connection_string_env": "MY_CS"})
        assert config.auth.method == "connection_string"
        assert "c2VjcmV0c2VjcmV0" not in repr(config) and "c2VjcmV0c2VjcmV0" not in str(
            config.public_summary()
        )

    def test_unset_variable_fails_naming_the_option(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing environment variable is a ConfigError naming the *_env option and the variable."""
        monkeypatch.delenv("NOPE_SAS", raising=False)
        with pytest.raises(ConfigError) as info:
            SinkConfig.from_options(
                {**self.BASE, "account_url": "https://a.blob.core.windows.net", "sas_token_env": "NOPE_SAS"}
            )
        assert info.value.option == "sas_token_env" and "NOPE_SAS" in str(info.value)

    def test_value_and_variable_together_are_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Giving both the secret and its _env option is ambiguous and refused."""
        monkeypatch.setenv("SECRET_VAR", "zzzzzzzzzz")
        with pytest.raises(ConfigError) as info:
            SinkConfig.from_options(
                {
                    **self.BASE,
                    "account_url": "https://a.blob.core.windows.net",
                    "tenant_id": "t",
                    "client_id": "c",
                    "client_secret": "x" * 12,
                    "client_secret_env": "SECRET_VAR",
                }
            )
        assert info.value.option == "client_secret_env"
