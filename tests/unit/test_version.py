"""The version: one module owns it, the root re-exports it, the project metadata agrees."""

from __future__ import annotations

import tomllib
from pathlib import Path

import elspeth_appendsink
from elspeth_appendsink._version import __version__

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class TestVersion:
    def test_the_root_re_exports_the_version_module(self) -> None:
        """``elspeth_appendsink.__version__`` is the value ``_version`` holds."""
        assert elspeth_appendsink.__version__ == __version__

    def test_pyproject_declares_the_same_version(self) -> None:
        """A release bumps both, or this fails: the wheel and the code never disagree."""
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        assert project["version"] == __version__
