"""The sink's side of the launcher's ``recover``, on Azurite: the start-up check and the redirection.

* ``on_start`` proves the container exists and the credentials work with one request (held and
  recorded at the first write, where ELSPETH allows ``record_call``); a wrong container or key
  fails there, in one line naming sink, container and account, never the key.
* A continuation registered in :mod:`elspeth_appendsink.elspeth.session` makes a new run write
  at the crashed run's rendered path, continuing its output (manifest chained, durable rows
  skipped), and the audit trail names the run it completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.core.paths import run_pointer_name
from elspeth_appendsink.elspeth import session
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink, store_for
from elspeth_appendsink.errors import StorageError
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.sink.conftest import Options

pytestmark = pytest.mark.azurite

TEMPLATE = "orders/{{ run_id }}/rows.jsonl"
NODE_ID = "sink_orders_0123456789ab"


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"row {i}", "kind": "abc"[i % 3]} for i in range(n)]


@pytest.fixture(autouse=True)
def _clean_session() -> Iterator[None]:
    session.clear()
    yield
    session.clear()


def started(options: dict[str, Any], ctx: RecordingContext) -> AzureAppendBlobSink:
    sink = AzureAppendBlobSink(options)
    sink.node_id = NODE_ID
    sink.on_start(ctx)
    return sink


def operations(ctx: RecordingContext) -> list[str]:
    return [str(c.request_data["operation"]) for c in ctx.calls]


class TestStartCheck:
    def test_a_missing_container_fails_on_start_naming_sink_container_and_account(
        self, make_options: Options
    ) -> None:
        """One line, before any row: sink, container and account named; the key never."""
        options = make_options(container="no-such-container")
        with pytest.raises(StorageError) as raised:
            started(options, RecordingContext(run_id="run-1"))
        message = str(raised.value)
        assert "sink orders: container 'no-such-container'" in message
        assert f"storage account '{ACCOUNT_NAME}' does not exist" in message
        assert "code=ContainerNotFound" in message and "\n" not in message
        assert ACCOUNT_KEY not in message
        (reported,) = session.outputs().values()
        assert reported.error == message and reported.sink == "orders" and reported.run_id == "run-1"

    def test_a_wrong_key_fails_on_start_as_refused_credentials(
        self, make_options: Options, azurite: Azurite
    ) -> None:
        wrong = "A" * 86 + "=="
        options = make_options(connection_string=azurite.connection_string.replace(ACCOUNT_KEY, wrong))
        with pytest.raises(StorageError) as raised:
            started(options, RecordingContext(run_id="run-1"))
        message = str(raised.value)
        assert "refused the sink's credentials" in message and "status=403" in message
        assert wrong not in message and ACCOUNT_KEY not in message

    def test_the_start_check_is_recorded_at_the_first_write(self, make_options: Options) -> None:
        """ELSPETH forbids record_call in on_start: the check is the first call of the first write."""
        ctx = RecordingContext(run_id="run-1")
        sink = started(make_options(blob_path=TEMPLATE), ctx)
        assert ctx.calls == []
        sink.write(rows(3), ctx)
        sink.close()
        first = ctx.calls[0]
        digest = SinkConfig.from_options(make_options(blob_path=TEMPLATE)).template_digest
        assert first.request_data["operation"] == "get_blob_properties"
        assert first.request_data["blob"] == run_pointer_name(digest, "run-1")
        assert first.request_data["purpose"] == "start_check"
        # absent for a fresh run: the expected answer, proving container and credentials: a success
        assert first.status == "success" and first.error is None
        assert first.response_data == {"exists": False, "status": 404, "error_code": "BlobNotFound"}


class TestContinuation:
    def test_a_new_run_continues_the_crashed_runs_output_in_place(
        self, make_options: Options, azurite: Azurite, container: str
    ) -> None:
        """Crashed run wrote 5 rows at its path; the new run, given the continuation, writes all 8
        there (the 5 skipped as durable), nothing at its own path; verify sees two chained runs."""
        options = make_options(blob_path=TEMPLATE, lease=False)
        crashed = AzureAppendBlobSink(options)
        crashed.write(rows(5), RecordingContext(run_id="run-crashed"))  # never closed: killed
        path = "orders/run-crashed/rows.jsonl"
        digest = SinkConfig.from_options(options).template_digest
        session.continue_outputs({digest: session.Continuation("run-crashed", container, path, "orders")})

        ctx = RecordingContext(run_id="run-new")
        sink = started(options, ctx)
        artifact = sink.write(rows(8), ctx).artifact
        sink.close()

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        client = service.get_container_client(container)
        data = client.get_blob_client(path).download_blob().readall()
        assert data.decode().splitlines() == [
            f'{{"id":{r["id"]},"name":"row {r["id"]}","kind":"{r["kind"]}"}}' for r in rows(8)
        ]
        assert not list(client.list_blobs(name_starts_with="orders/run-new/"))
        assert artifact.path_or_uri == f"azure://{container}/{path}"
        facts = {c.request_data["operation"]: c.response_data for c in ctx.calls}
        assert facts["recover_continues"] == {
            "completes_run": "run-crashed",
            "sink": "orders",
            "container": container,
            "blob_path": path,
            "if_exists": "continue",
            "by": "python -m elspeth_appendsink.elspeth recover",
        }
        assert facts["replay_skip"]["rows_skipped"] == 5
        assert facts["replay_skip"]["already_durable_in_runs"] == ["run-crashed"]
        report = verify_output(store_for(SinkConfig.from_options(options)), path)
        assert report.ok and [r.run_id for r in report.runs] == ["run-crashed", "run-new"]
        assert report.runs[1].continues == ("run-crashed",)
        (reported,) = session.outputs().values()
        assert (reported.run_id, reported.blob_path) == ("run-new", path)

    def test_a_resume_of_the_run_itself_ignores_a_continuation(
        self, make_options: Options, azurite: Azurite, container: str
    ) -> None:
        """A continuation is for a new run; ELSPETH's resume of a run keeps that run's own path."""
        options = make_options(blob_path=TEMPLATE, lease=False)
        sink = AzureAppendBlobSink(options)
        sink.write(rows(2), RecordingContext(run_id="run-1"))
        sink.close()
        digest = SinkConfig.from_options(options).template_digest
        session.continue_outputs(
            {digest: session.Continuation("run-other", container, "orders/run-other/rows.jsonl", "orders")}
        )
        resumed = AzureAppendBlobSink(options)
        resumed.configure_for_resume()
        ctx = RecordingContext(run_id="run-1")
        artifact = resumed.write(rows(3), ctx).artifact
        resumed.close()
        assert artifact.path_or_uri == f"azure://{container}/orders/run-1/rows.jsonl"
        assert "recover_continues" not in operations(ctx)
