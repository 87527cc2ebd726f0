"""Run benchmark cases: a fresh Azurite per case, the case itself in a forked child process.

Isolation, per case:

* **Azurite** is started fresh for every case (in memory, ``--extentMemoryLimit`` raised so no
  case hits the cap) and stopped afterwards by its pid: it keeps deleted and overwritten data
  until its 10-minute GC, and slows down as that garbage grows.
* **The client work** runs in a child forked from the suite process, which generated the rows
  (and, for the limit, pre-encoded them) beforehand. The child slices its input, prepares the
  strategy, then resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5) and reads
  ``VmHWM`` when done: the reported peak RSS is the strategy's own work, input excluded.
* Azurite runs on the same cores as the client; its CPU seconds are reported per case.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from elspeth_appendsink.testing.azurite import Azurite

__all__ = ["Case", "RssProbe", "azurite_server", "load_average", "run_case", "run_in_child", "stop_server"]

EXTENT_MEMORY_LIMIT_MB = 8192


@dataclass(frozen=True)
class Case:
    strategy: str
    fmt: str
    rows: int
    calls: int
    latency_ms: float

    @property
    def label(self) -> str:
        return (
            f"{self.strategy:7s} {self.fmt:5s} {self.rows:>9,d} rows {self.calls:>3d} calls "
            f"{self.latency_ms:>2g} ms"
        )


class RssProbe:
    """Peak RSS of a stretch of work: kernel high-water mark reset, or a sampling thread as fallback."""

    def __init__(self) -> None:
        self.method = "VmHWM" if self._clear() else "sampled"
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        self.base = 0

    @staticmethod
    def _clear() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return int(psutil.Process().memory_info().rss)

    def start(self) -> None:
        gc.collect()
        self.base = self._status("VmRSS:")
        if self.method == "VmHWM":
            self._clear()
            return
        self._peak = self.base
        self._stop.clear()
        process = psutil.Process()

        def sample() -> None:
            while not self._stop.wait(0.005):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def peak_delta_mb(self) -> float:
        if self.method == "VmHWM":
            peak = self._status("VmHWM:")
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            peak = self._peak
        return max(0, peak - self.base) / 1e6

    def helpers(self) -> tuple[Callable[[], None], Callable[[], float]]:
        return self.start, self.peak_delta_mb


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind the benchmark like Ctrl-C, so the ``finally`` / ``with`` that stop the
    Azurite it started still run (Python's default SIGTERM ends the process on the spot and
    leaves the emulator running, orphaned)."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def azurite_server() -> Azurite:
    return Azurite(in_memory=True, extent_memory_limit_mb=EXTENT_MEMORY_LIMIT_MB)


def run_in_child(
    target: Callable[..., dict[str, Any]], *args: Any, timeout: float = 1800.0
) -> dict[str, Any]:
    """Run ``target(*args)`` in a forked child; return its dict (or an ``error``)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:
        try:
            result = target(*args)
        except BaseException:
            result = {"error": traceback.format_exc()}
        sender.send(result)
        sender.close()

    process = context.Process(target=child, daemon=True)
    process.start()
    sender.close()
    try:
        timed_out = {"error": f"timed out after {timeout:.0f} s"}
        result = receiver.recv() if receiver.poll(timeout) else timed_out
    except EOFError:
        result = {"error": f"child exited with code {process.exitcode} without a result"}
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.kill()
        process.join()
    return result


def _case_child(
    case: Case,
    connection_string: str,
    rows: Sequence[dict[str, Any]],
    encoded: Sequence[bytes] | None,
    stock_budget: float | None,
) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from benchmarks.strategies import Env, prepare, project_stock
    from benchmarks.transport import Counts

    container = "bench" + uuid.uuid4().hex[:12]
    admin = BlobServiceClient.from_connection_string(connection_string)
    admin.create_container(container)
    n, calls = case.rows, case.calls
    subset = list(rows[:n])
    batches = [subset[i * n // calls : (i + 1) * n // calls] for i in range(calls)]
    del subset
    counts = Counts()
    env = Env(
        connection_string=connection_string,
        container=container,
        fmt=case.fmt,
        batches=batches,
        counts=counts,
        latency=case.latency_ms / 1000.0,
        encoded=encoded[:n] if encoded is not None else None,
        stock_budget=stock_budget,
    )
    prepared = prepare(case.strategy, env)
    env.encoded = None
    probe = RssProbe()
    counts.reset()
    probe.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    extra = prepared.run()
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = probe.peak_delta_mb()
    counts.enabled = False
    prepared.close()
    props = admin.get_blob_client(container, prepared.blob).get_blob_properties()
    result: dict[str, Any] = {
        **asdict(case),
        "seconds": seconds,
        "client_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "output_bytes": props.size,
        "blob_type": str(props.blob_type),
        "peak_rss_mb": peak,
        "rss_method": probe.method,
        **counts.as_dict(),
        **prepared.info,
    }
    if case.strategy == "stock":
        per_call = extra.pop("per_call")
        result["calls_measured"] = len(per_call)
        if len(per_call) < len(batches):
            projection = project_stock(per_call, batches)
            result["projected"] = True
            result["measured_seconds"] = seconds
            result["measured_bytes_uploaded"] = result["bytes_uploaded"]
            result["seconds"] = seconds + projection["seconds"]
            result["bytes_uploaded"] += projection["bytes"]
            result["requests"] += projection["requests"]
            result["output_bytes_final_measured"] = props.size
            # the last measured upload's size, scaled to all rows
            result["output_bytes"] = round(per_call[-1][1] * n / per_call[-1][0])
    result.update(extra)
    admin.delete_container(container)  # less for a shared server to carry (the data stays until its GC)
    admin.close()
    return result


def run_case(
    case: Case,
    rows: Sequence[dict[str, Any]],
    encoded: Sequence[bytes] | None,
    stock_budget: float | None,
    server: Azurite,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """One case against ``server``; adds Azurite's CPU seconds and RSS to the child's result."""
    node = psutil.Process(server.pid)
    cpu_before = sum(node.cpu_times()[:2])
    wall = time.perf_counter()
    result = run_in_child(
        _case_child, case, server.connection_string, rows, encoded, stock_budget, timeout=timeout
    )
    for key, value in asdict(case).items():
        result.setdefault(key, value)
    result["azurite_cpu_s"] = sum(node.cpu_times()[:2]) - cpu_before
    result["azurite_rss_mb"] = node.memory_info().rss / 1e6
    result["case_wall_s"] = time.perf_counter() - wall
    return result


def stop_server(server: Azurite) -> None:
    """Stop our Azurite by its pid with SIGTERM (SIGKILL only if it has not exited in 10 s)."""
    server.stop()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
