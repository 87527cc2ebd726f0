"""Shared fixtures: a fresh Azurite per test module, a fresh container per test, one PostgreSQL server
per session (a fresh database per test), no leaked secrets."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, Azurite, AzuriteNotInstalled
from elspeth_appendsink.testing.postgres import PASSWORD as PG_PASSWORD
from elspeth_appendsink.testing.postgres import Postgres, PostgresNotInstalled

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "local", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _served(server_type: Any, not_installed: type[Exception]) -> Iterator[Any]:
    """Start a test server, yield it, stop it by pid. Where it is not installed the test is
    skipped with the reason, except on CI (``CI`` set), where that is an error."""
    try:
        server = server_type().start()
    except not_installed as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """A private Azurite for this test module (Azurite garbage-collects lazily and slows down)."""
    yield from _served(Azurite, AzuriteNotInstalled)


@pytest.fixture()
def container(azurite: Azurite) -> Iterator[str]:
    """A new, empty container for one test, deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    name = "t" + uuid.uuid4().hex[:20]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(name)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):  # the server may have been stopped by the test
            service.delete_container(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL server for the whole session (initdb costs ~1 s); stopped by pid at the end.

    Skipped, with the reason, only where no server can be had (no binaries, or root without an
    unprivileged user); on CI (``CI`` set) that is an error instead, as for Azurite.
    """
    yield from _served(Postgres, PostgresNotInstalled)


@pytest.fixture()
def postgres_url(postgres_server: Postgres) -> str:
    """The URL (psycopg 3, password included) of a new, empty database for one test."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture()
def memory() -> Any:
    """A fresh in-memory container (:class:`tests.helpers.MemorySpace`): no emulator needed."""
    from tests.helpers import MemorySpace

    return MemorySpace()


@pytest.fixture()
def account_key() -> str:
    return ACCOUNT_KEY


def _server_children(name: str) -> list[int]:
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if name in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any Azurite or PostgreSQL started by the tests is still alive at the end.

    Session fixtures are finalised before this hook, so the session's PostgreSQL is gone by now.
    """
    for name, label in (("azurite", "Azurite"), ("postgresql/", "PostgreSQL")):
        leftovers = _server_children(name)
        if leftovers:
            session.exitstatus = 1
            print(f"\nERROR: {label} processes left running after the tests: {leftovers}")


# --- secrets never leak ---------------------------------------------------------------------
#: Secret values tests use; any of them in a log line or an audit payload fails the test.
SECRETS_UNDER_TEST = [ACCOUNT_KEY, "hunter2-client-secret", "sig=REALSIGNATURE123", PG_PASSWORD]
_SECRET_SHAPES = [
    re.compile(r"AccountKey=(?!\*\*\*)[A-Za-z0-9+/=]{8,}"),
    # azure-core's HTTP logging policy writes a redacted signature as "sig=REDACTED"
    re.compile(r"[?&]sig=(?!\*\*\*|REDACTED\b)[A-Za-z0-9%+/=]{8,}"),
]


def find_secret(text: str) -> str | None:
    """The first secret (known value or secret-shaped text) found in ``text``, or None."""
    for secret in SECRETS_UNDER_TEST:
        if secret in text:
            return secret[:12] + "…"
    for shape in _SECRET_SHAPES:
        match = shape.search(text)
        if match:
            return match.group(0)[:16] + "…"
    return None


def _secret_in_chain(exc: BaseException | None) -> str | None:
    """The first secret in the text of ``exc`` or of its causes/contexts, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        leaked = find_secret(str(exc))
        if leaked is not None:
            return leaked
        exc = exc.__cause__ or exc.__context__
    return None


@pytest.fixture(autouse=True)
def _no_secret_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test whose log output, recorded audit payloads or caught exceptions hold a secret.

    Exceptions a test catches with ``pytest.raises`` never reach the report hook below, so
    ``pytest.raises`` is wrapped for the test and every exception it caught is checked too.
    """
    from elspeth_appendsink import logs
    from elspeth_appendsink.testing import RECORDED_PAYLOADS

    buffer = io.StringIO()
    logs.configure(stream=buffer, level=logging.DEBUG)
    RECORDED_PAYLOADS.clear()
    caught: list[Any] = []
    original_raises = pytest.raises

    def raises(*args: Any, **kwargs: Any) -> Any:
        result = original_raises(*args, **kwargs)
        caught.append(result)
        return result

    monkeypatch.setattr(pytest, "raises", raises)
    yield
    leaked = find_secret(buffer.getvalue())
    assert leaked is None, f"a secret reached the log output: {leaked}"
    for calls in RECORDED_PAYLOADS:
        for call in calls:
            leaked = find_secret(json.dumps(call.__dict__, default=str))
            assert leaked is None, f"a secret reached an audit payload: {leaked}"
    RECORDED_PAYLOADS.clear()
    for result in caught:
        info = result if isinstance(result, pytest.ExceptionInfo) else getattr(result, "excinfo", None)
        try:
            value = None if info is None else info.value
        except AssertionError:  # the block raised nothing (the test failed on that already)
            continue
        if value is not None and not isinstance(value, AssertionError):
            leaked = _secret_in_chain(value)
            assert leaked is None, f"a secret reached an exception the test caught: {leaked}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """An exception that escapes a test must not carry a secret in its text (or its causes').

    A wrapper that turns the report into a failure (also of an xfail test), with the traceback
    withheld so the secret is not printed; raising from this hook would abort the whole session.
    """
    report: pytest.TestReport = yield  # type: ignore[misc]
    if call.excinfo is not None and call.when == "call":
        top: BaseException = call.excinfo.value
        leaked = None if isinstance(top, AssertionError) else _secret_in_chain(top)
        if leaked is not None:
            report.outcome = "failed"
            if hasattr(report, "wasxfail"):  # an xfail test does not hide a leak
                del report.wasxfail
            report.longrepr = (
                f"a secret reached an exception message: {leaked} (raised as {type(top).__name__}; "
                "traceback withheld so the secret is not printed)"
            )
    return report  # type: ignore[return-value]
