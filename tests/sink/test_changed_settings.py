"""A later run of an output that configures it differently: refused before writing, or exactly once.

Run 1 writes two of three calls of 60 rows; then, with some options changed, either the same run
is resumed (ELSPETH re-delivers call 2, then call 3) or a new run continues the output
(``if_exists: continue``, every row again). Whatever changed, the output either stays byte for
byte as run 1 left it (segments and manifests) with a :class:`SettingsChangedError` naming the
option, or ends holding every row once, in order, and verifies. Which one is decided by
:mod:`elspeth_appendsink.core.decisions`: the test states that rule independently and checks both
directions.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
from elspeth_appendsink.errors import SettingsChangedError
from elspeth_appendsink.protocol.verify import verify_output
from elspeth_appendsink.testing import RecordingContext
from elspeth_appendsink.testing.azurite import Azurite
from tests.helpers import make_store, read_output
from tests.sink.conftest import FAST_RETRY

pytestmark = pytest.mark.azurite

FIELDS = ["id: int", "name: str", "kind: str"]
ROWS = [{"id": i, "name": f"name-{i:02d}", "kind": "ab"[i % 2]} for i in range(60)]
CALLS = [ROWS[0:20], ROWS[20:40], ROWS[40:60]]

#: option changes that alter what the output's bytes or identities mean: refused
REFUSED = {
    "identity",
    "unkeyed",
    "delimiter",
    "terminator",
    "encoding",
    "header",
    "headers",
    "narrow",
    "format",
}
#: changes a later run may make: the output's decisions are adopted, or the option is per run
ADOPTED = {
    "observed", "block_size", "segment_max_blocks", "segment_max_bytes", "lease_duration", "seal",
    "validate_content", "retry", "api_version", "policy",
}  # fmt: skip
ONLY = {
    "delimiter": {"csv"},
    "terminator": {"csv"},
    "encoding": {"csv"},
    "header": {"csv"},
    "headers": {"csv", "jsonl"},
}


def base_options(azurite: Azurite, container: str, fmt: str, path: str, identity: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connection_string": azurite.connection_string,
        "container": container,
        "blob_path": path,
        "format": fmt,
        "schema": {"mode": "fixed", "fields": FIELDS},
        "retry": FAST_RETRY,
        "block_size": "200B" if fmt != "arrow" else "1KiB",
        "segment_max_blocks": 6,
        "if_exists": "continue",
    }
    if identity is not None:
        options["identity_fields"] = identity
    return options


def changed(options: dict[str, Any], changes: set[str]) -> dict[str, Any]:
    new = dict(options)
    for change in changes:
        if change == "identity":
            new["identity_fields"] = {None: "id", "id": ["id", "name"]}[options.get("identity_fields")]
        elif change == "unkeyed":
            new.pop("identity_fields")
        elif change == "delimiter":
            new["csv_options"] = {**new.get("csv_options", {}), "delimiter": ";"}
        elif change == "terminator":
            new["csv_options"] = {**new.get("csv_options", {}), "line_terminator": "\n"}
        elif change == "header":
            new["csv_options"] = {**new.get("csv_options", {}), "include_header": False}
        elif change == "headers":
            new["headers"] = {"name": "Name"}
        elif change == "narrow":
            new["schema"] = {"mode": "fixed", "fields": FIELDS[:2]}
        elif change == "observed":
            new["schema"] = {"mode": "observed"}
        elif change == "format":
            new["format"] = {"csv": "jsonl", "jsonl": "csv", "arrow": "csv"}[options["format"]]
        elif change == "block_size":
            new["block_size"] = "300B" if options["format"] != "arrow" else "2KiB"
        elif change == "segment_max_blocks":
            new["segment_max_blocks"] = 2
        elif change == "lease_duration":
            new["lease_duration"] = 30
        elif change == "seal":
            new["seal_on_complete"] = True
        elif change == "encoding":
            new["csv_options"] = {**new.get("csv_options", {}), "encoding": "utf-16-le"}
        elif change == "segment_max_bytes":
            new["segment_max_bytes"] = "2KiB" if options["format"] != "arrow" else "8KiB"
        elif change == "validate_content":
            new["validate_content"] = True
        elif change == "retry":
            new["retry"] = {**FAST_RETRY, "total": 4}
        elif change == "api_version":
            new["api_version"] = "2025-01-05"
        elif change == "policy":  # a resume ignores if_exists; a continue run changed to append
            new["if_exists"] = "fail"  # would add every row again by design, so it is not drawn there
    if new["format"] != "csv":
        new.pop("csv_options", None)  # an option of CSV only
    if new["format"] == "arrow":
        new.pop("headers", None)
    return new


def rows_for(options: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a run configured with ``options`` is handed (a narrowed schema drops a field)."""
    names = [f.split(":")[0] for f in options["schema"].get("fields", FIELDS)]
    return [{k: v for k, v in row.items() if k in names} for row in rows]


def decode(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        return [{"id": int(r["id"]), "name": r["name"], "kind": r["kind"]} for r in reader]
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines()]
    return list(pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist())


