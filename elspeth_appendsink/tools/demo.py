"""``make demo``: the product's story end to end, on a local Azure emulator, in about a minute.

1. Start Azurite (ours: a free loopback port, no telemetry, stopped by pid at the end).
2. Generate orders (with an ``id``) in three outcome groups, as ELSPETH hands them to a sink.
3. Run the sink in a child process through the in-repo engine harness and kill it with SIGKILL
   in the middle of a write (just before a data append of the second group).
4. ``inspect`` the torn output: the manifest ends in an unfinished step, a resume is needed.
5. Resume the run (the harness replays the rows whose outcomes were never recorded, as ELSPETH's
   ``resume`` does); the sink recognises the rows already in the blob and skips them.
6. ``verify`` every byte against the manifest; count every order exactly once.
7. Compare with what the stock ``azure_blob`` strategy (re-upload everything per write) sends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from elspeth_appendsink.core.paths import parse_segment_index
from elspeth_appendsink.storage import AzureStore, build_service_client
from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.tools.cli import main as cli

CONTAINER = "demo"
RUN_ID = "run-2026-11-27-demo"
GROUPS = (("completed", None, 5000), ("quarantined", "bad-amount", 400), ("routed", None, 2600))


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def make_rows(path: Path) -> list[dict[str, Any]]:
    """Orders in three outcome groups, as ELSPETH would route them to one sink."""
    rnd = random.Random(7)
    rows: list[dict[str, Any]] = []
    next_id = 1
    for outcome, error_hash, count in GROUPS:
        for _ in range(count):
            row = {
                "id": next_id,
                "customer": f"customer-{rnd.randrange(10_000):05d}",
                "city": rnd.choice(["Oslo", "Lima", "Pune", "Perth", "Quito", "Turku"]),
                "amount": round(rnd.uniform(1, 5000), 2),
                "express": rnd.random() < 0.2,
                "note": None if rnd.random() < 0.6 else "gift wrap",
            }
            rows.append({"row_id": f"r{next_id}", "outcome": outcome, "error_hash": error_hash, "row": row})
            next_id += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["row"] for r in rows]


def harness(args: list[str], env: dict[str, str], *, hold: str | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "elspeth_appendsink.testing.harness", *args]
    if hold:
        command += ["--hold-in-write", hold]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_output(store: AzureStore, blob_path: str) -> tuple[bytes, int]:
    names = sorted(
        (index, name)
        for name in store.list_names("")
        if (index := parse_segment_index(blob_path, name)) is not None
    )
    return b"".join(_whole(store, name) for _, name in names), len(names)


def _whole(store: AzureStore, name: str) -> bytes:
    info = store.properties(name)
    return store.read(name, 0, info.size) if info is not None and info.size else b""


def run_demo(workdir: Path) -> int:
    started = time.monotonic()
    step("1. Azurite: a local Azure Storage emulator (loopback only, telemetry off)")
    with Azurite() as azurite:
        say(f"   listening on {azurite.blob_endpoint} (pid {azurite.pid})")
        service = build_service_client(connection_string=azurite.connection_string)
        service.create_container(CONTAINER)
        store = AzureStore(service, CONTAINER)
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string  # for the CLI steps
        env = {**os.environ, "DEMO_STORAGE": azurite.connection_string}
        options = {
            "connection_string_env": "DEMO_STORAGE",
            "container": CONTAINER,
            "blob_path": "orders/{{ run_id }}/orders.csv",
            "format": "csv",
            "schema": {
                "mode": "fixed",
                "fields": [
                    "id: int",
                    "customer: str",
                    "city: str",
                    "amount: float",
                    "express: bool",
                    "note: str?",
                ],
            },
            "identity_fields": "id",
            "block_size": "32KiB",
            "segment_max_blocks": 6,
        }
        (workdir / "options.json").write_text(json.dumps({"sinks": {"orders": options}}, indent=2))
        blob_path = f"orders/{RUN_ID}/orders.csv"

        step("2. Generate orders, in three outcome groups (one sink write() per group, as ELSPETH does)")
        rows = make_rows(workdir / "rows.jsonl")
        say(f"   {len(rows)} orders: " + ", ".join(f"{n} {o}" for o, _, n in GROUPS))

        step("3. Run the sink in a child process, and SIGKILL it in the middle of the third write")
        args = [
            "--options",
            str(workdir / "options.json"),
            "--rows",
            str(workdir / "rows.jsonl"),
            "--run-id",
            RUN_ID,
            "--state",
            str(workdir / "state"),
        ]
        child = harness(args, env, hold="2:5:append")
        assert child.stdout is not None
        for line in child.stdout:
            say(f"   child: {line.rstrip()}")
            if line.startswith("holding"):
                child.send_signal(signal.SIGKILL)
                break
        child.wait()
        if child.returncode != -signal.SIGKILL:
            say(f"   the child was not killed mid-write (exit {child.returncode})")
            return 1
        say("   child killed with SIGKILL just before a data append of the third write")
        torn, segments = read_output(store, blob_path)
        say(f"   the blob holds {len(torn):,} bytes in {segments} segment(s) so far")

        step("4. inspect: where does the run stand?")
        code = cli(["inspect", "--container", CONTAINER, "--blob-path", blob_path])
        say(f"   (inspect exit code {code})")

        step("5. Resume the run: rows without a recorded outcome are replayed; durable ones are skipped")
        child = harness([*args[:2], "--run-id", RUN_ID, "--state", str(workdir / "state"), "--resume"], env)
        assert child.stdout is not None
        for line in child.stdout:
            say(f"   child: {line.rstrip()}")
        if child.wait() != 0:
            say("   resume FAILED")
            return 1

        step("6. verify: every byte described by the manifest, every block's sha256, the hash chain")
        code = cli(["verify", "--container", CONTAINER, "--blob-path", blob_path])
        if code != 0:
            say("   verify FAILED")
            return 1
        data, segments = read_output(store, blob_path)
        ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(data.decode()))]
        once = sorted(ids) == list(range(1, len(rows) + 1))
        say(f"   {len(ids)} data rows in {segments} segment(s); every order exactly once: {once}")

        step("7. Before / after")
        sizes: list[int] = []
        header = len(data.split(b"\n", 1)[0]) + 1
        per_row = (len(data) - header) / len(rows)
        cumulative = header
        for _, _, count in GROUPS:
            cumulative += round(count * per_row)
            sizes.append(cumulative)
        stock = sum(sizes)
        say(
            f"   output: {len(data):,} bytes, {len(ids):,} rows, duplicates: {len(ids) - len(set(ids))}, "
            f"missing: {len(rows) - len(set(ids))}"
        )
        say(
            f"   stock azure_blob strategy (re-upload everything on each of {len(GROUPS)} writes): "
            f"~{stock:,} bytes sent, no resume possible"
        )
        say(
            f"   this sink: the output once plus a manifest of "
            f"{_manifest_bytes(store, blob_path):,} bytes, and an exact resume"
        )
        say(f"   demo finished in {time.monotonic() - started:.1f} s")
        return 0 if once else 1


def _manifest_bytes(store: AzureStore, blob_path: str) -> int:
    infos = (store.properties(name) for name in store.list_names(f"{blob_path}.manifest/"))
    return sum(info.size for info in infos if info is not None)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="elspeth-appendsink-demo-") as workdir:
        return run_demo(Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
