"""Stopping a server process the tests started: by its pid, politely, then for certain."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` to ``proc`` if it still runs, wait up to ``timeout`` s (then SIGKILL and wait
    again), and close its output pipe."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()
