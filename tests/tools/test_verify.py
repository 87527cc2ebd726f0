"""verify_output / inspect_output against Azurite: clean outputs verify, every tampering is located,
crashed runs are "needs resume" and never a problem, and nothing is ever written."""

from __future__ import annotations

import hashlib

import pytest

from elspeth_appendsink.core.manifest import BlockEntry
from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.errors import ConfigError, StorageError
from elspeth_appendsink.protocol.verify import ProblemKind, VerifyReport, inspect_output, verify_output
from elspeth_appendsink.storage import StorageCall
from elspeth_appendsink.testing import FaultyTransport
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import expected_jsonl, make_store, read_output
from tests.tools.outputs import (
    BLOB,
    batches,
    blob,
    break_lease,
    committed_entries,
    crash_run,
    data_append_rule,
    edit_entry_sha,
    first_call_blocks,
    flip_byte,
    manifest_records,
    read_blob,
    resume_run,
    rewrite_blob,
    segment,
    write_output,
)

pytestmark = pytest.mark.azurite

ALL_ROWS = 3 * 25
READS = {"list_blobs", "get_blob_properties", "download_range"}


def verify(azurite: Azurite, container: str, blob_path: str = BLOB, **kw: object) -> VerifyReport:
    return verify_output(make_store(azurite, container), blob_path, **kw)  # type: ignore[arg-type]


def kinds(report: VerifyReport) -> list[ProblemKind]:
    return [p.kind for p in report.problems]


class TestCleanOutputs:
    def test_multi_segment_output_verifies_with_its_counts(self, azurite: Azurite, container: str) -> None:
        """Every row, byte and segment is counted; the sha256 is the writer's content hash."""
        writer = write_output(azurite, container)
        report = verify(azurite, container)
        assert report.ok and report.problems == () and not report.needs_resume
        assert report.rows == ALL_ROWS
        assert report.bytes == writer.size == len(read_output(azurite, container, BLOB))
        assert report.sha256 == writer.content_hash
        assert len(report.segments) >= 3
        assert all(s.size == s.described and s.exists for s in report.segments)
        assert [r.run_id for r in report.runs] == ["run-1"]
        assert report.runs[0].entries == len(committed_entries(azurite, container))

    def test_sealed_output_verifies_and_reports_its_seals(self, azurite: Azurite, container: str) -> None:
        """A run that sealed on completion: every segment sealed at its recorded length."""
        write_output(azurite, container, seal=True)
        report = verify(azurite, container)
        assert report.ok
        assert all(s.sealed and s.recorded_seal == s.size for s in report.segments)
        assert report.runs[0].sealed

    def test_tiny_chunks_give_the_same_answer(self, azurite: Azurite, container: str) -> None:
        """61-byte reads (shorter than any block: regions straddle chunk edges) change nothing."""
        writer = write_output(azurite, container)
        report = verify(azurite, container, chunk=61)
        assert report.ok and report.sha256 == writer.content_hash

    def test_verify_only_reads(self, azurite: Azurite, container: str) -> None:
        """Every request verify sends is a read (list, properties, ranged download)."""
        write_output(azurite, container)
        calls: list[StorageCall] = []
        verify_output(make_store(azurite, container, calls=calls), BLOB)
        assert calls and {c.operation for c in calls} <= READS

    def test_progress_is_reported_up_to_the_total(self, azurite: Azurite, container: str) -> None:
        """The progress callback ends at (total, total), never going backwards."""
        write_output(azurite, container)
        seen: list[tuple[int, int]] = []
        report = verify(azurite, container, chunk=100, progress=lambda d, t: seen.append((d, t)))
        assert seen[0] == (0, report.bytes) and seen[-1] == (report.bytes, report.bytes)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    def test_continued_output_verifies_as_one_chain(self, azurite: Azurite, container: str) -> None:
        """Two runs, the second continuing the first: both runs, all rows, linked."""
        write_output(azurite, container, run_id="run-1")
        second = write_output(azurite, container, run_id="run-2", if_exists="continue", first_id=1000)
        report = verify(azurite, container)
        assert report.ok, report.problems
        assert [r.run_id for r in report.runs] == ["run-1", "run-2"]
        assert report.runs[1].continues == ("run-1",)
        assert report.rows == 2 * ALL_ROWS
        assert report.sha256 == second.content_hash

    def test_pre_existing_bytes_are_covered_and_hashed(self, azurite: Azurite, container: str) -> None:
        """if_exists: append over a foreign blob: its bytes are the first run's hashed base region."""
        legacy = b"legacy line\n" * 10
        client = blob(azurite, container, BLOB)
        client.create_append_blob()
        client.append_block(legacy)
        write_output(azurite, container, if_exists="append")
        report = verify(azurite, container)
        assert report.ok, report.problems
        assert report.bytes == len(legacy) + len(expected_jsonl([r for b in batches() for r in b]))
        flip_byte(azurite, container, BLOB, 3)
        tampered = verify(azurite, container)
        assert kinds(tampered) == [ProblemKind.SHA_MISMATCH]
        problem = tampered.problems[0]
        assert problem.location.blob == BLOB and problem.location.offset == 0
        assert "before run run-1" in problem.message


