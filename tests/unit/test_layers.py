"""The package's import rules, held by reading every module's imports (top-level and lazy alike).

The layers, from the bottom (docs/architecture.md, "Code map"):

* ``core/`` is pure: no ``azure``, no I/O, no clock, no randomness; it may lean on ``errors`` and
  on the encoders' value types (``encoders.base``), nothing else of ours;
* ``encoders/`` turns rows into bytes: core, errors, itself;
* ``storage/`` is the only code importing ``azure.*``;
* ``protocol/`` drives a store from the core's decisions and never knows ELSPETH or the tools;
* ``elspeth/`` (the adapter), ``tools/`` and ``testing/`` sit on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = "elspeth_appendsink."
PACKAGE = Path(__file__).resolve().parents[2] / "elspeth_appendsink"

#: Standard-library modules that touch the outside world or the clock: never in core/.
IO_OR_CLOCK = {
    "os", "io", "socket", "subprocess", "pathlib", "shutil", "tempfile", "time", "random",
    "uuid", "secrets", "logging", "urllib", "http", "requests", "urllib3", "sqlite3", "asyncio", "signal",
    "concurrent", "multiprocessing", "select", "selectors", "glob", "fileinput", "mmap", "structlog",
}  # fmt: skip

#: Reading the clock through ``datetime`` (its types are values and welcome in core/).
CLOCK_READS = {"now", "utcnow", "today", "fromtimestamp"}

#: What each layer may import from this package (a prefix match on the dotted name).
ALLOWED_INTERNAL = {
    "core": ("core", "errors", "encoders.base"),
    "encoders": ("core", "errors", "encoders"),
    "storage": ("core", "errors", "logs", "storage"),
    "protocol": ("core", "errors", "logs", "encoders", "storage", "protocol"),
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "root"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name the file imports, with its line, wherever the import sits."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the package uses absolute ones)"
            found.append((node.lineno, node.module or ""))
            if node.module == "elspeth_appendsink":  # `from elspeth_appendsink import x`: x may be a module
                found += [(node.lineno, f"elspeth_appendsink.{alias.name}") for alias in node.names]
    return found


def _clock_reads(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_READS
    ]


def _violations(rule: str) -> list[str]:
    bad: list[str] = []
    for path in _modules():
        if rule == "core-pure" and _layer(path) == "core":
            where = path.relative_to(PACKAGE.parent)
            bad += [f"{where}:{line} reads the clock ({name}())" for line, name in _clock_reads(path)]
        layer = _layer(path)
        where = path.relative_to(PACKAGE.parent)
        for line, name in _imports(path):
            top = name.split(".")[0]
            # the version module is a leaf every layer may name
            ours = name.removeprefix(ROOT) if name.startswith(ROOT) else None
            if rule == "azure" and top == "azure" and layer != "storage":
                bad.append(f"{where}:{line} imports {name}")
            if rule == "core-pure" and layer == "core" and top in IO_OR_CLOCK:
                bad.append(f"{where}:{line} imports {name}")
            allowed = ALLOWED_INTERNAL.get(layer)
            crosses = allowed and ours not in (None, "_version") and not ours.startswith(allowed)
            if rule == "layers" and crosses:
                bad.append(f"{where}:{line} ({layer}/) imports elspeth_appendsink.{ours}")
            if rule == "no-host" and layer in ALLOWED_INTERNAL and top == "elspeth":
                bad.append(f"{where}:{line} ({layer}/) imports ELSPETH ({name})")
    return bad


class TestImportRules:
    def test_only_storage_imports_azure(self) -> None:
        """No module outside storage/ imports ``azure.*``, even lazily."""
        assert _violations("azure") == []

    def test_core_has_no_io_and_no_clock(self) -> None:
        """core/ imports nothing that reads files, sockets, processes, the clock or randomness."""
        assert _violations("core-pure") == []

    def test_lower_layers_import_only_what_is_below_them(self) -> None:
        """core, encoders, storage and protocol import only the layers the code map allows them."""
        assert _violations("layers") == []

    def test_only_the_adapter_knows_elspeth(self) -> None:
        """The framework (``elspeth``) is imported by the adapter, tools and test support only."""
        assert _violations("no-host") == []

    def test_core_clock_reads_are_found(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """``datetime.now()`` in core/ is a violation even though importing datetime is not."""
        fake = tmp_path / "elspeth_appendsink"
        (fake / "core").mkdir(parents=True)
        (fake / "core" / "bad.py").write_text("from datetime import datetime\nSTAMP = datetime.now()\n")
        monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
        assert _violations("core-pure") == ["elspeth_appendsink/core/bad.py:2 reads the clock (now())"]

    @pytest.mark.parametrize("rule", ["azure", "core-pure", "layers"])
    def test_rules_see_lazy_imports(self, rule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A forbidden import inside a function body is found (the rules cannot pass vacuously)."""
        fake = tmp_path / "elspeth_appendsink"
        (fake / "core").mkdir(parents=True)
        (fake / "core" / "bad.py").write_text(
            "def f():\n    import azure.storage.blob\n    import time\n"
            "    from elspeth_appendsink.tools import cli\n"
        )
        monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
        assert len(_violations(rule)) == 1
