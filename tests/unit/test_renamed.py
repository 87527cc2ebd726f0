"""A settings file that still names ``row_key`` is told the new option before ELSPETH reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from elspeth_appendsink.elspeth.launcher import _option, main
from elspeth_appendsink.elspeth.renamed import renamed_options

SETTINGS = """
sinks:
  output:
    plugin: azure_append_blob
    options: {container: c, blob_path: out.csv, row_key: id, schema: {mode: observed}}
  other:
    plugin: csv
    options: {path: x.csv, row_key: id}
"""


def test_a_renamed_option_of_an_append_blob_sink_is_named_with_its_new_name(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS)
    (message,) = renamed_options(path)  # the csv sink's options are not ours to judge
    assert "sink 'output'" in message and "'row_key' was renamed 'identity_fields'" in message


def test_the_launcher_stops_before_elspeth_with_that_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS)
    assert main(["--no-dotenv", "run", "-s", str(path), "-x"]) == 1
    assert "option 'row_key' was renamed 'identity_fields'" in capsys.readouterr().err


def test_settings_without_renamed_options_and_unreadable_files_pass(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SETTINGS.replace("row_key: id, schema", "identity_fields: id, schema"))
    assert renamed_options(good) == []
    assert renamed_options(tmp_path / "missing.yaml") == []
    settings = ("-s", "--settings")  # how the launcher finds the file it checks
    assert _option(["run", "--settings=a.yaml"], *settings) == "a.yaml"
    assert _option(["run", "-s", "b.yaml", "-x"], *settings) == "b.yaml"
    assert _option(["plugins", "list"], *settings) is None
