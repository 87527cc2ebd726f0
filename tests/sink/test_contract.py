"""ELSPETH's own sink contract checks (contract §6.5), applied to AzureAppendBlobSink on Azurite.

Mirrors ``SinkContractTestBase`` and its determinism variant in ELSPETH
(``tests/unit/contracts/sink_contracts/test_sink_protocol.py``), plus the schema facts the
executor relies on (§2.4 step 7, §7): ``declared_required_fields`` and a strict ``input_schema``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from elspeth_appendsink import __version__
from elspeth_appendsink.elspeth.host import ArtifactDescriptor, Determinism, SinkWriteResult
from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.testing import FaultyTransport, RecordingContext
from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, Azurite
from tests.helpers import read_output
from tests.sink.conftest import SCHEMA, Options

HEX64 = re.compile(r"^[0-9a-f]{64}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Options that never reach a server: enough to construct a sink and read its attributes.
OFFLINE: dict[str, Any] = {
    "connection_string": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    ),
    "container": "output",
    "blob_path": "out/{{ run_id }}/data.jsonl",
    "format": "jsonl",
    "schema": SCHEMA,
}


def rows(n: int = 5, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"name-{i}", "kind": "completed"} for i in range(start, start + n)]


def offline_sink(**overrides: Any) -> AzureAppendBlobSink:
    return AzureAppendBlobSink({**OFFLINE, **overrides})


def assert_valid_artifact(artifact: Any) -> None:
    """What ``SinkContractTestBase`` checks of every artifact."""
    assert isinstance(artifact, ArtifactDescriptor)
    assert HEX64.fullmatch(artifact.content_hash), artifact.content_hash
    assert isinstance(artifact.size_bytes, int) and artifact.size_bytes >= 0
    assert artifact.artifact_type in ("file", "database", "webhook")
    assert artifact.path_or_uri


class TestAttributes:
    """The class-level members the engine and the audit trail read (contract §1.1)."""

    def test_name_is_the_plugin_type(self) -> None:
        """``name`` is the YAML plugin name, ``azure_append_blob``."""
        assert AzureAppendBlobSink.name == "azure_append_blob"
        assert offline_sink().name == "azure_append_blob"

    def test_input_schema_is_a_pydantic_model(self) -> None:
        """``input_schema`` is set per instance and is a pydantic model class."""
        schema = offline_sink().input_schema
        assert isinstance(schema, type) and issubclass(schema, BaseModel)

    def test_determinism_is_io_write(self) -> None:
        """A sink that writes to storage declares ``io_write``."""
        assert offline_sink().determinism == Determinism.IO_WRITE
        assert isinstance(offline_sink().determinism, Determinism)

    def test_plugin_version_is_the_package_version(self) -> None:
        """``plugin_version`` is a real version (BaseSink's default is 0.0.0)."""
        version = offline_sink().plugin_version
        assert isinstance(version, str) and version == __version__ and version != "0.0.0"

    def test_idempotent_and_resume_flags(self) -> None:
        """``idempotent`` is a bool (declared True: a retried write appends only what is missing);
        ``supports_resume`` is True, or ELSPETH refuses to resume any pipeline using the sink."""
        sink = offline_sink()
        assert sink.idempotent is True
        assert sink.supports_resume is True
        assert sink.validate_input is False

    def test_engine_private_members_exist(self) -> None:
        """The executor calls ``_reset_diversion_log`` and reads ``_on_write_failure``."""
        sink = offline_sink()
        sink._reset_diversion_log()
        assert sink._on_write_failure is None
        assert sink.config == OFFLINE


class TestSchema:
    """``declared_required_fields`` and ``input_schema`` come from the ``schema`` option (§7)."""

    def test_required_fields_are_the_required_declared_fields(self) -> None:
        """Optional (``?``) fields are not required; required ones are."""
        sink = offline_sink(schema={"mode": "fixed", "fields": ["id: int", "name: str", "score: float?"]})
        assert sink.declared_required_fields == frozenset({"id", "name"})

    def test_required_fields_include_the_explicit_list(self) -> None:
        """``required_fields`` adds to the required declared fields (get_effective_required_fields)."""
        schema = {"mode": "flexible", "fields": ["id: int", "note: str?"], "required_fields": ["note"]}
        assert offline_sink(schema=schema).declared_required_fields == frozenset({"id", "note"})

    def test_observed_schema_requires_nothing(self) -> None:
        """An observed schema declares no fields, so nothing is required."""
        assert offline_sink(schema={"mode": "observed"}).declared_required_fields == frozenset()

    @pytest.mark.parametrize(
        "row",
        [
            {"id": "1", "name": "a", "kind": "k"},  # str for int
            {"id": 1.0, "name": "a", "kind": "k"},  # float for int
            {"id": True, "name": "a", "kind": "k"},  # bool for int
            {"id": 1, "name": 5, "kind": "k"},  # int for str
            {"id": 1, "kind": "k"},  # required field missing
            {"id": 1, "name": "a", "kind": "k", "extra": 1},  # fixed: no extra fields
        ],
    )
    def test_input_schema_is_strict(self, row: dict[str, Any]) -> None:
        """No coercion (``allow_coercion=False``): wrong types, missing fields and extras fail."""
        with pytest.raises(ValidationError):
            offline_sink().input_schema.model_validate(row)

    def test_input_schema_accepts_conforming_rows(self) -> None:
        """A row of exactly the declared types passes; flexible schemas accept extra fields."""
        offline_sink().input_schema.model_validate({"id": 1, "name": "a", "kind": "k"})
        flexible = offline_sink(schema={"mode": "flexible", "fields": ["id: int", "score: float?"]})
        flexible.input_schema.model_validate({"id": 1, "extra": "x"})
        flexible.input_schema.model_validate({"id": 1, "score": None})


@pytest.mark.azurite
class TestWrite:
    """``write`` / ``flush`` / ``close`` / lifecycle, against Azurite."""

    def test_write_returns_a_valid_artifact(self, make_options: Options, container: str) -> None:
        """``write`` returns a SinkWriteResult; its artifact is a file at ``azure://container/path``."""
        sink = AzureAppendBlobSink(make_options())
        result = sink.write(rows(), RecordingContext(run_id="run-1"))
        sink.flush()
        assert isinstance(result, SinkWriteResult)
        assert result.diversions == ()
        artifact = result.artifact
        assert_valid_artifact(artifact)
        assert artifact.artifact_type == "file"
        assert artifact.path_or_uri == f"azure://{container}/out/data.jsonl"
        sink.close()

    def test_artifact_hash_and_size_describe_the_blob(
        self, azurite: Azurite, make_options: Options, container: str
    ) -> None:
        """``content_hash`` is the sha256 of the output and ``size_bytes`` its length."""
        sink = AzureAppendBlobSink(make_options())
        artifact = sink.write(rows(), RecordingContext(run_id="run-1")).artifact
        sink.close()
        blob = read_output(azurite, container, "out/data.jsonl")
        assert artifact.content_hash == hashlib.sha256(blob).hexdigest()
        assert artifact.size_bytes == len(blob) > 0

    def test_path_template_is_rendered_in_the_artifact(self, make_options: Options, container: str) -> None:
        """A ``{{ run_id }}`` path shows up rendered in ``path_or_uri``."""
        sink = AzureAppendBlobSink(make_options(blob_path="runs/{{ run_id }}/data.jsonl"))
        artifact = sink.write(rows(), RecordingContext(run_id="run-42")).artifact
        sink.close()
        assert artifact.path_or_uri == f"azure://{container}/runs/run-42/data.jsonl"

    def test_write_of_no_rows_works(self, make_options: Options) -> None:
        """``write([])`` returns a valid artifact, before any data (empty output) and after."""
        transport = FaultyTransport()
        sink = AzureAppendBlobSink(make_options(), transport=transport)
        ctx = RecordingContext(run_id="run-1")
        empty = sink.write([], ctx).artifact
        assert_valid_artifact(empty)
        assert (empty.content_hash, empty.size_bytes) == (EMPTY_SHA256, 0)
        assert transport.count == 0, "an empty write must not touch storage"
        full = sink.write(rows(), ctx).artifact
        again = sink.write([], ctx).artifact
        assert (again.content_hash, again.size_bytes) == (full.content_hash, full.size_bytes)
        sink.close()

    def test_flush_and_close_are_idempotent(self, make_options: Options) -> None:
        """``flush`` and ``close`` may be called repeatedly, with or without a write."""
        idle = AzureAppendBlobSink(make_options(blob_path="idle.jsonl"))
        idle.flush()
        idle.flush()
        idle.close()
        idle.close()
        sink = AzureAppendBlobSink(make_options())
        sink.write(rows(), RecordingContext(run_id="run-1"))
        sink.flush()
        sink.flush()
        sink.close()
        sink.close()

    def test_lifecycle_hooks_do_not_raise(self, make_options: Options) -> None:
        """``on_start`` and ``on_complete`` succeed, around writes and without any."""
        ctx = RecordingContext(run_id="run-1")
        idle = AzureAppendBlobSink(make_options(blob_path="idle.jsonl"))
        idle.on_start(ctx)
        idle.on_complete(ctx)
        idle.close()
        sink = AzureAppendBlobSink(make_options())
        sink.node_id = "sink_output_0123456789ab"
        sink.on_start(ctx)
        sink.write(rows(), ctx)
        sink.flush()
        sink.on_complete(ctx)
        sink.close()


@pytest.mark.azurite
class TestDeterminism:
    """The determinism variant of the contract base: equal data, equal hash; else different."""

    def _hash(self, options: dict[str, Any], data: list[dict[str, Any]], run_id: str) -> str:
        sink = AzureAppendBlobSink(options)
        artifact = sink.write(data, RecordingContext(run_id=run_id)).artifact
        sink.close()
        return str(artifact.content_hash)

    @pytest.mark.parametrize("fmt", ["csv", "jsonl", "arrow"])
    def test_same_data_gives_the_same_hash(self, make_options: Options, fmt: str) -> None:
        """Two sinks (two paths, two runs) writing the same rows produce the same content hash."""
        first = self._hash(make_options(format=fmt, blob_path=f"a.{fmt}"), rows(), "run-a")
        second = self._hash(make_options(format=fmt, blob_path=f"b.{fmt}"), rows(), "run-b")
        assert first == second

    @pytest.mark.parametrize("fmt", ["csv", "jsonl", "arrow"])
    def test_different_data_gives_a_different_hash(self, make_options: Options, fmt: str) -> None:
        """Changing one value changes the content hash."""
        changed = rows()
        changed[2] = {**changed[2], "name": "other"}
        first = self._hash(make_options(format=fmt, blob_path=f"a.{fmt}"), rows(), "run-a")
        second = self._hash(make_options(format=fmt, blob_path=f"b.{fmt}"), changed, "run-b")
        assert first != second
