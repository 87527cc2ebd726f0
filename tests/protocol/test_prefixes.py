"""Prefix hashes: the scan's sha256/size of the whole output at the end of each write call equal
what the writer reported (``content_hash`` / ``size``) when that call returned — the values
ELSPETH records per sink write, which ``verify --landscape`` compares against."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from elspeth_appendsink.core.anchor import Prefix
from elspeth_appendsink.protocol.verify import BASE_CALL, verify_output
from tests.helpers import CsvStub, MemorySpace, make_writer

SMALL: dict[str, Any] = {"block_size": 200, "segment_max_blocks": 5}


def batch(call: int, size: int) -> list[dict[str, Any]]:
    return [{"id": f"{call}-{i}", "v": "x" * (i % 7)} for i in range(size)]


def reported(writer: Any, calls: list[list[dict[str, Any]]], first_call: int = 0) -> list[Prefix]:
    out = []
    for number, rows in enumerate(calls, start=first_call):
        writer.write(rows)
        out.append(Prefix(number, writer.size, writer.content_hash))
    return out


@pytest.mark.parametrize("encoder", [None, CsvStub()], ids=["jsonl", "csv-header"])
def test_prefixes_equal_the_writers_content_hash_after_each_call(memory: MemorySpace, encoder: Any) -> None:
    """Many calls, several segments (rollovers), a header: the base (the empty output), then one
    prefix per call, each exact."""
    store = memory.store()
    writer = make_writer(store, encoder=encoder, **SMALL)
    expected = reported(writer, [batch(c, 3 + 4 * c) for c in range(6)])
    writer.close()
    assert writer.cursor is not None and writer.cursor.segment >= 1
    report = verify_output(store, "out/data.jsonl")
    assert report.ok, report.problems
    empty = Prefix(BASE_CALL, 0, hashlib.sha256(b"").hexdigest())
    assert list(report.prefixes["run-1"]) == [empty, *expected]
    assert (report.bytes, report.sha256) == (expected[-1].size, expected[-1].sha256)
    last = expected[-1]
    as_json = report.as_dict()["prefixes"]["run-1"][-1]
    assert as_json == {"call": last.call, "size": last.size, "sha256": last.sha256}


def test_prefixes_of_a_continued_output_span_every_run(memory: MemorySpace) -> None:
    """A second run continuing the output: its prefixes hash the whole output, the first run's bytes
    too, and its base is where the first run left the output."""
    first = make_writer(memory.store(), run_id="first", if_exists="continue", **SMALL)
    before = reported(first, [batch(c, 5) for c in range(3)])
    first.close()
    second = make_writer(memory.store(), run_id="second", if_exists="continue", **SMALL)
    after = reported(second, [batch(10 + c, 6) for c in range(3)])
    second.close()
    report = verify_output(memory.store(), "out/data.jsonl")
    assert report.ok, report.problems
    assert list(report.prefixes["first"])[1:] == before
    assert list(report.prefixes["second"]) == [Prefix(BASE_CALL, before[-1].size, before[-1].sha256), *after]
