"""Generated scripts of write calls, faults, crashes and resumes against Azurite: always exactly once.

Each example is a script: a run's batches (empty batches, single rows, rows of every size up to
the block limit, rows repeated within a call), the writer's limits (tiny blocks and segments so
that blocks split and segments roll over), and a list of *epochs*. An epoch is one writer
process: a fresh writer for the first, ``resume=True`` for every later one. Each epoch may carry

* transient faults at chosen request numbers (``lose`` — the service applied the request but the
  response was lost, ``reset``, ``status:503``, ``status:500``), which the retry policy and the
  read-back must absorb — or, as a storm of the same fault that outlasts the retry budget,
  surface as the retryable :class:`StorageUnavailableError` and nothing else;
* a crash (``crash-before`` / ``crash-after``) at one request number — anywhere: during the fresh
  start, a block, a rollover, recovery itself, the final seal;
* an "abandon" after its n-th write call *returned*: the process dies before the engine has
  recorded the outcomes of all the call's rows (ELSPETH records them row by row, in order).

After a crash or failure the next epoch re-delivers, as ELSPETH's resume does, the interrupted
write call's rows (those whose outcome was not recorded), then every later call. A last,
fault-free epoch finishes the run. Whatever the
script, the output is every row once, in order; every manifest decodes (hash chain) and every
committed entry's bytes hash to its sha256; token ranges run contiguously from 0; and the final
writer's ``content_hash`` and ``size`` describe exactly the bytes in the segments.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from elspeth_appendsink.core.paths import segment_name
from elspeth_appendsink.errors import StorageUnavailableError
from elspeth_appendsink.protocol.writer import AppendWriter
from elspeth_appendsink.testing import FaultyTransport, SimulatedCrash
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import (
    FAST_RETRY,
    CsvStub,
    JsonlStub,
    check_manifests,
    expected_jsonl,
    make_store,
    make_writer,
    read_output,
)

pytestmark = pytest.mark.azurite

#: The loaded hypothesis profile decides ("ci": 200, "local": 1000).
EXAMPLES = settings.default.max_examples

MAX_CALLS = 7
MAX_ROWS_PER_CALL = 12
TRANSIENT = ("lose", "reset", "status:503", "status:500")
CRASHES = ("crash-before", "crash-after")
STORM = FAST_RETRY.total + 1  # attempts of one request under the tests' retry policy


@dataclass(frozen=True)
class Epoch:
    """One writer process: its faults by request number, where it crashes, when it is abandoned."""

    faults: dict[int, str] = field(default_factory=dict)
    storm_at: int | None = None  # the same fault on 4 consecutive requests: outlasts the retry budget
    storm: str = "status:503"
    crash_at: int | None = None
    crash_mode: str = "crash-before"
    abandon_after: int | None = None  # die after this many of its write calls returned
    recorded: int = 0  # ... with the outcomes of this many of that call's rows already recorded
    prepare: bool = False  # recover eagerly (``prepare()``) instead of at the first write

    def rule(self) -> Callable[[int, str, Any], str | None]:
        def fault(n: int, op: str, request: Any) -> str | None:
            if n == self.crash_at:
                return self.crash_mode
            if self.storm_at is not None and self.storm_at <= n < self.storm_at + STORM:
                return self.storm
            return self.faults.get(n)

        return fault


@dataclass(frozen=True)
class Script:
    batches: list[list[dict[str, Any]]]
    block_size: int
    segment_max_blocks: int
    segment_max_bytes: int | None
    csv: bool
    identity_fields: list[str] | None
    epochs: list[Epoch]
    seal: bool

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for batch in self.batches for row in batch]

    def expected(self) -> bytes:
        rows = self.rows
        if not rows:
            return b""
        return (CsvStub().header() if self.csv else b"") + expected_jsonl(rows)


@st.composite
def batches_for(draw: st.DrawFn, block_size: int) -> list[list[dict[str, Any]]]:
    """Write calls of 0..12 rows, sized from tiny to exactly the block limit; repeats within a call."""
    pad = st.one_of(st.integers(0, 12), st.integers(0, block_size), st.just(block_size))
    calls = draw(
        st.lists(
            st.lists(st.tuples(pad, st.booleans()), max_size=MAX_ROWS_PER_CALL),
            min_size=1,
            max_size=MAX_CALLS,
        )
    )
    batches = []
    for c, specs in enumerate(calls):
        batch: list[dict[str, Any]] = []
        for i, (size, repeat) in enumerate(specs):
            if repeat and batch:  # an equal row in the same call: identity matching must count, not dedupe
                batch.append(dict(batch[-1]))
            else:
                overhead = len(expected_jsonl([{"c": c, "i": i, "p": ""}]))
                batch.append({"c": c, "i": i, "p": "x" * min(size, block_size - overhead)})
        batches.append(batch)
    return batches


request_numbers = st.integers(1, 30) | st.integers(1, 200)  # most writers send < 30 requests
epochs = st.builds(
    Epoch,
    faults=st.dictionaries(request_numbers, st.sampled_from(TRANSIENT), max_size=4),
    storm_at=st.none() | st.none() | request_numbers,
    storm=st.sampled_from(TRANSIENT),
    crash_at=st.none() | request_numbers,
    crash_mode=st.sampled_from(CRASHES),
    abandon_after=st.one_of(st.none(), st.integers(1, 3)),
    recorded=st.just(0) | st.integers(0, MAX_ROWS_PER_CALL),
    prepare=st.booleans(),
)


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    block_size = draw(st.integers(64, 400))
    return Script(
        batches=draw(batches_for(block_size)),
        block_size=block_size,
        segment_max_blocks=draw(st.integers(2, 6)),
        segment_max_bytes=draw(st.one_of(st.none(), st.integers(150, 1500))),
        csv=draw(st.booleans()),
        identity_fields=draw(st.sampled_from([None, ["c", "i"]])),
        epochs=draw(st.lists(epochs, min_size=1, max_size=4)),
        seal=draw(st.booleans()),
    )


_names = itertools.count()


def run(azurite: Azurite, container: str, script: Script) -> tuple[str, AppendWriter, list[str]]:
    """Play ``script`` as ELSPETH would; return the blob path, the final writer and what happened."""
    tag = f"{next(_names)}-{uuid.uuid4().hex[:8]}"
    blob_path, run_id = f"s{tag}/out.jsonl", f"run-{tag}"
    encoder = CsvStub() if script.csv else JsonlStub()
    limits = {
        "block_size": script.block_size,
        "segment_max_blocks": script.segment_max_blocks,
        "segment_max_bytes": script.segment_max_bytes,
        "identity_fields": script.identity_fields,
    }
    calls = [list(batch) for batch in script.batches]  # what the engine (still) has to deliver
    call = 0  # the first write call whose outcomes the engine has not recorded
    history: list[str] = []
    for index, epoch in enumerate([*script.epochs, Epoch()]):
        transport = FaultyTransport(rule=epoch.rule())
        writer = make_writer(
            make_store(azurite, container, transport),
            blob_path=blob_path,
            run_id=run_id,
            resume=index > 0,
            encoder=encoder,
            **dict(limits),
        )
        returned = 0
        try:
            if epoch.prepare:
                writer.prepare()
            while call < len(calls):
                writer.write(calls[call])
                returned += 1
                if returned == epoch.abandon_after:
                    # died while recording the outcomes (ELSPETH records them per row, in order):
                    # the engine replays the rows of this call whose outcome it had not recorded yet
                    calls[call] = calls[call][epoch.recorded :]
                    break
                call += 1
            else:  # every outcome recorded: the run completes
                if script.seal:
                    writer.finish(seal=True)  # a crash here: the resumed run completes (and seals) again
                writer.prepare()  # a resumed writer that was given no rows recovers here
                return blob_path, writer, history
            history.append(f"epoch {index}: abandoned after call {call} returned ({epoch.recorded} recorded)")
        except SimulatedCrash as exc:
            history.append(f"epoch {index}: {exc} in call {call}")
        except StorageUnavailableError as exc:  # a fault outlasted the retry budget: the run fails, resumes
            history.append(f"epoch {index}: {type(exc).__name__} in call {call}")
    raise AssertionError("the fault-free last epoch did not finish the run")  # pragma: no cover


def assert_exactly_once(
    azurite: Azurite, container: str, script: Script, blob_path: str, writer: AppendWriter
) -> None:
    output = read_output(azurite, container, blob_path)
    assert output == script.expected()
    committed = check_manifests(azurite, container, blob_path)
    position = 0
    for entry in committed:
        assert entry.tokens.start == position, f"entry {entry.seq} starts at row {entry.tokens.start}"
        assert entry.length <= script.block_size
        position = entry.tokens.end
    assert position == len(script.rows)
    assert sum(e.length for e in committed) == len(output)
    assert writer.content_hash == hashlib.sha256(output).hexdigest()
    assert writer.size == len(output)
    if script.seal and writer.cursor is not None:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        last = service.get_blob_client(container, segment_name(blob_path, writer.cursor.segment))
        assert last.get_blob_properties().is_append_blob_sealed


class TestGeneratedScripts:
    @settings(
        max_examples=EXAMPLES,
        # no Phase.explain: it traces every line, far too slow with a storage emulator in the loop
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(script=scripts())
    def test_any_script_of_writes_faults_crashes_and_resumes_is_exactly_once(
        self, azurite: Azurite, container: str, script: Script
    ) -> None:
        """Any mix of batch shapes, transient faults, crashes and replays leaves each row once, in order."""
        blob_path, writer, history = run(azurite, container, script)
        note("\n".join(history) or "no interruption")
        event(f"interruptions: {len(history)}")
        for line in history:
            event(line.split(": ", 1)[1].split(" request")[0].split(" after call")[0].split(" in call")[0])
        event(f"segments: {'0' if writer.cursor is None else min(writer.cursor.segment + 1, 5)}")
        assert_exactly_once(azurite, container, script, blob_path, writer)
