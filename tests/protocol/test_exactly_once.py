"""The exactly-once protocol against Azurite: lost responses, crashes at every request, resume.

The clean runs (the writer's own bookkeeping) run on the memory store; every other class on Azurite."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from elspeth_appendsink.errors import AppendConflictError, LeaseHeldError, StorageUnavailableError
from elspeth_appendsink.storage import RetrySettings
from elspeth_appendsink.testing import FaultyTransport, SimulatedCrash
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import MemorySpace, check_manifests, expected_jsonl, make_store, make_writer, read_output


def batches(calls: int = 3, per_call: int = 25) -> list[list[dict[str, Any]]]:
    return [[{"id": c * per_call + i, "v": f"value-{c}-{i}"} for i in range(per_call)] for c in range(calls)]


SMALL = {"block_size": 200, "segment_max_blocks": 5}


def assert_exact(
    azurite: Azurite | MemorySpace,
    container: str | None,
    blob_path: str,
    rows: list[dict[str, Any]],
    writer: Any = None,
) -> None:
    memory = azurite if isinstance(azurite, MemorySpace) else None
    output = memory.output(blob_path) if memory else read_output(azurite, container, blob_path)
    assert output == expected_jsonl(rows)
    committed = memory.manifests(blob_path) if memory else check_manifests(azurite, container, blob_path)
    position = 0
    for entry in committed:
        assert entry.tokens.start == position
        position = entry.tokens.end
    assert position == len(rows)
    if writer is not None:
        assert writer.content_hash == hashlib.sha256(output).hexdigest()
        assert writer.size == len(output)


class TestCleanRun:
    def test_many_writes_land_in_order_across_segments(self, memory: MemorySpace) -> None:
        """Three write calls, ≥10 blocks, ≥2 segments: output is every row once, in order."""
        store = memory.store()
        writer = make_writer(store, **SMALL)
        data = batches()
        for batch in data:
            writer.write(batch)
        assert writer.cursor is not None and writer.cursor.segment >= 1
        assert len(memory.manifests("out/data.jsonl")) >= 10
        assert_exact(memory, None, "out/data.jsonl", [r for b in data for r in b], writer)

    def test_header_is_written_once_at_the_start(self, memory: MemorySpace) -> None:
        """A format header appears exactly once, at offset 0, however many writes and segments."""
        from tests.helpers import CsvStub

        store = memory.store()
        writer = make_writer(store, encoder=CsvStub(), **SMALL)
        for batch in batches():
            writer.write(batch)
        output = memory.output("out/data.jsonl")
        assert output.startswith(b"HEADER\n") and output.count(b"HEADER\n") == 1


@pytest.mark.azurite
class TestLostResponses:
    def test_lost_response_on_each_append_is_resolved_without_duplicates(
        self, azurite: Azurite, container: str
    ) -> None:
        """Losing the response of the k-th append (data or manifest), for every k: output exact, no error."""
        data = batches()
        rows = [r for b in data for r in b]
        clean = FaultyTransport()
        writer = make_writer(make_store(azurite, container, clean), blob_path="clean/d.jsonl", **SMALL)
        for batch in data:
            writer.write(batch)
        appends = clean.per_op["append"]
        assert appends >= 20
        for k in range(1, appends + 1):
            transport = FaultyTransport(on={("append", k): "lose"})
            path = f"lost{k}/d.jsonl"
            writer = make_writer(
                make_store(azurite, container, transport), blob_path=path, run_id=f"r{k}", **SMALL
            )
            for batch in data:
                writer.write(batch)
            assert any(s.fault == "lose" for s in transport.log)
            assert_exact(azurite, container, path, rows, writer)


@pytest.mark.azurite
class TestCrashAndResume:
    @pytest.mark.parametrize("mode", ["crash-before", "crash-after"])
    def test_crash_at_every_request_then_resume_is_exact(
        self, azurite: Azurite, container: str, mode: str
    ) -> None:
        """Kill the writer before/after every storage request of a 3-write, multi-segment run; a
        resumed writer given the replayed rows finishes with each row exactly once, in order."""
        data = batches()
        rows = [r for b in data for r in b]
        clean = FaultyTransport()
        writer = make_writer(make_store(azurite, container, clean), blob_path="base/d.jsonl", **SMALL)
        for batch in data:
            writer.write(batch)
        total = clean.count
        for k in range(1, total + 1):
            path, run_id = f"{mode}{k}/d.jsonl", f"run-{mode}-{k}"
            transport = FaultyTransport(at={k: mode})
            writer = make_writer(
                make_store(azurite, container, transport), blob_path=path, run_id=run_id, **SMALL
            )
            crashed_in = None
            for index, batch in enumerate(data):
                try:
                    writer.write(batch)
                except SimulatedCrash:
                    crashed_in = index
                    break
            assert crashed_in is not None, f"request {k} was never sent"
            resumed = make_writer(
                make_store(azurite, container), blob_path=path, run_id=run_id, resume=True, **SMALL
            )
            for batch in data[crashed_in:]:  # the engine replays the crashed call and everything after
                resumed.write(batch)
            assert_exact(azurite, container, path, rows, resumed)

    @pytest.mark.parametrize("mode", ["crash-before", "crash-after", "lose"])
    @pytest.mark.parametrize(
        "at",
        [("upload", 1), ("create", 1), ("lease", 1), ("create", 2), ("append", 1)],
        ids=[
            "pointer-beside-segment",
            "segment-beside-pointer",
            "lease-beside-manifest",
            "manifest-beside-lease",
            "open-record-with-first-intents",
        ],
    )
    def test_a_fault_at_a_start_up_request_sent_together_resumes_exactly(
        self, azurite: Azurite, container: str, at: tuple[str, int], mode: str
    ) -> None:
        """The start-up requests that go out together (run pointer and segment 0, lease and
        manifest creation) or travel together (the open record with the first intents): a crash
        or lost response at each leaves an output a resume (or, for a lost response, the same
        writer) finishes exactly."""
        data = batches()
        rows = [r for b in data for r in b]
        path, run_id = f"start-{at[0]}{at[1]}-{mode}/d.jsonl", f"run-start-{at[0]}-{mode}"
        transport = FaultyTransport(on={at: mode})
        writer = make_writer(
            make_store(azurite, container, transport), blob_path=path, run_id=run_id, **SMALL
        )
        try:
            writer.write(data[0])
        except SimulatedCrash:
            writer = make_writer(
                make_store(azurite, container), blob_path=path, run_id=run_id, resume=True, **SMALL
            )
            writer.write(data[0])
        assert (at[0], mode) in {(seen.operation, seen.fault) for seen in transport.log if seen.fault}
        for batch in data[1:]:
            writer.write(batch)
        assert_exact(azurite, container, path, rows, writer)

    def test_replay_of_a_completed_write_appends_nothing(self, azurite: Azurite, container: str) -> None:
        """A crash after write() returned (outcomes unrecorded): the replayed call is recognised whole."""
        data = batches()
        rows = [r for b in data for r in b]
        writer = make_writer(make_store(azurite, container), **SMALL)
        writer.write(data[0])
        writer.write(data[1])
        resumed = make_writer(make_store(azurite, container), resume=True, **SMALL)
        report = resumed.write(data[1])
        assert report.rows_skipped == len(data[1]) and report.rows_appended == 0
        resumed.write(data[2])
        assert_exact(azurite, container, "out/data.jsonl", rows, resumed)

    def test_entries_with_digests_and_entries_with_lengths_resume_together(
        self, azurite: Azurite, container: str
    ) -> None:
        """A manifest whose first entries carry digests (an earlier writer) and whose later ones carry
        row lengths: the replayed call is recognised across both kinds, nothing is written twice."""
        from tests.helpers import JsonlStub

        class DigestsStub(JsonlStub):
            contiguous_rows = False  # same bytes, but entries carry digests

        data = batches()
        rows = [r for b in data for r in b]
        first = make_writer(make_store(azurite, container), encoder=DigestsStub(), **SMALL)
        first.write(data[0])
        second = make_writer(make_store(azurite, container), resume=True, **SMALL)
        second.write(data[1])  # lengths from here on
        resumed = make_writer(make_store(azurite, container), resume=True, **SMALL)
        report = resumed.write(data[1])
        assert report.rows_skipped == len(data[1]) and report.rows_appended == 0
        resumed.write(data[2])
        assert_exact(azurite, container, "out/data.jsonl", rows, resumed)
        entries = check_manifests(azurite, container, "out/data.jsonl")
        assert {bool(entry.lengths) for entry in entries} == {False, True}


@pytest.mark.azurite
class TestThrottlingAndResets:
    def test_503_storm_within_budget_is_retried_without_duplicates(
        self, azurite: Azurite, container: str
    ) -> None:
        """Two 503s on every append's first tries are absorbed by the retry policy."""
        seen: dict[int, int] = {}

        def rule(n: int, op: str, request: Any) -> str | None:
            if op != "append":
                return None
            key = hash(request.url + str(request.headers.get("x-ms-blob-condition-appendpos")))
            seen[key] = seen.get(key, 0) + 1
            return "status:503" if seen[key] <= 2 else None

        transport = FaultyTransport(rule=rule)
        slow = RetrySettings(total=3, initial_backoff=2.0, increment_base=2.0, jitter=0.0)
        writer = make_writer(make_store(azurite, container, transport, retry=slow), **SMALL)
        data = batches()
        for batch in data:
            writer.write(batch)
        assert sum(1 for s in transport.log if s.status == 503) >= 20
        assert len(transport.sleeps) >= 20 and min(transport.sleeps) >= 2.0  # real backoffs, costing nothing
        assert_exact(azurite, container, "out/data.jsonl", [r for b in data for r in b], writer)

    def test_storm_longer_than_budget_fails_clearly_then_resume_completes(
        self, azurite: Azurite, container: str
    ) -> None:
        """503 forever on data appends → StorageUnavailableError naming blob and offset; resume finishes."""
        data = batches()
        writer = make_writer(make_store(azurite, container), **SMALL)
        writer.write(data[0])
        storm = FaultyTransport(
            rule=lambda n, op, r: "status:503" if op == "append" and "manifest" not in r.url else None
        )
        writer = make_writer(make_store(azurite, container, storm), resume=True, **SMALL)
        with pytest.raises(StorageUnavailableError) as info:
            writer.write(data[1])
        assert (
            info.value.blob == "out/data.jsonl" and info.value.offset is not None and info.value.status == 503
        )
        resumed = make_writer(make_store(azurite, container), resume=True, **SMALL)
        resumed.write(data[1])
        resumed.write(data[2])
        assert_exact(azurite, container, "out/data.jsonl", [r for b in data for r in b], resumed)

    def test_connection_resets_are_retried(self, azurite: Azurite, container: str) -> None:
        """Every third request is reset before sending; the run completes exactly."""
        transport = FaultyTransport(rule=lambda n, op, r: "reset" if n % 3 == 0 else None)
        writer = make_writer(make_store(azurite, container, transport), **SMALL)
        data = batches()
        for batch in data:
            writer.write(batch)
        assert_exact(azurite, container, "out/data.jsonl", [r for b in data for r in b], writer)


