"""Prints the simulation's figures (schedules run, and per minute) at the end of the pytest run."""

from __future__ import annotations

from typing import Any

#: (what, schedules, seconds) per simulation test that ran, filled by tests/protocol/test_simulation.py.
SIMULATION_REPORTS: list[tuple[str, int, float]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SIMULATION_REPORTS:
        terminalreporter.section("simulation schedules")
        for what, runs, seconds in SIMULATION_REPORTS:
            rate = runs / seconds * 60 if seconds else 0.0
            terminalreporter.write_line(
                f"{what}: {runs} schedules in {seconds:.1f} s ({rate:,.0f} per minute)"
            )
