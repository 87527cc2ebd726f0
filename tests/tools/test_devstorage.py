"""``elspeth-appendsink dev-storage``: a usable emulator, the line to paste, a clean stop."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.tools.devstorage import ENV_LINE_PREFIX

ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 60.0


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "elspeth_appendsink", "dev-storage", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until_env_line(proc: subprocess.Popen[str]) -> list[str]:
    """Lines printed up to and including the export line (fails if it never comes)."""
    stdout = proc.stdout
    assert stdout is not None
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # readline blocks; a thread lets the wait below have a deadline
        for line in stdout:
            found.put(line.rstrip("\n"))
            if line.startswith(ENV_LINE_PREFIX):
                return
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = found.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if line.startswith(ENV_LINE_PREFIX):
            return lines
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"no export line; stdout {lines!r}, stderr {err!r}")


def pid_of_azurite(lines: list[str]) -> int:
    match = re.search(r"Azurite \(pid (\d+)\)", "\n".join(lines))
    assert match, lines
    return int(match.group(1))


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_prints_a_working_connection_string_and_stops_azurite_on_signal(stop_with: signal.Signals) -> None:
    """The pasted connection string reaches the emulator and the container exists; a signal stops
    the command with exit 0 and the Azurite process it started is gone."""
    proc = start("--container", "pipeline-output")
    try:
        lines = read_until_env_line(proc)
        export = lines[-1]
        connection_string = export.removeprefix(ENV_LINE_PREFIX).strip("'")
        assert "127.0.0.1" in connection_string
        pid = pid_of_azurite(lines)
        service = BlobServiceClient.from_connection_string(connection_string)
        container = service.get_container_client("pipeline-output")
        assert container.exists()
        container.upload_blob("hello.txt", b"hello")
        assert container.download_blob("hello.txt").readall() == b"hello"
    finally:
        proc.send_signal(stop_with)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping Azurite" in out
    assert not is_alive(pid)


def test_refuses_a_bad_container_name_before_starting_anything() -> None:
    """A container name Azure would refuse is a usage error naming the option; no emulator starts."""
    proc = start("--container", "Bad_Name")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "--container" in err
    assert "Azurite" not in out


def test_a_port_in_use_is_reported_without_a_traceback() -> None:
    """Asked for a port something else holds, it says Azurite did not start there and exits 1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = start("--port", str(port))
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, (out, err)
    assert f"did not start on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
    assert ENV_LINE_PREFIX not in out


def test_listens_on_the_port_asked_for() -> None:
    """``--port N`` puts Azurite on 127.0.0.1:N, and the printed connection string says so."""
    with socket.socket() as probe:  # a port free a moment ago; nothing else here binds it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start("--port", str(port))
    try:
        connection_string = read_until_env_line(proc)[-1].removeprefix(ENV_LINE_PREFIX).strip("'")
        assert f"BlobEndpoint=http://127.0.0.1:{port}/" in connection_string
        service = BlobServiceClient.from_connection_string(connection_string)
        assert list(service.list_containers()) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
