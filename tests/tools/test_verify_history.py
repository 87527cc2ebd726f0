"""verify and inspect over an output's history of runs, on Azurite, over every format: what they
prove, what they say they did not prove, and how they name runs that do not follow one another.

* an ``append`` onto a blob something else wrote: its bytes are an *unverified base* (offset,
  length, sha256 checked against the run's record), never counted as described, and the verdict
  says so (exit 0: the base is the user's own file, the rest is proven);
* runs chained by ``append`` and ``continue`` in any mix verify as one chain;
* an ``append`` written before appends were chained (its base is the earlier run's output, its
  open record names no earlier run) is reported as exactly that, not as a broken chain;
* two runs claiming the same bytes (two writers at once, without a lease) fail naming both,
  and the totals count each byte once.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import replace
from typing import Any

import pytest

from elspeth_appendsink.core.manifest import OpenRecord, decode_records, encode_record, record_hash
from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.protocol.verify import (
    InspectReport,
    ProblemKind,
    VerifyReport,
    inspect_output,
    verify_output,
)
from elspeth_appendsink.storage.faults import operation_of
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.tools.cli import EXIT_OK, EXIT_PROBLEM, main
from tests.helpers import expected_jsonl, make_store, make_writer, read_output
from tests.hostile.conftest import as_written, decode
from tests.sink import conftest as sink_fixtures
from tests.sink.conftest import SCHEMA, Options
from tests.tools.outputs import blob, break_lease, flip_byte, read_blob, rewrite_blob

pytestmark = pytest.mark.azurite

make_options = sink_fixtures.make_options  # the sink suites' options fixture, shared

FORMATS = ("csv", "jsonl", "arrow")
N = 40  # rows per run


def rows(first: int, n: int = N) -> list[dict[str, Any]]:
    return [{"id": first + i, "name": f"row-{first + i}", "kind": "k"} for i in range(n)]


def path_of(fmt: str, tag: str = "out") -> str:
    return f"{tag}/data.{fmt}"


def run(options: dict[str, Any], run_id: str, data: list[dict[str, Any]]) -> None:
    """One complete run of the sink writing ``data`` in one call."""
    sink = AzureAppendBlobSink(options)
    ctx = RecordingContext(run_id=run_id)
    try:
        sink.write(data, ctx)
        sink.on_complete(ctx)
    finally:
        sink.close()


def verify(azurite: Azurite, container: str, blob_path: str) -> VerifyReport:
    return verify_output(make_store(azurite, container), blob_path)


def inspect(azurite: Azurite, container: str, blob_path: str) -> InspectReport:
    return inspect_output(make_store(azurite, container), blob_path)


def cli(azurite: Azurite, *argv: str) -> tuple[int, str]:
    """Run ``elspeth-appendsink`` in-process: its exit code and what it printed."""
    out = io.StringIO()
    code = main(
        list(argv),
        env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string},
        stdin=io.StringIO(""),
        stdout=out,
        stderr=io.StringIO(),
    )
    return code, out.getvalue()


def foreign_blob(azurite: Azurite, container: str, make_options: Options, fmt: str, path: str) -> bytes:
    """A blob at ``path`` that something else wrote: the bytes of a scratch output of the format,
    in a plain append blob without this sink's metadata or manifest. Returns its bytes."""
    scratch = path_of(fmt, "scratch")
    run(make_options(format=fmt, blob_path=scratch), "scratch", rows(10_000))
    data = read_blob(azurite, container, scratch)
    client = blob(azurite, container, path)
    client.create_append_blob()
    client.append_block(data)
    return data


def kinds(report: VerifyReport | InspectReport) -> list[ProblemKind]:
    return [p.kind for p in report.problems]


