"""``python -m benchmarks.elspeth_pipeline``: one real ELSPETH pipeline, three sinks, two shapes.

Owns the in-ELSPETH benchmark (issue #14 item 3). The same pipeline runs as a user runs it, one
child process per run, with every sink of the pipeline set to one of:

* ``csv`` — ELSPETH's own CSV sink, to a local file (the baseline every ratio is against);
* ``azure_blob`` — ELSPETH's own Azure sink, against Azurite (it re-uploads everything it
  buffered on each write);
* ``azure_append_blob`` — this package's sink, through our launcher
  (``python -m elspeth_appendsink.elspeth``), against the same Azurite.

Shapes:

* ``one`` — csv source → passthrough → one sink: ELSPETH makes **one** sink write per run.
* ``many`` — the source quarantines ``--bad`` rows, each with a distinct validation error, to a
  ``quarantine`` sink, and a gate routes the valid rows to ``high`` / ``low``. ELSPETH groups a
  sink's pending rows by (outcome, error hash) and makes one ``write()`` per group, so this
  shape makes ``--bad`` + 2 sink writes per run.
* ``shared`` — (not run by default) the valid rows and the ``--bad`` quarantined rows go to the
  **same** sink. ELSPETH writes the ``completed`` group first (groups are sorted by outcome),
  then one write per quarantined row: ``--bad`` + 1 writes, each after the bulk is written — the
  case where a sink that re-uploads what it buffered pays most.

Measured per run: wall time of the child; peak RSS of the child (``os.wait4``'s own rusage of
that one process); the sink's time, both as ELSPETH's landscape records it (``operations`` of
type ``sink_write``: ``write`` + ``flush``) and as the child's ``sitecustomize`` measures every
sink lifecycle method (which also sees start-up and ``on_complete`` / ``close``); bytes uploaded,
summed at the azure-core transport seam in the child (request body sizes at
``RequestsTransport.send``, see ``benchmarks/elspeth_child/sitecustomize.py``); and the output size
(the last artifact ELSPETH registered per sink node). Medians over ``--reps`` repetitions, run
interleaved (rep 1 of every variant, then rep 2, ...; the sink order turning by one each rep) so
a load change hits all of them alike.

Without ELSPETH importable (it needs Python >= 3.12, installed from its repository) this prints
why and exits 0. Run it with the ELSPETH venv::

    PYTHONPATH=. /work/elspeth-venv/bin/python -m benchmarks.elspeth_pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.runner import exit_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
CHILD_SITE = Path(__file__).resolve().parent / "elspeth_child"
RESULTS = ROOT / "benchmarks" / "results"
SINKS = ("csv", "azure_blob", "azure_append_blob")
SHAPES = ("one", "many", "shared")
THRESHOLD = 1000
TIMES = "\u00d7"  # the multiplication sign, spelled out so linters do not take it for an x
METHODS = ("__init__", "on_start", "write", "flush", "on_complete", "close")
RUN_TIMEOUT = 1800

__all__ = ["RunResult", "build_settings", "main", "write_input"]


# ----------------------------------------------------------------------------------------------
# the pipeline


def write_input(path: Path, rows: int, bad: int) -> None:
    """``rows`` valid rows, then ``bad`` rows whose ``amount`` fails ``int`` each in its own way.

    The invalid value differs per row, so ELSPETH's validation message (which quotes the input)
    and hence the quarantine error hash differs too: one sink write per bad row.
    """
    names = ["plain", 'comma, "quoted"', "Zoë ünïcode", "semi;colon"]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "name", "amount", "category"])
        for i in range(1, rows + 1):
            out.writerow([i, f"{names[i % len(names)]} #{i}", (i * 379) % 2000, "abc"[i % 3]])
        for j in range(bad):
            out.writerow([rows + 1 + j, f"bad #{j}", f"not-a-number-{j}", "x"])


def _sink_block(name: str, plugin: str, root: Path, container: str) -> str:
    if plugin == "csv":
        options = f"      path: {root / 'out' / (name + '.csv')}\n"
    elif plugin == "azure_blob":
        options = (
            "      connection_string: ${BENCH_AZURE_CONNECTION_STRING}\n"
            f"      container: {container}\n"
            f"      blob_path: {name}.csv\n"
            "      format: csv\n"
            "      overwrite: true\n"
        )
    else:
        options = (
            "      connection_string: ${BENCH_AZURE_CONNECTION_STRING}\n"
            f"      container: {container}\n"
            f"      blob_path: {name}.csv\n"
            "      format: csv\n"
        )
    return (
        f"  {name}:\n    plugin: {plugin}\n    on_write_failure: discard\n    options:\n"
        f"{options}      schema: {{mode: observed}}\n"
    )


def build_settings(root: Path, plugin: str, shape: str, container: str, *, checkpoint: str) -> str:
    """ELSPETH settings YAML for one run; every path is absolute and inside ``root``."""
    many = shape == "many"
    quarantine = {"one": "discard", "many": "quarantine", "shared": "output"}[shape]
    text = (
        "source:\n  plugin: csv\n  on_success: validated\n  options:\n"
        f"    path: {root / 'input.csv'}\n"
        "    schema:\n      mode: fixed\n"
        "      fields: ['id: int', 'name: str', 'amount: int', 'category: str']\n"
        f"    on_validation_failure: {quarantine}\n"
        "transforms:\n- name: process\n  plugin: passthrough\n  input: validated\n"
        f"  on_success: {'gate_in' if many else 'output'}\n  on_error: discard\n"
        "  options:\n    schema: {mode: observed}\n"
    )
    if many:
        text += (
            "gates:\n- name: amount_threshold\n  input: gate_in\n"
            f"  condition: row['amount'] > {THRESHOLD}\n  routes: {{'true': high, 'false': low}}\n"
        )
    text += "sinks:\n"
    for name in ("high", "low", "quarantine") if many else ("output",):
        text += _sink_block(name, plugin, root, container)
    text += f"landscape:\n  url: sqlite:///{root / 'audit.db'}\n"
    text += f"payload_store:\n  base_path: {root / 'payloads'}\n"
    if checkpoint == "off":
        text += "checkpoint:\n  enabled: false\n"
    else:
        text += f"checkpoint:\n  enabled: true\n  frequency: {checkpoint}\n"
    return text


def command_for(plugin: str) -> list[str]:
    """ELSPETH's own CLI for its own sinks; our launcher (which registers ours) for ours."""
    if plugin == "azure_append_blob":
        return [sys.executable, "-m", "elspeth_appendsink.elspeth", "--no-dotenv", "run"]
    return [sys.executable, "-c", "from elspeth.cli import app; app()", "--no-dotenv", "run"]


