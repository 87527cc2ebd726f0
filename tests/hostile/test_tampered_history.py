"""An output's history tampered with between runs: the next run refuses before writing, and says where.

Driven through the real sink against Azurite, over every format, for both ways a later run
takes an output over (``elspeth resume`` of a crashed run, ``if_exists: continue`` by a new
run): bytes appended by something else, and a segment the manifests describe deleted. The
refusal must name the first byte (or the segment) that is wrong, the output's blobs must be
exactly as the tampering left them, and ``verify`` must point at the same place.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import RecoveryError, UndescribedBytesError
from elspeth_appendsink.protocol.verify import ProblemKind, VerifyReport, verify_output
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, read_output
from tests.hostile.conftest import TALLY, Options, assert_no_secret, container_client, snapshot

pytestmark = pytest.mark.azurite

FORMATS = ("csv", "jsonl", "arrow")
#: Small blocks: one write call is a batch of several block intents, so the manifest's last
#: intents start well before the output ends (where a wrong offset used to point).
SMALL: dict[str, Any] = {"block_size": 1024}
ROWS_PER_CALL = 120


def rows(call: int) -> list[dict[str, Any]]:
    return [{"id": call * 1000 + i, "name": f"call{call}-row{i}", "kind": "k"} for i in range(ROWS_PER_CALL)]


def path_of(fmt: str) -> str:
    return f"out/data.{fmt}"


def output_blobs(azurite: Azurite, container: str, fmt: str) -> dict[str, Any]:
    """Every blob of the output (segments and manifests): type, sealed and bytes. Not metadata: a
    continuing run fences the output (lease, writer name) before it reads it, as it must."""
    stem = path_of(fmt).rsplit(".", 1)[0]
    return {
        name: (kind, sealed, data)
        for name, (kind, sealed, _meta, data) in snapshot(azurite, container).items()
        if name.startswith(stem)
    }


def run(options: dict[str, Any], run_id: str, *calls: int, complete: bool = True) -> None:
    """One run writing ``calls``; without ``complete`` it stops as a crashed process would."""
    sink = AzureAppendBlobSink(options)
    ctx = RecordingContext(run_id=run_id)
    try:
        for call in calls:
            sink.write(rows(call), ctx)
        if complete:
            sink.on_complete(ctx)
    finally:
        sink.close()


def resume(options: dict[str, Any], run_id: str, *calls: int) -> None:
    sink = AzureAppendBlobSink(options)
    sink.configure_for_resume()
    ctx = RecordingContext(run_id=run_id)
    try:
        for call in calls:
            sink.write(rows(call), ctx)
        sink.on_complete(ctx)
    finally:
        sink.close()


def later_run(mode: str, options: dict[str, Any], run_id: str = "r1") -> None:
    """The run that takes the output over: a resume of ``r0`` or a new run ``run_id`` continuing
    (or appending to) it."""
    TALLY["resumes"] += 1
    if mode == "resume":
        resume(options, "r0", 1, 2)
    else:
        run({**options, "if_exists": mode}, run_id, 1, 2)


def verify(azurite: Azurite, container: str, fmt: str) -> VerifyReport:
    return verify_output(make_store(azurite, container), path_of(fmt))


def break_lease(client: Any) -> None:
    if client.get_blob_properties().lease.state == "leased":
        BlobLeaseClient(client).break_lease(lease_break_period=0)


@pytest.mark.parametrize("mode", ["resume", "continue"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_foreign_bytes_are_refused_from_their_first_byte(
    azurite: Azurite, container: str, make_options: Options, fmt: str, mode: str
) -> None:
    """Bytes appended behind the sink's back at the output's end: resume and continue refuse
    naming exactly those bytes (not where the manifest's last batch of intents began), write
    nothing, and verify names the same range."""
    options = make_options(format=fmt, blob_path=path_of(fmt), if_exists="continue", **SMALL)
    run(options, "r0", 0, complete=mode == "continue")
    end = len(read_output(azurite, container, path_of(fmt)))
    segment = container_client(azurite, container).get_blob_client(path_of(fmt))
    break_lease(segment)
    segment.append_block(b"FOREIGN BYTES\n")
    TALLY["storage tamperings"] += 1
    foreign = f"[{end}, {end + 14})"
    before = output_blobs(azurite, container, fmt)
    with pytest.raises(UndescribedBytesError) as refused:
        later_run(mode, options)
    assert f"bytes {foreign} (14 bytes) are not described" in str(refused.value), str(refused.value)
    assert_no_secret(refused.value)
    assert output_blobs(azurite, container, fmt) == before, "the refused run changed the output"
    report = verify(azurite, container, fmt)
    assert [p.kind for p in report.problems] == [ProblemKind.UNDESCRIBED_BYTES]
    assert report.problems[0].location.offset == end and foreign in report.problems[0].message


@pytest.mark.parametrize("mode", ["resume", "continue", "append"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_segment_zero_is_refused_naming_it_and_its_run(
    azurite: Azurite, container: str, make_options: Options, fmt: str, mode: str
) -> None:
    """Segment 0 deleted: neither a resume nor a new run (continue, or append onto this sink's
    output) creates it anew or writes anything; each refuses naming the segment and the run whose
    manifest describes it, every time; verify reports the segment missing, naming the run."""
    options = make_options(format=fmt, blob_path=path_of(fmt), if_exists="continue", **SMALL)
    run(options, "r0", 0, complete=mode != "resume")
    described = len(read_output(azurite, container, path_of(fmt)))
    segment = container_client(azurite, container).get_blob_client(path_of(fmt))
    break_lease(segment)
    segment.delete_blob()
    TALLY["storage tamperings"] += 1
    before = output_blobs(azurite, container, fmt)
    for attempt in ("r1", "r2"):  # a refused run leaves the output as it was: the next one refuses alike
        with pytest.raises(RecoveryError) as refused:
            later_run(mode, options, attempt)
        message = str(refused.value)
        assert f"segment {path_of(fmt)} is missing" in message, message
        assert f"run r0 describe {described} bytes" in message, message
        assert_no_secret(refused.value)
        assert output_blobs(azurite, container, fmt) == before, "the refused run changed the output"
    report = verify(azurite, container, fmt)
    assert [p.kind for p in report.problems] == [ProblemKind.MISSING_BYTES]
    assert f"run r0 describe {described} bytes" in report.problems[0].message
    assert not report.needs_resume  # a resume cannot settle anything over a missing segment


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_later_segment_stops_continue_before_the_lease(
    azurite: Azurite, container: str, make_options: Options, fmt: str
) -> None:
    """A sealed middle segment deleted: a continuing run refuses before it takes a lease or
    settles anything, naming that segment and the run."""
    options = make_options(
        format=fmt, blob_path=path_of(fmt), if_exists="continue", segment_max_blocks=2, **SMALL
    )
    run(options, "r0", 0)
    middle = container_client(azurite, container).get_blob_client("out/data.seg000001." + fmt)
    assert middle.exists()
    break_lease(middle)
    middle.delete_blob()
    TALLY["storage tamperings"] += 1
    before = output_blobs(azurite, container, fmt)
    with pytest.raises(UndescribedBytesError) as refused:
        later_run("continue", options)
    assert "segment out/data.seg000001." + fmt + " is missing" in str(refused.value)
    assert "run r0" in str(refused.value)
    assert output_blobs(azurite, container, fmt) == before
    assert all(
        meta.get("elspeth_appendsink_writer") != "r1"
        for _, _, meta, _ in snapshot(azurite, container).values()
    )
