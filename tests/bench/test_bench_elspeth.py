"""Smoke tests of the in-ELSPETH benchmark (``benchmarks.elspeth_pipeline``).

No speed is asserted. Without ELSPETH the module must skip cleanly (exit 0, a message, no files);
with ELSPETH (its Python 3.12 venv) the smallest real run of the many-writes shape must complete
for ``csv`` and ``azure_append_blob``, with ELSPETH making one sink write per quarantined row
plus one per gate route, and the child's counters seeing uploads only for the Azure sink.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks import elspeth_pipeline


def test_skips_cleanly_without_elspeth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "elspeth" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert elspeth_pipeline.main(["--out", str(tmp_path / "elspeth")]) == 0
    assert "skipped: ELSPETH is not importable" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_many_shape_quarantines_each_bad_row_with_its_own_error(tmp_path: Path) -> None:
    elspeth_pipeline.write_input(tmp_path / "input.csv", rows=4, bad=3)
    with (tmp_path / "input.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [str(i) for i in range(1, 8)]
    bad = [r["amount"] for r in rows if not r["amount"].isdigit()]
    assert len(bad) == len(set(bad)) == 3  # distinct values: distinct error hashes, one write each

    text = elspeth_pipeline.build_settings(tmp_path, "azure_append_blob", "many", "c", checkpoint="off")
    assert "on_validation_failure: quarantine" in text
    assert text.count("plugin: azure_append_blob") == 3  # high, low, quarantine
    assert str(tmp_path / "audit.db") in text
    one = elspeth_pipeline.build_settings(tmp_path, "csv", "one", "c", checkpoint="every_row")
    assert one.count("plugin: csv") == 2  # the source and the one sink
    assert "frequency: every_row" in one


@pytest.mark.elspeth
@pytest.mark.azurite
@pytest.mark.timeout(300)
def test_smallest_real_run_writes_results(tmp_path: Path) -> None:
    pytest.importorskip("elspeth", reason="needs ELSPETH (Python >= 3.12, installed from its repository)")
    out = tmp_path / "elspeth"
    args = ["--rows", "5", "--bad", "2", "--reps", "1", "--shapes", "many"]
    assert elspeth_pipeline.main([*args, "--sinks", "csv", "azure_append_blob", "--out", str(out)]) == 0

    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    runs = {r["sink"]: r for r in data["runs"]}
    assert set(runs) == {"csv", "azure_append_blob"}
    for run in runs.values():
        assert run["status"] == "completed"
        assert run["sink_writes"] == 2 + 2  # one per quarantined row + high + low
        assert run["rows_out"] == 7
        assert run["output_bytes"] > 0
        assert run["peak_rss_mib"] > 0
        assert run["sink_seconds"]["write"] > 0
    assert runs["csv"]["bytes_uploaded"] == 0 and runs["csv"]["requests"] == 0
    ours = runs["azure_append_blob"]
    assert ours["bytes_uploaded"] >= ours["output_bytes"]
    assert ours["requests_by_operation"].get("PUT appendblock", 0) >= 1
    report = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "`azure_append_blob`" in report and "`csv`" in report
