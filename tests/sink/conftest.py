"""Fixtures for the sink-level suites: sink options pointing at this module's Azurite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from elspeth_appendsink.testing.azurite import Azurite

SCHEMA: dict[str, Any] = {"mode": "fixed", "fields": ["id: int", "name: str", "kind: str"]}
#: Retries without waiting (the transport's sleep is instant anyway, but real transports sleep).
FAST_RETRY: dict[str, Any] = {"total": 2, "initial_backoff": 0.0, "increment_base": 0.0, "jitter": 0.0}

Options = Callable[..., dict[str, Any]]


@pytest.fixture()
def make_options(azurite: Azurite, container: str) -> Options:
    """Build ``azure_append_blob`` options for this test's container; keyword arguments override."""

    def build(**overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connection_string": azurite.connection_string,
            "container": container,
            "blob_path": "out/data.jsonl",
            "format": "jsonl",
            "schema": SCHEMA,
            "retry": FAST_RETRY,
        }
        options.update(overrides)
        return options

    return build
