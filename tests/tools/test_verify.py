"""verify_output / inspect_output over the memory store: clean outputs verify, every tampering is located,
crashed runs are "needs resume" and never a problem, and nothing is ever written."""

from __future__ import annotations

import hashlib

import pytest

from elspeth_appendsink.core.manifest import BlockEntry
from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.errors import ConfigError, StorageError
from elspeth_appendsink.protocol.verify import ProblemKind, VerifyReport, inspect_output, verify_output
from elspeth_appendsink.storage import StorageCall
from tests.helpers import MemorySpace, expected_jsonl, make_store
from tests.tools.outputs import (
    BLOB,
    append_raw,
    batches,
    blob_size,
    break_lease,
    committed_entries,
    crash_run,
    create_raw,
    data_append_rule,
    delete_raw,
    edit_entry_sha,
    faulty,
    first_call_blocks,
    flip_byte,
    manifest_records,
    read_blob,
    resume_run,
    rewrite_blob,
    segment,
    write_output,
)

ALL_ROWS = 3 * 25
READS = {"list_blobs", "get_blob_properties", "download_range"}


def verify(memory: MemorySpace, container: str, blob_path: str = BLOB, **kw: object) -> VerifyReport:
    return verify_output(make_store(memory, container), blob_path, **kw)  # type: ignore[arg-type]


def kinds(report: VerifyReport) -> list[ProblemKind]:
    return [p.kind for p in report.problems]


class TestCleanOutputs:
    def test_multi_segment_output_verifies_with_its_counts(self, memory: MemorySpace) -> None:
        """Every row, byte and segment is counted; the sha256 is the writer's content hash."""
        writer = write_output(memory, memory.container)
        report = verify(memory, memory.container)
        assert report.ok and report.problems == () and not report.needs_resume
        assert report.rows == ALL_ROWS
        assert report.bytes == writer.size == len(memory.output(BLOB))
        assert report.sha256 == writer.content_hash
        assert len(report.segments) >= 3
        assert all(s.size == s.described and s.exists for s in report.segments)
        assert [r.run_id for r in report.runs] == ["run-1"]
        assert report.runs[0].entries == len(committed_entries(memory, memory.container))

    def test_sealed_output_verifies_and_reports_its_seals(self, memory: MemorySpace) -> None:
        """A run that sealed on completion: every segment sealed at its recorded length."""
        write_output(memory, memory.container, seal=True)
        report = verify(memory, memory.container)
        assert report.ok
        assert all(s.sealed and s.recorded_seal == s.size for s in report.segments)
        assert report.runs[0].sealed

    def test_tiny_chunks_give_the_same_answer(self, memory: MemorySpace) -> None:
        """61-byte reads (shorter than any block: regions straddle chunk edges) change nothing."""
        writer = write_output(memory, memory.container)
        report = verify(memory, memory.container, chunk=61)
        assert report.ok and report.sha256 == writer.content_hash

    def test_verify_only_reads(self, memory: MemorySpace) -> None:
        """Every request verify sends is a read (list, properties, ranged download)."""
        write_output(memory, memory.container)
        calls: list[StorageCall] = []
        verify_output(make_store(memory, memory.container, calls=calls), BLOB)
        assert calls and {c.operation for c in calls} <= READS

    def test_progress_is_reported_up_to_the_total(self, memory: MemorySpace) -> None:
        """The progress callback ends at (total, total), never going backwards."""
        write_output(memory, memory.container)
        seen: list[tuple[int, int]] = []
        report = verify(memory, memory.container, chunk=100, progress=lambda d, t: seen.append((d, t)))
        assert seen[0] == (0, report.bytes) and seen[-1] == (report.bytes, report.bytes)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    def test_continued_output_verifies_as_one_chain(self, memory: MemorySpace) -> None:
        """Two runs, the second continuing the first: both runs, all rows, linked."""
        write_output(memory, memory.container, run_id="run-1")
        second = write_output(memory, memory.container, run_id="run-2", if_exists="continue", first_id=1000)
        report = verify(memory, memory.container)
        assert report.ok, report.problems
        assert [r.run_id for r in report.runs] == ["run-1", "run-2"]
        assert report.runs[1].continues == ("run-1",)
        assert report.rows == 2 * ALL_ROWS
        assert report.sha256 == second.content_hash

    def test_pre_existing_bytes_are_covered_and_hashed(self, memory: MemorySpace) -> None:
        """if_exists: append over a foreign blob: its bytes are the first run's hashed base region."""
        legacy = b"legacy line\n" * 10
        create_raw(memory, memory.container, BLOB)
        append_raw(memory, memory.container, BLOB, legacy)
        write_output(memory, memory.container, if_exists="append")
        report = verify(memory, memory.container)
        assert report.ok, report.problems
        assert report.bytes == len(legacy) + len(expected_jsonl([r for b in batches() for r in b]))
        flip_byte(memory, memory.container, BLOB, 3)
        tampered = verify(memory, memory.container)
        assert kinds(tampered) == [ProblemKind.SHA_MISMATCH]
        problem = tampered.problems[0]
        assert problem.location.blob == BLOB and problem.location.offset == 0
        assert "before run run-1" in problem.message


