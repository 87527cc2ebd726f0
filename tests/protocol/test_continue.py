"""``if_exists: continue``: a re-run with a new run id finishes an interrupted output, exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from elspeth_appendsink.encoders import JsonlEncoder
from elspeth_appendsink.errors import BlobExistsError, BlobTypeError, LeaseHeldError, UnencodableRow
from elspeth_appendsink.testing import SimulatedCrash
from tests.helpers import CsvStub, MemorySpace, expected_jsonl, make_writer, store_manifests, store_output

SMALL = {"block_size": 200, "segment_max_blocks": 5}


def rows(n: int = 60) -> list[dict[str, Any]]:
    return [{"id": i, "v": f"value-{i}"} for i in range(n)]


def run(store: Any, run_id: str, data: list[dict[str, Any]], calls: int = 3, **kw: Any) -> Any:
    writer = make_writer(store, run_id=run_id, **{**SMALL, **kw})
    size = -(-len(data) // calls)
    for start in range(0, len(data), size):
        writer.write(data[start : start + size])
    return writer


class TestContinue:
    def test_crash_at_every_request_then_rerun_completes_exactly_once(self, memory: MemorySpace) -> None:
        """Run 1 dies at request k (every k); run 2 (new run id, continue) leaves each row once, in order."""
        data = rows()
        clean = memory.store(at={})
        run(clean, "probe", data, blob_path="probe/d.jsonl", lease=False)
        for k in range(1, clean.count + 1):
            path = f"k{k}/d.jsonl"
            crashing = memory.store(at={k: "crash-after"})
            with pytest.raises(SimulatedCrash):
                run(crashing, f"first-{k}", data, blob_path=path, if_exists="continue", lease=False)
            second = run(
                memory.store(),
                f"second-{k}",
                data,
                blob_path=path,
                if_exists="continue",
                lease=False,
            )
            output = memory.output(path)
            assert output == expected_jsonl(data), f"crash at request {k}"
            committed = memory.manifests(path)
            assert sum(len(e.tokens) for e in committed) == len(data)
            import hashlib

            assert second.content_hash == hashlib.sha256(output).hexdigest() and second.size == len(output)

    def test_a_call_stopped_by_a_bad_row_among_replayed_rows_keeps_exactly_its_committed_rows(
        self, memory: MemorySpace
    ) -> None:
        """Continuing an output that holds every third row: the second run's blocks hold rows with
        replayed ones skipped between them. A bad row stops its call after some blocks landed; the
        retried call skips exactly the durable rows, of both runs, and appends the rest once."""
        encoder = JsonlEncoder(["id", "v"], mode="observed")
        # ~2 kB rows: slices of a few hundred rows, so blocks land before the bad row is encoded
        data = [{"id": i, "v": f"{i:05d}" + "x" * 2000} for i in range(1500)]
        options = {"encoder": encoder, "if_exists": "continue", "block_size": 65536}
        first = make_writer(memory.store(), run_id="first", **options)
        first.write(data[::3])
        first.close()
        second = make_writer(memory.store(), run_id="second", **options)
        with pytest.raises(UnencodableRow):
            second.write([*data[:1400], {"id": -1, "v": float("nan")}])
        landed = memory.output("out/data.jsonl").count(b"\n")
        assert landed > len(data[::3])  # some blocks of the stopped call are durable
        report = second.write(data)
        assert report.rows_skipped == landed
        expected = data[::3] + [row for i, row in enumerate(data) if i % 3]
        assert memory.output("out/data.jsonl") == b"".join(encoder.encode(expected))

    @pytest.mark.parametrize("small", [False, True], ids=["one-segment", "many-segments"])
    def test_a_third_and_fourth_run_continue_after_two_before_them(
        self, memory: MemorySpace, small: bool
    ) -> None:
        """Four runs in sequence, each continuing the output: every one after the second used
        to stop on the first run's last intents (checked against a segment that had grown since);
        each earlier run is settled as the run after it found it, and each row is there once."""
        data = rows(80)
        extra = SMALL if small else {"block_size": 4 * 1024 * 1024}
        for index in range(4):
            writer = make_writer(memory.store(), run_id=f"r{index}", if_exists="continue", **extra)
            writer.write(data[: 20 * (index + 1)])
            writer.close()
        assert store_output(memory.store(), "out/data.jsonl") == expected_jsonl(data)
        assert sum(len(e.tokens) for e in store_manifests(memory.store(), "out/data.jsonl")) == len(data)

    def test_rerun_of_a_completed_output_changes_no_byte(self, memory: MemorySpace) -> None:
        """Running the same rows again in continue mode appends nothing."""
        data = rows()
        first = run(memory.store(), "first", data, if_exists="continue")
        first.close()
        before = memory.output("out/data.jsonl")
        second = make_writer(memory.store(), run_id="second", if_exists="continue", **SMALL)
        report = second.write(data)
        assert report.rows_skipped == len(data) and report.rows_appended == 0
        assert report.skipped_from_runs == ("first",)
        assert memory.output("out/data.jsonl") == before

    def test_header_is_not_repeated_by_a_continuing_run(self, memory: MemorySpace) -> None:
        """The format header stays once at the start when a second run adds rows."""
        data = rows()
        first = run(memory.store(), "first", data[:30], encoder=CsvStub(), if_exists="continue")
        first.close()
        run(memory.store(), "second", data, encoder=CsvStub(), if_exists="continue")
        output = memory.output("out/data.jsonl")
        assert output == b"HEADER\n" + expected_jsonl(data)

    def test_a_live_writers_lease_is_not_broken_by_a_rerun(self, memory: MemorySpace) -> None:
        """While run 1 holds the lease, run 2 is refused naming run 1; after `unlock` it continues."""
        data = rows()
        store = memory.store()
        run(store, "first", data[:30], if_exists="continue")  # still holds its lease (never closed)
        second = make_writer(memory.store(), run_id="second", if_exists="continue", **SMALL)
        with pytest.raises(LeaseHeldError) as info:
            second.write(data)
        assert info.value.holder == "first"
        leased = (
            "out/data.seg000001.jsonl" if store.properties("out/data.seg000001.jsonl") else "out/data.jsonl"
        )
        store.break_lease(leased)  # what `elspeth-appendsink unlock --yes` does
        third = make_writer(memory.store(), run_id="third", if_exists="continue", **SMALL)
        third.write(data)
        assert memory.output("out/data.jsonl") == expected_jsonl(data)


class TestRefusals:
    def test_fail_mode_refuses_an_existing_blob_and_leaves_it(self, memory: MemorySpace) -> None:
        """if_exists: fail on an existing output: BlobExistsError, bytes untouched."""
        run(memory.store(), "first", rows()).close()
        before = memory.output("out/data.jsonl")
        with pytest.raises(BlobExistsError):
            make_writer(memory.store(), run_id="second").write(rows())
        assert memory.output("out/data.jsonl") == before

    def test_foreign_append_blob_is_never_continued(self, memory: MemorySpace) -> None:
        """An append blob this sink did not write: a clear error, the blob untouched."""
        raw = memory.base  # another writer's request, as the service sees it
        raw.create_append_blob("out/data.jsonl")
        raw.append_block("out/data.jsonl", b"somebody else's data\n", 0)
        with pytest.raises(BlobTypeError, match="no manifest"):
            make_writer(memory.store(), run_id="r", if_exists="continue").write(rows())
        assert raw.get("out/data.jsonl") == b"somebody else's data\n"

    def test_block_blob_at_the_path_is_refused(self, memory: MemorySpace) -> None:
        """A block blob at the path: a clear error naming it, the blob untouched."""
        raw = memory.base
        raw.put_if_missing("out/data.jsonl", b"block blob bytes")
        for mode in ("continue", "append"):
            with pytest.raises(BlobTypeError, match="not an append blob"):
                make_writer(memory.store(), run_id=f"r-{mode}", if_exists=mode).write(rows())
        assert raw.get("out/data.jsonl") == b"block blob bytes"
