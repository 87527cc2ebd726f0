"""A/B of whole write paths: strategies interleaved, each run in a fresh forked child, medians.

``python -m benchmarks.ab FORMAT ROWS CALLS [--strategies sink adlfs_user] [--latency 0.02]
[--repeat 5]`` starts one Azurite and, ``--repeat`` times, runs every strategy once in turn, each in
a forked child with its own container (the suite's isolation, without its plan). It prints the
median wall and client CPU seconds (and the kernel's share of them), minor page faults per
strategy and every run's wall time. A page fault costs about 3.7 us on this VM (1 ms per fresh
MiB touched), so memory that is freshly touched rather than reused is a cost in its own right.

Why it exists: on this project's 2-vCPU VM a micro-benchmark of one encoder step can mislead by
2-4x (whether earlier outputs are still alive decides how many page faults the next run pays), and
the same full case moves by about +-20 % between runs. A change to the write path is worth keeping
when it wins here, interleaved with what it replaces: check out the old commit, run, compare.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

from benchmarks.rows import make_rows
from benchmarks.runner import azurite_server, exit_on_sigterm, run_in_child, stop_server
from benchmarks.strategies import STRATEGIES, Env
from benchmarks.transport import Counts

__all__ = ["main"]


def _child(
    connection_string: str, strategy: str, fmt: str, batches: list[list[dict[str, Any]]], latency: float
) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    container = f"ab{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(connection_string).create_container(container)
    prepared = STRATEGIES[strategy](Env(connection_string, container, fmt, batches, Counts(), latency))
    collections = [0, 0, 0]
    pause = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            pause[0] -= time.perf_counter()
        else:
            pause[0] += time.perf_counter()
            collections[info["generation"]] += 1

    gc.callbacks.append(on_gc)
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    prepared.run()
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.remove(on_gc)
    result = {
        "wall": wall,
        "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "system": after.ru_stime - before.ru_stime,
        "faults": after.ru_minflt - before.ru_minflt,
        "gc": collections,
        "gc_s": pause[0],
    }
    prepared.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    parser.add_argument("format", choices=("csv", "jsonl", "arrow"))
    parser.add_argument("rows", type=int)
    parser.add_argument("calls", type=int)
    parser.add_argument("--strategies", nargs="+", default=["sink", "adlfs_user"], choices=sorted(STRATEGIES))
    parser.add_argument("--latency", type=float, default=0.0, help="seconds injected before each request")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    rows = make_rows(args.rows)
    n, calls = args.rows, args.calls
    batches = [list(rows[i * n // calls : (i + 1) * n // calls]) for i in range(calls)]
    runs: dict[str, list[dict[str, Any]]] = {strategy: [] for strategy in args.strategies}
    server = azurite_server()
    server.start()
    try:
        for _ in range(args.repeat):
            for strategy in args.strategies:
                result = run_in_child(
                    _child, server.connection_string, strategy, args.format, batches, args.latency
                )
                if "error" in result:
                    print(result["error"])
                    return 1
                runs[strategy].append(result)
    finally:
        stop_server(server)
    for strategy, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        faults = statistics.median(r["faults"] for r in results)
        system = statistics.median(r["system"] for r in results)
        walls = ", ".join(f"{r['wall']:.3f}" for r in results)
        gc_s = statistics.median(r["gc_s"] for r in results)
        gen2 = statistics.median(r["gc"][2] for r in results)
        print(
            f"{args.format} {n:,} rows x{calls} {args.latency * 1000:.0f} ms  {strategy:10s} "
            f"median wall {wall:.3f} s, client CPU {cpu:.3f} s ({system:.3f} s system), "
            f"{faults:,.0f} page faults, GC {gc_s:.3f} s ({gen2:.0f} full)  (walls: {walls})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