@pytest.mark.azurite
class TestForeignWriters:
    def test_foreign_append_at_our_position_is_a_conflict(self, azurite: Azurite, container: str) -> None:
        """Someone else appends between our blocks: AppendConflictError; our committed bytes intact."""
        store = make_store(azurite, container)
        writer = make_writer(store, lease=False)
        data = batches()
        writer.write(data[0])
        before = read_output(azurite, container, "out/data.jsonl")
        blob = store.blob("out/data.jsonl")
        blob.append_block(b"FOREIGN\n")
        with pytest.raises(AppendConflictError) as info:
            writer.write(data[1])
        assert info.value.blob == "out/data.jsonl" and info.value.offset == len(before)
        assert read_output(azurite, container, "out/data.jsonl") == before + b"FOREIGN\n"

    def test_second_writer_under_our_lease_is_refused_naming_the_run(
        self, azurite: Azurite, container: str
    ) -> None:
        """Another run appending to a leased output gets LeaseHeldError naming the holder."""
        store = make_store(azurite, container)
        first = make_writer(store, run_id="holder-run")
        first.write(batches()[0])
        second = make_writer(make_store(azurite, container), run_id="other-run", if_exists="continue")
        with pytest.raises(LeaseHeldError) as info:
            second.write(batches()[1])
        assert info.value.holder == "holder-run"
        assert "holder-run" in str(info.value)


