"""Refusals at the sink's edges, each before any request that writes, each saying why.

* ``write`` after a sealing ``on_complete`` or after ``close``: :class:`ClosedError`, no request,
  nothing after the seal record; the output stays verifiable and continuable.
* an empty run creates no output, its descriptor says so, and ``verify`` finds nothing there.
* ``lease: false`` with ``append`` or ``continue``: refused at construction, naming ``lease``.
* a bad row among a run's first rows: no request at all; an output this sink created that no
  manifest describes a byte of is taken over by the fixed re-run (not ``blob_exists``).
* the messages: a CSV header differing only in its line ending says so; a resume whose run
  pointer was deleted resumes; ``verify`` pointed at a manifest names the output.
"""

from __future__ import annotations

from typing import Any

import pytest

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import ClosedError, ConfigError, UnencodableRow
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, read_output
from tests.hostile.conftest import as_written, container_client, decode, snapshot
from tests.sink.conftest import Options

pytestmark = pytest.mark.azurite

FORMATS = ("csv", "jsonl", "arrow")


def batch(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"row-{i}", "kind": "completed"} for i in range(start, stop)]


def sink_for(make_options: Options, fmt: str, **extra: Any) -> AzureAppendBlobSink:
    return AzureAppendBlobSink(make_options(format=fmt, blob_path=f"out/data.{fmt}", **extra))


def rows_in(azurite: Azurite, container: str, fmt: str) -> list[dict[str, Any]]:
    return decode(fmt, read_output(azurite, container, f"out/data.{fmt}"))


