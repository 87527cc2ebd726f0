"""Secrets never leak — and the guard that says so really catches a leak.

``tests/conftest.py`` runs ``_no_secret_leaks`` around every test of the suite (the sink's log
output and every audit payload recorded through a :class:`RecordingContext`) and checks every
exception that escapes a test. Here:

* the guard's detector (:func:`find_secret`) recognises each secret shape and ignores redacted text;
* the guard itself fails a test that logs a secret, records one in an audit payload, raises one
  (also from a cause, also in an ``xfail`` test) or catches one with ``pytest.raises`` — proven
  by running generated tests in a child pytest with this suite's ``conftest`` — and withholds
  the traceback so the secret is not printed;
* exceptions the tests catch themselves are also checked whole here (message, ``repr``, causes,
  formatted traceback, audit fields): a failed SAS run, a forged SAS, pydantic's own error kept
  as the context of a ConfigError;
* third-party logging at DEBUG is checked too (the guard only captures the sink's own logs).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import AppendConflictError, ConfigError, StorageError, StorageUnavailableError
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.conftest import SECRETS_UNDER_TEST, find_secret
from tests.hostile.conftest import (
    CLIENT_SECRET,
    FAST_RETRY,
    HOSTILE_SECRETS,
    SAS_SIGNATURE,
    SCHEMA,
    TALLY,
    WRONG_ACCOUNT_KEY,
    assert_no_secret,
    container_client,
)

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# the guard's detector


@pytest.mark.parametrize(
    "text",
    [
        f"failed with key {ACCOUNT_KEY}",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c29tZUtleVRoYXRJc05vdEtub3du;",
        "GET https://a.blob.core.windows.net/c/b?sv=2024&sig=AbCdEfGh12345678%3D",
        "GET https://a.blob.core.windows.net/c/b?sig=AbCdEfGh12345678",
        "credential: hunter2-client-secret",
        f"{{'client_secret': '{CLIENT_SECRET}'}}",
        f"wrong key {WRONG_ACCOUNT_KEY} refused",
        f"sas sig={SAS_SIGNATURE}",
    ],
    ids=[
        "azurite-key",
        "unknown-key-in-cs",
        "sas-in-url",
        "sas-first-param",
        "suite-client-secret",
        "hostile-client-secret",
        "hostile-wrong-key",
        "hostile-sas",
    ],
)
def test_find_secret_recognises_each_secret(text: str) -> None:
    assert find_secret(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "AccountKey=***;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1",
        "https://a.blob.core.windows.net/c/b?sv=2024&sig=***",
        "option 'client_secret': Service Principal auth requires all fields. Missing: client_secret",
        "append_block failed; blob=out/data.jsonl offset=170 status=412 code=AppendPositionConditionNotMet",
    ],
)
def test_find_secret_ignores_redacted_and_plain_text(text: str) -> None:
    assert find_secret(text) is None


def test_hostile_secrets_are_guarded_suite_wide() -> None:
    """The secrets the hostile tests use are on the guard's list, so a leak of one fails any test."""
    assert set(HOSTILE_SECRETS) <= set(SECRETS_UNDER_TEST)


# ---------------------------------------------------------------------------------------------
# the guard itself, run on generated tests in a child pytest

GENERATED = """
import pytest
import structlog
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY
from elspeth_appendsink.testing import RecordingContext


def test_clean():
    structlog.get_logger("x").info("nothing secret here", blob="out/data.jsonl")


def test_logs_a_secret():
    structlog.get_logger("x").info("connecting", key=ACCOUNT_KEY)


def test_records_a_secret_in_an_audit_payload():
    ctx = RecordingContext(run_id="r")
    error = {"message": "AccountKey=c29tZUtleVRoYXQ="}
    ctx.record_call("http", "error", {"operation": "x"}, None, error, 1.0)


def test_raises_a_secret():
    raise RuntimeError(f"failed with key {ACCOUNT_KEY}")


def test_raises_a_secret_in_a_cause():
    try:
        raise ValueError("GET /c/b?sv=1&sig=REALSIGNATURE123")
    except ValueError as exc:
        raise RuntimeError("clean outer message") from exc


def test_catches_a_secret_with_pytest_raises():
    with pytest.raises(RuntimeError):
        raise RuntimeError(f"failed with key {ACCOUNT_KEY}")


def test_catches_a_clean_exception_with_pytest_raises():
    with pytest.raises(RuntimeError, match="clean"):
        raise RuntimeError("clean message")
    assert pytest.raises(KeyError, {}.__getitem__, "missing").type is KeyError


@pytest.mark.xfail(reason="expected to fail")
def test_xfail_raising_a_secret():
    raise RuntimeError(f"failed with key {ACCOUNT_KEY}")


@pytest.mark.xfail(reason="expected to fail", strict=True)
def test_xfail_raising_clean():
    raise RuntimeError("nothing secret")
"""