class TestTampering:
    def test_foreign_bytes_appended_to_a_segment_are_located(self, azurite: Azurite, container: str) -> None:
        """Bytes appended behind the sink's back: one undescribed_bytes problem at the old end."""
        write_output(azurite, container)
        last = verify(azurite, container).segments[-1]
        blob(azurite, container, last.name).append_block(b"FOREIGN\n")
        report = verify(azurite, container)
        assert not report.ok
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        location = report.problems[0].location
        assert (location.blob, location.offset) == (last.name, last.size)
        assert f"[{last.size}, {last.size + 8})" in report.problems[0].message

    def test_one_flipped_byte_names_its_entry(self, azurite: Azurite, container: str) -> None:
        """One byte changed inside a block of segment 1: sha_mismatch at that entry's offset and record."""
        write_output(azurite, container, seal=True)
        entries = [e for e in committed_entries(azurite, container) if e.segment == 1]
        target = entries[2]
        flip_byte(azurite, container, segment(1), target.offset + 5)
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.SHA_MISMATCH]
        location = report.problems[0].location
        assert location.blob == segment(1)
        assert location.offset == target.offset and location.record == target.seq
        assert location.manifest == manifest_name(BLOB, "run-1")
        assert f"entry {target.seq} of run run-1" in report.problems[0].message

    def test_edited_manifest_entry_breaks_the_chain_and_its_hash(
        self, azurite: Azurite, container: str
    ) -> None:
        """One hex digit of a middle entry's sha256 edited: the next record's link breaks and the
        entry no longer matches its bytes; later records are still used (no cascade)."""
        write_output(azurite, container)
        entries = committed_entries(azurite, container)
        target = entries[len(entries) // 2]
        edit_entry_sha(azurite, container, target.seq)
        report = verify(azurite, container)
        assert not report.ok
        assert kinds(report) == [ProblemKind.CHAIN_BROKEN, ProblemKind.SHA_MISMATCH]
        chain, sha = report.problems
        assert chain.location.blob == manifest_name(BLOB, "run-1")
        assert chain.location.record == target.seq + 1
        assert f"record {target.seq} or {target.seq + 1} was edited" in chain.message
        assert sha.location.record == target.seq and sha.location.offset == target.offset
        assert report.rows == ALL_ROWS

    def test_edited_last_record_is_caught_by_its_hash(self, azurite: Azurite, container: str) -> None:
        """The last record has no successor to break: its bytes no longer match."""
        write_output(azurite, container)
        last = committed_entries(azurite, container)[-1]
        edit_entry_sha(azurite, container, last.seq)
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.SHA_MISMATCH]
        assert report.problems[0].location.record == last.seq

    def test_torn_manifest_tail_is_reported(self, azurite: Azurite, container: str) -> None:
        """Bytes appended to a manifest that are not a whole record: manifest_corrupt at that offset."""
        write_output(azurite, container)
        name = manifest_name(BLOB, "run-1")
        size = len(read_blob(azurite, container, name))
        count = len(manifest_records(azurite, container))
        blob(azurite, container, name).append_block(b"EAS1\x00\x00")
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.MANIFEST_CORRUPT]
        assert report.problems[0].location.offset == size
        assert report.problems[0].location.record == count

    def test_missing_segment_is_missing_bytes(self, azurite: Azurite, container: str) -> None:
        """A deleted middle segment: the manifests describe bytes that are gone."""
        write_output(azurite, container, seal=True)
        blob(azurite, container, segment(1)).delete_blob()
        report = verify(azurite, container)
        assert ProblemKind.MISSING_BYTES in kinds(report)
        assert any(p.location.blob == segment(1) for p in report.problems)

    def test_recorded_seal_not_in_storage_is_a_problem(self, azurite: Azurite, container: str) -> None:
        """A segment the rollover sealed, replaced by an unsealed copy: a seal problem naming the record."""
        write_output(azurite, container)
        rewrite_blob(azurite, container, segment(0), read_blob(azurite, container, segment(0)), seal=False)
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.SEAL]
        rollover = next(d.record for d in manifest_records(azurite, container) if d.record.kind == "rollover")
        assert report.problems[0].location.record == rollover.seq

    def test_blob_without_manifest_is_undescribed(self, azurite: Azurite, container: str) -> None:
        """A plain append blob at the path: nothing describes it."""
        client = blob(azurite, container, BLOB)
        client.create_append_blob()
        client.append_block(b"not ours\n")
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        assert report.runs == () and any("no manifest" in n for n in report.notes)

    def test_nothing_at_the_path_is_a_usage_error(self, azurite: Azurite, container: str) -> None:
        """A path with no segment and no manifest raises ConfigError naming blob_path."""
        with pytest.raises(ConfigError) as info:
            verify(azurite, container, "no/such/output.csv")
        assert info.value.option == "blob_path"

    def test_missing_container_is_a_storage_error(self, azurite: Azurite) -> None:
        """A container that does not exist raises StorageError (not a report)."""
        with pytest.raises(StorageError):
            verify(azurite, "no-such-container-here")


