"""The benchmark suite: plan the cases, run them, evaluate the targets, write the results.

``python -m benchmarks`` runs the full plan, ``python -m benchmarks --quick`` the quick one;
``--help`` lists the knobs. Results go to ``benchmarks/results/latest.{json,md,png}`` (or
``--out``). See ``runner.py`` for the isolation rules and ``strategies.py`` for what each
strategy does.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.rows import SCHEMA, make_rows
from benchmarks.runner import (
    Case,
    azurite_server,
    exit_on_sigterm,
    load_average,
    run_case,
    run_in_child,
    stop_server,
)

__all__ = ["FULL", "QUICK", "Plan", "main", "run_suite"]

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGY_ORDER = ("limit", "sink", "stock", "adlfs", "adlfs_user", "oneshot")
#: A case is "heavy" when it uploads about this much or more: it gets a fresh Azurite to itself.
HEAVY_BYTES = 150_000_000
#: Light cases share a server until it has taken this many bytes.
SHARED_SERVER_BYTES = 300_000_000


@dataclass(frozen=True)
class Plan:
    name: str
    formats: tuple[str, ...]
    rows: tuple[int, ...]
    calls: tuple[int, ...]
    latencies_ms: tuple[float, ...]
    strategies: tuple[str, ...] = STRATEGY_ORDER
    stock_budget_s: float | None = 8.0
    resume_stages: tuple[int, ...] = ()
    #: (format, latency) pairs to run; empty means every format at every latency.
    only: tuple[tuple[str, float], ...] = field(default=())

    def cases(self) -> list[Case]:
        out = []
        for fmt in self.formats:
            for rows in self.rows:
                for latency in self.latencies_ms:
                    if self.only and (fmt, latency) not in self.only:
                        continue
                    for calls in self.calls:
                        for strategy in self.strategies:
                            if strategy == "oneshot" and calls != self.calls[0]:
                                continue  # one upload of everything: the call count does not apply
                            if calls > rows:
                                continue
                            out.append(Case(strategy, fmt, rows, calls, latency))
        return out


QUICK = Plan(
    name="quick",
    formats=("csv",),
    rows=(100_000,),
    calls=(1, 100),
    latencies_ms=(0.0, 20.0),
    stock_budget_s=5.0,
    resume_stages=(1_000,),
)
FULL = Plan(
    name="full",
    formats=("csv", "jsonl", "arrow"),
    rows=(100_000, 1_000_000),
    calls=(1, 10, 100),
    latencies_ms=(0.0, 20.0),
    stock_budget_s=8.0,
    resume_stages=(1_000, 10_000, 49_000),
)


def _expected_upload(case: Case) -> float:
    size = case.rows * 200.0
    if case.strategy == "stock" and case.calls > 1:
        return size * (case.calls + 1) / 2
    return size


def _encode_all(fmt: str, rows: Sequence[dict[str, Any]]) -> list[bytes]:
    from elspeth_appendsink.elspeth.schema import RowSchema
    from elspeth_appendsink.encoders import create_encoder

    encoder = create_encoder(fmt, schema=RowSchema.from_dict(SCHEMA), first_rows=rows[:1])
    return encoder.encode(rows)


def _resume_child(connection_string: str, stages: Sequence[int], server_pid: int | None) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from benchmarks.resume import run_resume
    from benchmarks.runner import RssProbe

    admin = BlobServiceClient.from_connection_string(connection_string)
    admin.create_container("resume")
    probe = RssProbe()
    stages_out = run_resume(connection_string, "resume", stages, rss=probe.helpers, server_pid=server_pid)
    return {"stages": stages_out}


def run_suite(
    plan: Plan, out_dir: Path = RESULTS, *, log: Any = print, profile: bool = False
) -> dict[str, Any]:
    """Run ``plan`` and write ``latest.json``, ``latest.md`` and ``latest.png`` into ``out_dir``."""
    # Import everything the children use once, here: a forked child then starts warm.
    import adlfs  # noqa: F401

    import benchmarks.strategies  # noqa: F401
    import elspeth_appendsink.elspeth.sink  # noqa: F401

    started = time.time()
    meta = report.machine_info()
    meta.update({"mode": plan.name, "started": report.iso(started), "load_average_start": load_average()})
    log(f"[bench] {plan.name}: {meta['cpu_model']}, {meta['nproc']} CPUs, load {meta['load_average_start']}")
    biggest = max(plan.rows)
    t0 = time.perf_counter()
    rows = make_rows(biggest)
    log(f"[bench] generated {biggest:,} rows in {time.perf_counter() - t0:.1f} s")
    gc.freeze()  # the input rows are never collected, and the children never touch their GC headers
    try:
        return _run_cases(plan, rows, meta, started, out_dir, log=log, profile=profile)
    finally:
        gc.unfreeze()


def _run_cases(
    plan: Plan,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    started: float,
    out_dir: Path,
    *,
    log: Any,
    profile: bool,
) -> dict[str, Any]:
    cases = plan.cases()
    results: list[dict[str, Any]] = []
    server = None
    server_bytes = 0.0
    encoded: dict[str, list[bytes]] = {}
    try:
        for index, case in enumerate(cases, 1):
            if "limit" in plan.strategies and case.strategy == "limit" and case.fmt not in encoded:
                encoded.clear()
                gc.unfreeze()
                gc.collect()
                t0 = time.perf_counter()
                encoded[case.fmt] = _encode_all(case.fmt, rows)
                gc.freeze()
                log(
                    f"[bench] pre-encoded {len(rows):,} rows as {case.fmt} "
                    f"in {time.perf_counter() - t0:.1f} s"
                )
            expected = _expected_upload(case)
            heavy = expected >= HEAVY_BYTES
            if server is not None and (heavy or server_bytes + expected > SHARED_SERVER_BYTES):
                stop_server(server)
                server = None
            if server is None:
                server = azurite_server().start()
                server_bytes = 0.0
            result = run_case(
                case,
                rows,
                encoded.get(case.fmt) if case.strategy == "limit" else None,
                plan.stock_budget_s,
                server,
            )
            result["azurite_fresh"] = server_bytes == 0.0
            server_bytes += float(result.get("measured_bytes_uploaded", result.get("bytes_uploaded", 0)))
            if heavy:
                stop_server(server)
                server = None
            result["load_average"] = load_average()
            results.append(result)
            if "error" in result:
                log(f"[bench] {index:3d}/{len(cases)} {case.label}: ERROR\n{result['error']}")
            else:
                log(
                    f"[bench] {index:3d}/{len(cases)} {case.label}: {result['seconds']:7.2f} s "
                    f"{result['output_bytes'] / result['seconds'] / 1e6:7.1f} MB/s "
                    f"{result['requests']:6d} req  rss {result['peak_rss_mb']:7.1f} MB"
                    + ("  (projected)" if result.get("projected") else "")
                )
    finally:
        if server is not None:
            stop_server(server)
    encoded.clear()

    resume: list[dict[str, Any]] = []
    if plan.resume_stages:
        t0 = time.perf_counter()
        with azurite_server() as resume_server:
            outcome = run_in_child(
                _resume_child, resume_server.connection_string, plan.resume_stages, resume_server.pid
            )
        if "error" in outcome:
            log(f"[bench] resume: ERROR\n{outcome['error']}")
            resume = [{"error": outcome["error"]}]
        else:
            resume = outcome["stages"]
            for stage in resume:
                log(
                    f"[bench] resume {stage['entries']:>6,d} entries: first write {stage['seconds']:.2f} s, "
                    f"{stage['requests']} requests, {stage['bytes_downloaded']:,} bytes read"
                )
        log(f"[bench] resume stages took {time.perf_counter() - t0:.0f} s in all")

    meta.update(
        {
            "finished": report.iso(time.time()),
            "duration_s": round(time.time() - started, 1),
            "load_average_end": load_average(),
            "plan": {
                "formats": plan.formats,
                "rows": plan.rows,
                "calls": plan.calls,
                "latencies_ms": plan.latencies_ms,
                "stock_budget_s": plan.stock_budget_s,
                "resume_stages": plan.resume_stages,
            },
        }
    )
    data = report.assemble(meta, results, resume)
    report.write_all(data, out_dir)
    log(f"[bench] wrote {out_dir}/latest.json, latest.md, latest.png in {meta['duration_s']:.0f} s")
    if profile:
        from benchmarks.profiling import profile_sink

        profile_sink(rows, out_dir, log=log)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100k rows, CSV, 1 and 100 calls (about a minute)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"results directory (default: {RESULTS}, or its quick/ subdirectory with --quick, so a quick "
        "run never overwrites the full results)",
    )
    parser.add_argument("--rows", type=int, nargs="+", help="row counts (override the plan)")
    parser.add_argument("--calls", type=int, nargs="+", help="write calls per run (override)")
    parser.add_argument("--formats", nargs="+", choices=("csv", "jsonl", "arrow"), help="override")
    parser.add_argument(
        "--latency", type=float, nargs="+", dest="latencies", help="ms per request (override)"
    )
    parser.add_argument("--strategies", nargs="+", choices=STRATEGY_ORDER, help="override")
    parser.add_argument("--stock-budget", type=float, help="seconds before stock's calls are projected")
    parser.add_argument(
        "--resume", type=int, nargs="*", help="manifest sizes for the resume cost (none: skip)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the sink on the largest CSV case"
    )
    parser.add_argument(
        "--render", action="store_true", help="only re-render latest.md and latest.png from latest.json"
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.out is None:
        args.out = RESULTS / "quick" if args.quick else RESULTS
        if args.quick:  # quick results are for the person running them, not for the repository
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / ".gitignore").write_text("*\n")
    if args.render:
        import json

        saved = json.loads((args.out / "latest.json").read_text())
        report.write_all(report.assemble(saved["meta"], saved["cases"], saved["resume"]), args.out)
        return 0
    from elspeth_appendsink.logs import configure

    configure(level=logging.WARNING)  # the sink logs its lease release at INFO after every run
    plan = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    for name, value in (
        ("rows", args.rows),
        ("calls", args.calls),
        ("formats", args.formats),
        ("latencies_ms", args.latencies),
        ("strategies", args.strategies),
    ):
        if value:
            overrides[name] = tuple(value)
    if args.stock_budget is not None:
        overrides["stock_budget_s"] = args.stock_budget
    if args.resume is not None:
        overrides["resume_stages"] = tuple(args.resume)
    plan = replace(plan, **overrides)
    data = run_suite(plan, args.out, profile=args.profile)
    return 1 if any("error" in c for c in data["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
