"""What storage says of an output wins over what a later run assumes; refusals lead somewhere right.

Each case is one the hostile probe of issue 31 reproduced on Azurite: a lost manifest, a segment
replaced by a block blob, sequential ``append`` runs, ``append`` onto a blob that does not end
between rows, and the ``blob_exists`` hint.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import BlobExistsError, BlobTypeError, RecoveryError, SchemaDriftError
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, read_output
from tests.sink.test_changed_settings import CALLS, ROWS, base_options, decode, snapshot

pytestmark = pytest.mark.azurite

FORMATS = ["csv", "jsonl", "arrow"]
EXT = {"csv": "csv", "jsonl": "jsonl", "arrow": "arrows"}


def client(azurite: Azurite, container: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)


def options(azurite: Azurite, container: str, fmt: str, **overrides: Any) -> dict[str, Any]:
    path = f"out/{uuid.uuid4().hex[:12]}/data.{EXT[fmt]}"
    return {**base_options(azurite, container, fmt, path, None), "if_exists": "fail", **overrides}


def write(opts: dict[str, Any], run_id: str, calls: list[list[dict[str, Any]]], resume: bool = False) -> None:
    sink = AzureAppendBlobSink(opts)
    if resume:
        sink.configure_for_resume()
    ctx = RecordingContext(run_id=run_id)
    try:
        for call in calls:
            sink.write(call, ctx)
    finally:
        sink.close()


def folder(opts: dict[str, Any]) -> str:
    return str(opts["blob_path"]).rsplit("/", 1)[0] + "/"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lost_manifest_is_named_and_neither_resume_nor_append_goes_on(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """Before: BlobExistsError hinting at append; append then wrote 500 duplicates, verified."""
    opts = options(azurite, container, fmt)
    write(opts, "r1", CALLS[:2])
    client(azurite, container).delete_blob(f"{opts['blob_path']}.manifest/r1")
    before = snapshot(azurite, container, folder(opts))
    with pytest.raises(RecoveryError, match=r"manifest of run r1 .* is missing -- lost or deleted"):
        write(opts, "r1", CALLS[1:], resume=True)
    with pytest.raises(RecoveryError, match="manifests were lost or deleted"):
        write({**opts, "if_exists": "append"}, "r2", CALLS)
    assert snapshot(azurite, container, folder(opts)) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_segment_replaced_by_a_block_blob_is_refused_before_any_manifest_append(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """Before: every resume appended an intent to the manifest, then failed with InvalidBlobType."""
    opts = options(azurite, container, fmt)
    write(opts, "r1", CALLS[:2])
    blobs = client(azurite, container)
    data = blobs.get_blob_client(opts["blob_path"]).download_blob().readall()
    blobs.delete_blob(opts["blob_path"])
    blobs.upload_blob(opts["blob_path"], data, blob_type="BlockBlob")
    before = snapshot(azurite, container, folder(opts))
    for _attempt in range(2):
        with pytest.raises(BlobTypeError, match="no longer an append blob"):
            write(opts, "r1", CALLS[1:], resume=True)
    assert snapshot(azurite, container, folder(opts)) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_sequential_append_runs_chain_and_keep_every_row_they_were_given(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """Before: verify failed on the run chain and a later continue raised ManifestCorruptError.
    ``append`` adds what it is given -- equal rows too -- where ``continue`` would skip them."""
    opts = options(azurite, container, fmt, if_exists="append")
    write(opts, "day0", [ROWS[:30]])
    write(opts, "day1", [ROWS[:30]])  # the same rows again: appended, not skipped
    write(opts, "day2", [ROWS[30:]])
    write({**opts, "if_exists": "continue"}, "day3", [ROWS[30:]])  # all durable already: skipped
    path = str(opts["blob_path"])
    assert decode(fmt, read_output(azurite, container, path)) == ROWS[:30] + ROWS[:30] + ROWS[30:]
    report = verify_output(make_store(azurite, container), path)
    assert report.ok and report.rows == 90, report.problems
    assert [run.run_id for run in report.runs] == ["day0", "day1", "day2", "day3"]


FOREIGN = {
    ("csv", "no line break"): b"id,name,kind\r\n1,a,x",
    ("csv", "open quote"): b'id,name,kind\r\n1,"a\r\nb,x\r\n',
    ("jsonl", "no line break"): b'{"id":1,"name":"a","kind":"x"}',
}


@pytest.mark.parametrize(("fmt", "shape"), list(FOREIGN), ids=[f"{f}-{s}" for f, s in FOREIGN])
def test_append_onto_a_blob_not_ending_between_rows_is_refused(
    azurite: Azurite, container: str, fmt: str, shape: str
) -> None:
    """Before: rows fused (``True2,name``, ``}{``) or swallowed by an open quote; verify passed."""
    opts = options(azurite, container, fmt, if_exists="append")
    blobs = client(azurite, container)
    blobs.upload_blob(opts["blob_path"], FOREIGN[fmt, shape], blob_type="AppendBlob")
    with pytest.raises(SchemaDriftError, match=r"line break|quoted CSV field"):
        write(opts, "r1", [ROWS[:10]])
    assert blobs.get_blob_client(opts["blob_path"]).download_blob().readall() == FOREIGN[fmt, shape]


def test_append_onto_a_foreign_blob_ending_between_rows_goes_on(azurite: Azurite, container: str) -> None:
    """Control for the refusals above: a well-ended foreign CSV is appended to."""
    opts = options(azurite, container, "csv", if_exists="append")
    base = b"id,name,kind\r\n" + b'-1,"a ""quoted"" name",x\r\n'
    client(azurite, container).upload_blob(opts["blob_path"], base, blob_type="AppendBlob")
    write(opts, "r1", [ROWS[:10]])
    output = read_output(azurite, container, str(opts["blob_path"]))
    assert output.startswith(base) and decode("csv", output)[1:] == ROWS[:10]


def test_the_blob_exists_refusal_of_this_sinks_output_points_at_continue_not_append(
    azurite: Azurite, container: str
) -> None:
    opts = options(azurite, container, "csv")
    write(opts, "r1", [ROWS[:10]])
    with pytest.raises(BlobExistsError) as info:
        write(opts, "r2", [ROWS[:10]])
    assert "this sink created it (run r1)" in str(info.value) and "continue" in info.value.hint
    assert "append" not in info.value.hint


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_chain_of_continue_runs_settles_each_earlier_run_by_where_the_next_started(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """Every run's last batch of intents stays open in its manifest; the run after it proved it
    landed. A third run (and a resume of it) must not judge it by the segment's grown length."""
    opts = options(azurite, container, fmt, if_exists="continue")
    write(opts, "r1", CALLS[:1])
    write(opts, "r2", CALLS[:2])
    sink = AzureAppendBlobSink(opts)
    ctx = RecordingContext(run_id="r3")
    sink.write(ROWS[:45], ctx)  # r3 dies here (its lease is left to lapse: released for the test)
    sink.close()
    write(opts, "r3", [ROWS[30:45], ROWS[45:]], resume=True)
    write(opts, "r4", [ROWS])
    path = str(opts["blob_path"])
    assert decode(fmt, read_output(azurite, container, path)) == ROWS
    report = verify_output(make_store(azurite, container), path)
    assert report.ok and report.rows == len(ROWS), report.problems


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("schema", ["fixed", "observed"])
def test_a_row_handed_with_its_keys_in_another_order_is_the_same_row(
    azurite: Azurite, container: str, fmt: str, schema: str
) -> None:
    """Before: two continue runs wrote JSONL rows twice when the second run's dicts had their keys
    in another order (CSV and Arrow recognised them), and verify passed."""
    opts = options(azurite, container, fmt, if_exists="continue")
    if schema == "observed":
        opts["schema"] = {"mode": "observed"}
    write(opts, "r1", CALLS[:2])
    reordered = [dict(reversed(list(row.items()))) for row in ROWS]
    write(opts, "r2", [reordered])
    path = str(opts["blob_path"])
    assert decode(fmt, read_output(azurite, container, path)) == ROWS
    report = verify_output(make_store(azurite, container), path)
    assert report.ok and report.rows == len(ROWS), report.problems