@pytest.mark.azurite
class TestRetryInSameProcess:
    def test_retry_after_a_bad_row_appends_only_what_is_missing(
        self, azurite: Azurite, container: str
    ) -> None:
        """A bad row stops a call after some blocks landed; a retry (row fixed) adds each row once."""
        from elspeth_appendsink.errors import UnencodableRow
        from tests.helpers import JsonlStub

        class Picky(JsonlStub):
            def encode(self, rows: Any) -> list[bytes]:
                for index, row in enumerate(rows):
                    if row.get("bad"):
                        raise UnencodableRow("refused", row_index=index)
                return super().encode(rows)

        # ~3 MB of rows: the writer encodes ~1 MiB at a time, so the slices before the bad row's
        # are in blocks (and durable) by the time it is reached
        writer = make_writer(make_store(azurite, container), encoder=Picky(), block_size=65536)
        data = batches(calls=1, per_call=100_000)[0]
        poisoned = [*data[:90_000], {"id": -1, "bad": True}, *data[90_000:]]
        with pytest.raises(UnencodableRow) as info:
            writer.write(poisoned)
        assert info.value.row_index == 90_000
        landed = read_output(azurite, container, "out/data.jsonl")
        assert 0 < len(landed) < len(expected_jsonl(data))  # the earlier slices' blocks are durable
        report = writer.write(data)  # the engine retries the call with the row fixed
        assert report.rows_skipped > 0 and report.rows_skipped + report.rows_appended == len(data)
        assert_exact(azurite, container, "out/data.jsonl", data, writer)

    def test_retry_after_an_uncertain_storage_failure_is_exact(
        self, azurite: Azurite, container: str
    ) -> None:
        """After a failure whose outcome was unknown, the same writer re-derives its position and finishes."""
        data = batches()
        storm = {"appends_left": 0}

        def rule(n: int, op: str, request: Any) -> str | None:
            if op == "append" and "manifest" not in request.url and storm["appends_left"] > 0:
                storm["appends_left"] -= 1
                return "status:503"
            return None

        transport = FaultyTransport(rule=rule)
        writer = make_writer(make_store(azurite, container, transport), **SMALL)
        writer.write(data[0])
        storm["appends_left"] = 4  # exactly the retry budget of one data append (1 try + 3 retries)
        with pytest.raises(StorageUnavailableError):
            writer.write(data[1])
        writer.write(data[1])
        writer.write(data[2])
        assert_exact(azurite, container, "out/data.jsonl", [r for b in data for r in b], writer)