class TestUnverifiedBase:
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_append_onto_a_foreign_blob_is_verified_except_its_base(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str
    ) -> None:
        """The foreign bytes are an unverified base (offset 0, their length, sha256 matched),
        never described: rows count only the sink's, the verdict and JSON say what was not
        proven, and the exit code is 0."""
        path = path_of(fmt)
        base = foreign_blob(azurite, container, make_options, fmt, path)
        run(make_options(format=fmt, blob_path=path, if_exists="append"), "r1", rows(0))
        size = len(read_output(azurite, container, path))
        report = verify(azurite, container, path)
        assert report.ok and report.problems == (), report.problems
        assert report.verdict == "verified_except_base"
        assert report.base is not None
        assert (report.base.blob, report.base.offset, report.base.length) == (path, 0, len(base))
        assert report.base.sha256 == hashlib.sha256(base).hexdigest() and report.base.matches is True
        assert report.base.run_id == "r1" and report.base.written_by is None
        assert report.rows == N  # not the base's rows
        assert (report.segments[0].described, report.segments[0].base) == (size - len(base), len(base))
        assert report.bytes == size

        code, text = cli(azurite, "verify", "--container", container, "--blob-path", path)
        assert code == EXIT_OK, text
        assert f"VERIFIED, except an unverified base of {len(base):,} bytes at offset 0 of {path}" in text
        assert f"Rows     {N} (written by this sink; not the base's)" in text
        code, text = cli(azurite, "verify", "--container", container, "--blob-path", path, "--json")
        assert code == EXIT_OK
        doc = json.loads(text)
        assert doc["ok"] is True and doc["verdict"] == "verified_except_base" and doc["rows"] == N
        assert doc["unverified_base"]["length"] == len(base) and doc["unverified_base"]["matches"] is True

        shown = inspect(azurite, container, path)
        assert shown.base is not None and shown.base.length == len(base) and shown.base.matches is None
        code, text = cli(azurite, "inspect", "--container", container, "--blob-path", path)
        assert code == EXIT_OK and f"bytes [0, {len(base)}) of {path} were there before run r1" in text

    def test_a_changed_base_is_not_verified(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """One byte of the base changed after the run appended: sha_mismatch at offset 0, and the
        base says it does not match."""
        path = path_of("jsonl")
        foreign_blob(azurite, container, make_options, "jsonl", path)
        run(make_options(blob_path=path, if_exists="append"), "r1", rows(0))
        flip_byte(azurite, container, path, 5)
        report = verify(azurite, container, path)
        assert kinds(report) == [ProblemKind.SHA_MISMATCH] and report.verdict == "not_verified"
        assert report.problems[0].location.offset == 0
        assert report.base is not None and report.base.matches is False

    def test_an_output_without_a_base_is_plainly_verified(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """No base: verdict verified, no base in the JSON, every byte described."""
        run(make_options(if_exists="append"), "r1", rows(0))
        report = verify(azurite, container, "out/data.jsonl")
        assert report.verdict == "verified" and report.base is None
        assert report.as_dict()["unverified_base"] is None
        assert report.segments[0].described == report.segments[0].size

    def test_a_base_this_sink_wrote_under_a_lost_manifest_is_a_problem(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """Run r0's manifest deleted, then a run appended over r0's bytes (as a sink before the
        lost-manifest refusal did): not verified, naming r0 as the writer whose manifest is gone."""
        path = path_of("csv")
        options = make_options(format="csv", blob_path=path)
        run(options, "r0", rows(0))
        written = read_blob(azurite, container, path)
        metadata = blob(azurite, container, path).get_blob_properties().metadata
        # what the older sink did: r1 appended to r0's bytes as to a foreign blob
        scratch = blob(azurite, container, "scratch/data.csv")
        scratch.create_append_blob()
        scratch.append_block(written)
        run({**options, "blob_path": "scratch/data.csv", "if_exists": "append"}, "r1", rows(N))
        move_run(azurite, container, "scratch/data.csv", path, "r1")
        blob(azurite, container, manifest_name(path, "r0")).delete_blob()
        rewrite_blob(azurite, container, path, read_blob(azurite, container, "scratch/data.csv"))
        blob(azurite, container, path).set_blob_metadata(metadata)
        report = verify(azurite, container, path)
        assert kinds(report) == [ProblemKind.RUN_CHAIN], report.problems
        assert "run r0 of this sink created this segment, but no manifest of it is here" in str(
            report.problems[0]
        )
        assert report.base is not None and report.base.written_by == "r0" and report.base.matches is True
        assert report.rows == N


def move_run(azurite: Azurite, container: str, source: str, target: str, run: str, **changes: Any) -> None:
    """Put run ``run``'s manifest of output ``source`` under output ``target`` (as the run named
    by ``changes``, if it names one), its open record naming ``target`` (and ``changes``), every
    record re-linked: as if that run had written ``target``."""
    records = decode_records(read_blob(azurite, container, manifest_name(source, run)))
    raw, head = b"", records[0].record.prev
    for decoded in records:
        record = decoded.record
        if isinstance(record, OpenRecord):
            record = replace(record, blob_path=target, **changes)
        encoded = encode_record(replace(record, prev=head))
        raw += encoded
        head = record_hash(encoded)
    client = blob(azurite, container, manifest_name(target, changes.get("run_id", run)))
    client.create_append_blob()
    client.append_block(raw)


class TestChainedRuns:
    @pytest.mark.parametrize("modes", [("append", "append"), ("continue", "append"), ("append", "continue")])
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_append_and_continue_runs_verify_as_one_chain(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str, modes: tuple[str, str]
    ) -> None:
        """Two runs onto one path, each with append or continue: one chain (day1 continues day0),
        verified, every row once and in order."""
        path = path_of(fmt)
        for day, (mode, first) in enumerate(zip(modes, (0, N), strict=True)):
            run(make_options(format=fmt, blob_path=path, if_exists=mode), f"day{day}", rows(first))
        report = verify(azurite, container, path)
        assert report.ok and report.verdict == "verified", report.problems
        assert [r.run_id for r in report.runs] == ["day0", "day1"]
        assert report.runs[1].continues == ("day0",)
        assert report.rows == 2 * N
        assert decode(fmt, read_output(azurite, container, path)) == as_written(fmt, rows(0, 2 * N))

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_appends_onto_a_foreign_base_keep_one_base(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str
    ) -> None:
        """A foreign blob, then two append runs: the base is the first run's only, and both runs'
        rows are counted."""
        path = path_of(fmt)
        base = foreign_blob(azurite, container, make_options, fmt, path)
        for day in range(2):
            run(make_options(format=fmt, blob_path=path, if_exists="append"), f"day{day}", rows(day * N))
        report = verify(azurite, container, path)
        assert report.ok and report.verdict == "verified_except_base", report.problems
        assert report.base is not None and report.base.length == len(base) and report.base.run_id == "day0"
        assert report.rows == 2 * N


class TestUnlinkedAppend:
    def write_unlinked(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str, **changes: Any
    ) -> tuple[str, int]:
        """day0 writes the output; day1 appends to it as sink versions before chained appends did
        (an append onto a foreign blob holding day0's bytes: no earlier run named, GENESIS link,
        day0's output as its recorded base). Returns the path and where day0's output ended."""
        path = path_of(fmt)
        options = make_options(format=fmt, blob_path=path, if_exists="append")
        run(options, "day0", rows(0))
        day0 = read_blob(azurite, container, path)
        scratch = path_of(fmt, "scratch")
        client = blob(azurite, container, scratch)
        client.create_append_blob()
        client.append_block(day0)
        run({**options, "blob_path": scratch}, "day1", rows(N))
        move_run(azurite, container, scratch, path, "day1", **changes)
        break_lease(azurite, container, path)
        rewrite_blob(azurite, container, path, read_blob(azurite, container, scratch))
        return path, len(day0)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_old_append_is_reported_as_unlinked_not_as_a_broken_chain(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str
    ) -> None:
        """One problem, unlinked_run, saying what happened: day1's base is day0's output (its
        sha256 checked); every row counted once; exit 1."""
        path, day0_end = self.write_unlinked(azurite, container, make_options, fmt)
        report = verify(azurite, container, path)
        assert kinds(report) == [ProblemKind.UNLINKED_RUN], report.problems
        message = report.problems[0].message
        assert "run day1 appended to this output (if_exists: append) without continuing" in message
        assert f"bytes [0, {day0_end}) of {path}, is the output run day0 left; that is the sha256" in message
        assert report.base is None and report.rows == 2 * N
        assert [r.run_id for r in report.runs] == ["day0", "day1"]
        assert decode(fmt, read_output(azurite, container, path)) == as_written(fmt, rows(0, 2 * N))
        code, _ = cli(azurite, "verify", "--container", container, "--blob-path", path)
        assert code == EXIT_PROBLEM

    def test_an_unlinked_base_that_does_not_match_is_a_sha_mismatch(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """day1's recorded base sha256 is not day0's output: both problems, the mismatch at 0."""
        path, _ = self.write_unlinked(azurite, container, make_options, "jsonl", base_sha256="ab" * 32)
        report = verify(azurite, container, path)
        assert kinds(report) == [ProblemKind.UNLINKED_RUN, ProblemKind.SHA_MISMATCH], report.problems
        assert "do not hash to the sha256 it recorded" in report.problems[0].message
        assert report.problems[1].location.offset == 0


class _HoldFirstManifestAppend(FaultyTransport):  # type: ignore[misc]
    """Holds the writer's first manifest append (its open record) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def send(self, request: Any, **kwargs: Any) -> Any:
        if operation_of(request) == "append" and ".manifest/" in request.url and not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(timeout=30), "never released"
        return super().send(request, **kwargs)


class TestTwoRunsClaimingOneBlock:
    def test_two_writers_without_a_lease_fail_verify_naming_both(
        self, azurite: Azurite, container: str
    ) -> None:
        """Two append writers without a lease start together on one path and write the same rows:
        both succeed over the same bytes. verify fails naming both runs (once per stretch of
        bytes, not per entry) and counts the blob's rows and entries once."""
        data = [{"id": i, "v": f"value-{i}"} for i in range(60)]
        options: dict[str, Any] = {"lease": False, "if_exists": "append", "block_size": 256}
        held = _HoldFirstManifestAppend()
        first = make_writer(make_store(azurite, container, held), run_id="w1", **options)
        failed: list[BaseException] = []

        def write_first() -> None:
            try:
                first.write(data)
                first.finish(seal=False)
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=write_first)
        thread.start()
        assert held.holding.wait(timeout=30)  # w1 opened the output; its open record is not written
        second = make_writer(make_store(azurite, container), run_id="w2", **options)
        second.write(data)
        second.finish(seal=False)
        held.release.set()
        thread.join(timeout=60)
        assert not failed, failed
        assert read_output(azurite, container, "out/data.jsonl") == expected_jsonl(data)  # once
        report = verify(azurite, container, "out/data.jsonl")
        assert not report.ok
        chain = [p for p in report.problems if p.kind is ProblemKind.RUN_CHAIN]
        overlap = [p for p in report.problems if p.kind is ProblemKind.OVERLAP]
        assert (
            len(chain) == 1 and "runs w1 and w2 both opened the output as its first run" in chain[0].message
        )
        assert len(overlap) == 1, overlap
        assert "of run w2" in overlap[0].message and "of run w1" in overlap[0].message
        assert "two runs claim the same bytes" in overlap[0].message
        assert report.rows == len(data)
        assert report.segments[0].entries == report.runs[0].entries

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_a_second_manifest_claiming_the_same_bytes_fails_naming_both(
        self, azurite: Azurite, container: str, make_options: Options, fmt: str
    ) -> None:
        """Run r1's manifest copied as run r2's (whatever produced it): not verified, the overlap
        names both runs, rows and entries counted once."""
        path = path_of(fmt)
        run(make_options(format=fmt, blob_path=path, schema=SCHEMA, block_size=1024), "r1", rows(0, 3 * N))
        move_run(azurite, container, path, path, "r1", run_id="r2")
        report = verify(azurite, container, path)
        assert not report.ok
        assert {p.kind for p in report.problems} == {ProblemKind.RUN_CHAIN, ProblemKind.OVERLAP}
        overlap = [p for p in report.problems if p.kind is ProblemKind.OVERLAP]
        assert len(overlap) == 1
        assert "of run r2" in overlap[0].message and "of run r1" in overlap[0].message
        assert report.rows == 3 * N
        assert report.segments[0].entries == report.runs[0].entries
