"""Outputs written by release 0.1.0 (``tests/fixtures/release-0.1.0``) stay readable and resumable.

Each fixture is one run of three write calls in one format whose process died before the third
call's outcomes were recorded (see ``tests/fixtures/release.py``). New code must verify it as it
stands, resume it exactly — the re-delivered third call absorbed, a fourth call appended — and
leave every byte the release wrote in place.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.storage import build_service_client
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.fixtures.release import FORMATS, RUN_ID, batch, container_for, load, options
from tests.helpers import make_store, read_output

pytestmark = pytest.mark.azurite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1.0"


def _rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    """The output read back with the format's standard reader, as the rows' Python values."""
    if fmt == "csv":
        text = data.decode("utf-8")
        return [
            {"id": int(r["id"]), "name": r["name"], "amount": float(r["amount"]), "note": r["note"] or None}
            for r in csv.DictReader(io.StringIO(text, newline=""))
        ]
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").split("\n") if line]
    return pa.ipc.open_stream(data).read_all().to_pylist()


def _segment0(fmt: str) -> bytes:
    index = json.loads((FIXTURES / fmt / "index.json").read_text())
    (item,) = [i for i in index if i["name"] == FORMATS[fmt]]
    return (FIXTURES / fmt / item["file"]).read_bytes()


@pytest.fixture(params=sorted(FORMATS))
def fmt(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[str]:
    """A format whose release fixture is loaded, in the container it was written in."""
    service = build_service_client(connection_string=azurite.connection_string)
    name = container_for(request.param)
    service.create_container(name)
    load(service, name, FIXTURES / request.param)
    try:
        yield request.param
    finally:
        service.delete_container(name)


class TestReleaseOutputs:
    def test_release_output_verifies_as_it_stands(self, fmt: str, azurite: Azurite) -> None:
        """verify proves every byte the release wrote; its last run stopped between blocks."""
        container = container_for(fmt)
        report = verify_output(make_store(azurite, container), FORMATS[fmt])
        assert report.ok, [str(p) for p in report.problems]
        assert _rows(fmt, read_output(azurite, container, FORMATS[fmt])) == batch(0) + batch(1) + batch(2)

    def test_release_run_resumes_exactly(self, fmt: str, azurite: Azurite) -> None:
        """A resume absorbs the re-delivered third call, appends a fourth, and rewrites nothing."""
        container = container_for(fmt)
        sink = AzureAppendBlobSink(options(azurite.connection_string, container, fmt))
        sink.configure_for_resume()
        ctx = RecordingContext(run_id=RUN_ID)
        sink.write(batch(2), ctx)  # ELSPETH replays the call whose outcomes were never recorded
        sink.write(batch(3), ctx)
        sink.flush()
        sink.on_complete(ctx)
        sink.close()
        skips = [c.response_data for c in ctx.calls if c.request_data.get("operation") == "replay_skip"]
        assert [s["rows_skipped"] for s in skips if s] == [len(batch(2))]
        data = read_output(azurite, container, FORMATS[fmt])
        assert data.startswith(_segment0(fmt))
        assert _rows(fmt, data) == batch(0) + batch(1) + batch(2) + batch(3)
        assert verify_output(make_store(azurite, container), FORMATS[fmt]).ok