@pytest.mark.azurite
class TestSegmentRefusesMoreBlocks:
    def test_a_batch_refused_midway_moves_to_the_next_segment_and_the_digest_skips_nothing(
        self, azurite: Azurite, container: str
    ) -> None:
        """The service refuses a block (``BlockCountExceedsLimit``) in the middle of a batch large
        enough to be hashed off the writer's thread: the rest of the batch is voided and written to
        the next segment, and ``content_hash`` is still the sha256 of exactly the output's bytes."""
        from azure.storage.blob import BlobServiceClient

        from elspeth_appendsink.core.manifest import RolloverRecord, VoidRecord, decode_records

        data_appends = {"n": 0}

        def rule(n: int, op: str, request: Any) -> str | None:
            if op == "append" and "manifest" not in request.url:
                data_appends["n"] += 1
                if data_appends["n"] == 3:
                    return "status:409:BlockCountExceedsLimit"
            return None

        rows = [{"id": i, "v": "x" * 1000} for i in range(1200)]  # about 1.2 MB: ten blocks
        store = make_store(azurite, container, FaultyTransport(rule=rule))
        writer = make_writer(store, block_size=128 * 1024)
        writer.write(rows[:700])
        writer.write(rows[700:])
        assert writer.cursor is not None and writer.cursor.segment == 1
        assert_exact(azurite, container, "out/data.jsonl", rows, writer)
        manifest = (
            BlobServiceClient.from_connection_string(azurite.connection_string)
            .get_blob_client(container, "out/data.jsonl.manifest/run-1")
            .download_blob()
            .readall()
        )
        records = [decoded.record for decoded in decode_records(manifest)]
        assert sum(isinstance(r, VoidRecord) for r in records) == 1
        assert [r.reason for r in records if isinstance(r, RolloverRecord)] == ["service refused more blocks"]
        # a resume re-derives the same digest from storage and carries on
        resumed = make_writer(make_store(azurite, container), block_size=128 * 1024, resume=True)
        resumed.prepare()
        assert resumed.content_hash == writer.content_hash
