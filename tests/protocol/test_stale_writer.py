"""A writer paused past its lease while another run continues the output, then woken.

It must find out before it records anything (its lease is confirmed before every manifest
append), and whatever it recorded in the instant between confirming and appending must not
poison the output's history: the next ``continue`` and ``verify`` read each run as far as the
run after it read it. Over every format, with a clock moved by hand or the lease broken — no
sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from elspeth_appendsink.elspeth.schema import RowSchema
from elspeth_appendsink.encoders import CsvOptions, create_encoder
from elspeth_appendsink.encoders.base import Encoder
from elspeth_appendsink.errors import LeaseHeldError, RecoveryError
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.protocol.writer import AppendWriter
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, make_writer, read_output
from tests.hostile.conftest import as_written, container_client, decode

pytestmark = pytest.mark.azurite

FORMATS = ("csv", "jsonl", "arrow")


def rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": i, "v": f"value-{i}"} for i in range(start, stop)]


def encoder_for(fmt: str, first: Sequence[dict[str, Any]]) -> Encoder:
    schema = RowSchema.from_dict({"mode": "fixed", "fields": ["id: int", "v: str"]})
    return create_encoder(
        fmt, schema=schema, first_rows=first, csv_options=CsvOptions() if fmt == "csv" else None
    )


def writer(azurite: Azurite, container: str, fmt: str, run_id: str, **kw: Any) -> AppendWriter:
    enc = encoder_for(fmt, rows(0, 1))
    return make_writer(
        make_store(azurite, container),
        run_id=run_id,
        blob_path=f"out/data.{fmt}",
        encoder=enc,
        if_exists="continue",
        lease_duration=15,
        **kw,
    )


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manifest_bytes(azurite: Azurite, container: str, fmt: str, run_id: str) -> bytes:
    blob = container_client(azurite, container).get_blob_client(f"out/data.{fmt}.manifest/{run_id}")
    return bytes(blob.download_blob().readall())


def pause_past_lease(paused: AppendWriter, azurite: Azurite, container: str, fmt: str) -> None:
    """The writer's process stops: no heartbeat; its lease lapses (broken: what expiry does)."""
    paused._lease.stop()
    make_store(azurite, container).break_lease(f"out/data.{fmt}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_woken_writer_records_nothing_once_another_run_took_the_output(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """Paused past its lease (its clock says so) while run r2 continued the output: r1's next
    write raises LeaseHeldError naming r2 before any manifest append (r1's manifest is byte for
    byte unchanged); a third run continues; verify is clean; every row is there once, in order."""
    clock = Clock()
    r1 = writer(azurite, container, fmt, "r1")
    r1._lease.clock = clock
    r1.write(rows(0, 10))
    pause_past_lease(r1, azurite, container, fmt)
    clock.now += 16  # longer than lease_duration
    r2 = writer(azurite, container, fmt, "r2")
    r2.write(rows(10, 20))
    r2.close()
    before = manifest_bytes(azurite, container, fmt, "r1")
    with pytest.raises(LeaseHeldError, match="run r2 leased it since") as caught:
        r1.write(rows(20, 30))
    assert caught.value.holder == "r2"
    assert manifest_bytes(azurite, container, fmt, "r1") == before
    r3 = writer(azurite, container, fmt, "r3")
    r3.write(rows(20, 30))
    r3.close()
    assert decode(fmt, read_output(azurite, container, f"out/data.{fmt}")) == as_written(fmt, rows(0, 30))
    report = verify_output(make_store(azurite, container), f"out/data.{fmt}")
    assert report.ok and report.rows == 30 and not report.notes


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_late_intent_of_a_taken_over_run_is_ignored_by_the_runs_after_it(
    azurite: Azurite, container: str, fmt: str
) -> None:
    """The residual window: r1's lease was confirmed just before r2 took the output (its clock
    did not move), so its intent reaches its manifest after r2 linked to that manifest; its block
    never lands. A third `continue` succeeds, verify says VERIFIED with a note naming the ignored
    record, each row is there once, and resuming r1 is refused pointing at `continue`."""
    r1 = writer(azurite, container, fmt, "r1")
    r1.write(rows(0, 10))
    pause_past_lease(r1, azurite, container, fmt)
    r2 = writer(azurite, container, fmt, "r2")
    r2.write(rows(10, 20))
    r2.close()
    before = manifest_bytes(azurite, container, fmt, "r1")
    with pytest.raises(LeaseHeldError):
        r1.write(rows(20, 30))
    assert len(manifest_bytes(azurite, container, fmt, "r1")) > len(before)  # the late intent
    r3 = writer(azurite, container, fmt, "r3")
    r3.write(rows(20, 30))
    r3.close()
    assert decode(fmt, read_output(azurite, container, f"out/data.{fmt}")) == as_written(fmt, rows(0, 30))
    report = verify_output(make_store(azurite, container), f"out/data.{fmt}")
    assert report.ok, report.problems
    assert report.rows == 30
    assert any("r1's writer after run r2 took the output over" in note for note in report.notes)
    resumed = writer(azurite, container, fmt, "r1", resume=True)
    with pytest.raises(RecoveryError, match="run r2 has continued this output after run r1"):
        resumed.write(rows(20, 30))


@pytest.mark.parametrize("moved", [False, True], ids=["at-the-append", "before-the-manifest"])
def test_a_writer_whose_lease_an_operator_broke_takes_it_back(
    azurite: Azurite, container: str, moved: bool
) -> None:
    """`unlock` broke r1's lease and no other run wrote since: r1 takes its lease back (found at
    the data append, or when confirming before the manifest once half the lease passed) and goes
    on; each row once, verify clean."""
    clock = Clock()
    r1 = writer(azurite, container, "jsonl", "r1")
    r1._lease.clock = clock
    r1.write(rows(0, 10))
    make_store(azurite, container).break_lease("out/data.jsonl")
    if moved:
        clock.now += 8  # over half of lease_duration: the lease is confirmed by a renewal
    r1.write(rows(10, 20))
    r1.close()
    assert decode("jsonl", read_output(azurite, container, "out/data.jsonl")) == rows(0, 20)
    assert verify_output(make_store(azurite, container), "out/data.jsonl").ok