class TestTampering:
    def test_foreign_bytes_appended_to_a_segment_are_located(self, memory: MemorySpace) -> None:
        """Bytes appended behind the sink's back: one undescribed_bytes problem at the old end."""
        write_output(memory, memory.container)
        last = verify(memory, memory.container).segments[-1]
        append_raw(memory, memory.container, last.name, b"FOREIGN\n")
        report = verify(memory, memory.container)
        assert not report.ok
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        location = report.problems[0].location
        assert (location.blob, location.offset) == (last.name, last.size)
        assert f"[{last.size}, {last.size + 8})" in report.problems[0].message

    def test_one_flipped_byte_names_its_entry(self, memory: MemorySpace) -> None:
        """One byte changed inside a block of segment 1: sha_mismatch at that entry's offset and record."""
        write_output(memory, memory.container, seal=True)
        entries = [e for e in committed_entries(memory, memory.container) if e.segment == 1]
        target = entries[2]
        flip_byte(memory, memory.container, segment(1), target.offset + 5)
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.SHA_MISMATCH]
        location = report.problems[0].location
        assert location.blob == segment(1)
        assert location.offset == target.offset and location.record == target.seq
        assert location.manifest == manifest_name(BLOB, "run-1")
        assert f"entry {target.seq} of run run-1" in report.problems[0].message

    def test_edited_manifest_entry_breaks_the_chain_and_its_hash(self, memory: MemorySpace) -> None:
        """One hex digit of a middle entry's sha256 edited: the next record's link breaks and the
        entry no longer matches its bytes; later records are still used (no cascade)."""
        write_output(memory, memory.container)
        entries = committed_entries(memory, memory.container)
        target = entries[len(entries) // 2]
        edit_entry_sha(memory, memory.container, target.seq)
        report = verify(memory, memory.container)
        assert not report.ok
        assert kinds(report) == [ProblemKind.CHAIN_BROKEN, ProblemKind.SHA_MISMATCH]
        chain, sha = report.problems
        assert chain.location.blob == manifest_name(BLOB, "run-1")
        assert chain.location.record == target.seq + 1
        assert f"record {target.seq} or {target.seq + 1} was edited" in chain.message
        assert sha.location.record == target.seq and sha.location.offset == target.offset
        assert report.rows == ALL_ROWS

    def test_edited_last_record_is_caught_by_its_hash(self, memory: MemorySpace) -> None:
        """The last record has no successor to break: its bytes no longer match."""
        write_output(memory, memory.container)
        last = committed_entries(memory, memory.container)[-1]
        edit_entry_sha(memory, memory.container, last.seq)
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.SHA_MISMATCH]
        assert report.problems[0].location.record == last.seq

    def test_torn_manifest_tail_is_reported(self, memory: MemorySpace) -> None:
        """Bytes appended to a manifest that are not a whole record: manifest_corrupt at that offset."""
        write_output(memory, memory.container)
        name = manifest_name(BLOB, "run-1")
        size = len(read_blob(memory, memory.container, name))
        count = len(manifest_records(memory, memory.container))
        append_raw(memory, memory.container, name, b"EAS1\x00\x00")
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.MANIFEST_CORRUPT]
        assert report.problems[0].location.offset == size
        assert report.problems[0].location.record == count

    def test_missing_segment_is_missing_bytes(self, memory: MemorySpace) -> None:
        """A deleted middle segment: the manifests describe bytes that are gone."""
        write_output(memory, memory.container, seal=True)
        delete_raw(memory, memory.container, segment(1))
        report = verify(memory, memory.container)
        assert ProblemKind.MISSING_BYTES in kinds(report)
        assert any(p.location.blob == segment(1) for p in report.problems)

    def test_recorded_seal_not_in_storage_is_a_problem(self, memory: MemorySpace) -> None:
        """A segment the rollover sealed, replaced by an unsealed copy: a seal problem naming the record."""
        write_output(memory, memory.container)
        rewrite_blob(
            memory, memory.container, segment(0), read_blob(memory, memory.container, segment(0)), seal=False
        )
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.SEAL]
        rollover = next(
            d.record for d in manifest_records(memory, memory.container) if d.record.kind == "rollover"
        )
        assert report.problems[0].location.record == rollover.seq

    def test_blob_without_manifest_is_undescribed(self, memory: MemorySpace) -> None:
        """A plain append blob at the path: nothing describes it."""
        create_raw(memory, memory.container, BLOB)
        append_raw(memory, memory.container, BLOB, b"not ours\n")
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        assert report.runs == () and any("no manifest" in n for n in report.notes)

    def test_nothing_at_the_path_is_a_usage_error(self, memory: MemorySpace) -> None:
        """A path with no segment and no manifest raises ConfigError naming blob_path."""
        with pytest.raises(ConfigError) as info:
            verify(memory, memory.container, "no/such/output.csv")
        assert info.value.option == "blob_path"

    def test_missing_container_is_a_storage_error(self, memory: MemorySpace) -> None:
        """A container that does not exist raises StorageError (not a report)."""
        with pytest.raises(StorageError):
            verify(memory, "no-such-container-here")


