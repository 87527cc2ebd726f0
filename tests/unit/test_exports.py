"""The package root's public surface."""

from __future__ import annotations

import elspeth_appendsink


class TestExports:
    def test_all_is_sorted_and_every_name_exists(self) -> None:
        """__all__ is sorted and each name it lists is importable from the root."""
        names = elspeth_appendsink.__all__
        assert list(names) == sorted(names)
        for name in names:
            assert hasattr(elspeth_appendsink, name), name

    def test_the_whole_error_tree_is_exported_from_the_root(self) -> None:
        """Every exception of ``errors`` is a public name of the root too (the tree is one surface)."""
        from elspeth_appendsink import errors

        missing = set(errors.__all__) - set(elspeth_appendsink.__all__)
        assert not missing

    def test_sink_is_importable_from_the_root_under_its_plugin_name(self) -> None:
        """`from elspeth_appendsink import AzureAppendBlobSink` gives the azure_append_blob sink."""
        from elspeth_appendsink import AzureAppendBlobSink

        assert AzureAppendBlobSink.name == "azure_append_blob" and AzureAppendBlobSink.supports_resume

    def test_elspeth_launcher_imports_without_elspeth_and_says_what_is_missing(self) -> None:
        """Without ELSPETH the launcher module imports; register() explains what is needed."""
        import pytest

        from elspeth_appendsink import elspeth as launcher
        from elspeth_appendsink.elspeth.host import HAVE_ELSPETH

        if HAVE_ELSPETH:
            pytest.skip("ELSPETH is installed here")
        with pytest.raises(ImportError, match=r"3\.12"):
            launcher.register()


class TestStorageExports:
    def test_storage_exports_no_sdk_type(self) -> None:
        """Every class and function the storage package exports is ours: the SDK stays behind it."""
        import inspect

        from elspeth_appendsink import storage

        foreign = [
            name
            for name in storage.__all__
            if (inspect.isclass(value := getattr(storage, name)) or inspect.isfunction(value))
            and not value.__module__.startswith("elspeth_appendsink.")
        ]
        assert foreign == []
