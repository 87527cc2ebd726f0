"""Azure faults: each ends in a clear error (or a correct recovery), nothing lost or duplicated.

Driven through the real sink against Azurite. Faults come from three places:

* the service itself — a wrong account key (403), a missing container (404), a closed port
  (connection refused; the resume then reaches Azurite through a loopback TCP proxy on that port);
* another party mutating the output between two ``write`` calls with a plain azure-storage-blob
  client — delete it, replace it with a block blob, seal it, break the sink's lease (and append,
  or take the lease for itself) — the error must name the blob, the offset and the Azure code,
  the bytes committed before stay exactly as they were, and a resume either completes the output
  or, when the output was tampered with, refuses with a clear :class:`RecoveryError` (the writer
  re-reads and verifies everything) and changes nothing;
* :class:`FaultyTransport` — 503/500/408 storms longer than the retry budget on every request
  kind (then a resume completes), and a lost response at every single request of a run and of a
  resume (absorbed: no error, no duplicate).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from elspeth_appendsink.elspeth.host import CallStatus
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import (
    AppendConflictError,
    BlobTypeError,
    LeaseHeldError,
    RecoveryError,
    StorageError,
    StorageUnavailableError,
    UndescribedBytesError,
)
from elspeth_appendsink.protocol.verify import ProblemKind, verify_output
from elspeth_appendsink.storage import AzureStore
from elspeth_appendsink.testing import FaultyTransport, RecordingContext, SimulatedCrash
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, Azurite
from elspeth_appendsink.testing.harness import Engine, EngineRow, crash_at
from tests.helpers import read_output
from tests.hostile.conftest import (
    ATTEMPTS,
    TALLY,
    WRONG_ACCOUNT_KEY,
    Options,
    assert_no_secret,
    container_client,
    count_faults,
    decode,
    snapshot,
    tally_exact,
)

pytestmark = pytest.mark.azurite

#: Six ~45-byte JSONL rows per call: two blocks per call, and a rollover (seal) in the second call.
SMALL = {"block_size": 120, "segment_max_blocks": 3}
POINTER = ".elspeth-appendsink/runs/"


def batch(call: int, n: int = 6) -> list[dict[str, Any]]:
    return [{"id": call * 100 + i, "name": f"call{call}-row{i}", "kind": "k"} for i in range(n)]


def expected(*calls: int) -> list[dict[str, Any]]:
    return [row for call in calls for row in batch(call)]


def output_rows(azurite: Azurite, container: str, path: str) -> list[dict[str, Any]]:
    return decode("jsonl", read_output(azurite, container, path))


def resume(options: dict[str, Any], run_id: str, *calls: int, transport: Any = None) -> AzureAppendBlobSink:
    """A new process resumes ``run_id``: the engine replays ``calls`` (the interrupted one first)."""
    TALLY["resumes"] += 1
    sink = AzureAppendBlobSink(options, transport=transport)
    sink.configure_for_resume()
    ctx = RecordingContext(run_id=run_id)
    try:
        for call in calls:
            sink.write(batch(call), ctx)
        sink.on_complete(ctx)
    finally:
        sink.close()
    return sink


def errors_recorded(ctx: RecordingContext) -> list[dict[str, Any]]:
    return [c.error for c in ctx.calls if c.status == str(CallStatus.ERROR) and c.error is not None]


def assert_names(error: StorageError, *, blob: str, code: str | None, status: int | None) -> None:
    """The error carries blob, status and Azure code as fields and says them in its message."""
    assert error.blob == blob, str(error)
    assert (error.status, error.error_code) == (status, code), str(error)
    assert f"blob={blob}" in str(error)
    if code is not None:
        assert f"code={code}" in str(error)
    if error.offset is not None:
        assert f"offset={error.offset}" in str(error)
    assert_no_secret(error)


# ---------------------------------------------------------------------------------------------
# the service says no at the start


def test_wrong_account_key_is_a_clear_403_and_the_fixed_key_resumes(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """403 AuthorizationFailure: not retried, nothing written, the wrong key nowhere (message,
    causes, traceback, audit record); with the right key the same run completes."""
    wrong = make_options(connection_string=azurite.connection_string.replace(ACCOUNT_KEY, WRONG_ACCOUNT_KEY))
    transport = FaultyTransport()
    sink = AzureAppendBlobSink(wrong, transport=transport)
    ctx = RecordingContext(run_id="run-1")
    with pytest.raises(StorageError) as info:
        sink.write(batch(0), ctx)
    sink.close()
    error = info.value
    assert type(error) is StorageError and not error.retryable
    assert error.blob is not None and error.blob.startswith(POINTER)
    assert_names(error, blob=error.blob, code="AuthorizationFailure", status=403)
    assert_no_secret(
        error, json.dumps([c.__dict__ for c in ctx.calls], default=str), secrets=[WRONG_ACCOUNT_KEY]
    )
    # the run pointer and segment 0 go out together, once each: a 4xx is an answer, never retried
    assert sorted(transport.operations()) == ["create", "upload"]
    assert [e["error_code"] for e in errors_recorded(ctx)] == ["AuthorizationFailure"] * 2
    assert snapshot(azurite, container) == {}
    resume(make_options(), "run-1", 0, 1)
    tally_exact(expected(0, 1), output_rows(azurite, container, "out/data.jsonl"))


def test_missing_container_is_a_clear_404_and_a_resume_completes_once_it_exists(
    azurite: Azurite, make_options: Options
) -> None:
    """404 ContainerNotFound names the blob and says to check the container; nothing retried."""
    name = "missing-container-hostile"
    options = make_options(container=name)
    ctx = RecordingContext(run_id="run-1")
    sink = AzureAppendBlobSink(options)
    with pytest.raises(StorageError) as info:
        sink.write(batch(0), ctx)
    sink.close()
    error = info.value
    assert error.blob is not None and error.blob.startswith(POINTER)
    assert_names(error, blob=error.blob, code="ContainerNotFound", status=404)
    assert "container" in error.hint
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(name)
    try:
        resume(options, "run-1", 0, 1)
        tally_exact(expected(0, 1), output_rows(azurite, name, "out/data.jsonl"))
    finally:
        service.delete_container(name)


class _Proxy:
    """A loopback TCP forwarder: ``port`` → ``target`` (the storage endpoint comes back)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_connection_refused_at_start_then_resume_when_the_endpoint_is_back(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Nothing listens: StorageUnavailableError (retryable, no status) after the retry budget;
    once the endpoint answers (a proxy to Azurite on that port), the resume completes exactly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = make_options(
        connection_string=azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
    )
    transport = FaultyTransport()  # a real transport that only counts
    sink = AzureAppendBlobSink(options, transport=transport)
    with pytest.raises(StorageUnavailableError) as info:
        sink.write(batch(0), RecordingContext(run_id="run-1"))
    sink.close()
    error = info.value
    assert error.retryable and error.status is None and error.error_code is None
    assert error.blob is not None and error.blob.startswith(POINTER) and f"blob={error.blob}" in str(error)
    # the run pointer and segment 0 go out together, each until the retry budget is spent
    assert sorted(transport.operations()) == ["create"] * ATTEMPTS + ["upload"] * ATTEMPTS
    assert all(s.status is None for s in transport.log)
    assert_no_secret(error)
    TALLY["faults injected"] += 1
    proxy = _Proxy(port, (azurite.host, azurite.port))
    try:
        resume(options, "run-1", 0, 1)
    finally:
        proxy.close()
    tally_exact(expected(0, 1), output_rows(azurite, container, "out/data.jsonl"))


# ---------------------------------------------------------------------------------------------
# someone else changes the output between two write calls


def _break(blob: Any) -> None:
    BlobLeaseClient(blob).break_lease(lease_break_period=0)


def _delete(blob: Any) -> None:
    _break(blob)
    blob.delete_blob()


def _replace_with_block_blob(blob: Any) -> None:
    _break(blob)
    blob.delete_blob()
    blob.upload_blob(b'{"id":"forged"}\n')


def _seal(blob: Any) -> None:
    _break(blob)
    blob.seal_append_blob()


def _append_foreign(blob: Any) -> None:
    _break(blob)
    blob.append_block(b'{"id":"forged"}\n')


#: (tampering, error of the next write, its status and Azure code, error of a resume, what verify reports)
Tampering = tuple[Callable[[Any], None], type[StorageError], int, str, type[Exception], ProblemKind | None]
TAMPERINGS: list[Tampering] = [
    (_delete, StorageError, 404, "BlobNotFound", UndescribedBytesError, ProblemKind.MISSING_BYTES),
    (_replace_with_block_blob, BlobTypeError, 409, "InvalidBlobType", BlobTypeError,  # said before writing
     ProblemKind.BLOB_TYPE),
    (_seal, BlobTypeError, 409, "BlobIsSealed", BlobTypeError, None),
    (_append_foreign, AppendConflictError, 412, "AppendPositionConditionNotMet", UndescribedBytesError,
     ProblemKind.UNDESCRIBED_BYTES),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "error_type", "status", "code", "resume_error", "problem"),
    TAMPERINGS,
    ids=["deleted", "replaced-by-block-blob", "sealed", "lease-broken-and-appended"],
)
def test_output_tampered_with_mid_run_fails_clearly_and_resume_refuses(
    azurite: Azurite,
    container: str,
    make_options: Options,
    tamper: Callable[[Any], None],
    error_type: type[StorageError],
    status: int,
    code: str,
    resume_error: type[Exception],
    problem: ProblemKind | None,
) -> None:
    """The next write fails naming blob, offset (where its block was to go) and Azure code, and
    appends nothing; the manifest still proves what was committed before; ``verify`` reports the
    tampering; a resume refuses with a clear error and leaves every segment as it found it."""
    path = "out/data.jsonl"
    options = make_options()
    sink = AzureAppendBlobSink(options)
    ctx = RecordingContext(run_id="run-1")
    sink.write(batch(0), ctx)
    committed = read_output(azurite, container, path)
    tamper(container_client(azurite, container).get_blob_client(path))
    TALLY["storage tamperings"] += 1
    tampered = snapshot(azurite, container).get(path)
    with pytest.raises(error_type) as info:
        sink.write(batch(1), ctx)
    sink.close()
    error = info.value
    assert type(error) is error_type
    assert error.offset == len(committed)
    assert_names(error, blob=path, code=code, status=status)
    assert errors_recorded(ctx)[-1]["error_code"] == code
    assert snapshot(azurite, container).get(path) == tampered, "the failed write changed the segment"
    if tampered is not None and tampered[0] == "BlobType.AppendBlob":
        assert tampered[3].startswith(committed)  # what was committed is still there, once
    report = verify_output(AzureStore(BlobServiceClient.from_connection_string(azurite.connection_string),
                                      container), path)  # fmt: skip
    if problem is None:
        assert report.ok and report.rows == len(batch(0))
    else:
        assert not report.ok and problem in {p.kind for p in report.problems}, report.problems
    TALLY["resumes"] += 1
    with pytest.raises(resume_error) as refused:
        resume(options, "run-1", 1, 2)
    assert path in str(refused.value)
    assert_no_secret(refused.value)
    assert snapshot(azurite, container).get(path) == tampered, "the refused resume changed the segment"


