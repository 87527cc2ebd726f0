"""The project's Azurite lifecycle: starts on a free loopback port, serves blobs, stops by pid."""

from __future__ import annotations

import psutil
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.testing.azurite import Azurite


class TestAzuriteLifecycle:
    def test_start_serves_loopback_and_stop_leaves_no_process(self) -> None:
        """A started Azurite listens on 127.0.0.1; after stop() its pid no longer exists."""
        server = Azurite().start()
        pid = server.pid
        assert pid is not None and psutil.pid_exists(pid)
        assert server.port > 0 and server.blob_endpoint.startswith("http://127.0.0.1:")
        cmdline = " ".join(psutil.Process(pid).cmdline())
        assert "--disableTelemetry" in cmdline and "--blobHost 127.0.0.1" in cmdline
        server.stop()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    def test_two_servers_are_independent_processes(self) -> None:
        """Two Azurites (as two test modules get) run side by side on different ports."""
        with Azurite() as a, Azurite() as b:
            assert a.pid != b.pid and a.port != b.port

    def test_blob_round_trip(self, azurite: Azurite, container: str) -> None:
        """An append blob created and appended to reads back byte for byte."""
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        blob = service.get_blob_client(container, "round/trip.txt")
        blob.create_append_blob()
        blob.append_block(b"hello ", appendpos_condition=0)
        blob.append_block(b"world\n", appendpos_condition=6)
        assert blob.download_blob().readall() == b"hello world\n"

    def test_module_fixture_is_reused_within_a_module(self, azurite: Azurite) -> None:
        """Within a module every test sees the same running server."""
        assert azurite.pid is not None and psutil.pid_exists(azurite.pid)