#: test name -> (outcome in the JUnit report, text its message must contain)
GUARD_VERDICTS = {
    "test_clean": ("passed", ""),
    "test_logs_a_secret": ("error", "a secret reached the log output"),
    "test_records_a_secret_in_an_audit_payload": ("error", "a secret reached an audit payload"),
    "test_raises_a_secret": ("failure", "a secret reached an exception message"),
    "test_raises_a_secret_in_a_cause": ("failure", "a secret reached an exception message"),
    "test_catches_a_secret_with_pytest_raises": ("error", "a secret reached an exception the test caught"),
    "test_catches_a_clean_exception_with_pytest_raises": ("passed", ""),
    "test_xfail_raising_a_secret": ("failure", "a secret reached an exception message"),
    "test_xfail_raising_clean": ("skipped", "expected to fail"),
}


def test_the_suite_guard_fails_every_kind_of_leak(tmp_path: Path) -> None:
    """A child pytest with this suite's guard (``tests/conftest.py``) runs generated tests that leak
    a secret through each channel: every one fails (the clean ones do not), the session is not
    aborted, and the full secret is never printed."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import _no_secret_leaks, pytest_runtest_makereport  # noqa: F401\n"
    )
    (tmp_path / "test_generated.py").write_text(textwrap.dedent(GENERATED))
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", f"--junitxml={report}",
         "--rootdir", str(tmp_path), str(tmp_path / "test_generated.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "INTERNALERROR" not in output, output
    assert result.returncode == 1, output
    verdicts: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.attrib["name"]
        children = [child for child in case if child.tag in ("failure", "error", "skipped")]
        if not children:
            verdicts[name] = ("passed", "")
        else:
            worst = children[0]
            verdicts[name] = (worst.tag, (worst.attrib.get("message", "") + (worst.text or "")))
    assert set(verdicts) == set(GUARD_VERDICTS), verdicts
    for name, (outcome, text) in GUARD_VERDICTS.items():
        assert verdicts[name][0] == outcome, (name, verdicts[name])
        assert text in verdicts[name][1], (name, verdicts[name])
    assert ACCOUNT_KEY not in output and "REALSIGNATURE123" not in output.replace("sig=REALSIGN…", "")


# ---------------------------------------------------------------------------------------------
# what the guard cannot see: exceptions caught by the tests, third-party logs


def account_sas(hours: int = 1) -> str:
    return generate_account_sas(
        ACCOUNT_NAME,
        ACCOUNT_KEY,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, create=True, add=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )


def sas_secrets(sas: str) -> list[str]:
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    return [sas, signature, unquote(signature)]


def sas_options(azurite: Azurite, container: str, sas: str, **extra: Any) -> dict[str, Any]:
    return {
        "sas_token": sas,
        "account_url": azurite.blob_endpoint,
        "container": container,
        "blob_path": "sas/data.jsonl",
        "format": "jsonl",
        "schema": SCHEMA,
        "retry": FAST_RETRY,
        **extra,
    }


def rows(call: int) -> list[dict[str, Any]]:
    return [{"id": call * 10 + i, "name": f"n{i}", "kind": "k"} for i in range(5)]


@pytest.mark.azurite
def test_sas_run_with_faults_conflicts_and_resume_leaks_nothing(azurite: Azurite, container: str) -> None:
    """SAS auth through a 503 storm, a lost response, a foreign append (conflict) and a resume:
    no exception text (with causes and traceback), audit payload or sink log holds the token."""
    sas = account_sas()
    secrets = sas_secrets(sas)
    options = sas_options(azurite, container, sas, lease=False)
    ctx = RecordingContext(run_id="run-1")
    appends = {"manifest": 0, "segment": 0}

    def faults(_n: int, op: str, request: Any) -> str | None:
        """The second write's intent loses its response; then every data append meets a 503 storm
        (keyed by what a request is, not by its ordinal, so the start-up sequence may change)."""
        if op != "append":
            return None
        kind = "manifest" if ".manifest/" in request.url else "segment"
        appends[kind] += 1
        if kind == "manifest":
            return "lose" if appends[kind] == 2 else None
        return "status:503" if appends[kind] > 1 else None

    storm = FaultyTransport(rule=faults)
    sink = AzureAppendBlobSink(options, transport=storm)
    sink.write(rows(0), ctx)
    with pytest.raises(StorageUnavailableError) as unavailable:
        sink.write(rows(1), ctx)
    sink.close()
    resumed = AzureAppendBlobSink(options)
    resumed.configure_for_resume()
    resumed.write(rows(1), ctx)
    container_client(azurite, container).get_blob_client("sas/data.jsonl").append_block(b"forged\n")
    with pytest.raises(AppendConflictError) as conflict:
        resumed.write(rows(2), ctx)
    resumed.close()
    TALLY["faults injected"] += sum(1 for s in storm.log if s.fault)
    TALLY["storage tamperings"] += 1
    audit = json.dumps([c.__dict__ for c in ctx.calls], default=str)
    assert len(ctx.calls) > 10
    assert_no_secret(unavailable.value, conflict.value, audit, repr(resumed.options),
                     json.dumps(resumed.options.public_summary()), secrets=secrets)  # fmt: skip


@pytest.mark.azurite
def test_forged_sas_is_refused_without_echoing_it(azurite: Azurite, container: str) -> None:
    """A SAS whose signature is wrong: 403 naming blob and code; the forged signature nowhere."""
    sas = f"sv=2024-11-04&ss=b&srt=co&sp=rwac&se=2099-01-01T00:00:00Z&sig={SAS_SIGNATURE}"
    ctx = RecordingContext(run_id="run-1")
    sink = AzureAppendBlobSink(sas_options(azurite, container, sas), transport=FaultyTransport())
    with pytest.raises(StorageError) as info:
        sink.write(rows(0), ctx)
    sink.close()
    assert info.value.status == 403, str(info.value)
    assert info.value.error_code in ("AuthenticationFailed", "AuthorizationFailure"), str(info.value)
    assert f"code={info.value.error_code}" in str(info.value) and info.value.blob is not None
    assert_no_secret(info.value, json.dumps([c.__dict__ for c in ctx.calls], default=str),
                     secrets=[sas, SAS_SIGNATURE, unquote(SAS_SIGNATURE)])  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [{"retry": {"total": "many"}}, {"lease_duration": "long"}, {"seal_on_complete": "perhaps"},
     {"segment_max_blocks": 0}, {"csv_options": {"include_header": "maybe"}}],
    ids=["retry", "lease_duration", "seal_on_complete", "segment_max_blocks", "csv_options"],
)  # fmt: skip
@pytest.mark.parametrize("auth", ["connection_string", "sas_token", "client_secret"])
def test_config_errors_hold_no_secret_in_message_or_context(bad: dict[str, Any], auth: str) -> None:
    """pydantic's ValidationError (kept as ``__context__`` under ``from None``) never shows an
    option value; the ConfigError names the option and holds no secret either."""
    secret_options: dict[str, Any] = {
        "connection_string": {
            "connection_string": "DefaultEndpointsProtocol=https;AccountName=a;"
            f"AccountKey={WRONG_ACCOUNT_KEY};EndpointSuffix=core.windows.net"
        },
        "sas_token": {"sas_token": f"sv=1&sig={SAS_SIGNATURE}", "account_url": "https://a.blob.core.windows.net"},
        "client_secret": {"tenant_id": "t", "client_id": "c", "client_secret": CLIENT_SECRET,
                          "account_url": "https://a.blob.core.windows.net"},
    }[auth]  # fmt: skip
    options = {
        **secret_options,
        "container": "out",
        "blob_path": "o.csv",
        "schema": {"mode": "observed"},
        **bad,
    }
    with pytest.raises(ConfigError) as info:
        AzureAppendBlobSink(options)
    assert info.value.option == next(iter(bad))
    assert_no_secret(info.value, secrets=HOSTILE_SECRETS)
    context = info.value.__context__
    if context is not None:
        assert_no_secret(str(context), repr(context), secrets=HOSTILE_SECRETS)


@pytest.mark.azurite
def test_debug_logging_of_the_http_stack_does_not_show_the_sas(
    azurite: Azurite, container: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the host's root logging at DEBUG, urllib3 logs each request line with its URL: the SAS
    signature must be redacted there too (regression: it was logged in full)."""
    sas = account_sas()
    caplog.set_level(logging.DEBUG)
    sink = AzureAppendBlobSink(sas_options(azurite, container, sas))
    sink.write(rows(0), RecordingContext(run_id="run-1"))
    sink.close()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "/sas/data.jsonl" in text  # the http stack did log the requests
    assert_no_secret(text, secrets=sas_secrets(sas))


