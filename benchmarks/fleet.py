"""A fleet: N ELSPETH processes over a sharded input, one PostgreSQL landscape, one Azurite container.

``python -m benchmarks.fleet`` (with ELSPETH's venv: ``scripts/bench-fleet.sh``) measures

* the wall time of N = 1, 2, 4 concurrent ``run``s through the launcher over the same total
  rows (shard k of N takes the rows with ``id % N == k``), each N on a fresh landscape database
  and its own blob prefix, so every N starts on an empty PostgreSQL landscape;
* ``elspeth-appendsink verify --prefix`` over the N = 4 outputs (outputs/s, MB/s) against
  reading the same blobs with the SDK alone (download every segment, nothing checked).

and writes ``benchmarks/results/fleet.md``. :func:`write_fleet` and :func:`start` are also the
fleet test's (``tests/elspeth/test_fleet.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "elspeth_appendsink.elspeth", "--no-dotenv"]
FIELDS = ["id", "name", "amount", "category"]
THRESHOLD = 1000

_SOURCE = """\
source:
  plugin: csv
  on_success: @NEXT@
  options:
    path: @INPUT@
    schema:
      mode: fixed
      fields: ['id: int', 'name: str', 'amount: int', 'category: str']
    on_validation_failure: discard
"""
_GATE = """\
gates:
- name: amount_threshold
  input: gate_in
  condition: row['amount'] > @THRESHOLD@
  routes: {'true': high, 'false': low}
"""
_SINK = """\
  @NAME@:
    plugin: azure_append_blob
    on_write_failure: discard
    options:
      connection_string: ${@ENV@}
      container: @CONTAINER@
      blob_path: "@PREFIX@@NAME@/{{ run_id }}/rows.jsonl"
      format: jsonl
      block_size: @BLOCK@
      lease_duration: 15
      schema: {mode: observed}
"""
_AUDIT = """\
landscape:
  url: @URL@
payload_store:
  base_path: @PAYLOADS@
checkpoint:
  enabled: true
  frequency: every_row