class TestCrashedRuns:
    def test_crash_after_a_data_append_leaves_it_committed(self, memory: MemorySpace) -> None:
        """The last intent's bytes landed: that is a committed block (the protocol has no commit
        record), so the output verifies with those rows and no resume is owed to storage."""
        last = first_call_blocks(memory, memory.container)  # the end of a batch
        crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(last, "crash-after")))
        entries = committed_entries(memory, memory.container)
        report = verify(memory, memory.container)
        assert report.ok and not report.needs_resume
        assert report.runs[0].pending is None
        assert report.rows == entries[-1].tokens.end and report.runs[0].entries == len(entries)

    def test_crash_before_a_data_append_needs_resume(self, memory: MemorySpace) -> None:
        """The last intent's bytes never landed: verified, and a resume voids it."""
        crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(3, "crash-before")))
        report = verify(memory, memory.container)
        assert report.ok and report.needs_resume
        assert report.runs[0].pending is not None and "did not land" in report.runs[0].pending

    @pytest.mark.parametrize("fault", ["crash-before", "crash-after"])
    def test_bytes_beyond_an_unfinished_intent_are_a_problem(self, memory: MemorySpace, fault: str) -> None:
        """Foreign bytes after a crash at a data append: undescribed, located where they start."""
        crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(3, fault)))
        pending = manifest_records(memory, memory.container)[-1].record
        assert isinstance(pending, BlockEntry)  # the crash left a batch of intents at the end
        name = segment(pending.segment)
        size = blob_size(memory, memory.container, name)
        break_lease(memory, memory.container, name)
        append_raw(memory, memory.container, name, b"XYZ")
        report = verify(memory, memory.container)
        assert kinds(report) == [ProblemKind.UNDESCRIBED_BYTES]
        assert (report.problems[0].location.blob, report.problems[0].location.offset) == (name, size)

    def test_every_crash_point_verifies_then_resumes_clean(self, memory: MemorySpace) -> None:
        """Crash after every storage request of a sealed three-call run: verify never reports a
        problem (at most a resume), and after the resume the output verifies with every row."""
        clean = faulty(
            memory,
        )
        crash_run(memory, memory.container, clean, blob_path="clean/d.jsonl", run_id="clean", seal=True)
        needing = 0
        for k in range(1, clean.count + 1):
            path, run_id = f"crash{k}/d.jsonl", f"crash-{k}"
            crashed_in = crash_run(
                memory,
                memory.container,
                faulty(memory, at={k: "crash-after"}),
                blob_path=path,
                run_id=run_id,
                seal=True,
            )
            assert crashed_in is not None
            try:
                report = verify(memory, memory.container, path)
            except ConfigError:  # crashed before segment 0 existed: nothing there yet
                report = None
            if report is not None:
                assert report.ok, (k, report.problems)
                needing += report.needs_resume
            resumed = resume_run(
                memory, memory.container, min(crashed_in, 2), blob_path=path, run_id=run_id, seal=True
            )
            final = verify(memory, memory.container, path)
            assert final.ok and not final.needs_resume, (k, final.problems, final.runs)
            assert final.rows == ALL_ROWS and final.sha256 == resumed.content_hash
            assert (
                final.sha256 == hashlib.sha256(expected_jsonl([r for b in batches() for r in b])).hexdigest()
            )
        assert needing >= 3  # crashes between an intent and its block, in a rollover, in the seal


