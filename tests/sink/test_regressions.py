"""The seed bugs of the stock ``azure_blob`` sink, and the audit promises, at the sink's boundary.

(a) Every ``write()`` call's rows reach the blob, in order; the artifact describes the whole blob.
(b) ``if_exists: fail`` on an existing blob: an ERROR call with ``reason: "blob_exists"`` is
    recorded, a clear error is raised, and the existing blob is untouched.
Audit: every storage request made inside ``write()`` is recorded; a successful request that
cannot be recorded raises ``AuditIntegrityError``; no secret appears in any record or message.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)

from elspeth_appendsink.elspeth.host import AuditIntegrityError, CallStatus
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import BlobExistsError, StorageUnavailableError
from elspeth_appendsink.testing import FaultyTransport, RecordedCall, RecordingContext, SimulatedCrash
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.helpers import read_output
from tests.sink.conftest import Options

pytestmark = pytest.mark.azurite

#: Facts the sink records about its own decisions (not storage requests) carry no ``blob``.
_FACTS = ("writer_event", "replay_skip")


def batch(call: int, n: int = 7) -> list[dict[str, Any]]:
    return [{"id": call * 100 + i, "name": f"call{call}-row{i}", "kind": "completed"} for i in range(n)]


def storage_calls(ctx: RecordingContext) -> list[RecordedCall]:
    return [c for c in ctx.calls if c.request_data.get("operation") not in _FACTS]


def blob_of(url: str) -> str:
    """The blob name in an Azurite request URL (``/<account>/<container>/<blob>``)."""
    return unquote(urlparse(url).path).split("/", 3)[3]


def jsonl_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


class TestEveryWriteLands:
    """Seed bug (a): the stock sink kept only the last batch; here every batch lands, in order."""

    @pytest.mark.parametrize("small", [False, True], ids=["one-segment", "many-segments"])
    def test_many_writes_keep_every_row_in_order(
        self, azurite: Azurite, container: str, make_options: Options, small: bool
    ) -> None:
        """Four write() calls → the output holds all rows of all batches in call order, and each
        artifact's hash and size are those of the whole output at that point."""
        extra = {"block_size": "256B", "segment_max_blocks": 3} if small else {}
        sink = AzureAppendBlobSink(make_options(**extra))
        ctx = RecordingContext(run_id="run-1")
        delivered: list[dict[str, Any]] = []
        for call in range(4):
            artifact = sink.write(batch(call), ctx).artifact
            sink.flush()
            delivered += batch(call)
            output = read_output(azurite, container, "out/data.jsonl")
            assert jsonl_rows(output) == delivered
            assert artifact.content_hash == hashlib.sha256(output).hexdigest()
            assert artifact.size_bytes == len(output)
        sink.close()
        if small:
            names = [
                b.name
                for b in BlobServiceClient.from_connection_string(azurite.connection_string)
                .get_container_client(container)
                .list_blobs(name_starts_with="out/data.seg")
            ]
            assert names, "the small configuration should have rolled over to a second segment"
        else:
            blob = (
                BlobServiceClient.from_connection_string(azurite.connection_string)
                .get_blob_client(container, "out/data.jsonl")
                .download_blob()
                .readall()
            )
            assert blob == read_output(azurite, container, "out/data.jsonl")

    def test_csv_header_once_across_writes(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """CSV: one header at the top, then every batch's rows, however many writes."""
        sink = AzureAppendBlobSink(make_options(format="csv", blob_path="out/data.csv"))
        ctx = RecordingContext(run_id="run-1")
        for call in range(3):
            sink.write(batch(call), ctx)
        sink.close()
        lines = read_output(azurite, container, "out/data.csv").decode().splitlines()
        assert lines[0] == "id,name,kind"
        assert lines[1:] == [f"{r['id']},{r['name']},{r['kind']}" for c in range(3) for r in batch(c)]


class TestExistingBlob:
    """Seed bug (b): ``if_exists: fail`` refuses an existing blob, audits it, and leaves it alone."""

    @pytest.mark.parametrize("kind", ["block", "append"])
    def test_existing_blob_is_refused_recorded_and_untouched(
        self, azurite: Azurite, container: str, make_options: Options, kind: str
    ) -> None:
        """An ERROR call with reason ``blob_exists`` is recorded, BlobExistsError names the blob,
        and the blob's bytes, etag and metadata are unchanged."""
        client = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
            container, "out/data.jsonl"
        )
        original = b'{"someone":"else"}\n'
        if kind == "block":
            client.upload_blob(original, metadata={"owner": "another-tool"})
        else:
            client.create_append_blob(metadata={"owner": "another-tool"})
            client.append_block(original)
        before = client.get_blob_properties()
        sink = AzureAppendBlobSink(make_options(if_exists="fail"))
        ctx = RecordingContext(run_id="run-1")
        with pytest.raises(BlobExistsError) as info:
            sink.write(batch(0), ctx)
        sink.close()
        assert "out/data.jsonl" in str(info.value)
        assert info.value.reason == "blob_exists"
        errors = [c for c in ctx.calls if c.status == str(CallStatus.ERROR)]
        assert any(c.error is not None and c.error.get("reason") == "blob_exists" for c in errors), errors
        after = client.get_blob_properties()
        assert client.download_blob().readall() == original
        assert (after.etag, after.size, after.metadata) == (before.etag, before.size, before.metadata)