"""


def rows(total: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f'row {i}, "quoted"', "amount": (i * 379) % 2000, "category": "abc"[i % 3]}
        for i in range(1, total + 1)
    ]


def _fill(template: str, **values: Any) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    return template


@dataclass(frozen=True)
class Shard:
    index: int
    settings: Path
    prefix: str  # every output of this shard is under it


def write_fleet(
    root: Path,
    *,
    shards: int,
    total_rows: int,
    container: str,
    prefix: str,
    landscape_url: str,
    gate: bool = False,
    env_for: dict[int, str] | None = None,
    block: str = "4KiB",
) -> list[Shard]:
    """Input and settings of ``shards`` pipelines in ``root``; ``env_for``: a shard's sink env var
    (default ``AZ_DIRECT``). With ``gate``, rows go to a ``low`` and a ``high`` sink (``low``
    written and checkpointed first, so a run killed in ``high`` can be resumed)."""
    data = rows(total_rows)
    made = []
    for k in range(shards):
        directory = root / f"shard{k}"
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "input.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(r for r in data if r["id"] % shards == k)
        shard_prefix = f"{prefix}shard{k}/"
        env = (env_for or {}).get(k, "AZ_DIRECT")
        names = ["low", "high"] if gate else ["out"]
        text = _fill(_SOURCE, NEXT="gate_in" if gate else "out", INPUT=directory / "input.csv")
        if gate:
            text += _fill(_GATE, THRESHOLD=THRESHOLD)
        text += "sinks:\n" + "".join(
            _fill(_SINK, NAME=n, ENV=env, CONTAINER=container, PREFIX=shard_prefix, BLOCK=block)
            for n in names
        )
        text += _fill(_AUDIT, URL=landscape_url, PAYLOADS=root / "payloads")
        (directory / "settings.yaml").write_text(text, encoding="utf-8")
        made.append(Shard(k, directory / "settings.yaml", shard_prefix))
    return made


def start(shard: Shard, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``run -s SETTINGS -x`` (or ``args``) through the launcher, in the shard's directory."""
    command = [*LAUNCHER, *(args or ("run", "-s", str(shard.settings), "-x"))]
    return subprocess.Popen(
        command,
        cwd=shard.settings.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


# --------------------------------------------------------------------------------------------
# the benchmark


def _environment(connection_string: str, pg_password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ELSPETH_", "PG"))}
    env.update(
        {
            "ELSPETH_FINGERPRINT_KEY": "bench",
            "AZ_DIRECT": connection_string,
            "AZURE_STORAGE_CONNECTION_STRING": connection_string,
            "PGPASSWORD": pg_password,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _bare(url: str, password: str) -> str:
    return url.replace(f":{password}@", "@")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="total input rows (default 2000)")
    parser.add_argument("--ns", default="1,2,4", help="fleet sizes (default 1,2,4)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fleet.md")
    args = parser.parse_args(argv)
    try:
        import elspeth  # noqa: F401
    except ImportError:
        print("benchmarks.fleet: ELSPETH is not importable here (run scripts/bench-fleet.sh); skipped")
        return 0
    import tempfile

    from azure.storage.blob import BlobServiceClient

    from elspeth_appendsink.testing.azurite import Azurite
    from elspeth_appendsink.testing.postgres import PASSWORD, Postgres

    sizes = [int(n) for n in args.ns.split(",")]
    results: list[dict[str, Any]] = []
    with Azurite() as azurite, Postgres() as postgres, tempfile.TemporaryDirectory() as tmp:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("fleet")
        env = _environment(azurite.connection_string, PASSWORD)
        urls: dict[int, str] = {}
        for n in sizes:
            url = urls[n] = postgres.url(postgres.create_database())
            shards = write_fleet(
                Path(tmp) / f"n{n}", shards=n, total_rows=args.rows, container="fleet", prefix=f"n{n}/",
                landscape_url=_bare(url, PASSWORD),
            )  # fmt: skip
            began = time.monotonic()
            procs = [start(s, env) for s in shards]
            outputs = [p.communicate()[0] for p in procs]
            wall = time.monotonic() - began
            failed = [o[-2000:] for p, o in zip(procs, outputs, strict=True) if p.returncode != 0]
            if failed:
                print("\n---\n".join(failed), file=sys.stderr)
                return 1
            results.append({"n": n, "rows": args.rows, "wall_s": round(wall, 2)})
            print(f"N={n}: {args.rows} rows in {wall:.1f}s wall", flush=True)
        n = max(sizes)
        verify = _verify_prefix(env, f"n{n}/", _bare(urls[n], PASSWORD))
        sdk = _sdk_read(service, "fleet", f"n{n}/")
        verify_landscape = _verify_prefix(env, f"n{n}/", None)
    _report(args.out, results, verify, verify_landscape, sdk, os.cpu_count() or 0)
    return 0


def _verify_prefix(env: dict[str, str], prefix: str, landscape: str | None) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "elspeth_appendsink",
        "verify",
        "--container",
        "fleet",
        "--prefix",
        prefix,
    ]
    command += ["--json", *(["--landscape", landscape] if landscape else [])]
    began = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    document = json.loads(done.stdout)
    summary = document["summary"]
    return {
        "ok": document["ok"],
        "outputs": summary["outputs"],
        "bytes": summary["bytes"],
        "verify_s": summary["seconds"],
        "process_s": round(wall, 2),
        "landscape": landscape is not None,
    }


def _sdk_read(service: Any, container: str, prefix: str) -> dict[str, Any]:
    client = service.get_container_client(container)
    names = [b.name for b in client.list_blobs(name_starts_with=prefix) if ".manifest/" not in b.name]
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(
            pool.map(lambda name: len(client.get_blob_client(name).download_blob().readall()), names)
        )
    return {"blobs": len(names), "bytes": sum(sizes), "seconds": round(time.monotonic() - began, 3)}


def _report(
    path: Path,
    runs: list[dict[str, Any]],
    verify: dict[str, Any],
    plain: dict[str, Any],
    sdk: dict[str, Any],
    cores: int,
) -> None:
    lines = [
        "# Fleet benchmark (`python -m benchmarks.fleet`)",
        "",
        f"{cores} cores. Concurrent `run`s through the launcher over the same total rows, sharded; one",
        "PostgreSQL landscape (fresh database per N), one Azurite container. ELSPETH is CPU-bound, so",
        "N processes share the cores: wall time can fall only until the cores are busy.",
        "",
        "| N | rows | wall (s) |",
        "|---|---|---|",
        *(f"| {r['n']} | {r['rows']} | {r['wall_s']} |" for r in runs),
        "",
        "`verify --prefix` over the largest fleet's outputs (4 workers) against reading the same",
        "blobs with the SDK alone (4 threads, nothing checked):",
        "",
        "| what | outputs / blobs | bytes | seconds | outputs/s | MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in (("verify --prefix", plain), ("verify --prefix --landscape", verify)):
        seconds = max(v["verify_s"], 1e-9)
        lines.append(
            f"| {name} | {v['outputs']} | {v['bytes']} | {v['verify_s']} (process {v['process_s']}) | "
            f"{v['outputs'] / seconds:.1f} | {v['bytes'] / seconds / 1e6:.2f} |"
        )
    seconds = max(sdk["seconds"], 1e-9)
    lines.append(
        f"| SDK download only | {sdk['blobs']} | {sdk['bytes']} | {sdk['seconds']} | "
        f"{sdk['blobs'] / seconds:.1f} | {sdk['bytes'] / seconds / 1e6:.2f} |"
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
