"""Resume cost: how long a fresh sink instance takes to reconcile a run and be ready to append.

One run of the sink writes tiny rows (``block_size: 64B``; one ~45-byte CSV row per block, so
one manifest entry per row) in write calls of 1,000 rows until the manifest holds
``stage - 1`` block entries. The sink is closed, a **fresh** instance is configured with
``configure_for_resume()``, and its first ``write`` of one new row is timed: that call finds the
run's pointer and manifest, reads and checks the whole manifest, re-reads every segment once
(the full sha256 of the output and every entry's sha256), re-acquires the lease and appends
its row (one manifest entry + one block). The resumed instance then keeps writing up to the
next stage, so one run serves every stage (1k, 10k, 49k entries: 49k blocks, within one
segment's default 49,000-block cap).

Each entry costs two requests to create (intent + block), which dominates the time here.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from benchmarks.transport import CountingTransport, Counts

__all__ = ["RESUME_SCHEMA", "run_resume"]

RESUME_SCHEMA: dict[str, Any] = {"mode": "fixed", "fields": ["id: int", "pad: str"]}
_PAD = "x" * 40  # 43-48 bytes a row: one row per 64-byte block, header included
_CALL_ROWS = 1000


def _rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": i, "pad": _PAD} for i in range(start, stop)]


def run_resume(
    connection_string: str,
    container: str,
    stages: Sequence[int],
    latency: float = 0.0,
    rss: Callable[[], tuple[Callable[[], None], Callable[[], float]]] | None = None,
    server_pid: int | None = None,
    around: Callable[[Callable[[], Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Measure each stage; ``rss()`` returns (reset_peak, peak_delta_mb) helpers, if available.

    ``server_pid``: Azurite's pid, to report the server's CPU seconds during the timed write.
    ``around(fn)``: runs the timed write (a profiler hook); plain ``fn()`` by default.
    """
    import resource

    import psutil

    server = psutil.Process(server_pid) if server_pid is not None else None

    def cpu() -> tuple[float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        theirs = sum(server.cpu_times()[:2]) if server is not None else float("nan")
        return own.ru_utime + own.ru_stime, theirs

    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
    from elspeth_appendsink.testing import RecordingContext

    options = {
        "connection_string": connection_string,
        "container": container,
        "blob_path": "resume/data.csv",
        "format": "csv",
        "schema": RESUME_SCHEMA,
        "block_size": "64B",
    }
    run_id = f"resume-{uuid.uuid4().hex[:10]}"
    counts = Counts()
    results: list[dict[str, Any]] = []
    written = 0
    sink = AzureAppendBlobSink(options, transport=CountingTransport(counts, latency))
    build_seconds = 0.0
    for stage in sorted(stages):
        began = time.perf_counter()
        ctx = RecordingContext(run_id=run_id)
        while written < stage - 1:
            upto = min(stage - 1, written + _CALL_ROWS)
            sink.write(_rows(written, upto), ctx)
            written = upto
        sink.close()
        build_seconds += time.perf_counter() - began
        build_requests = counts.requests

        fresh = AzureAppendBlobSink(options, transport=CountingTransport(counts, latency))
        fresh.configure_for_resume()
        ctx = RecordingContext(run_id=run_id)
        gc.collect()
        reset, peak = rss() if rss is not None else (lambda: None, lambda: float("nan"))
        counts.reset()
        reset()
        cpu0 = cpu()
        t0 = time.perf_counter()
        first_write = partial(fresh.write, _rows(written, written + 1), ctx)
        if around is None:
            first_write()
        else:
            around(first_write)
        seconds = time.perf_counter() - t0
        cpu1 = cpu()
        peak_mb = peak()
        written += 1
        recovered = next(
            (
                c.response_data
                for c in ctx.calls
                if c.request_data.get("operation") == "writer_event"
                and (c.response_data or {}).get("event") == "resume.recovered"
            ),
            {},
        )
        entries = (recovered or {}).get("entries")
        results.append(
            {
                "entries": stage,
                "entries_before_resume": entries,
                "seconds": seconds,
                "requests": counts.requests,
                "requests_by_operation": dict(sorted(counts.by_operation.items())),
                "bytes_downloaded": counts.bytes_down,
                "bytes_uploaded": counts.bytes_up,
                "output_bytes": (recovered or {}).get("bytes"),
                "peak_rss_mb": peak_mb,
                "client_cpu_s": cpu1[0] - cpu0[0],
                "azurite_cpu_s": cpu1[1] - cpu0[1],
                "build_seconds_cumulative": build_seconds,
                "build_requests": build_requests,
            }
        )
        counts.reset()
        sink = fresh
    sink.close()
    return results