def test_resume_after_the_output_was_deleted_says_bytes_are_missing(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """The output was deleted mid-run: the resume refuses, saying the described bytes are missing
    (regression: it used to call them undescribed)."""
    options = make_options()
    sink = AzureAppendBlobSink(options)
    ctx = RecordingContext(run_id="run-1")
    sink.write(batch(0), ctx)
    _delete(container_client(azurite, container).get_blob_client("out/data.jsonl"))
    with pytest.raises(StorageError):
        sink.write(batch(1), ctx)
    sink.close()
    with pytest.raises(RecoveryError) as refused:
        resume(options, "run-1", 1)
    assert "missing" in str(refused.value), str(refused.value)


def test_lease_broken_mid_run_is_taken_back_and_the_run_completes(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Someone breaks the sink's lease (and does nothing else): the next append is refused
    (LeaseNotPresent), the sink re-acquires its lease — says so in the audit trail — and every
    row lands exactly once."""
    options = make_options()
    transport = FaultyTransport()
    sink = AzureAppendBlobSink(options, transport=transport)
    ctx = RecordingContext(run_id="run-1")
    sink.write(batch(0), ctx)
    _break(container_client(azurite, container).get_blob_client("out/data.jsonl"))
    TALLY["storage tamperings"] += 1
    sink.write(batch(1), ctx)
    sink.write(batch(2), ctx)
    sink.close()
    codes = [e["error_code"] for e in errors_recorded(ctx)]
    assert codes == ["LeaseNotPresentWithBlobOperation"]
    acquired = [
        c.response_data
        for c in ctx.calls
        if c.request_data.get("operation") == "writer_event"
        and (c.response_data or {}).get("event") == "lease.acquired"
    ]
    assert len(acquired) == 2  # the start, and the take-back
    tally_exact(expected(0, 1, 2), output_rows(azurite, container, "out/data.jsonl"))


def test_lease_taken_by_someone_else_stops_the_run_until_it_is_released(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """Someone breaks the lease and takes one of their own: LeaseHeldError (blob, offset, code),
    nothing of the call lands; a resume is refused while they hold it, and completes after."""
    path = "out/data.jsonl"
    options = make_options()
    sink = AzureAppendBlobSink(options)
    ctx = RecordingContext(run_id="run-1")
    sink.write(batch(0), ctx)
    committed = read_output(azurite, container, path)
    blob = container_client(azurite, container).get_blob_client(path)
    _break(blob)
    stranger = BlobLeaseClient(blob)
    stranger.acquire(lease_duration=-1)
    TALLY["storage tamperings"] += 1
    with pytest.raises(LeaseHeldError) as info:
        sink.write(batch(1), ctx)
    sink.close()
    assert info.value.offset == len(committed)
    assert_names(info.value, blob=path, code="LeaseIdMismatchWithBlobOperation", status=412)
    assert read_output(azurite, container, path) == committed
    with pytest.raises(LeaseHeldError) as refused:
        resume(options, "run-1", 1, 2)
    assert refused.value.blob == path and refused.value.error_code == "LeaseAlreadyPresent"
    assert "unlock" in str(refused.value)
    assert read_output(azurite, container, path) == committed
    stranger.release()
    resume(options, "run-1", 1, 2)
    tally_exact(expected(0, 1, 2), output_rows(azurite, container, path))


def test_lease_refusal_does_not_name_the_resuming_run_as_the_holder(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """A stranger's lease is not attributed to the resuming run itself (regression: the blob's
    writer metadata was reported as the lease holder)."""
    options = make_options()
    sink = AzureAppendBlobSink(options)
    sink.write(batch(0), RecordingContext(run_id="run-1"))
    sink.close()  # releases the sink's lease
    blob = container_client(azurite, container).get_blob_client("out/data.jsonl")
    BlobLeaseClient(blob).acquire(lease_duration=-1)
    with pytest.raises(LeaseHeldError) as refused:
        resume(options, "run-1", 1)
    assert refused.value.holder != "run-1" and "(run run-1)" not in str(refused.value), str(refused.value)


# ---------------------------------------------------------------------------------------------
# throttling storms longer than the retry budget, on every request kind


def kind_of(op: str, request: Any) -> str:
    if op == "append":
        return "append-manifest" if ".manifest/" in request.url else "append-data"
    return op


#: (request kind, phase the storm starts in, fault): "first" = the first write, "second" = the
#: second write (it rolls over: seal, create, lease), "resume" = the recovery of a crashed run.
STORMS = [
    ("upload", "first", "status:503"),
    ("create", "first", "status:503"),
    ("lease", "first", "status:503"),
    ("append-manifest", "first", "status:503"),
    ("append-data", "second", "status:503"),
    ("append-data", "second", "status:500"),
    ("append-data", "second", "status:408"),
    ("append-manifest", "second", "status:503"),
    ("seal", "second", "status:503"),
    ("create", "second", "status:503"),
    ("lease", "second", "status:503"),
    ("properties", "resume", "status:503"),
    ("read", "resume", "status:503"),
    ("list", "resume", "status:503"),
    ("upload", "first", "reset"),
    ("append-data", "second", "reset"),
]
CODES = {"status:503": (503, "ServerBusy"), "status:500": (500, "InternalError"),
         "status:408": (408, "OperationTimedOut"), "reset": (None, None)}  # fmt: skip


@pytest.mark.parametrize(("kind", "phase", "fault"), STORMS, ids=[f"{k}-{p}-{f}" for k, p, f in STORMS])
def test_storm_longer_than_the_retry_budget_fails_clearly_then_resume_completes(
    azurite: Azurite, container: str, make_options: Options, kind: str, phase: str, fault: str
) -> None:
    """Every attempt at one kind of request fails: StorageUnavailableError (retryable) naming the
    blob, status and code after exactly the retry budget; what landed is a prefix of the rows
    with no duplicate; the error is in the audit trail; a resume completes the output exactly."""
    path = "out/data.jsonl"
    options = make_options(**SMALL)
    storm = {"on": phase == "first"}

    def rule(n: int, op: str, request: Any) -> str | None:
        return fault if storm["on"] and kind_of(op, request) == kind else None

    transport = FaultyTransport(rule=rule)
    ctx = RecordingContext(run_id="run-1")
    calls_done = 0
    if phase == "resume":  # a run that died in its second call, after one of its blocks landed
        crashing = FaultyTransport(on={("append", 8): "crash-after"})
        sink = AzureAppendBlobSink(options, transport=crashing)
        sink.write(batch(0), ctx)
        with pytest.raises(SimulatedCrash):
            sink.write(batch(1), ctx)
        count_faults(crashing)
        TALLY["resumes"] += 1
        sink = AzureAppendBlobSink(options, transport=transport)
        sink.configure_for_resume()
        storm["on"] = True
        failing = 1
    else:
        sink = AzureAppendBlobSink(options, transport=transport)
        if phase == "second":
            sink.write(batch(0), ctx)
            calls_done = 1
            storm["on"] = True
        failing = calls_done
    with pytest.raises(StorageUnavailableError) as info:
        sink.write(batch(failing), ctx)
    storm["on"] = False
    sink.close()
    error = info.value
    status, code = CODES[fault]
    assert error.retryable and error.blob is not None
    assert_names(error, blob=error.blob, code=code, status=status)
    hits = [s for s in transport.log if s.fault == fault]
    assert len(hits) == ATTEMPTS and {kind_of(s.operation, s) for s in hits} == {kind}
    assert errors_recorded(ctx)[-1]["error_code"] == code
    if kind.startswith("append"):
        assert error.offset is not None
    landed = output_rows(azurite, container, path) if snapshot(azurite, container).get(path) else []
    assert landed == expected(*range(failing + 1))[: len(landed)]  # a prefix: nothing twice
    count_faults(transport)
    resume(options, "run-1", *range(failing, 3))
    tally_exact(expected(0, 1, 2), output_rows(azurite, container, path))


# ---------------------------------------------------------------------------------------------
# a lost response at every request


def _run(
    options: dict[str, Any], run_id: str, transport: FaultyTransport, calls: range, *, resumed: bool = False
) -> None:
    sink = AzureAppendBlobSink(options, transport=transport)
    if resumed:
        sink.configure_for_resume()
    ctx = RecordingContext(run_id=run_id)
    for call in calls:
        sink.write(batch(call), ctx)
    sink.on_complete(ctx)
    sink.close()


def test_response_lost_at_every_request_of_a_run_is_absorbed(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """For every request k of a three-call run that rolls over and seals: the service applies
    request k but its response is lost. Each run completes without error, each row once, sealed."""
    clean = FaultyTransport()
    _run(make_options(blob_path="clean/data.jsonl", seal_on_complete=True, **SMALL), "clean", clean, range(3))
    kinds = {kind_of(s.operation, s) for s in clean.log}
    assert kinds >= {"upload", "create", "lease", "append-manifest", "append-data", "seal"}
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for k in range(1, clean.count + 1):
        path = f"lost-{k}/data.jsonl"
        transport = FaultyTransport(at={k: "lose"})
        _run(make_options(blob_path=path, seal_on_complete=True, **SMALL), f"lost-{k}", transport, range(3))
        assert count_faults(transport) == 1
        tally_exact(expected(0, 1, 2), output_rows(azurite, container, path))
        last = sorted(
            b.name
            for b in service.get_container_client(container).list_blobs(name_starts_with=f"lost-{k}/data.seg")
        )
        assert service.get_blob_client(container, last[-1]).get_blob_properties().is_append_blob_sealed


def test_response_lost_at_every_request_of_a_resume_is_absorbed(
    azurite: Azurite, container: str, make_options: Options
) -> None:
    """A run dies in its second call after a block landed; its resume (reads, listings,
    properties, void/adopt records, lease, appends) loses the response of request k, for every
    k: the resume completes without error and each row is there once."""

    def crashed(tag: str) -> dict[str, Any]:
        options = make_options(blob_path=f"{tag}/data.jsonl", **SMALL)
        crashing = FaultyTransport(on={("append", 8): "crash-after"})
        sink = AzureAppendBlobSink(options, transport=crashing)
        ctx = RecordingContext(run_id=tag)
        sink.write(batch(0), ctx)
        with pytest.raises(SimulatedCrash):
            sink.write(batch(1), ctx)
        count_faults(crashing)
        return options

    probe = FaultyTransport()
    _run(crashed("probe"), "probe", probe, range(1, 3), resumed=True)
    kinds = {kind_of(s.operation, s) for s in probe.log}
    assert kinds >= {"read", "properties", "list", "lease", "append-manifest", "append-data"}
    for k in range(1, probe.count + 1):
        tag = f"resume-lost-{k}"
        options = crashed(tag)
        transport = FaultyTransport(at={k: "lose"})
        TALLY["resumes"] += 1
        _run(options, tag, transport, range(1, 3), resumed=True)
        assert count_faults(transport) == 1
        tally_exact(expected(0, 1, 2), output_rows(azurite, container, f"{tag}/data.jsonl"))


# ---------------------------------------------------------------------------------------------
# the end of a run: on_complete


@pytest.mark.parametrize("how", ["run-fails", "resume-fails-in-recovery"])
def test_failed_run_sealed_by_on_complete_resumes(
    azurite: Azurite, container: str, make_options: Options, tmp_path: Any, how: str
) -> None:
    """A run (or a resume, in its recovery) fails with an ordinary error while the segment has
    room; ELSPETH's cleanup runs on_complete, which seals; the next resume must still complete
    the output exactly."""
    options = make_options(seal_on_complete=True, **SMALL)
    rows = [EngineRow(f"r{i}", "out", row, outcome) for i, (row, outcome) in enumerate(
        [(r, "completed") for r in batch(0)] + [(r, "routed") for r in batch(1)]
    )]  # fmt: skip
    engine = Engine({"out": AzureAppendBlobSink(options)}, tmp_path)
    if how == "run-fails":
        engine.step_hook = crash_at("after_flush", group=0, exc=RuntimeError)
        with pytest.raises(RuntimeError):
            engine.run("run-1", rows)
        engine.step_hook = None
    else:  # the run dies in group 1; its resume fails in recovery (a storm on properties)
        dying = FaultyTransport(on={("append", 8): "crash-after"})
        engine.sinks = {"out": AzureAppendBlobSink(options, transport=dying)}
        with pytest.raises(SimulatedCrash):
            engine.run("run-1", rows)
        storm = {"left": 0}  # armed when the write starts: one properties request outlasts the budget

        def rule(n: int, op: str, request: Any) -> str | None:
            if op == "properties" and storm["left"] > 0:
                storm["left"] -= 1
                return "status:503"
            return None

        stormy = FaultyTransport(rule=rule)
        engine.factory = lambda _name, opts: AzureAppendBlobSink(opts, transport=stormy)
        engine.step_hook = lambda step: storm.update(left=ATTEMPTS) if step.point == "before_write" else None
        TALLY["resumes"] += 1
        with pytest.raises(StorageUnavailableError):
            engine.resume("run-1")
        engine.factory = lambda _name, opts: AzureAppendBlobSink(opts)
        engine.step_hook = None
    TALLY["resumes"] += 1
    try:
        engine.resume("run-1")
    finally:
        engine.close()
    tally_exact(expected(0, 1), output_rows(azurite, container, "out/data.jsonl"))


@pytest.mark.parametrize(("op", "blob"), [("create", "out/data.seg000001.jsonl"), ("seal", "out/data.jsonl")])
def test_failed_rollover_then_seal_on_complete_resumes(
    azurite: Azurite, container: str, make_options: Options, tmp_path: Any, op: str, blob: str
) -> None:
    """Sealing the full segment, or creating the next one, fails past the retry budget during a
    rollover; the failed run's cleanup seals (seal_on_complete); the resume must finish the
    rollover and the output."""
    options = make_options(seal_on_complete=True, **SMALL)
    rows = [EngineRow(f"r{i}", "out", row, outcome) for i, (row, outcome) in enumerate(
        [(r, "completed") for r in batch(0)] + [(r, "routed") for r in batch(1)]
    )]  # fmt: skip
    left = {"storm": ATTEMPTS}  # exactly one request's retry budget

    def rule(n: int, kind: str, request: Any) -> str | None:
        if kind == op and request.url.split("?")[0].endswith("/" + blob) and left["storm"] > 0:
            left["storm"] -= 1
            return "status:503"
        return None

    storm = FaultyTransport(rule=rule)
    engine = Engine({"out": AzureAppendBlobSink(options, transport=storm)}, tmp_path)
    with pytest.raises(StorageUnavailableError) as info:
        engine.run("run-1", rows)
    assert info.value.blob == blob
    count_faults(storm)
    TALLY["resumes"] += 1
    try:
        engine.resume("run-1")
    finally:
        engine.close()
    tally_exact(expected(0, 1), output_rows(azurite, container, "out/data.jsonl"))


# ---------------------------------------------------------------------------------------------
# a crash at the very end


def test_crash_before_the_final_seal_then_resume_seals(
    azurite: Azurite, container: str, make_options: Options, tmp_path: Any
) -> None:
    """A crash just before on_complete's seal: the resume (no row to replay) still seals, as
    configured and as the manifest's seal record says (regression)."""
    options = make_options(seal_on_complete=True)
    rows = [EngineRow(f"r{i}", "out", row) for i, row in enumerate(batch(0))]
    transport = FaultyTransport(on={("seal", 1): "crash-before"})
    engine = Engine({"out": AzureAppendBlobSink(options, transport=transport)}, tmp_path)
    with pytest.raises(SimulatedCrash):
        engine.run("run-1", rows)
    engine.resume("run-1")
    engine.close()
    tally_exact(batch(0), output_rows(azurite, container, "out/data.jsonl"))
    blob = container_client(azurite, container).get_blob_client("out/data.jsonl")
    assert blob.get_blob_properties().is_append_blob_sealed
