"""The store seam holds: protocol/ and core/ know the Store interface, never the Azure store."""

from __future__ import annotations

import re
from pathlib import Path

from elspeth_appendsink.storage import AzureStore, MemoryStore, Store
from elspeth_appendsink.testing import FaultyStore

PACKAGE = Path(__file__).resolve().parents[2] / "elspeth_appendsink"


def _naming(layer: str, name: str) -> list[str]:
    word = re.compile(rf"\b{name}\b")
    return [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if word.search(line)
    ]


class TestStoreSeam:
    def test_protocol_and_core_never_name_the_azure_store(self) -> None:
        """No line of protocol/ or core/ (code, docstring or comment) names AzureStore."""
        assert _naming("protocol", "AzureStore") == []
        assert _naming("core", "AzureStore") == []

    def test_the_check_finds_a_mention(self) -> None:
        """The scan is not vacuous: storage/ does name AzureStore."""
        assert _naming("storage", "AzureStore")

    def test_every_store_implements_the_whole_interface(self) -> None:
        """AzureStore, MemoryStore and the fault layer define every verb Store declares."""
        verbs = {n for n in vars(Store) if not n.startswith("_") and callable(getattr(Store, n))}
        assert len(verbs) >= 15
        for store in (AzureStore, MemoryStore, FaultyStore):
            assert verbs <= {n for n in dir(store) if callable(getattr(store, n))}, store.__name__
