"""Which requests the sink sends, in what order, and where the wall time goes between them.

``python -m benchmarks.timeline [--rows 100000] [--calls 1 10] [--format csv] [--latency 0.02]``
runs the sink against a fresh Azurite (in a forked child, like the suite) with a transport that
records each request's start and end (after the injected latency, the same sleep
:class:`~benchmarks.transport.CountingTransport` adds) and writes ``results/timeline.md``:

* the requests sent before the first data byte (``append_block`` on a segment), each with its
  start offset and duration; those that do not overlap are sequential round trips;
* per write call: how many requests, how many of them sequential, and the time the client spent
  between them (encoding, hashing, planning).

It is the measurement behind the start-up sequence argued for in ``protocol/writer.py``; the
benchmark suite's ratios say whether shortening it mattered.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.rows import make_rows
from benchmarks.runner import azurite_server, exit_on_sigterm, run_in_child, stop_server

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Span:
    operation: str
    blob: str
    start: float
    end: float


def _child(connection_string: str, fmt: str, rows: int, calls: int, latency: float) -> dict[str, Any]:
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient

    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
    from elspeth_appendsink.testing import RecordingContext, operation_of

    spans: list[Span] = []
    lock = threading.Lock()
    t0 = [0.0]

    class Timeline(RequestsTransport):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            if latency:
                time.sleep(latency)
            start = time.perf_counter() - t0[0]
            response = super().send(request, **kwargs)
            end = time.perf_counter() - t0[0]
            blob = request.url.split("?")[0].split("/", 4)[-1]
            with lock:
                spans.append(Span(operation_of(request), blob, start, end))
            return response

    container = "timeline"
    BlobServiceClient.from_connection_string(connection_string).create_container(container)
    data = make_rows(rows)
    size = -(-rows // calls)
    batches = [data[i : i + size] for i in range(0, rows, size)]
    from benchmarks.rows import SCHEMA

    sink = AzureAppendBlobSink(
        {
            "connection_string": connection_string,
            "container": container,
            "blob_path": f"out/data.{fmt}",
            "format": fmt,
            "schema": SCHEMA,
        },
        transport=Timeline(),
    )
    ctx = RecordingContext(run_id="timeline")
    marks: list[tuple[float, float]] = []
    t0[0] = time.perf_counter()
    for batch in batches:
        began = time.perf_counter() - t0[0]
        sink.write(batch, ctx)
        marks.append((began, time.perf_counter() - t0[0]))
    sink.on_complete(ctx)
    sink.close()
    total = time.perf_counter() - t0[0]
    return {
        "spans": [s.__dict__ for s in sorted(spans, key=lambda s: s.start)],
        "calls": marks,
        "total": total,
    }


def _sequential(spans: Sequence[dict[str, Any]]) -> int:
    """Round trips that did not overlap the previous one (a chain a faster network cannot hide)."""
    count, end = 0, -1.0
    for span in spans:
        if span["start"] >= end:
            count += 1
        end = max(end, span["end"])
    return count


def _report(fmt: str, rows: int, calls: int, latency: float, result: dict[str, Any]) -> list[str]:
    spans = result["spans"]
    first_data = next(
        (s for s in spans if s["operation"] == "append" and ".manifest/" not in s["blob"]), None
    )
    before = [s for s in spans if first_data is None or s["start"] < first_data["start"]]
    lines = [
        f"### {fmt}, {rows} rows in {calls} call(s), {latency * 1000:.0f} ms injected per request",
        "",
        f"Total {result['total'] * 1000:.0f} ms, {len(spans)} requests. Before the first data byte: "
        f"{len(before)} requests, {_sequential(before)} sequential round trips, first data request at "
        f"{(first_data['start'] if first_data else result['total']) * 1000:.1f} ms.",
        "",
        "| # | starts (ms) | takes (ms) | request | blob |",
        "|---|---|---|---|---|",
    ]
    for i, s in enumerate(before, 1):
        lines.append(
            f"| {i} | {s['start'] * 1000:.1f} | {(s['end'] - s['start']) * 1000:.1f} | {s['operation']} | "
            f"{s['blob']} |"
        )
    lines += ["", "| call | requests | sequential | wall (ms) | client time between requests (ms) |"]
    lines += ["|---|---|---|---|---|"]
    for n, (began, ended) in enumerate(result["calls"], 1):
        inside = [s for s in spans if began <= s["start"] < ended]
        busy = 0.0
        edge = began
        for s in inside:
            busy += max(0.0, s["end"] - max(s["start"], edge))
            edge = max(edge, s["end"])
        lines.append(
            f"| {n} | {len(inside)} | {_sequential(inside)} | {(ended - began) * 1000:.1f} | "
            f"{(ended - began - busy) * 1000:.1f} |"
        )
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timeline", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--format", default="csv", choices=["csv", "jsonl", "arrow"])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds injected before each request")
    parser.add_argument("--out", type=Path, default=RESULTS / "timeline.md")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["# Request timeline of the sink", "", f"`python -m benchmarks.timeline {shown}`", ""]
    for calls in args.calls:
        server = azurite_server()
        server.start()
        try:
            result = run_in_child(
                _child, server.connection_string, args.format, args.rows, calls, args.latency
            )
        finally:
            stop_server(server)
        if "error" in result:
            print(result["error"])
            return 1
        lines += _report(args.format, args.rows, calls, args.latency, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