class TestStartUpOrder:
    """Segment 0 goes out beside the run pointer, unless only the pointer can find it again."""

    @pytest.mark.parametrize(
        ("blob_path", "sent", "blobs"),
        [
            ("ts/{{ timestamp }}.jsonl", ["upload"], []),
            ("ts/{{ run_id }}.jsonl", ["create", "upload"], ["ts/run-1.jsonl"]),
        ],
        ids=["timestamp-waits", "run-id-together"],
    )
    def test_a_crash_as_the_pointer_goes_out(
        self,
        azurite: Azurite,
        container: str,
        make_options: Options,
        blob_path: str,
        sent: list[str],
        blobs: list[str],
    ) -> None:
        """A resume renders a ``{{ timestamp }}`` path anew and finds the first one only through
        the run pointer: there segment 0 is not created before the pointer is, so a crash as the
        pointer goes out leaves no blob of the run. A path a resume renders again sends both."""
        transport = FaultyTransport(on={("upload", 1): "crash-before"})
        sink = AzureAppendBlobSink(make_options(blob_path=blob_path), transport=transport)
        with pytest.raises(SimulatedCrash):
            sink.write(batch(0), RecordingContext(run_id="run-1"))
        assert sorted(seen.operation for seen in transport.log) == sent
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        names = [b.name for b in service.get_container_client(container).list_blobs(name_starts_with="ts/")]
        assert names == blobs


class TestAudit:
    """Invariant 7: every request inside write() is recorded, and the trail is trustworthy."""

    def test_every_storage_request_in_write_is_recorded(self, make_options: Options) -> None:
        """As many storage calls are recorded as the transport sent requests during write()."""
        transport = FaultyTransport()
        sink = AzureAppendBlobSink(make_options(block_size="256B", segment_max_blocks=3), transport=transport)
        ctx = RecordingContext(run_id="run-1")
        for call in range(3):
            sent_before, recorded_before = transport.count, len(storage_calls(ctx))
            sink.write(batch(call), ctx)
            sent = transport.log[sent_before:]
            recorded = storage_calls(ctx)[recorded_before:]
            assert len(recorded) == len(sent) > 0, (
                [s.operation for s in sent],
                [c.request_data["operation"] for c in recorded],
            )
        assert {s.operation for s in transport.log} >= {"create", "append", "lease", "seal"}
        assert all(c.provider == "azure_blob_storage" and c.call_type == "http" for c in storage_calls(ctx))
        sink.close()

    def test_resume_recovery_requests_are_recorded(self, make_options: Options) -> None:
        """A resumed write records its recovery reads and its skip decision too."""
        options = make_options(block_size="256B", segment_max_blocks=3)
        first = AzureAppendBlobSink(options)
        first.write(batch(0), RecordingContext(run_id="run-1"))  # crash: outcomes never recorded
        transport = FaultyTransport()
        resumed = AzureAppendBlobSink(options, transport=transport)
        resumed.configure_for_resume()
        ctx = RecordingContext(run_id="run-1")
        resumed.write(batch(0), ctx)
        resumed.close()
        calls = storage_calls(ctx)
        assert len(calls) == transport.count - 1  # close()'s lease release is logged, not recorded
        skips = [c for c in ctx.calls if c.request_data.get("operation") == "replay_skip"]
        assert len(skips) == 1 and skips[0].response_data is not None
        assert skips[0].response_data["rows_skipped"] == len(batch(0))

    def test_unrecordable_success_raises_audit_integrity_error(self, make_options: Options) -> None:
        """A successful request whose record fails raises AuditIntegrityError (not a plain error)."""
        sink = AzureAppendBlobSink(make_options())
        with pytest.raises(AuditIntegrityError) as info:
            sink.write(batch(0), RecordingContext(run_id="run-1", fail_records=True))
        sink.close()
        assert "could not be recorded" in str(info.value)

    def test_a_failed_record_stops_the_write_before_the_next_request(
        self, azurite: Azurite, container: str, make_options: Options
    ) -> None:
        """Every record fails, from a fresh run's first requests on (its run pointer and
        segment 0, which go out together): write raises AuditIntegrityError before sending
        anything more, each request sent was offered to the trail, and a resume then writes
        the rows exactly once."""
        transport = FaultyTransport()
        sink = AzureAppendBlobSink(make_options(), transport=transport)
        ctx = RecordingContext(run_id="run-1")
        offered: list[dict[str, Any]] = []

        def record_call(_type: Any, _status: Any, request: dict[str, Any], *args: Any, **kw: Any) -> None:
            offered.append(request)
            raise RuntimeError("audit store unavailable")

        ctx.record_call = record_call  # type: ignore[method-assign,assignment]
        with pytest.raises(AuditIntegrityError) as info:
            sink.write(batch(0), ctx)
        sink.close()
        assert "could not be recorded" in str(info.value)
        assert sorted(s.operation for s in transport.log) == ["create", "upload"]
        assert sorted(r["blob"] for r in offered) == sorted(blob_of(s.url) for s in transport.log)
        resumed = AzureAppendBlobSink(make_options())
        resumed.configure_for_resume()
        resumed.write(batch(0), RecordingContext(run_id="run-1"))
        resumed.close()
        assert jsonl_rows(read_output(azurite, container, "out/data.jsonl")) == batch(0)

    def test_failed_request_is_recorded_as_an_error(self, make_options: Options) -> None:
        """A request that fails after its retries is recorded with ERROR status and its Azure code."""
        storm = FaultyTransport(rule=lambda n, op, r: "status:503" if op == "append" else None)
        sink = AzureAppendBlobSink(make_options(), transport=storm)
        ctx = RecordingContext(run_id="run-1")
        with pytest.raises(StorageUnavailableError):
            sink.write(batch(0), ctx)
        sink.close()
        errors = [c for c in ctx.calls if c.status == str(CallStatus.ERROR)]
        assert errors and errors[-1].error is not None
        assert errors[-1].error["status"] == 503 and errors[-1].error["error_code"] == "ServerBusy"


