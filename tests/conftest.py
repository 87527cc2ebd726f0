"""Shared fixtures: a fresh Azurite per test module, a fresh container per test, no leaked secrets."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from elspeth_appendsink.azurite import ACCOUNT_KEY, Azurite, AzuriteNotInstalled

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "local", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """A private Azurite for this test module (Azurite garbage-collects lazily and slows down)."""
    try:
        server = Azurite().start()
    except AzuriteNotInstalled as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


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


@pytest.fixture()
def account_key() -> str:
    return ACCOUNT_KEY


def _azurite_children() -> list[int]:
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "azurite" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any Azurite started by the tests is still alive at the end."""
    leftovers = _azurite_children()
    if leftovers:
        session.exitstatus = 1
        print(f"\nERROR: Azurite processes left running after the tests: {leftovers}")