def snapshot(azurite: Azurite, container: str, prefix: str) -> dict[str, bytes]:
    """Every blob of the output (segments and manifests), by name."""
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        container
    )
    return {
        b.name: client.get_blob_client(b.name).download_blob().readall()
        for b in client.list_blobs(name_starts_with=prefix)
    }


def write_calls(
    options: dict[str, Any], run_id: str, calls: list[list[dict[str, Any]]], resume: bool
) -> None:
    sink = AzureAppendBlobSink(options)
    if resume:
        sink.configure_for_resume()
    ctx = RecordingContext(run_id=run_id)
    try:
        for call in calls:
            sink.write(rows_for(options, call), ctx)
        sink.on_complete(ctx)
    finally:
        sink.close()


def second_run(
    azurite: Azurite, container: str, fmt: str, identity: Any, changes: set[str], resume: bool
) -> Callable[[], None]:
    """Run 1 on a fresh path; returns the check of run 2 configured with ``changes``."""
    folder = f"out/{uuid.uuid4().hex[:12]}/"
    path = folder + {"csv": "data.csv", "jsonl": "data.jsonl", "arrow": "data.arrows"}[fmt]
    first = base_options(azurite, container, fmt, path, identity)
    write_calls(first, "r1", CALLS[:2], resume=False)
    before = snapshot(azurite, container, folder)
    second = changed(first, changes)
    refused = bool(changes & REFUSED)

    def check() -> None:
        if resume:
            sink = AzureAppendBlobSink(second)
            sink.configure_for_resume()
            validation = sink.validate_output_target()
            sink.close()
            assert validation.valid != refused, (changes, validation.error_message)
        try:
            if resume:
                write_calls(second, "r1", CALLS[1:], resume=True)
            else:
                write_calls(second, "r2", CALLS, resume=False)
        except SettingsChangedError as exc:
            assert refused, f"{changes}: refused although nothing that matters changed: {exc}"
            assert exc.option.split(".")[0] in {
                "identity_fields",
                "csv_options",
                "headers",
                "schema",
                "format",
            }
            assert snapshot(azurite, container, folder) == before, "a refused run changed the output"
            return
        assert not refused, f"{changes}: accepted although the output recorded otherwise"
        assert decode(fmt, read_output(azurite, container, path)) == ROWS
        report = verify_output(make_store(azurite, container), path)
        assert report.ok and report.rows == len(ROWS), report.problems

    return check


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("resume", [True, False], ids=["resume", "continue"])
@pytest.mark.parametrize(
    ("identity", "changes"),
    [(None, {"identity"}), ("id", {"unkeyed"}), ("id", {"identity"})],
    ids=["added", "removed", "changed"],
)
def test_a_changed_identity_option_is_refused_before_writing(
    azurite: Azurite, container: str, fmt: str, resume: bool, identity: Any, changes: set[str]
) -> None:
    """The issue's twelve combinations: each duplicated rows and verified before."""
    second_run(azurite, container, fmt, identity, changes, resume)()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "arrow"])
@pytest.mark.parametrize("resume", [True, False], ids=["resume", "continue"])
def test_a_narrowed_fixed_schema_is_refused_by_the_writer_too(
    azurite: Azurite, container: str, fmt: str, resume: bool
) -> None:
    """validate_output_target said invalid, but on_start and write went on: 500 duplicates."""
    second_run(azurite, container, fmt, None, {"narrow"}, resume)()


def test_a_changed_delimiter_is_named_as_such(azurite: Azurite, container: str) -> None:
    """The refusal names the delimiter, not missing fields."""
    folder = f"out/{uuid.uuid4().hex[:12]}/"
    first = base_options(azurite, container, "csv", folder + "d.csv", None)
    write_calls(first, "r1", CALLS[:2], resume=False)
    sink = AzureAppendBlobSink(changed(first, {"delimiter"}))
    sink.configure_for_resume()
    validation = sink.validate_output_target()
    assert not validation.valid
    assert "csv_options.delimiter: recorded ',', configured ';'" in str(validation.error_message)
    with pytest.raises(SettingsChangedError) as info:
        sink.write(CALLS[1], RecordingContext(run_id="r1"))
    sink.close()
    assert info.value.option == "csv_options.delimiter" and "run r1" in str(info.value)


CHANGES = sorted(REFUSED | ADOPTED)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, Any, set[str], bool]:
    fmt = draw(st.sampled_from(["csv", "jsonl", "arrow"]))
    identity = draw(st.sampled_from([None, "id"]))
    resume = draw(st.booleans())
    allowed = [
        c for c in CHANGES
        if fmt in ONLY.get(c, {fmt}) and (c != "unkeyed" or identity) and (c != "policy" or resume)
    ]  # fmt: skip
    changes = set(draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=4, unique=True)))
    if {"narrow", "observed"} <= changes:
        changes.discard("observed")
    return fmt, identity, changes, resume


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_any_changed_options_are_refused_before_writing_or_write_every_row_once(
    azurite: Azurite, container: str, scenario: tuple[str, Any, set[str], bool]
) -> None:
    """A random subset of options changed between run 1 and its resume or continuation."""
    fmt, identity, changes, resume = scenario
    second_run(azurite, container, fmt, identity, changes, resume)()
