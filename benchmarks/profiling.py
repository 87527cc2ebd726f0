"""Where the sink's time goes: cProfile of one sink case (default: 1M rows, CSV, one write call).

``python -m benchmarks.profiling [--rows N] [--calls K] [--format csv]`` (or ``python -m benchmarks
--profile``) runs the case in a forked child against a fresh Azurite, like the suite, and writes
the top functions by own time and by cumulative time to ``results/profile-sink-<format>.txt``.
``--resume ENTRIES`` profiles the first write after ``configure_for_resume()`` instead
(``results/profile-resume-<entries>.txt``). cProfile slows pure-Python code down more than C
code, so read the shares, not the totals.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import pstats
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.rows import make_rows
from benchmarks.runner import azurite_server, exit_on_sigterm, run_in_child, stop_server

__all__ = ["profile_sink"]

RESULTS = Path(__file__).resolve().parent / "results"


def _child(connection_string: str, rows: Sequence[dict[str, Any]], fmt: str, calls: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from benchmarks.strategies import Env, prepare_sink
    from benchmarks.transport import Counts

    BlobServiceClient.from_connection_string(connection_string).create_container("profile")
    n = len(rows)
    batches = [list(rows[i * n // calls : (i + 1) * n // calls]) for i in range(calls)]
    env = Env(connection_string, "profile", fmt, batches, Counts())
    prepared = prepare_sink(env)
    # cProfile sees one thread; the writer uploads from a worker thread, so every thread started
    # during the run gets a profiler of its own (installed by threading.setprofile).
    workers: list[cProfile.Profile] = []

    def per_thread(_frame: Any, _event: str, _arg: Any) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile()
        workers.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(per_thread)
    t0 = time.perf_counter()
    main.enable()
    prepared.run()
    main.disable()
    seconds = time.perf_counter() - t0
    threading.setprofile(None)  # type: ignore[arg-type]
    out = io.StringIO()
    out.write(f"sink, {n:,} rows, {fmt}, {calls} write call(s): {seconds:.2f} s wall under cProfile\n")
    sections = [("calling thread", pstats.Stats(main, stream=out))]
    if workers:
        merged = pstats.Stats(workers[0], stream=out)
        for profiler in workers[1:]:
            merged.add(profiler)
        sections.append((f"worker threads ({len(workers)})", merged))
    for name, stats in sections:
        stats.strip_dirs()
        total = stats.total_tt  # type: ignore[attr-defined]  # set by pstats, not in typeshed
        out.write(f"\n######## {name}: {total:.2f} s of profiled time ########\n")
        out.write("== by own time (tottime) ==\n")
        stats.sort_stats("tottime").print_stats(20)
        out.write("== by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(25)
    return {"text": out.getvalue(), "seconds": seconds}


def _resume_child(connection_string: str, entries: int, server_pid: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from benchmarks.resume import run_resume

    BlobServiceClient.from_connection_string(connection_string).create_container("resume")
    profiler = cProfile.Profile()

    def around(fn: Any) -> Any:
        profiler.enable()
        try:
            return fn()
        finally:
            profiler.disable()

    [stage] = run_resume(connection_string, "resume", [entries], server_pid=server_pid, around=around)
    out = io.StringIO()
    out.write(
        f"resume: first write after configure_for_resume() on a run of {entries:,} manifest entries: "
        f"{stage['seconds']:.2f} s wall under cProfile; client CPU {stage['client_cpu_s']:.2f} s, "
        f"Azurite CPU {stage['azurite_cpu_s']:.2f} s; {stage['requests']} requests, "
        f"{stage['bytes_downloaded']:,} bytes read\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("== by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(20)
    out.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(30)
    return {"text": out.getvalue(), "seconds": stage["seconds"]}


def profile_resume(entries: int, out_dir: Path = RESULTS, *, log: Any = print) -> Path:
    server = azurite_server().start()
    try:
        assert server.pid is not None
        result = run_in_child(_resume_child, server.connection_string, entries, server.pid)
    finally:
        stop_server(server)
    return _save(result, out_dir / f"profile-resume-{entries}.txt", log)


def _save(result: dict[str, Any], path: Path, log: Any) -> Path:
    if "error" in result:
        raise RuntimeError(result["error"])
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the file small: drop pstats' blank padding lines
    text = "\n".join(line.rstrip() for line in result["text"].splitlines() if line.strip()) + "\n"
    path.write_text(text)
    log(f"[bench] profile: {result['seconds']:.1f} s under cProfile -> {path}")
    return path


def profile_sink(
    rows: Sequence[dict[str, Any]],
    out_dir: Path = RESULTS,
    *,
    fmt: str = "csv",
    calls: int = 1,
    log: Any = print,
) -> Path:
    server = azurite_server().start()
    try:
        result = run_in_child(_child, server.connection_string, rows, fmt, calls)
    finally:
        stop_server(server)
    return _save(result, out_dir / f"profile-sink-{fmt}.txt", log)


def main(argv: Sequence[str] | None = None) -> int:
    from elspeth_appendsink.logs import configure

    configure(level=logging.WARNING)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profiling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--format", default="csv", choices=("csv", "jsonl", "arrow"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", type=int, metavar="ENTRIES", help="profile the resume path instead")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.resume:
        profile_resume(args.resume, args.out)
        return 0
    rows = make_rows(args.rows)
    gc.freeze()
    profile_sink(rows, args.out, fmt=args.format, calls=args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