class TestCrashedRuns:
    def test_crash_after_a_data_append_leaves_it_committed(self, azurite: Azurite, container: str) -> None:
        """The last intent's bytes landed: that is a committed block (the protocol has no commit
        record), so the output verifies with those rows and no resume is owed to storage."""
        last = first_call_blocks(azurite, container)  # the end of a batch
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(last, "crash-after")))
        entries = committed_entries(azurite, container)
        report = verify(azurite, container)
        assert report.ok and not report.needs_resume
        assert report.runs[0].pending is None
        assert report.rows == entries[-1].tokens.end and report.runs[0].entries == len(entries)

    def test_crash_before_a_data_append_needs_resume(self, azurite: Azurite, container: str) -> None:
        """The last intent's bytes never landed: verified, and a resume voids it."""
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(3, "crash-before")))
        report = verify(azurite, container)
        assert report.ok and report.needs_resume
        assert report.runs[0].pending is not None and "did not land" in report.runs[0].pending

    @pytest.mark.parametrize("fault", ["crash-before", "crash-after"])
    def test_bytes_beyond_an_unfinished_intent_are_a_problem(
        self, azurite: Azurite, container: str, fault: str
    ) -> None:
        """Foreign bytes after a crash at a data append: undescribed, located where they start."""
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(3, fault)))
        pending = manifest_records(azurite, container)[-1].record
        assert isinstance(pending, BlockEntry)  # the crash left a batch of intents at the end
        name = segment(pending.segment)
        size = blob(azurite, container, name).get_blob_properties().size
        break_lease(azurite, container, name)
        blob(azurite, container, name).append_block(b"XYZ")
        report = verify(azurite, container)
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        assert (report.problems[0].location.blob, report.problems[0].location.offset) == (name, size)

    def test_every_crash_point_verifies_then_resumes_clean(self, azurite: Azurite, container: str) -> None:
        """Crash after every storage request of a sealed three-call run: verify never reports a
        problem (at most a resume), and after the resume the output verifies with every row."""
        clean = FaultyTransport()
        crash_run(azurite, container, clean, blob_path="clean/d.jsonl", run_id="clean", seal=True)
        needing = 0
        for k in range(1, clean.count + 1):
            path, run_id = f"crash{k}/d.jsonl", f"crash-{k}"
            crashed_in = crash_run(
                azurite,
                container,
                FaultyTransport(at={k: "crash-after"}),
                blob_path=path,
                run_id=run_id,
                seal=True,
            )
            assert crashed_in is not None
            try:
                report = verify(azurite, container, path)
            except ConfigError:  # crashed before segment 0 existed: nothing there yet
                report = None
            if report is not None:
                assert report.ok, (k, report.problems)
                needing += report.needs_resume
            resumed = resume_run(
                azurite, container, min(crashed_in, 2), blob_path=path, run_id=run_id, seal=True
            )
            final = verify(azurite, container, path)
            assert final.ok and not final.needs_resume, (k, final.problems, final.runs)
            assert final.rows == ALL_ROWS and final.sha256 == resumed.content_hash
            assert (
                final.sha256 == hashlib.sha256(expected_jsonl([r for b in batches() for r in b])).hexdigest()
            )
        assert needing >= 3  # crashes between an intent and its block, in a rollover, in the seal