# ----------------------------------------------------------------------------------------------
# one run


@dataclass
class RunResult:
    sink: str
    shape: str
    rep: int
    wall_s: float
    peak_rss_mib: float
    sink_writes: int
    sink_write_op_s: float  # ELSPETH's landscape: sum of sink_write operation durations
    sink_methods_s: float  # every sink lifecycle method, measured in the child
    sink_seconds: dict[str, float]
    bytes_uploaded: int
    requests: int
    requests_by_method: dict[str, int]
    requests_by_operation: dict[str, int]
    transport_s: float  # time inside RequestsTransport.send (round trips the sink waited for)
    record_call_s: float  # time inside PluginContext.record_call (audit records of calls)
    record_calls: int
    output_bytes: int  # last artifact ELSPETH registered, summed over sink nodes
    rows_out: int
    status: str
    extra: dict[str, Any] = field(default_factory=dict)


def _landscape(db: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        ((run_id, status),) = con.execute("SELECT run_id, status FROM runs").fetchall()
        ops = con.execute(
            "SELECT COUNT(*), COALESCE(SUM(duration_ms), 0) FROM operations "
            "WHERE run_id=? AND operation_type='sink_write'",
            (run_id,),
        ).fetchone()
        last_sizes = con.execute(
            "SELECT sink_node_id, size_bytes FROM artifacts WHERE run_id=? ORDER BY created_at, rowid",
            (run_id,),
        ).fetchall()
        rows_out = con.execute(
            "SELECT COUNT(*) FROM token_outcomes "
            "WHERE run_id=? AND outcome IN ('completed','routed','quarantined')",
            (run_id,),
        ).fetchone()[0]
    sizes: dict[str, int] = {}
    for node, size in last_sizes:
        sizes[str(node)] = int(size)  # later rows overwrite: the last artifact per node
    return {
        "status": str(status),
        "sink_writes": int(ops[0]),
        "sink_write_op_s": float(ops[1]) / 1000.0,
        "output_bytes": sum(sizes.values()),
        "rows_out": int(rows_out),
    }


def run_once(
    work: Path, input_csv: Path, sink: str, shape: str, rep: int, env: dict[str, str], *, checkpoint: str
) -> RunResult:
    root = work / f"{shape}-{sink}-{rep}"
    (root / "out").mkdir(parents=True)
    shutil.copyfile(input_csv, root / "input.csv")
    container = f"bench-{uuid.uuid4().hex[:12]}"
    if sink != "csv":
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(env["BENCH_AZURE_CONNECTION_STRING"]) as service:
            service.create_container(container)
    settings = root / "settings.yaml"
    settings.write_text(build_settings(root, sink, shape, container, checkpoint=checkpoint), encoding="utf-8")
    stats = root / "child-stats.json"
    child_env = {
        **env,
        "BENCH_ELSPETH_STATS": str(stats),
        "PYTHONPATH": os.pathsep.join([str(CHILD_SITE), str(ROOT)]),
    }
    log = (root / "elspeth.log").open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*command_for(sink), "-s", str(settings), "-x"],
        cwd=root,
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # wait4 gives this one child's own rusage (RUSAGE_CHILDREN would be a max over all children)
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)  # polling the child's exit; wait4 with a timeout does not exist
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        tail = (root / "elspeth.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"ELSPETH run {sink}/{shape} exited {proc.returncode}:\n{tail}")
    child = json.loads(stats.read_text(encoding="utf-8"))
    scape = _landscape(root / "audit.db")
    sink_seconds = {k: round(v, 4) for k, v in sorted(child["sink_seconds"].items())}
    result = RunResult(
        sink=sink,
        shape=shape,
        rep=rep,
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024.0,  # Linux: KiB
        sink_writes=scape["sink_writes"],
        sink_write_op_s=scape["sink_write_op_s"],
        sink_methods_s=sum(child["sink_seconds"].values()),
        sink_seconds=sink_seconds,
        bytes_uploaded=int(child["bytes_uploaded"]),
        requests=int(child["requests"]),
        requests_by_method=dict(sorted(child["requests_by_method"].items())),
        requests_by_operation=dict(sorted(child["requests_by_operation"].items())),
        transport_s=float(child["transport_seconds"]),
        record_call_s=float(child["record_call_seconds"]),
        record_calls=int(child["record_calls"]),
        output_bytes=scape["output_bytes"],
        rows_out=scape["rows_out"],
        status=scape["status"],
    )
    shutil.rmtree(root / "payloads", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------
# summary and report


def summarise(results: list[RunResult]) -> list[dict[str, Any]]:
    """Medians per (shape, sink), with ratios against the csv sink of the same shape."""
    table: list[dict[str, Any]] = []
    for shape in SHAPES:
        base: dict[str, Any] | None = None
        for sink in SINKS:
            runs = [r for r in results if r.shape == shape and r.sink == sink]
            if not runs:
                continue
            output = runs[0].output_bytes
            med = {
                key: statistics.median(getattr(r, key) for r in runs)
                for key in (
                    "wall_s",
                    "peak_rss_mib",
                    "sink_write_op_s",
                    "sink_methods_s",
                    "transport_s",
                    "record_call_s",
                    "record_calls",
                    "bytes_uploaded",
                    "requests",
                )
            }
            row: dict[str, Any] = {
                "shape": shape,
                "sink": sink,
                "reps": len(runs),
                "sink_writes": runs[0].sink_writes,
                "output_bytes": runs[0].output_bytes,
                "rows_out": runs[0].rows_out,
                **med,
                "wall_all_s": [round(r.wall_s, 2) for r in runs],
                "sink_share": med["sink_methods_s"] / med["wall_s"],
                "upload_x_output": med["bytes_uploaded"] / output if output else None,
                "sink_seconds_median": {
                    k: statistics.median(r.sink_seconds.get(k, 0.0) for r in runs) for k in METHODS
                },
                "requests_by_method": runs[0].requests_by_method,
                "requests_by_operation": runs[0].requests_by_operation,
            }
            if sink == "csv":
                base = row
            if base is not None:
                row["wall_vs_csv"] = row["wall_s"] / base["wall_s"]
                row["rss_vs_csv"] = row["peak_rss_mib"] / base["peak_rss_mib"]
                # the sink's own extra cost, as a share of the csv run: steadier than the wall ratio on a
                # loaded machine, where runs of the same pipeline differ by more than any sink costs
                row["added_sink_vs_csv_wall"] = (row["sink_methods_s"] - base["sink_methods_s"]) / base[
                    "wall_s"
                ]
            table.append(row)
    return table


def _ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.3f}" if key in row else "—"  # no csv run of this shape to compare with


def _percent(row: dict[str, Any], key: str) -> str:
    return f"{100 * row[key]:+.1f} %" if key in row else "—"


def render(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Real ELSPETH pipeline: csv vs azure_blob vs azure_append_blob",
        "",
        f"`{meta['command']}` — {meta['rows']} valid rows"
        f" (+{meta['bad']} quarantined in shapes `many` / `shared`), median of {meta['reps']} repetitions,"
        f" checkpoint `{meta['checkpoint']}`, {meta['when']}, load average before/after"
        f" {meta['load_before']} / {meta['load_after']}, Python {meta['python']}, {meta['cpus']} CPUs."
        " Azure sinks write to Azurite on loopback.",
        "",
        "| shape | sink | sink writes | wall (s) | wall ÷ csv | sink time (s) | sink share |"
        " added sink time ÷ csv wall | ELSPETH sink_write (s) | peak RSS (MiB) | RSS ÷ csv | requests |"
        " uploaded | output | uploaded ÷ output |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        ratio = r.get("upload_x_output")
        uploaded = "—" if not r["bytes_uploaded"] or ratio is None else f"{ratio:.2f}{TIMES}"
        lines.append(
            f"| {r['shape']} | `{r['sink']}` | {r['sink_writes']} | {r['wall_s']:.2f} |"
            f" {_ratio(r, 'wall_vs_csv')} | {r['sink_methods_s']:.3f} | {100 * r['sink_share']:.1f} % |"
            f" {_percent(r, 'added_sink_vs_csv_wall')} | {r['sink_write_op_s']:.3f} |"
            f" {r['peak_rss_mib']:.0f} | {_ratio(r, 'rss_vs_csv')} |"
            f" {int(r['requests'])} | {int(r['bytes_uploaded']):,} | {r['output_bytes']:,} | {uploaded} |"
        )
    lines += [
        "",
        "Where the sink's time goes (median seconds per lifecycle method, measured in the child):",
        "",
        "| shape | sink | "
        + " | ".join(METHODS)
        + " | in requests | in record_call (n) | requests by operation |",
        "|---|---|" + "---:|" * 8 + "---|",
    ]
    for r in table:
        secs = r["sink_seconds_median"]
        cells = " | ".join(f"{secs.get(k, 0.0):.3f}" for k in METHODS)
        ops = ", ".join(f"{op} {TIMES}{n}" for op, n in r["requests_by_operation"].items()) or "—"
        lines.append(
            f"| {r['shape']} | `{r['sink']}` | {cells} | {r['transport_s']:.3f} |"
            f" {r['record_call_s']:.3f} ({int(r['record_calls'])}) | {ops} |"
        )
    lines += [
        "",
        "How it is measured:",
        "",
        "* **wall**: the ELSPETH child process from spawn to exit (imports and plugin discovery included);"
        " `csv` and `azure_blob` run through ELSPETH's own CLI, `azure_append_blob` through our launcher.",
        "* **sink time**: the sum over the sink's `__init__`, `on_start`, `write`, `flush`, `on_complete`,"
        " `close`, timed in the child by `benchmarks/elspeth_child/sitecustomize.py`; **ELSPETH sink_write**"
        " is the landscape's own `operations.duration_ms` for `sink_write` (write + flush only)."
        " Sink share = sink time ÷ wall; *added sink time ÷ csv wall* = (this sink's time minus the csv"
        " sink's time) ÷ the csv run's wall: what the sink adds to the same pipeline, measured in the"
        " process, so less exposed to machine load than the wall ratio."
        " *In requests*: time inside `RequestsTransport.send` (round trips the sink waited for);"
        " *in record_call*: time inside ELSPETH's `PluginContext.record_call` (the sink recording a call in"
        " the landscape and payload store), with the number of calls.",
        "* **peak RSS**: `ru_maxrss` of the one ELSPETH process (`os.wait4`).",
        "* **uploaded**: the sum of request body sizes (`Content-Length`) of every request sent through"
        " azure-core's `RequestsTransport.send` in the child, below the SDK's retry policy (a retry counts"
        " again), manifest and lease requests included; **output**: the last artifact `size_bytes` ELSPETH"
        " registered per sink node, summed over the run's sinks.",
        "",
    ]
    return "\n".join(lines)


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.elspeth_pipeline", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1000, help="valid input rows (default 1000)")
    parser.add_argument("--bad", type=int, default=60, help="distinct-error rows quarantined in shape 'many'")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sinks", nargs="+", choices=SINKS, default=list(SINKS))
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=["one", "many"])
    parser.add_argument(
        "--checkpoint",
        default="off",
        choices=["off", "every_row"],
        help="ELSPETH checkpointing (default off)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "elspeth", help="writes OUT.md and OUT.json")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only re-write OUT.md (and print it) from a results JSON"
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.render is not None:
        saved = json.loads(args.render.read_text(encoding="utf-8"))
        text = render(summarise([RunResult(**r) for r in saved["runs"]]), saved["meta"])
        args.out.with_suffix(".md").write_text(text, encoding="utf-8")
        print(text)
        return 0

    if importlib.util.find_spec("elspeth") is None:
        print(
            "benchmarks.elspeth_pipeline: skipped: ELSPETH is not importable "
            f"({sys.executable}); run it with the ELSPETH venv (Python >= 3.12), e.g. "
            "PYTHONPATH=. /work/elspeth-venv/bin/python -m benchmarks.elspeth_pipeline"
        )
        return 0

    from elspeth_appendsink.testing.azurite import Azurite

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ELSPETH_", "BENCH_"))}
    env["ELSPETH_FINGERPRINT_KEY"] = "bench"  # a secret-named option (connection_string) requires it
    meta: dict[str, Any] = {
        "command": " ".join(
            ["python -m benchmarks.elspeth_pipeline", *(sys.argv[1:] if argv is None else argv)]
        ),
        "rows": args.rows,
        "bad": args.bad,
        "reps": args.reps,
        "checkpoint": args.checkpoint,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": _load(),
    }
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-elspeth-") as tmp, Azurite() as azurite:
        work = Path(tmp)
        env["BENCH_AZURE_CONNECTION_STRING"] = azurite.connection_string
        inputs = {}
        for shape in args.shapes:
            inputs[shape] = work / f"input-{shape}.csv"
            write_input(inputs[shape], args.rows, 0 if shape == "one" else args.bad)
        for rep in range(1, args.reps + 1):
            # the sink order turns by one each repetition, so a load trend does not always hit the same sink
            turn = (rep - 1) % len(args.sinks)
            order = args.sinks[turn:] + args.sinks[:turn]
            for shape in args.shapes:
                for sink in order:
                    r = run_once(work, inputs[shape], sink, shape, rep, env, checkpoint=args.checkpoint)
                    results.append(r)
                    print(
                        f"rep {rep} {shape:4} {sink:18} wall {r.wall_s:7.2f}s  sink {r.sink_methods_s:6.3f}s"
                        f"  writes {r.sink_writes:3}  rss {r.peak_rss_mib:5.0f} MiB"
                        f"  up {r.bytes_uploaded:>12,}  out {r.output_bytes:>10,}  {r.status}",
                        flush=True,
                    )
    meta["load_after"] = _load()
    table = summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "summary": table, "runs": [asdict(r) for r in results]}, indent=1) + "\n",
        encoding="utf-8",
    )
    args.out.with_suffix(".md").write_text(render(table, meta), encoding="utf-8")
    print(render(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
