"""A fleet of real ELSPETH processes on one PostgreSQL landscape and one Azurite container.

Four ``run``s start together through the launcher on an empty PostgreSQL landscape, each over
its shard of one input (``benchmarks.fleet.write_fleet``: rows routed by a gate to a ``low`` and a
``high`` sink). Shard 0's sinks talk to Azurite through the killing relay, which SIGKILLs its
process once a block of ``high`` has landed (its response never returned). The other three
complete. The fleet recovery command (``recover --prefix fleet/ -s … --wait``) matches the killed
run to its settings, waits out its lease, marks it failed through ELSPETH's recorder and resumes
it; run again, it finds nothing to do. Then
``verify --prefix --landscape`` passes for every output, and every row of the input is in
exactly one output, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from benchmarks.fleet import rows, start, write_fleet
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.postgres import PASSWORD
from tests.elspeth.test_real_pipeline import COMMAND_TIMEOUT, KillingRelay

pytest.importorskip("elspeth", reason="needs ELSPETH (Python >= 3.12, installed from its repository)")
pytestmark = [pytest.mark.elspeth, pytest.mark.azurite]

SHARDS = 4
TOTAL = 120


@pytest.fixture()
def relay(azurite: Azurite) -> Iterator[KillingRelay]:
    r = KillingRelay(azurite)
    try:
        yield r
    finally:
        r.close()


def _statuses(url: str) -> dict[str, str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(sa.text("SELECT run_id, status FROM runs")).tuples().all())
    finally:
        engine.dispose()


def test_four_runs_one_killed_all_recovered_every_row_once(
    tmp_path: Path, azurite: Azurite, container: str, postgres_url: str, relay: KillingRelay
) -> None:
    bare = postgres_url.replace(f":{PASSWORD}@", "@")
    shards = write_fleet(
        tmp_path, shards=SHARDS, total_rows=TOTAL, container=container, prefix="fleet/", landscape_url=bare,
        gate=True, env_for={0: "AZ_RELAYED"}, block="256B",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ELSPETH_", "PG"))}
    env.update(
        {
            "ELSPETH_FINGERPRINT_KEY": "test",
            "AZ_DIRECT": azurite.connection_string,
            "AZ_RELAYED": relay.connection_string,
            "PGPASSWORD": PASSWORD,
            "PYTHONUNBUFFERED": "1",
        }
    )
    procs = [start(shard, env) for shard in shards]
    # its 3rd append to a blob of ``high``: the manifest's intents, data block 1, data block 2 (landed)
    relay.arm(procs[0].pid, "/high/", nth=3, when="after", contains=True)
    outputs = [p.communicate(timeout=COMMAND_TIMEOUT)[0] for p in procs]
    relay.disarm()
    assert relay.killed and procs[0].returncode == -signal.SIGKILL, outputs[0][-3000:]
    for proc, output in zip(procs[1:], outputs[1:], strict=True):
        assert proc.returncode == 0, output[-3000:]
    statuses = _statuses(postgres_url)
    assert sorted(statuses.values()) == ["completed"] * (SHARDS - 1) + ["running"]
    (killed,) = [run for run, status in statuses.items() if status == "running"]

    settings = [arg for shard in shards for arg in ("-s", str(shard.settings))]
    command = ("recover", "--prefix", "fleet/", *settings, "--wait")
    proc = start(shards[0], env, *command)  # waits out the killed writer's lease (15 s), bounded
    output = proc.communicate(timeout=COMMAND_TIMEOUT)[0]
    print(output)  # shown with -s: the real output the notes quote
    assert proc.returncode == 0, output[-4000:]
    assert f"run {killed}: running, " in output and "recovering" in output
    assert output.count(": completed: nothing to do") == SHARDS - 1
    assert "1 run(s) acted on: 1 recovered" in output and "marked run" in output
    assert PASSWORD not in output
    assert set(_statuses(postgres_url).values()) == {"completed"}
    proc = start(shards[0], env, *command)  # again: nothing left to do, nothing changed
    again = proc.communicate(timeout=COMMAND_TIMEOUT)[0]
    assert proc.returncode == 0 and again.count(": completed: nothing to do") == SHARDS, again[-3000:]
    assert "0 run(s) acted on" in again
    print(again)

    tools = {**env, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    done = subprocess.run(
        [sys.executable, "-m", "elspeth_appendsink", "verify", "--container", container, "--prefix", "fleet/",
         "--landscape", postgres_url, "--json"],
        env=tools, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
    )  # fmt: skip
    assert PASSWORD not in done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert done.returncode == 0 and document["ok"], done.stdout[-3000:] + done.stderr
    assert document["summary"]["outputs"] == 2 * SHARDS and document["summary"]["landscape_runs"] == SHARDS

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(container)
    ids: Counter[int] = Counter()
    for output in document["outputs"]:
        for segment in output["verify"]["segments"]:
            data = client.get_blob_client(segment["name"]).download_blob().readall()
            ids.update(json.loads(line)["id"] for line in data.decode().splitlines())
    assert ids == Counter(r["id"] for r in rows(TOTAL)), "every input row in exactly one output, once"
