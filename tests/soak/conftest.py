"""Prints the soak's figures at the end of the pytest run (they are also printed by the test)."""

from __future__ import annotations

from typing import Any

#: One line per soak profile that ran, filled by tests/soak/test_soak.py.
SOAK_REPORTS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SOAK_REPORTS:
        terminalreporter.section("soak figures")
        for line in SOAK_REPORTS:
            terminalreporter.write_line(line)