@pytest.mark.azurite
def test_info_logging_of_the_http_stack_does_not_show_secrets(
    azurite: Azurite, container: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO (azure-core's request/response logging level) nothing secret is logged, for SAS and
    for connection-string (shared key) authentication."""
    caplog.set_level(logging.INFO)
    sas = account_sas()
    for options in (
        sas_options(azurite, container, sas),
        {**sas_options(azurite, container, sas, blob_path="cs/data.jsonl"), "sas_token": None,
         "account_url": None, "connection_string": azurite.connection_string},
    ):  # fmt: skip
        sink = AzureAppendBlobSink({k: v for k, v in options.items() if v is not None})
        sink.write(rows(0), RecordingContext(run_id="run-1"))
        sink.close()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert_no_secret(text, secrets=[*sas_secrets(sas), ACCOUNT_KEY])


#: A secret of each kind, put where no secret belongs: in an ``*_env`` option, in ``container``,
#: in ``blob_path``. None is registered as a secret (it sits in the wrong option), so only the
#: rule can keep it out: never echo an ``*_env`` value that is no variable name (nor a name shaped
#: like a key), redact before cutting a long value, and redact any long run mixing upper case,
#: lower case and digits in what a config error echoes.
_MISPLACED = [
    ("client_secret_env", CLIENT_SECRET),
    ("sas_token_env", f"sv=1&sig={SAS_SIGNATURE}"),
    ("connection_string_env", f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={WRONG_ACCOUNT_KEY}"),
    ("client_secret_env", "Q8w7E6r5T4y3U2i1O0pAsDfGhJkLzXcVbNm12345"),  # a name-shaped secret
    ("container", WRONG_ACCOUNT_KEY),
    ("container", ACCOUNT_KEY),
    ("blob_path", f"out/{WRONG_ACCOUNT_KEY}/" + "x" * 2000),
]


@pytest.mark.parametrize(
    ("option", "value"), _MISPLACED, ids=[f"{o}-{i}" for i, (o, _) in enumerate(_MISPLACED)]
)
def test_a_secret_in_the_wrong_option_is_never_echoed(
    option: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret given as an ``*_env`` variable name, a container or a blob path: the ConfigError
    names the option and holds no part of the secret (not even its first characters)."""
    options: dict[str, Any] = {
        "tenant_id": "t",
        "client_id": "c",
        "account_url": "https://a.blob.core.windows.net",
        "client_secret": "registered-but-not-the-one-misplaced",
        "container": "out",
        "blob_path": "o.csv",
        "schema": {"mode": "observed"},
    }
    if option.endswith("_env"):
        options.pop(option.removesuffix("_env"), None)
        if option == "connection_string_env":
            for key in ("tenant_id", "client_id", "account_url", "client_secret"):
                options.pop(key)
    options[option] = value
    with pytest.raises(ConfigError) as info:
        AzureAppendBlobSink(options)
    assert info.value.option == option
    fragments = [
        value[i : i + 16] for i in range(0, len(value) - 16, 8) if not set(value[i : i + 16]) <= {"x"}
    ]
    secret = value.rsplit("sig=", 1)[-1].rsplit("AccountKey=", 1)[-1]
    assert_no_secret(info.value, secrets=[secret, *(f for f in fragments if f in secret)])
    context = info.value.__context__
    if context is not None:
        assert_no_secret(str(context), repr(context), secrets=[secret])


def test_a_plain_variable_name_is_still_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule keeps what helps: an unset variable with an ordinary name is named."""
    monkeypatch.delenv("APPENDSINK_TEST_UNSET_SECRET", raising=False)
    with pytest.raises(ConfigError, match="'APPENDSINK_TEST_UNSET_SECRET' is not set"):
        AzureAppendBlobSink(
            {"tenant_id": "t", "client_id": "c", "account_url": "https://a.blob.core.windows.net",
             "client_secret_env": "APPENDSINK_TEST_UNSET_SECRET", "container": "out",
             "blob_path": "o.csv", "schema": {"mode": "observed"}}
        )  # fmt: skip


def test_an_unreachable_account_is_named_as_such(azurite: Azurite, container: str) -> None:
    """verify against an endpoint nobody listens on: StorageUnavailableError whose hint says the
    account is unreachable (not that a resume continues exactly)."""
    from elspeth_appendsink.protocol.verify import verify_output
    from elspeth_appendsink.storage import AzureStore, RetrySettings, build_service_client

    service = build_service_client(
        connection_string=azurite.connection_string.replace(f":{azurite.port}/", ":9/"),
        retry=RetrySettings(total=0, initial_backoff=0.0, increment_base=0.0, jitter=0.0),
    )
    with pytest.raises(StorageUnavailableError, match="unreachable") as info:
        verify_output(AzureStore(service, container), "out/data.jsonl")
    assert "resume" not in str(info.value)
