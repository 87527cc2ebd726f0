"""``verify --landscape``: the artifacts ELSPETH recorded anchor the output's manifests.

The landscape is a small sqlite file shaped as ELSPETH's (``runs``, ``checkpoints``,
``artifacts``) holding what the sink returned after each write: the sha256 and size of the whole
output so far, taken from the real writer over Azurite. The tampers are done behind the sink's
back, as an attacker with write access to the container would: each leaves a container that
plain ``verify`` accepts, and ``--landscape`` must find and locate. The same with real ELSPETH is
in ``tests/elspeth``.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.tools.anchor import output_uri
from elspeth_appendsink.tools.cli import ENV_CONNECTION_STRING, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, main
from tests.helpers import make_store, make_writer, read_output
from tests.tools.outputs import (
    BLOB,
    SMALL,
    batches,
    committed_entries,
    drop_last_call,
    forge_foreign_rows,
    rewrite_rows_in_place,
)

pytestmark = pytest.mark.azurite

NODE = "sink_output_0123abcd"
BIG: dict[str, Any] = {"block_size": 64 * 1024, "segment_max_blocks": 1000}  # one segment

Recorded = list[tuple[str, int]]  # (content_hash, size_bytes) per write, as ELSPETH stores them


def _run(
    azurite: Azurite,
    container: str,
    run_id: str = "run-1",
    *,
    calls: int = 3,
    first_id: int = 0,
    seal: bool = True,
    **target: Any,
) -> Recorded:
    """One run of the real writer; the artifact the sink would return after each write call."""
    writer = make_writer(make_store(azurite, container), run_id=run_id, blob_path=BLOB, **target)
    recorded = []
    for batch in batches(calls, first_id=first_id):
        writer.write(batch)
        recorded.append((writer.content_hash, writer.size))
    writer.finish(seal=seal)
    writer.close()
    return recorded


def _landscape(path: Path, container: str, runs: dict[str, tuple[str, Recorded]]) -> str:
    """A landscape holding ``runs`` (id -> ELSPETH status, artifacts in write order)."""
    uri = output_uri(container, BLOB)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT, started_at TEXT)")
        db.execute("CREATE TABLE checkpoints (checkpoint_id TEXT PRIMARY KEY, run_id TEXT)")
        db.execute(
            "CREATE TABLE artifacts (artifact_id TEXT PRIMARY KEY, run_id TEXT, produced_by_state_id TEXT, "
            "sink_node_id TEXT, artifact_type TEXT, path_or_uri TEXT, content_hash TEXT, size_bytes INTEGER, "
            "idempotency_key TEXT, created_at TEXT)"
        )
        for n, (run_id, (status, recorded)) in enumerate(runs.items()):
            db.execute("INSERT INTO runs VALUES (?, ?, ?)", (run_id, status, f"2026-12-0{n + 1}"))
            for k, (content_hash, size) in enumerate(recorded):
                db.execute(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, 'file', ?, ?, ?, NULL, ?)",
                    (
                        f"{run_id}-a{k}",
                        run_id,
                        f"{run_id}-s{k}",
                        NODE,
                        uri,
                        content_hash,
                        size,
                        f"2026-12-0{n + 1}T00:00:{k:02d}",
                    ),
                )
    return f"sqlite:///{path}"


def _verify(azurite: Azurite, container: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["verify", "--container", container, "--blob-path", BLOB, "--no-progress", *args],
        env={ENV_CONNECTION_STRING: azurite.connection_string},
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def _anchor_json(azurite: Azurite, container: str, url: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = _verify(azurite, container, "--landscape", url, "--json", *args)
    return code, json.loads(out)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_prefixes(azurite: Azurite, container: str, recorded: Sequence[tuple[str, int]]) -> None:
    """The artifacts are what the sink returned: each is the hash of the output's first bytes."""
    data = read_output(azurite, container, BLOB)
    assert [(h, s) for h, s in recorded] == [(_sha(data[:s]), s) for _, s in recorded]


