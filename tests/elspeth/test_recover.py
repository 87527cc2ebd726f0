"""The launcher's ``recover RUN_ID``: one command brings a crashed run's output to complete.

The README's own single-sink pipeline (csv → passthrough → ``azure_append_blob`` at
``orders/{{ run_id }}/orders.csv``), verbatim, is SIGKILLed in the middle of its one sink write
(after its 2nd block landed, the response never delivered). ELSPETH has no checkpoint for it,
so its ``resume`` cannot help; ``recover`` refuses while the dead writer's lease is held, then
(``--wait``) marks the run failed and starts a new run that continues the crashed output in place.
No file is edited and no SQL is written; ``ELSPETH_FINGERPRINT_KEY`` is not set. Assertions are
on the blob's bytes, ``verify`` (with and without the landscape) and the audit trail.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.testing.azurite import Azurite
from tests.elspeth import test_real_pipeline as real
from tests.elspeth.test_real_pipeline import (
    COMMAND_TIMEOUT,
    KillingRelay,
    Pipeline,
    blob_bytes,
    documented_pipeline,
    parse_output,
)

pytest.importorskip("elspeth", reason="needs ELSPETH (Python >= 3.12, installed from its repository)")

pytestmark = [pytest.mark.elspeth, pytest.mark.azurite]

# that module's fixtures, used here by name
pipeline = real.pipeline
relay = real.relay
service = real.service

CONTAINER = "pipeline-output"  # the README's
ROWS = 600
NAME_BYTES = 15000  # ~9 MB of CSV: three 4 MiB blocks, so the kill at the 2nd lands mid-write


@pytest.fixture(autouse=True)
def _no_readme_container(service: BlobServiceClient) -> Iterator[None]:
    """Each test starts without the README's container (its module shares one Azurite) and leaves none."""
    with contextlib.suppress(ResourceNotFoundError):
        service.delete_container(CONTAINER)
    yield
    with contextlib.suppress(ResourceNotFoundError):
        service.delete_container(CONTAINER)


def big_rows() -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"row {i} " + "x" * NAME_BYTES, "amount": i * 379 % 2000, "category": "abc"[i % 3]}
        for i in range(1, ROWS + 1)
    ]