class TestInspect:
    def test_crashed_run_needs_resume_and_holds_its_lease(self, memory: MemorySpace) -> None:
        """Crash between an intent and its block: inspect says a resume is needed and names the run
        holding the lease (probed with that run's lease id)."""
        crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(4, "crash-before")))
        report = inspect_output(make_store(memory, memory.container), BLOB)
        assert report.needs_resume and report.problems == ()
        (leased,) = report.leases
        assert leased.lease_state == "leased" and leased.lease_holder == "run-1"
        run = report.runs[0]
        assert run.pending is not None and "did not land" in run.pending
        assert run.cursor is not None and run.cursor.next_token == run.rows

    def test_crash_between_blocks_shows_the_lease_still_held(self, memory: MemorySpace) -> None:
        """Crash right after a batch's last block landed: nothing is unfinished in storage, but the
        lease is held."""
        last = first_call_blocks(memory, memory.container)  # the end of a batch
        crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(last, "crash-after")))
        report = inspect_output(make_store(memory, memory.container), BLOB)
        assert not report.needs_resume
        assert [(s.lease_state, s.lease_holder) for s in report.leases] == [("leased", "run-1")]

    def test_finished_run_needs_nothing(self, memory: MemorySpace) -> None:
        """A closed run: no lease, no resume, cursor at the end of the output."""
        writer = write_output(memory, memory.container)
        report = inspect_output(make_store(memory, memory.container), BLOB, run_id="run-1")
        assert not report.needs_resume and report.leases == () and report.problems == ()
        cursor = report.runs[0].cursor
        assert cursor is not None and cursor.total_bytes == writer.size and cursor.next_token == ALL_ROWS

    def test_inspect_sees_size_mismatches_without_reading_data(self, memory: MemorySpace) -> None:
        """Foreign bytes show as undescribed from sizes alone; no segment byte is downloaded."""
        write_output(memory, memory.container)
        last = inspect_output(make_store(memory, memory.container), BLOB).segments[-1]
        append_raw(memory, memory.container, last.name, b"FOREIGN\n")
        calls: list[StorageCall] = []
        report = inspect_output(make_store(memory, memory.container, calls=calls), BLOB)
        assert [p.kind for p in report.problems] == [ProblemKind.UNDESCRIBED_BYTES]
        downloads = {c.blob for c in calls if c.operation == "download_range"}
        assert downloads == {manifest_name(BLOB, "run-1")}

    def test_unknown_run_is_a_usage_error(self, memory: MemorySpace) -> None:
        """--run-id of a run that has no manifest here raises ConfigError naming run_id."""
        write_output(memory, memory.container)
        with pytest.raises(ConfigError) as info:
            inspect_output(make_store(memory, memory.container), BLOB, run_id="nope")
        assert info.value.option == "run_id" and "run-1" in str(info.value)


def test_writer_and_verify_agree_on_a_resumed_run(memory: MemorySpace) -> None:
    """A run resumed after a crash (a void record in its manifest) verifies with each row once."""
    crashed_in = crash_run(memory, memory.container, faulty(memory, rule=data_append_rule(5, "crash-before")))
    assert crashed_in is not None
    resume_run(memory, memory.container, crashed_in)
    report = verify(memory, memory.container)
    assert report.ok and not report.needs_resume
    assert report.runs[0].voided == 1 and report.rows == ALL_ROWS
    assert memory.output(BLOB) == expected_jsonl([r for b in batches() for r in b])