class TestInspect:
    def test_crashed_run_needs_resume_and_holds_its_lease(self, azurite: Azurite, container: str) -> None:
        """Crash between an intent and its block: inspect says a resume is needed and names the run
        holding the lease (probed with that run's lease id)."""
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(4, "crash-before")))
        report = inspect_output(make_store(azurite, container), BLOB)
        assert report.needs_resume and report.problems == ()
        (leased,) = report.leases
        assert leased.lease_state == "leased" and leased.lease_holder == "run-1"
        run = report.runs[0]
        assert run.pending is not None and "did not land" in run.pending
        assert run.cursor is not None and run.cursor.next_token == run.rows

    def test_crash_between_blocks_shows_the_lease_still_held(self, azurite: Azurite, container: str) -> None:
        """Crash right after a batch's last block landed: nothing is unfinished in storage, but the
        lease is held."""
        last = first_call_blocks(azurite, container)  # the end of a batch
        crash_run(azurite, container, FaultyTransport(rule=data_append_rule(last, "crash-after")))
        report = inspect_output(make_store(azurite, container), BLOB)
        assert not report.needs_resume
        assert [(s.lease_state, s.lease_holder) for s in report.leases] == [("leased", "run-1")]

    def test_finished_run_needs_nothing(self, azurite: Azurite, container: str) -> None:
        """A closed run: no lease, no resume, cursor at the end of the output."""
        writer = write_output(azurite, container)
        report = inspect_output(make_store(azurite, container), BLOB, run_id="run-1")
        assert not report.needs_resume and report.leases == () and report.problems == ()
        cursor = report.runs[0].cursor
        assert cursor is not None and cursor.total_bytes == writer.size and cursor.next_token == ALL_ROWS

    def test_inspect_sees_size_mismatches_without_reading_data(
        self, azurite: Azurite, container: str
    ) -> None:
        """Foreign bytes show as undescribed from sizes alone; no segment byte is downloaded."""
        write_output(azurite, container)
        last = inspect_output(make_store(azurite, container), BLOB).segments[-1]
        blob(azurite, container, last.name).append_block(b"FOREIGN\n")
        calls: list[StorageCall] = []
        report = inspect_output(make_store(azurite, container, calls=calls), BLOB)
        assert [p.kind for p in report.problems] == [ProblemKind.UNDESCRIBED_BYTES]
        downloads = {c.blob for c in calls if c.operation == "download_range"}
        assert downloads == {manifest_name(BLOB, "run-1")}

    def test_unknown_run_is_a_usage_error(self, azurite: Azurite, container: str) -> None:
        """--run-id of a run that has no manifest here raises ConfigError naming run_id."""
        write_output(azurite, container)
        with pytest.raises(ConfigError) as info:
            inspect_output(make_store(azurite, container), BLOB, run_id="nope")
        assert info.value.option == "run_id" and "run-1" in str(info.value)


def test_writer_and_verify_agree_on_a_resumed_run(azurite: Azurite, container: str) -> None:
    """A run resumed after a crash (a void record in its manifest) verifies with each row once."""
    crashed_in = crash_run(azurite, container, FaultyTransport(rule=data_append_rule(5, "crash-before")))
    assert crashed_in is not None
    resume_run(azurite, container, crashed_in)
    report = verify(azurite, container)
    assert report.ok and not report.needs_resume
    assert report.runs[0].voided == 1 and report.rows == ALL_ROWS
    assert read_output(azurite, container, BLOB) == expected_jsonl([r for b in batches() for r in b])