def storage_requests(ctx: RecordingContext) -> list[Any]:
    return [c for c in ctx.calls if c.request_data.get("operation") not in ("writer_event", "replay_skip")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_after_a_sealing_complete_is_refused_and_appends_nothing(
    azurite: Azurite, container: str, make_options: Options, fmt: str
) -> None:
    """After on_complete sealed the output, write raises ClosedError with no request; storage is
    unchanged, a second on_complete adds no second seal, and a `continue` run completes it."""
    sink = sink_for(make_options, fmt, seal_on_complete=True, if_exists="continue")
    sink.write(batch(0, 5), RecordingContext(run_id="r1"))
    sink.on_complete(RecordingContext(run_id="r1"))
    before = snapshot(azurite, container)
    ctx = RecordingContext(run_id="r1")
    with pytest.raises(ClosedError, match="sealed"):
        sink.write(batch(5, 10), ctx)
    sink.on_complete(ctx)
    assert storage_requests(ctx) == []
    sink.close()
    assert snapshot(azurite, container) == before
    after = sink_for(make_options, fmt, if_exists="continue")
    after.write(batch(0, 10), RecordingContext(run_id="r2"))
    after.close()
    assert rows_in(azurite, container, fmt) == as_written(fmt, batch(0, 10))
    assert verify_output(make_store(azurite, container), f"out/data.{fmt}").ok


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_after_close_says_the_sink_is_closed(
    azurite: Azurite, container: str, make_options: Options, fmt: str
) -> None:
    """write after close raises ClosedError ("closed"), sends nothing, changes nothing."""
    sink = sink_for(make_options, fmt)
    sink.write(batch(0, 5), RecordingContext(run_id="r1"))
    sink.close()
    before = snapshot(azurite, container)
    ctx = RecordingContext(run_id="r1")
    with pytest.raises(ClosedError, match="is closed"):
        sink.write(batch(5, 10), ctx)
    assert ctx.calls == []
    assert snapshot(azurite, container) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_run_creates_no_output_and_says_so(
    azurite: Azurite, container: str, make_options: Options, fmt: str
) -> None:
    """write([]), flush, complete, close: no blob at all; the descriptor says created: False;
    verify finds nothing at the path (a usage error naming it), as the descriptor said."""
    sink = sink_for(make_options, fmt, seal_on_complete=True)
    ctx = RecordingContext(run_id="r1")
    artifact = sink.write([], ctx).artifact
    sink.flush()
    sink.on_complete(ctx)
    sink.close()
    assert artifact.size_bytes == 0
    assert artifact.metadata is not None and artifact.metadata["created"] is False
    assert snapshot(azurite, container) == {}
    with pytest.raises(ConfigError, match="a run that wrote no row creates no output"):
        verify_output(make_store(azurite, container), f"out/data.{fmt}")


@pytest.mark.parametrize("if_exists", ["append", "continue"])
def test_lease_false_is_refused_for_an_existing_output(make_options: Options, if_exists: str) -> None:
    """lease: false with append/continue fails at construction, naming the option `lease`."""
    with pytest.raises(ConfigError, match="option 'lease'") as caught:
        AzureAppendBlobSink(make_options(lease=False, if_exists=if_exists))
    assert caught.value.option == "lease"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_row_among_the_first_rows_sends_no_request(
    azurite: Azurite, container: str, make_options: Options, fmt: str
) -> None:
    """A value no format can write (bytes) among a run's first rows: UnencodableRow, not one
    storage request, no blob; the fixed re-run (same run id, `fail`) writes every row once."""
    bad = batch(0, 10)
    bad[3]["name"] = b"bytes have no text form"
    sink = sink_for(make_options, fmt)
    ctx = RecordingContext(run_id="r1")
    with pytest.raises(UnencodableRow):
        sink.write(bad, ctx)
    sink.close()
    assert storage_requests(ctx) == []
    assert snapshot(azurite, container) == {}
    fixed = sink_for(make_options, fmt)
    fixed.write(batch(0, 10), RecordingContext(run_id="r1"))
    fixed.close()
    assert rows_in(azurite, container, fmt) == as_written(fmt, batch(0, 10))


@pytest.mark.parametrize("if_exists", ["fail", "continue"])
@pytest.mark.parametrize("sealed", [False, True], ids=["open", "sealed-on-complete"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rerun_takes_over_an_output_no_manifest_describes(
    azurite: Azurite, container: str, make_options: Options, fmt: str, sealed: bool, if_exists: str
) -> None:
    """A bad row deep in run r1's first write (the output opened, nothing was described), then
    on_complete (sealing the empty segment 0, when asked) and close: the fixed re-run r2 (fail:
    instead of blob_exists; or continue) takes the empty output over; each row once, the CSV
    header once at the top (also when it lands in segment 1); verify is clean."""
    bad = batch(0, 3000)
    bad[2500]["name"] = b"bytes have no text form"
    first = sink_for(make_options, fmt, block_size="64KiB", seal_on_complete=sealed)
    with pytest.raises(UnencodableRow):
        first.write(bad, RecordingContext(run_id="r1"))
    first.on_complete(RecordingContext(run_id="r1"))
    first.close()
    names = {blob.name for blob in container_client(azurite, container).list_blobs()}
    assert f"out/data.{fmt}" in names  # the opening had begun
    assert read_output(azurite, container, f"out/data.{fmt}") == b""
    second = sink_for(make_options, fmt, block_size="64KiB", if_exists=if_exists)
    second.write(batch(0, 3000), RecordingContext(run_id="r2"))
    second.close()
    assert rows_in(azurite, container, fmt) == as_written(fmt, batch(0, 3000))
    if fmt == "csv":
        assert read_output(azurite, container, "out/data.csv").startswith(b"id,name,kind\r\n0,")
    report = verify_output(make_store(azurite, container), f"out/data.{fmt}")
    assert report.ok, report.problems
    assert report.rows == 3000


def test_a_header_differing_only_in_its_line_ending_says_so(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """append onto a CSV whose header ends in LF where the sink writes CRLF: the refusal shows
    both lines with their endings and names them."""
    blob = container_client(azurite, container).get_blob_client("out/data.csv")
    blob.create_append_blob()
    blob.append_block(b"id,name,kind\n1,a,b\n")
    sink = sink_for(make_options, "csv", if_exists="append")
    with pytest.raises(Exception, match=r"line ending LF where this sink writes CRLF") as caught:
        sink.write(batch(0, 2), RecordingContext(run_id="r1"))
    assert "'id,name,kind\\n'" in str(caught.value) and "'id,name,kind\\r\\n'" in str(caught.value)


def test_a_resume_whose_run_pointer_was_deleted_resumes(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """The run pointer deleted after a crash: the resume of a path without a timestamp finds the
    run's manifest anyway and writes each row once (it used to say the run "must be resumed")."""
    crashed = sink_for(make_options, "jsonl")
    crashed.write(batch(0, 5), RecordingContext(run_id="r1"))  # then the process dies
    cc = container_client(azurite, container)
    for blob in cc.list_blobs(name_starts_with=".elspeth-appendsink/runs/r1/"):
        cc.delete_blob(blob.name)
    crashed._writer._lease.stop()  # type: ignore[union-attr]
    make_store(azurite, container).break_lease("out/data.jsonl")
    resumed = sink_for(make_options, "jsonl")
    resumed.configure_for_resume()
    resumed.write(batch(0, 10), RecordingContext(run_id="r1"))
    resumed.close()
    assert rows_in(azurite, container, "jsonl") == batch(0, 10)


def test_verify_pointed_at_a_manifest_names_the_output(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """verify on a manifest blob: a usage error saying it is a manifest and naming the output."""
    sink = sink_for(make_options, "jsonl")
    sink.write(batch(0, 5), RecordingContext(run_id="r1"))
    sink.close()
    with pytest.raises(
        ConfigError, match=r"is a manifest of this sink \(run r1's, for the output out/data.jsonl\)"
    ):
        verify_output(make_store(azurite, container), "out/data.jsonl.manifest/r1")