class TestAnchored:
    def test_a_completed_run_over_several_segments_is_anchored(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """Three write calls over ≥3 segments: each artifact is a write call's end, the last the
        whole output; human and JSON say so, exit 0, and no secret is printed."""
        recorded = _run(azurite, container, **SMALL)
        _assert_prefixes(azurite, container, recorded)
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", recorded)})
        code, out, err = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_OK, out + err
        assert "Anchor   ANCHORED: 1 run matches the artifacts ELSPETH recorded" in out
        assert f"run-1: ELSPETH completed, 3 artifact(s) of {NODE}: anchored" in out
        assert "the last is the whole output" in out
        key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
        assert key not in out + err
        code, doc = _anchor_json(azurite, container, url)
        assert code == EXIT_OK and doc["ok"] is True and doc["verified"] is True
        assert doc["anchor"]["ok"] is True and doc["anchor"]["mismatch"] is None
        assert doc["anchor"]["runs"][0]["artifacts"] == 3

    def test_a_crashed_run_whose_last_call_landed_unreturned_is_anchored(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """ELSPETH saw two of three calls return (the process died before the third returned) and
        the run is not completed: the output may hold more than the landscape's head."""
        recorded = _run(azurite, container, seal=False, **SMALL)
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("running", recorded[:2])})
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_OK, out
        assert "run-1: ELSPETH running, 2 artifact(s)" in out

    def test_runs_continuing_one_output_are_each_anchored(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """if_exists: continue: the first run's last artifact is where it left the output (not
        the whole output now), the second's is the whole output."""
        first = _run(azurite, container, "run-1", seal=False, if_exists="continue", **BIG)
        second = _run(azurite, container, "run-2", first_id=100, if_exists="continue", **BIG)
        assert second[0][1] > first[-1][1]
        url = _landscape(
            tmp_path / "audit.db", container, {"run-1": ("completed", first), "run-2": ("completed", second)}
        )
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_OK, out
        assert "where the run left the output" in out and "2 runs match" in out
        code, _, _ = _verify(azurite, container, "--landscape", url, "--run", "run-1")
        assert code == EXIT_OK


class TestTampered:
    def test_foreign_rows_under_a_forged_record_are_found_at_the_landscapes_head(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """Rows appended after the run with a valid record forged on top: plain verify passes,
        --landscape fails at the last write call ELSPETH saw, where the foreign bytes start."""
        recorded = _run(azurite, container, seal=False, **BIG)
        head_hash, head = recorded[-1]
        forge_foreign_rows(azurite, container, b'{"id": 999, "v": "forged"}\n{"id": 998, "v": "forged"}\n')
        code, out, _ = _verify(azurite, container)
        assert code == EXIT_OK and "VERIFIED" in out  # the manifests alone cannot tell
        size = len(read_output(azurite, container, BLOB))
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", recorded)})
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_PROBLEM
        assert "Anchor   NOT ANCHORED" in out
        assert "  run      run-1" in out and "  call     write call 2" in out
        assert f"  offset   {head:,} (in the whole output)" in out
        assert f"{head_hash} ({head} bytes, the landscape's head)" in out
        assert f"({size} bytes, the output now)" in out
        code, doc = _anchor_json(azurite, container, url)
        assert code == EXIT_PROBLEM and doc["ok"] is False and doc["verified"] is True
        mismatch = doc["anchor"]["mismatch"]
        assert (mismatch["run_id"], mismatch["call"], mismatch["offset"]) == ("run-1", 2, head)

    def test_a_manifest_recreated_without_its_last_call_is_found_where_the_call_ended(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """The last call's records and bytes removed (seal too): plain verify passes, --landscape
        fails at the artifact no write call of the manifest ends at any more."""
        recorded = _run(azurite, container, **BIG)
        assert drop_last_call(azurite, container) == 2
        code, out, _ = _verify(azurite, container)
        assert code == EXIT_OK and "VERIFIED" in out
        assert len(read_output(azurite, container, BLOB)) == recorded[1][1]
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", recorded)})
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_PROBLEM
        assert "  call     no write call ends there" in out
        assert f"  offset   {recorded[2][1]:,}" in out
        assert f"  expected {recorded[2][0]} ({recorded[2][1]} bytes)" in out
        assert "no write call of the manifest ends at this offset" in out
        code, doc = _anchor_json(azurite, container, url)
        mismatch = doc["anchor"]["mismatch"]
        assert (mismatch["offset"], mismatch["call"]) == (recorded[2][1], None)

    def test_a_manifest_recreated_with_no_block_left_is_found(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """One write call (as ELSPETH often makes), removed: only the open record is left, the
        output is empty, and the landscape's one artifact is matched by nothing."""
        recorded = _run(azurite, container, calls=1, seal=False, **BIG)
        drop_last_call(azurite, container)
        assert read_output(azurite, container, BLOB) == b""
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", recorded)})
        code, doc = _anchor_json(azurite, container, url)
        assert code == EXIT_PROBLEM and doc["verified"] is True
        mismatch = doc["anchor"]["mismatch"]
        assert (mismatch["run_id"], mismatch["call"], mismatch["offset"]) == ("run-1", None, recorded[0][1])

    def test_rows_rewritten_in_place_with_a_rechained_manifest_are_found_at_their_call(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """One row of the second call edited (same length), its entry's sha256 and the chain from
        it on recomputed: plain verify passes; --landscape names write call 1, at its end, with
        ELSPETH's hash and the output's."""
        recorded = _run(azurite, container, seal=False, **BIG)
        second = next(e for e in committed_entries(azurite, container) if e.write_call == 1)
        rewrite_rows_in_place(azurite, container, second.seq)
        code, out, _ = _verify(azurite, container)
        assert code == EXIT_OK and "VERIFIED" in out
        data = read_output(azurite, container, BLOB)
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", recorded)})
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_PROBLEM
        assert "  call     write call 1" in out and f"  offset   {recorded[1][1]:,}" in out
        assert f"  expected {recorded[1][0]}" in out
        assert f"  found    {_sha(data[: recorded[1][1]])}" in out

    def test_a_run_the_landscape_does_not_know_is_not_anchored(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        """A whole run forged after the real one (continue): the real run is anchored, the forged
        one is reported, where it starts."""
        first = _run(azurite, container, "run-1", seal=False, if_exists="continue", **BIG)
        _run(azurite, container, "run-x", first_id=100, if_exists="continue", **BIG)
        url = _landscape(tmp_path / "audit.db", container, {"run-1": ("completed", first)})
        code, out, _ = _verify(azurite, container, "--landscape", url)
        assert code == EXIT_PROBLEM
        assert "  run      run-x" in out and f"  offset   {first[-1][1]:,}" in out
        assert "run-x: unknown to the landscape" in out
        assert "  expected no run run-x in sqlite:///" in out
        assert "  found    a manifest of run run-x in the output" in out

    @pytest.mark.parametrize(("status", "code"), [("failed", EXIT_OK), ("completed", EXIT_PROBLEM)])
    def test_a_run_without_artifacts_is_anchored_by_nothing(
        self, azurite: Azurite, container: str, tmp_path: Path, status: str, code: int
    ) -> None:
        """ELSPETH knows the run but no write of it returned: said so; a mismatch only when ELSPETH
        says the run completed (then its bytes are in the output and no artifact holds them)."""
        recorded = _run(azurite, container, seal=False, **BIG)
        url = _landscape(tmp_path / "audit.db", container, {"run-1": (status, [])})
        got, out, _ = _verify(azurite, container, "--landscape", url)
        assert got == code, out
        assert f"run-1: ELSPETH {status}, 0 artifact(s): no artifact recorded" in out
        if status == "completed":
            assert f"  found    {recorded[-1][1]} bytes of the run in the output" in out


class TestErrors:
    def test_a_wrong_landscape_url_is_a_usage_error(
        self, azurite: Azurite, container: str, tmp_path: Path
    ) -> None:
        _run(azurite, container, **BIG)
        missing = tmp_path / "nope.db"
        code, _, err = _verify(azurite, container, "--landscape", f"sqlite:///{missing}")
        assert code == EXIT_USAGE and "--landscape: no landscape database" in err
        assert not missing.exists()
        code, _, err = _verify(azurite, container, "--landscape", "mysql://u:pw-7f3a9c-landscape@db/audit")
        assert (
            code == EXIT_USAGE
            and "is not a landscape ELSPETH accepts" in err
            and "pw-7f3a9c-landscape" not in err
        )
        not_landscape = tmp_path / "other.db"
        sqlite3.connect(not_landscape).close()
        code, _, err = _verify(azurite, container, "--landscape", f"sqlite:///{not_landscape}")
        assert code == EXIT_USAGE and "is not an ELSPETH landscape" in err

    def test_an_unknown_run_is_a_usage_error(self, azurite: Azurite, container: str, tmp_path: Path) -> None:
        recorded = _run(azurite, container, **BIG)
        url = _landscape(
            tmp_path / "audit.db", container, {"run-1": ("completed", recorded), "run-2": ("completed", [])}
        )
        before = (tmp_path / "audit.db").read_bytes()
        code, _, err = _verify(azurite, container, "--landscape", url, "--run", "run-9")
        assert code == EXIT_USAGE and "--run-id: the landscape has no run 'run-9'" in err
        code, _, err = _verify(azurite, container, "--landscape", url, "--run-id", "run-2")
        assert code == EXIT_USAGE and "--run-id: the output has no manifest of run 'run-2'" in err
        code, _, err = _verify(azurite, container, "--run-id", "run-1")
        assert code == EXIT_USAGE and "--run-id needs --landscape" in err
        assert (tmp_path / "audit.db").read_bytes() == before