def landscape_query(root: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return Pipeline.query_at(root / "state" / "audit.db", sql, *params)


def recorded_facts(root: Path, run_id: str, operation: str) -> list[dict[str, Any]]:
    """The responses of the sink's recorded ``operation`` facts in ``run_id``'s sink writes."""
    from elspeth.core.payload_store import FilesystemPayloadStore

    store = FilesystemPayloadStore(root / "state" / "payloads")
    rows = landscape_query(
        root,
        "SELECT c.request_ref, c.response_ref FROM calls c "
        "JOIN operations o ON o.operation_id = c.operation_id "
        "WHERE o.run_id=? AND o.operation_type='sink_write' ORDER BY c.created_at, c.call_index",
        run_id,
    )
    facts = []
    for request_ref, response_ref in rows:
        request = json.loads(store.retrieve(request_ref))
        if request.get("operation") == operation:
            facts.append(json.loads(store.retrieve(response_ref)))
    return facts


def run_pasted(line: str, pipeline: Pipeline) -> subprocess.CompletedProcess[str]:
    """Run a command line the launcher printed, as an operator pasting it would."""
    argv = shlex.split(line.split("   #", 1)[0])
    assert argv[0] == "elspeth-appendsink", line
    env = {**pipeline.env, "AZURE_STORAGE_CONNECTION_STRING": pipeline.env["AZ_DIRECT"]}
    return subprocess.run(
        [sys.executable, "-m", "elspeth_appendsink", *argv[1:], "--no-progress"],
        cwd=pipeline.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_recover_completes_the_readme_pipeline_killed_mid_write(
    pipeline: Pipeline, service: BlobServiceClient, relay: KillingRelay, azurite: Azurite
) -> None:
    """SIGKILL mid-write, then only ``recover RUN -s settings.yaml``: refused while the lease is
    held (exit 75, the retry line named), then with ``--wait`` the output ends complete — every
    row once, in order — verified and anchored by the landscape; a second call changes nothing."""
    rows = big_rows()
    (pipeline.root / "data").mkdir()
    with (pipeline.root / "data" / "orders.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "name", "amount", "category"])
        writer.writeheader()
        writer.writerows(rows)
    pipeline.settings.write_text(documented_pipeline(), encoding="utf-8")
    settings_before = pipeline.settings.read_bytes()
    pipeline.env.pop("ELSPETH_FINGERPRINT_KEY")
    pipeline.env["AZURE_STORAGE_CONNECTION_STRING"] = relay.connection_string
    service.create_container(CONTAINER)

    proc = pipeline.start("run", "-s", "settings.yaml", "-x")
    relay.arm(proc.pid, "orders.csv", nth=2, when="after")
    try:
        killed_output, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        relay.disarm()
    assert relay.killed and proc.returncode == -9, killed_output[-4000:]
    ((crashed, status),) = landscape_query(pipeline.root, "SELECT run_id, status FROM runs")
    assert status == "running"
    assert landscape_query(pipeline.root, "SELECT count(*) FROM checkpoints") == [(0,)]
    blob = f"orders/{crashed}/orders.csv"
    partial = parse_output(blob_bytes(service, CONTAINER, blob), "csv")
    assert 0 < len(partial) < ROWS

    command = ("recover", crashed, "-s", "settings.yaml")
    code, refused = pipeline.run(*command)
    assert code == 75, refused[-4000:]
    assert f"held by run {crashed}" in refused and "Nothing was changed" in refused, refused[-4000:]
    retry = f"python -m elspeth_appendsink.elspeth --no-dotenv recover {crashed} -s settings.yaml"
    assert retry in refused and "--wait" in refused
    assert landscape_query(pipeline.root, "SELECT run_id, status FROM runs") == [(crashed, "running")]

    code, output = pipeline.run(*command, "--wait")
    assert code == 0, output[-4000:]
    assert "no checkpoint" in output and f"continues azure://{CONTAINER}/{blob}" in output, output[-4000:]
    runs = dict(landscape_query(pipeline.root, "SELECT run_id, status FROM runs"))
    assert runs.pop(crashed) == "failed"
    ((rerun, rerun_status),) = runs.items()
    assert rerun_status == "completed"
    assert pipeline.settings.read_bytes() == settings_before

    data = blob_bytes(service, CONTAINER, blob)
    assert parse_output(data, "csv") == rows  # every row once, in input order
    (fact,) = recorded_facts(pipeline.root, rerun, "recover_continues")
    assert fact["completes_run"] == crashed and fact["blob_path"] == blob
    (skip,) = recorded_facts(pipeline.root, rerun, "replay_skip")
    assert skip["rows_skipped"] == len(partial) and skip["already_durable_in_runs"] == [crashed]

    # the closing lines name the re-run, the output and a verify line that works when pasted
    assert f"run {rerun} completed" in output, output[-4000:]
    verify_lines = [line.split("verify: ", 1)[1] for line in output.splitlines() if "verify: " in line]
    assert len(verify_lines) == 1 and f"--blob-path {blob}" in verify_lines[0], output[-4000:]
    done = run_pasted(verify_lines[0], pipeline)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Runs     2" in done.stdout and "Anchor   ANCHORED" in done.stdout, done.stdout
    assert rerun in done.stdout

    code, again = pipeline.run(*command)
    assert code == 0, again[-4000:]
    assert f"run {rerun} already completed the output of run {crashed}" in again, again[-4000:]
    assert blob_bytes(service, CONTAINER, blob) == data
    assert len(landscape_query(pipeline.root, "SELECT run_id FROM runs")) == 2


def test_a_missing_container_fails_the_run_before_any_row_naming_sink_and_container(
    pipeline: Pipeline, service: BlobServiceClient, azurite: Azurite
) -> None:
    """The README's pipeline without its container: the sink's on_start refuses before the source
    is read, in one line naming sink, container and account (no key); the launcher's closing
    lines say the run did not complete, why, and the recover line."""
    (pipeline.root / "data").mkdir()
    real.write_input(pipeline.root / "data" / "orders.csv", real.input_rows())
    pipeline.settings.write_text(documented_pipeline(), encoding="utf-8")
    pipeline.env.pop("ELSPETH_FINGERPRINT_KEY")
    pipeline.env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string

    code, output = pipeline.run("run", "-s", "settings.yaml", "-x")

    assert code == 1, output[-4000:]
    error = (
        f"sink output: container '{CONTAINER}' in storage account 'devstoreaccount1' does not exist "
        "(checked at the start of the run, before any row was read)"
    )
    assert error in output, output[-4000:]
    assert real.ACCOUNT_KEY not in output
    ((run_id, status),) = landscape_query(pipeline.root, "SELECT run_id, status FROM runs")
    assert status == "failed"
    assert landscape_query(pipeline.root, "SELECT count(*) FROM rows") == [(0,)]
    assert f"elspeth-appendsink: run {run_id} did not complete (exit 1)" in output
    assert f"  output output: not opened: {error}" in output
    assert f"to recover it: python -m elspeth_appendsink.elspeth --no-dotenv recover {run_id}" in output