class TestNoSecrets:
    """Invariant 9: no key, connection string or SAS token in any audit record or message."""

    @staticmethod
    def _assert_clean(ctx: RecordingContext, secrets: list[str], *messages: str) -> None:
        text = json.dumps([c.__dict__ for c in ctx.calls], default=str) + "\n".join(messages)
        assert ctx.calls
        for secret in secrets:
            assert secret not in text

    def test_connection_string_run_with_errors_and_resume(
        self, azurite: Azurite, make_options: Options
    ) -> None:
        """Success records, error records (503 storm, blob_exists) and resume facts are all clean."""
        secrets = [ACCOUNT_KEY, azurite.connection_string, ACCOUNT_KEY.rstrip("=")]
        ctx = RecordingContext(run_id="run-1")
        sink = AzureAppendBlobSink(make_options())
        sink.write(batch(0), ctx)
        sink.close()
        resumed = AzureAppendBlobSink(make_options())
        resumed.configure_for_resume()
        resumed.write(batch(0), ctx)
        resumed.close()
        storm = FaultyTransport(rule=lambda n, op, r: "status:503" if op == "append" else None)
        failing = AzureAppendBlobSink(make_options(blob_path="storm.jsonl"), transport=storm)
        with pytest.raises(StorageUnavailableError) as unavailable:
            failing.write(batch(1), ctx)
        failing.close()
        exists = AzureAppendBlobSink(make_options())
        with pytest.raises(BlobExistsError) as refused:
            exists.write(batch(2), RecordingContext(run_id="run-2"))
        exists.close()
        self._assert_clean(ctx, secrets, str(unavailable.value), str(refused.value), repr(sink.options))

    def test_sas_token_run(self, azurite: Azurite, container: str) -> None:
        """With SAS authentication, neither the token nor its signature is recorded."""
        sas = generate_account_sas(
            ACCOUNT_NAME,
            ACCOUNT_KEY,
            resource_types=ResourceTypes(container=True, object=True),
            permission=AccountSasPermissions(read=True, write=True, create=True, add=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
        options = {
            "sas_token": sas,
            "account_url": azurite.blob_endpoint,
            "container": container,
            "blob_path": "sas/data.jsonl",
            "format": "jsonl",
            "schema": {"mode": "observed"},
        }
        ctx = RecordingContext(run_id="run-1")
        sink = AzureAppendBlobSink(options)
        sink.write(batch(0), ctx)
        sink.write(batch(1), ctx)
        sink.close()
        assert jsonl_rows(read_output(azurite, container, "sas/data.jsonl")) == batch(0) + batch(1)
        self._assert_clean(ctx, [sas, signature, unquote(signature)], repr(sink.options))
