"""The package's import rules, held by reading every module's imports (top-level and lazy alike).

The layers, from the bottom (docs/architecture.md, "Code map"):

* ``core/`` is pure: no ``azure``, no I/O, no clock, no randomness; it may lean on ``errors``,
  nothing else of ours, and importing any of it loads no azure, pyarrow, pydantic or jinja2;
* ``encoders/`` turns rows into bytes: core, errors, itself;
* ``storage/`` is the only code importing ``azure.*``;
* ``protocol/`` drives a store from the core's decisions and never knows ELSPETH or the tools;
* ``elspeth/`` (the adapter) sits on those; ``testing/`` on the adapter; ``tools/`` on everything.

No module imports itself back through others: the import graph has no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
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

_BELOW_ADAPTER = ("core", "errors", "logs", "encoders", "storage", "protocol", "_version")

#: What each layer may import from this package (a prefix match on the dotted name).
ALLOWED_INTERNAL = {
    "core": ("core", "errors"),
    "encoders": ("core", "errors", "encoders"),
    "storage": ("core", "errors", "logs", "storage"),
    "protocol": ("core", "errors", "logs", "encoders", "storage", "protocol", "_version"),
    "elspeth": (*_BELOW_ADAPTER, "elspeth"),
    "testing": (*_BELOW_ADAPTER, "elspeth", "testing"),
    "tools": (*_BELOW_ADAPTER, "elspeth", "testing", "tools"),
}

#: The layers that never see ELSPETH (the framework) itself.
HOST_FREE = ("core", "encoders", "storage", "protocol")

#: Crossings not yet undone, by layer, each with the reason it stands. The launcher (marking a
#: dead run failed, recovering a run or a fleet) reads ELSPETH's landscape and finds a fleet's
#: outputs through the tools' readers (``tools.runs``, ``tools.landscape``, ``tools.fleet``); those
#: readers belong to the adapter and move into ``elspeth/`` in a later change.
KNOWN_CROSSINGS = {"elspeth": ("tools.runs", "tools.landscape", "tools.fleet")}

#: Third-party packages a core module must not load, even indirectly (the package root is lazy).
HEAVY = ("azure", "pyarrow", "pydantic", "jinja2")


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
            ours = name.removeprefix(ROOT) if name.startswith(ROOT) else None
            if rule == "azure" and top == "azure" and layer != "storage":
                bad.append(f"{where}:{line} imports {name}")
            if rule == "core-pure" and layer == "core" and top in IO_OR_CLOCK:
                bad.append(f"{where}:{line} imports {name}")
            allowed = ALLOWED_INTERNAL.get(layer)
            crosses = allowed and ours is not None and not ours.startswith(allowed)
            known = ours is not None and ours.startswith(KNOWN_CROSSINGS.get(layer, ()))
            if rule == "layers" and crosses and not known:
                bad.append(f"{where}:{line} ({layer}/) imports elspeth_appendsink.{ours}")
            if rule == "no-host" and layer in HOST_FREE and top == "elspeth":
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
        """Every layer (adapter, tools and test support too) imports only what the code map allows."""
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

    @pytest.mark.parametrize(
        ("layer", "imported"),
        [("elspeth", "tools.cli"), ("elspeth", "testing.harness"), ("testing", "tools.demo")],
    )
    def test_the_upper_layers_are_held_too(
        self, layer: str, imported: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The adapter imports neither the tools nor the test support; test support not the tools."""
        fake = tmp_path / "elspeth_appendsink"
        (fake / layer).mkdir(parents=True)
        (fake / layer / "bad.py").write_text(f"def f():\n    import elspeth_appendsink.{imported}\n")
        monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
        assert _violations("layers") == [
            f"elspeth_appendsink/{layer}/bad.py:2 ({layer}/) imports elspeth_appendsink.{imported}"
        ]


# --- cycles -----------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it names in any import (a package for ``from pkg import``).

    ``from pkg import name`` names ``pkg`` itself and, when ``name`` is a submodule, that too: the
    package's ``__init__`` runs first, so a package importing a module that imports the package
    back is a cycle. Parents implied by a dotted name are not edges (Python loads them first).
    """
    modules = {_module_name(path): path for path in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                named.add(node.module)
                named.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {other for other in named if other in modules and other != name}
    return graph


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module: each one is a cycle."""
    reach = {module: _reachable(graph, module) for module in graph}
    found = {
        frozenset({module} | {other for other in reach[module] if module in reach[other]})
        for module in graph
        if module in reach[module]
    }
    return sorted(sorted(component) for component in found)


class TestNoCycles:
    def test_the_package_has_no_import_cycle(self) -> None:
        """No module reaches itself through imports, module-level or lazy (inside functions)."""
        assert _cycles(_import_graph()) == []

    def test_cycles_are_found_through_lazy_and_package_imports(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A lazy import closing a loop and a package importing its importer are both cycles."""
        fake = tmp_path / "elspeth_appendsink"
        (fake / "pkg").mkdir(parents=True)
        (fake / "a.py").write_text("import elspeth_appendsink.b\n")
        (fake / "b.py").write_text("def f():\n    from elspeth_appendsink import a\n")
        (fake / "pkg" / "__init__.py").write_text("from elspeth_appendsink.pkg.m import x\n")
        (fake / "pkg" / "m.py").write_text("from elspeth_appendsink.pkg import y\nx = 1\n")
        (fake / "c.py").write_text("from elspeth_appendsink import a\n")  # imports a, on no cycle
        monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
        assert _cycles(_import_graph()) == [
            ["elspeth_appendsink.a", "elspeth_appendsink.b"],
            ["elspeth_appendsink.pkg", "elspeth_appendsink.pkg.m"],
        ]


class TestLazyLoading:
    @pytest.mark.parametrize(
        "module", sorted(_module_name(path) for path in _modules() if _layer(path) == "core")
    )
    def test_a_core_module_loads_no_sdk(self, module: str) -> None:
        """Importing a core module in a fresh interpreter loads none of azure, pyarrow, pydantic, jinja2."""
        probe = (
            f"import sys, {module}\nprint(sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r}))"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"

    def test_the_root_still_gives_every_public_name(self) -> None:
        """The lazy root resolves each name in ``__all__`` on first use, in a fresh interpreter."""
        probe = (
            "import elspeth_appendsink as root\n"
            "missing = [n for n in root.__all__ if getattr(root, n, None) is None]\n"
            "print(missing)"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "[]"
