"""The documentation holds: references resolve, docstrings stay contracts, the docs exist.

* Every dotted ``elspeth_appendsink.…`` name in the package's code, README.md, CHANGELOG.md and
  docs/ resolves: its longest importable prefix is a module and the rest are attributes.
* No module docstring in the package is over 30 lines, and no calendar date appears in package
  source. A date-shaped text is allowed where it is not history: on a line that names a
  *version* (Azure storage service versions are dates: ``api_version="2019-12-12"``), or as
  the date of a timestamp literal (``"1970-01-01T00:00:00+00:00"``, a placeholder value).
* README.md is at most 250 lines; docs/ has at least three Markdown files; CHANGELOG.md exists.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "elspeth_appendsink"
DOCS = ROOT / "docs"

REFERENCE = re.compile(r"elspeth_appendsink(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
DATE = re.compile(r"(?<![\d-])(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?![\d-])")
TIMESTAMP_AFTER = re.compile(r"T\d\d:\d\d")

#: Dotted texts that are not references to Python names, and why.
NOT_REFERENCES = {
    "elspeth_appendsink.kind": "an Arrow field-metadata key written into outputs (encoders/arrow.py)",
}

MAX_DOCSTRING_LINES = 30
MAX_README_LINES = 250


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def resolves(reference: str) -> bool:
    """Whether ``reference`` names a module, or an attribute path under the longest importable prefix."""
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def references(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in REFERENCE.finditer(line):
            reference = match.group(0)
            if reference not in NOT_REFERENCES:
                found.append((number, reference))
    return found


def calendar_dates(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "version" in line.lower():
            continue
        for match in DATE.finditer(line):
            if not TIMESTAMP_AFTER.match(line, match.end()):
                found.append((number, match.group(0)))
    return found


class TestReferences:
    @pytest.mark.parametrize("path", [*_sources(), *_documents()], ids=lambda p: str(p.relative_to(ROOT)))
    def test_every_dotted_reference_resolves(self, path: Path) -> None:
        """Each ``elspeth_appendsink.…`` name in this file is an importable module or attribute."""
        if not path.exists():
            pytest.fail(f"{path.relative_to(ROOT)} is missing")
        broken = [f"line {n}: {ref}" for n, ref in references(path) if not resolves(ref)]
        assert not broken, f"{path.relative_to(ROOT)}: unresolved references: {broken}"

    def test_the_checker_catches_a_removed_module(self) -> None:
        """A reference to a module that no longer exists is reported (the old flat layout)."""
        assert not resolves("elspeth_appendsink.redact.redact")
        assert not resolves("elspeth_appendsink.core.redact.no_such_function")
        assert resolves("elspeth_appendsink.core.redact.redact")
        assert resolves("elspeth_appendsink.AzureAppendBlobSink")


class TestModuleDocstrings:
    @pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_module_docstring_is_at_most_30_lines(self, path: Path) -> None:
        """A module docstring states the contract; measurements and history live in docs/."""
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""
        assert len(docstring.splitlines()) <= MAX_DOCSTRING_LINES, f"{path.relative_to(ROOT)}"

    @pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_no_calendar_date_in_package_source(self, path: Path) -> None:
        """History (when something was measured or changed) belongs in the changelog, not the code."""
        assert not calendar_dates(path), f"{path.relative_to(ROOT)}: {calendar_dates(path)}"

    def test_the_date_rule_keeps_versions_and_timestamps_and_catches_history(self, tmp_path: Path) -> None:
        """Service versions and timestamp literals pass; a measurement's date does not."""
        sample = tmp_path / "sample.py"
        sample.write_text(
            'MIN_API_VERSION = "2019-12-12"\n'
            'PLACEHOLDER = "1970-01-01T00:00:00+00:00"\n'
            "# measured 2026-11-27 on a quiet machine\n"
        )
        assert calendar_dates(sample) == [(3, "2026-11-27")]


class TestDocumentSet:
    def test_readme_is_at_most_250_lines(self) -> None:
        """The README is read by newcomers: what it is, the two commands, the paths they need."""
        lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        assert len(lines) <= MAX_README_LINES

    def test_docs_and_changelog_exist(self) -> None:
        """docs/ holds at least architecture, operations and benchmarks; history is CHANGELOG.md."""
        names = {p.name for p in DOCS.glob("*.md")}
        assert {"architecture.md", "operations.md", "benchmarks.md"} <= names
        assert (ROOT / "CHANGELOG.md").is_file()

    @pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_relative_links_point_at_files(self, path: Path) -> None:
        """A Markdown link to a file of this repository names a file that exists."""
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        broken = []
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(target)
        assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


class TestGeneratedBenchmarks:
    def test_docs_benchmarks_md_is_generated_from_the_results(self) -> None:
        """docs/benchmarks.md is exactly what ``python -m benchmarks.docs`` writes from the results."""
        from benchmarks.docs import TARGET, render

        assert TARGET.read_text(encoding="utf-8") == render(), "stale: run python -m benchmarks.docs"

    def test_every_results_table_is_on_the_page(self) -> None:
        """Each included result file's tables appear on the page (nothing is edited out)."""
        from benchmarks.docs import INCLUDED, RESULTS, TARGET

        page = TARGET.read_text(encoding="utf-8")
        for name, _ in INCLUDED:
            rows = [
                line
                for line in (RESULTS / name).read_text(encoding="utf-8").splitlines()
                if line.startswith("|")
            ]
            assert rows and all(row in page for row in rows), name
