"""No option of the sink is taken for a secret by ELSPETH, except the ones that are secrets.

ELSPETH fingerprints (and, without ``ELSPETH_FINGERPRINT_KEY``, refuses to run with) every string
option whose name its ``core/config.py`` ``_is_secret_field`` calls secret. The rule is copied
here so that the check runs where ELSPETH is not installed; where it is, the copy is compared
with ELSPETH's own constants and the real function decides too.
"""

from __future__ import annotations

import importlib

import pytest

from elspeth_appendsink.elspeth.options import CsvOptions, RetryOptions, SinkConfig
from elspeth_appendsink.storage.credentials import SECRET_OPTIONS

# ELSPETH 0.4.1, src/elspeth/core/config.py
SECRET_NAMES = frozenset(
    {"api_key", "api-key", "authorization", "connection_string", "credential", "password", "secret", "token",
     "x-api-key"}
)  # fmt: skip
SECRET_SUFFIXES = ("_secret", "_key", "_token", "_password", "_credential", "_connection_string")


def is_secret_field(name: str) -> bool:
    normalized = name.lower()
    return normalized in SECRET_NAMES or normalized.endswith(SECRET_SUFFIXES)


def every_option_name() -> set[str]:
    nested = {*CsvOptions.model_fields, *RetryOptions.model_fields}
    return {*SinkConfig.OPTION_NAMES, *nested}


def test_only_the_secret_options_are_secret_fields_to_elspeth() -> None:
    flagged = {name for name in every_option_name() if is_secret_field(name)}
    assert flagged == set(SECRET_OPTIONS)


def test_the_identity_option_is_not_a_secret_field() -> None:
    assert "identity_fields" in SinkConfig.OPTION_NAMES and not is_secret_field("identity_fields")
    assert is_secret_field("row_key")  # why it was renamed


def test_the_copied_rule_is_elspeths_own() -> None:
    try:
        config = importlib.import_module("elspeth.core.config")
    except ImportError:
        pytest.skip("ELSPETH is not importable here (it needs Python >= 3.12 and is not on PyPI)")
    assert config._SECRET_FIELD_NAMES == SECRET_NAMES
    assert config._SECRET_FIELD_SUFFIXES == SECRET_SUFFIXES
    for name in every_option_name():
        assert config._is_secret_field(name) == (name in SECRET_OPTIONS), name
