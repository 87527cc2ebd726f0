"""Smoke test of the benchmark suite: its smallest case runs end to end and writes its results.

No speed is asserted: only that every strategy ran without error against a real Azurite, that
the CSV outputs have the same size whatever the strategy, and that the JSON, Markdown and PNG
files appear with every strategy in them.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from elspeth_appendsink.testing.azurite import AzuriteNotInstalled, find_azurite_binary

pytestmark = pytest.mark.azurite

STRATEGIES = ("limit", "sink", "stock", "adlfs", "adlfs_user", "oneshot")


@pytest.fixture(autouse=True)
def _needs_azurite() -> None:
    try:
        find_azurite_binary()
    except AzuriteNotInstalled as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.mark.timeout(120)
def test_quick_suite_smallest_case_writes_results(tmp_path: Path) -> None:
    from benchmarks.suite import QUICK, run_suite

    plan = replace(QUICK, rows=(2_000,), calls=(1, 4), latencies_ms=(0.0,), resume_stages=(20,))
    data = run_suite(plan, tmp_path, log=lambda *_: None)

    for name in ("latest.json", "latest.md", "latest.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["meta"]["mode"] == "quick"
    cases = saved["cases"]
    assert not [c for c in cases if "error" in c], [c["error"] for c in cases if "error" in c]
    assert {c["strategy"] for c in cases} == set(STRATEGIES)
    for case in cases:
        assert case["requests"] > 0 and case["bytes_uploaded"] > 0 and case["seconds"] > 0
        assert case.get("output_matches_limit", True), case  # CSV bytes are the same for all
    sink = next(c for c in cases if c["strategy"] == "sink" and c["calls"] == 4)
    assert sink["requests_by_operation"].get("append", 0) >= 4  # at least one block per write call
    assert saved["resume"][0]["entries"] == 20 and saved["resume"][0]["entries_before_resume"] == 19
    markdown = (tmp_path / "latest.md").read_text()
    assert "nproc = " in markdown and "## Targets" in markdown
    for strategy in STRATEGIES:
        assert f"| {strategy} |" in markdown
    assert data["targets"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "arrow"])
def test_user_style_serialiser_round_trips(fmt: str) -> None:
    """The user-style adlfs baseline writes a readable file: three calls decode to the rows."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from benchmarks.rows import make_rows
    from benchmarks.strategies import user_arrow_schema, user_serialiser

    rows = make_rows(30)
    serialise = user_serialiser(fmt)
    data = b"".join(serialise(rows[lo : lo + 10], lo == 0) for lo in (0, 10, 20))
    schema = user_arrow_schema()
    if fmt == "jsonl":
        assert data.count(b"\n") == 30
        return
    if fmt == "csv":
        table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(column_types=schema))
    else:
        table = pa.ipc.open_stream(io.BytesIO(data)).read_all()
    assert table.num_rows == 30
    assert table.column("id").to_pylist() == [row["id"] for row in rows]


@pytest.mark.timeout(120)
def test_promises_table_names_every_step_of_every_format(tmp_path: Path) -> None:
    """``benchmarks.promises`` runs on a few rows and writes one line per step and format."""
    from benchmarks.promises import main

    out = tmp_path / "promises.md"
    assert main(["--rows", "3000", "--repeat", "1", "--out", str(out)]) == 0
    table = out.read_text()
    for fmt in ("csv", "jsonl", "arrow"):
        for step in ("user", "sink encoder", "**sink encoder - user**", "of which: declared-fields check"):
            assert f"| {fmt} | {step} |" in table, (fmt, step)
        assert f"| {fmt} | sha256 x2 (intents + content_hash), besides the encoder |" in table
    assert "| jsonl | of which: NaN/Infinity check |" in table
    assert (
        "| csv | of which: exact-type check |" in table and "| arrow | of which: exact-type check |" in table
    )
