"""Real ELSPETH pipelines writing through ``azure_append_blob`` to Azurite, run and resumed.

Every pipeline runs in a subprocess, as a user would run it::

    python -m elspeth_appendsink.elspeth --no-dotenv run -s settings.yaml -x
    python -m elspeth_appendsink.elspeth --no-dotenv resume RUN_ID -s settings.yaml -x

and the tests assert only on what is observable afterwards: the blob's bytes (read straight from
Azurite) and the rows ELSPETH's landscape (the sqlite audit DB) and payload store hold.

The resume tests use a shape in which ELSPETH resume really reaches the sink: a gate routes each
row to one of two ``azure_append_blob`` sinks; ``low`` is written (and checkpointed) first, then
``high`` fails. Two ways of failing, both real behaviour, nothing test-only in the sink:

* ``high`` writes to a fixed path where a block blob (not an append blob) is in the way: its
  first write is refused (``blob_exists``), ELSPETH marks the run failed; the test removes the
  blob and resumes (the options do not change, so the node ids match). (A missing container
  no longer serves: the sink's ``on_start`` refuses it before any row is read.)
* ``high`` talks to Azurite through a small relay in this process, which SIGKILLs the ELSPETH
  process at its 2nd append to ``high``'s data blob — either after Azurite committed the block
  (the response is never delivered: the worst case, bytes durable but unacknowledged) or before
  the request is forwarded (the manifest holds an intent that never landed). The run stays
  ``running``; the test marks it failed in the landscape, as an operator must, and resumes.

Also: the pipeline YAML of the README's "A first pipeline in five minutes" section runs
verbatim, and ``register()`` is idempotent on ELSPETH's shared plugin manager.

ELSPETH is not on PyPI and needs Python >= 3.12, so this module is skipped where it is not
importable (CI's 3.11 venv). Locally: ``/work/elspeth-venv/bin/python -m pytest tests/elspeth``.
Each ELSPETH command costs 4-8 s of imports and plugin discovery (13 commands in all); the module
takes about 2 minutes on an idle 2-core machine, 4 under load.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import inspect
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite

pytest.importorskip("elspeth", reason="needs ELSPETH (Python >= 3.12, installed from its repository)")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.elspeth, pytest.mark.azurite]

CLI = [sys.executable, "-m", "elspeth_appendsink.elspeth", "--no-dotenv"]
COMMAND_TIMEOUT = 240
ROWS = 60
THRESHOLD = 1000


# ----------------------------------------------------------------------------------------------
# input data


def input_rows() -> list[dict[str, Any]]:
    """Rows with values CSV must quote (commas, quotes) and non-ASCII text."""
    names = ["plain", 'comma, "quoted"', "Zoë ünïcode", "semi;colon", "trailing space "]
    return [
        {
            "id": i,
            "name": f"{names[i % len(names)]} #{i}",
            "amount": (i * 379) % 2000,
            "category": "abc"[i % 3],
        }
        for i in range(1, ROWS + 1)
    ]


def write_input(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "name", "amount", "category"])
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------------------------
# settings


SOURCE_AND_TRANSFORM = """\
source:
  plugin: csv
  on_success: validated
  options:
    path: @INPUT@
    schema:
      mode: fixed
      fields: ['id: int', 'name: str', 'amount: int', 'category: str']
    on_validation_failure: discard
transforms:
- name: process
  plugin: passthrough
  input: validated
  on_success: @NEXT@
  on_error: discard
  options:
    schema: {mode: observed}
"""

GATE = """\
gates:
- name: amount_threshold
  input: gate_in
  condition: row['amount'] > @THRESHOLD@
  routes: {'true': high, 'false': low}
"""

SINK = """\
  @NAME@:
    plugin: azure_append_blob
    on_write_failure: discard
    options:
      connection_string: ${@ENV@}
      container: @CONTAINER@
      blob_path: "@BLOB@"
      format: @FORMAT@
      block_size: @BLOCK@
      lease_duration: 15
      schema: {mode: observed}
"""

AUDIT = """\
landscape:
  url: sqlite:///@DB@
payload_store:
  base_path: @PAYLOADS@
checkpoint:
  enabled: true
  frequency: every_row
"""


def fill(template: str, **values: Any) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    assert "@" not in template.replace("@ENV@", ""), template
    return template


@dataclass
class SinkSpec:
    name: str
    container: str
    blob: str  # blob_path option (a Jinja2 template)
    format: str
    env: str  # name of the env var holding this sink's connection string
    block: str = "4MiB"


@dataclass
class Pipeline:
    """A pipeline's files in tmp_path (absolute paths only) and how to run ELSPETH on it."""

    root: Path
    env: dict[str, str]

    @property
    def settings(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def db(self) -> Path:
        return self.root / "audit.db"

    @property
    def payloads(self) -> Path:
        return self.root / "payloads"

    def write_settings(self, sinks: list[SinkSpec], *, gate: bool) -> None:
        first = "gate_in" if gate else sinks[0].name
        text = fill(SOURCE_AND_TRANSFORM, INPUT=self.root / "input.csv", NEXT=first)
        if gate:
            text += fill(GATE, THRESHOLD=THRESHOLD)
        text += "sinks:\n"
        for s in sinks:
            text += fill(
                SINK,
                NAME=s.name,
                ENV=s.env,
                CONTAINER=s.container,
                BLOB=s.blob,
                FORMAT=s.format,
                BLOCK=s.block,
            )
        text += fill(AUDIT, DB=self.db, PAYLOADS=self.payloads)
        self.settings.write_text(text, encoding="utf-8")

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, *args],
            cwd=self.root,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def run(self, *args: str) -> tuple[int, str]:
        proc = self.start(*args)
        try:
            output, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            pytest.fail(f"ELSPETH {args} did not finish within {COMMAND_TIMEOUT}s:\n{output[-4000:]}")
        return proc.returncode, output

    # --- the landscape ------------------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.query_at(self.db, sql, *params)

    @staticmethod
    def query_at(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        assert db.exists(), f"no landscape at {db}"
        with contextlib.closing(sqlite3.connect(db)) as con:
            return con.execute(sql, params).fetchall()

    def only_run(self) -> tuple[str, str]:
        runs = self.query("SELECT run_id, status FROM runs")
        assert len(runs) == 1, runs
        return runs[0][0], runs[0][1]

    def mark_failed_when_writer_gone(self, run_id: str, container: str, blob: str) -> list[str]:
        """The documented path after a hard kill: ``elspeth-appendsink runs --mark-failed``.

        It must refuse while the killed writer's lease is still held (naming the run), and mark
        the run failed through ELSPETH's recorder once the lease expired and nothing was written
        for longer than ``lease_duration``. The wait is on that condition, with a deadline: lease
        expiry is wall-clock time by definition. Returns each attempt's output.
        """
        command = [
            sys.executable, "-m", "elspeth_appendsink", "runs", "--container", container,
            "--blob-path", blob, "--landscape", f"sqlite:///{self.db}", "--run-id", run_id,
            "--mark-failed", "--lease-duration", "15",
        ]  # fmt: skip
        env = {**self.env, "AZURE_STORAGE_CONNECTION_STRING": self.env["AZ_DIRECT"]}
        outputs: list[str] = []
        deadline = time.monotonic() + 90
        while True:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
            outputs.append(done.stdout + done.stderr)
            if done.returncode == 0:
                return outputs
            assert done.returncode == 1 and "refused to mark" in done.stdout, outputs
            assert time.monotonic() < deadline, outputs
            time.sleep(1)  # re-check the lease; each attempt is a full, real check

    def verify(self, container: str, blob: str, *extra: str) -> tuple[int, str]:
        """``elspeth-appendsink verify`` of one output, as an operator runs it (``extra``: e.g.
        ``--landscape URL``)."""
        command = [
            sys.executable, "-m", "elspeth_appendsink", "verify", "--container", container,
            "--blob-path", blob, "--no-progress", *extra,
        ]  # fmt: skip
        env = {**self.env, "AZURE_STORAGE_CONNECTION_STRING": self.env["AZ_DIRECT"]}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, done.stdout + done.stderr

    def verify_landscape(self, container: str, blob: str, *extra: str) -> tuple[int, str]:
        return self.verify(container, blob, "--landscape", f"sqlite:///{self.db}", *extra)

    def sink_node(self, run_id: str, sink_name: str) -> str:
        (node,) = self.query(
            "SELECT node_id FROM nodes WHERE run_id=? AND node_type='sink' AND node_id LIKE ?",
            run_id,
            f"sink_{sink_name}_%",
        )
        return str(node[0])

    def artifacts(self, run_id: str, node_id: str) -> list[tuple[str, str, int]]:
        rows = self.query(
            "SELECT path_or_uri, content_hash, size_bytes FROM artifacts WHERE run_id=? AND sink_node_id=? "
            "ORDER BY created_at, rowid",
            run_id,
            node_id,
        )
        return [(str(p), str(h), int(s)) for p, h, s in rows]

    def sink_calls(self, run_id: str) -> list[dict[str, Any]]:
        """Every call recorded under this run's sink_write operations, with request and response bodies."""
        from elspeth.core.payload_store import FilesystemPayloadStore

        store = FilesystemPayloadStore(self.payloads)
        rows = self.query(
            "SELECT c.call_type, c.status, c.request_ref, c.response_ref, c.error_json "
            "FROM calls c JOIN operations o ON o.operation_id = c.operation_id "
            "WHERE o.run_id=? AND o.operation_type='sink_write' ORDER BY c.created_at, c.call_index",
            run_id,
        )
        calls = []
        for call_type, status, request_ref, response_ref, error_json in rows:
            calls.append(
                {
                    "call_type": call_type,
                    "status": status,
                    "request": json.loads(store.retrieve(request_ref)) if request_ref else None,
                    "response": json.loads(store.retrieve(response_ref)) if response_ref else None,
                    "error": json.loads(error_json) if error_json else None,
                }
            )
        return calls


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture()
def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture()
def pipeline(tmp_path: Path, azurite: Azurite) -> Pipeline:
    write_input(tmp_path / "input.csv", input_rows())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ELSPETH_"))}
    env.update(
        {
            "ELSPETH_FINGERPRINT_KEY": "test",  # a secret-named option (connection_string) requires it
            "AZ_DIRECT": azurite.connection_string,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return Pipeline(tmp_path, env)


@pytest.fixture(scope="module")
def resume_fixed() -> bool:
    """Whether this ELSPETH needs the launcher's run-time resume correction (de732358 does).

    Upstream ``resume --execute`` on de732358 fails (FOREIGN KEY constraint); the launcher
    corrects it in memory (:mod:`elspeth_appendsink.elspeth.resume_fix`), so nothing is skipped.
    """
    import elspeth.cli

    from elspeth_appendsink.elspeth import resume_fix

    return resume_fix.needs_fix(inspect.getsource(elspeth.cli.resume))


# ----------------------------------------------------------------------------------------------
# reading outputs back


def blob_bytes(service: BlobServiceClient, container: str, blob: str) -> bytes:
    return service.get_container_client(container).get_blob_client(blob).download_blob().readall()


def parse_output(data: bytes, fmt: str) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL output as input-shaped dicts; checks the CSV header appears once."""
    if fmt == "jsonl":
        assert data == b"" or data.endswith(b"\n")
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]
    text = data.decode("utf-8")
    header = "id,name,amount,category"
    assert text.startswith(header + "\r\n"), text[:200]
    assert text.count(header) == 1, "the CSV header must be written exactly once"
    return [
        {"id": int(r["id"]), "name": r["name"], "amount": int(r["amount"]), "category": r["category"]}
        for r in csv.DictReader(io.StringIO(text, newline=""))
    ]


def assert_exactly_once(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    counts = Counter(r["id"] for r in rows)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted({r["id"] for r in expected} - set(counts))
    assert not duplicated and not missing, f"duplicated ids {duplicated}, missing ids {missing}"
    assert sorted(rows, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])


def assert_artifact_matches(pipeline: Pipeline, run_id: str, sink: str, uri: str, data: bytes) -> None:
    """The last artifact ELSPETH registered for the sink describes the blob as it is now."""
    arts = pipeline.artifacts(run_id, pipeline.sink_node(run_id, sink))
    assert arts, f"no artifact registered for sink {sink}"
    path, content_hash, size = arts[-1]
    assert path == uri
    assert content_hash == hashlib.sha256(data).hexdigest()
    assert size == len(data)


def data_appends(calls: list[dict[str, Any]], container: str, blob: str) -> list[dict[str, Any]]:
    return [
        c
        for c in calls
        if c["request"]["operation"] == "append_block"
        and c["request"]["blob"] == blob
        and c["request"]["container"] == container
    ]


# ----------------------------------------------------------------------------------------------
# a relay that kills the ELSPETH process at a chosen append


class KillingRelay:
    """An HTTP relay between the sink and Azurite that can SIGKILL the client process mid-request.

    It forwards every request unchanged (Shared Key signatures do not cover the Host header).
    When armed, the ``nth`` ``append_block`` to the blob whose path ends with ``blob_suffix``
    (or contains it, with ``contains=True``: a manifest's name ends with a run id not known yet)
    kills ``victim`` — after Azurite has committed the block and before the response is
    returned (``when="after"``), or without forwarding the request at all (``when="before"``).
    """

    def __init__(self, upstream: Azurite) -> None:
        self.upstream = (upstream.host, upstream.port)
        self.victim: int | None = None
        self.blob_suffix = ""
        self.contains = False
        self.nth = 0
        self.when = "after"
        self.seen = 0
        self.killed = False
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                relay.handle(self)

            def do_HEAD(self) -> None:
                relay.handle(self)

            def do_PUT(self) -> None:
                relay.handle(self)

            def do_DELETE(self) -> None:
                relay.handle(self)

            def do_POST(self) -> None:
                relay.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def connection_string(self) -> str:
        endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/{ACCOUNT_NAME}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint};"
        )

    def arm(self, victim: int, blob_suffix: str, nth: int, when: str, *, contains: bool = False) -> None:
        with self._lock:
            self.victim, self.blob_suffix, self.nth, self.when, self.seen = victim, blob_suffix, nth, when, 0
            self.contains = contains

    def disarm(self) -> None:
        with self._lock:
            self.victim = None

    def _decide(self, method: str, target: str) -> str | None:
        parts = urlsplit(target)
        with self._lock:
            path, suffix = parts.path, self.blob_suffix
            matches = suffix in path if self.contains else path.endswith("/" + suffix)
            if self.victim is None or method != "PUT" or not matches:
                return None
            if parse_qs(parts.query).get("comp") != ["appendblock"]:
                return None
            self.seen += 1
            return self.when if self.seen == self.nth else None

    def _kill(self) -> None:
        with self._lock:
            victim, self.victim = self.victim, None
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
            self.killed = True

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        action = self._decide(req.command, req.path)
        if action == "before":
            self._kill()
            req.close_connection = True
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.putrequest(req.command, req.path, skip_host=True, skip_accept_encoding=True)
            for key, value in req.headers.items():
                if key.lower() not in ("connection", "keep-alive", "proxy-connection"):
                    upstream.putheader(key, value)
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if action == "after":  # committed by Azurite; the sink never hears of it
            self._kill()
            req.close_connection = True
            return
        req.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in ("transfer-encoding", "connection", "keep-alive"):
                continue
            if key.lower() == "content-length" and req.command != "HEAD":
                continue
            req.send_header(key, value)
        if req.command != "HEAD":
            req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def relay(azurite: Azurite) -> Iterator[KillingRelay]:
    r = KillingRelay(azurite)
    try:
        yield r
    finally:
        r.close()


# ----------------------------------------------------------------------------------------------
# tests: registration


def test_register_is_idempotent() -> None:
    """register() makes ``azure_append_blob`` resolve in the shared plugin manager, once."""
    from elspeth.plugins.infrastructure.manager import get_shared_plugin_manager

    from elspeth_appendsink.elspeth import register
    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink

    manager = get_shared_plugin_manager()
    first = register()
    registered = len(manager.get_sinks())
    assert register() is first is AzureAppendBlobSink
    assert len(manager.get_sinks()) == registered
    assert manager.get_sink_by_name("azure_append_blob") is AzureAppendBlobSink
    assert "azure_blob" in {cls.name for cls in manager.get_sinks()}  # the built-ins are still there


# ----------------------------------------------------------------------------------------------
# tests: a plain run


@pytest.mark.parametrize(
    ("fmt", "blob_path"),
    [("csv", "runs/{{ run_id }}/rows.csv"), ("jsonl", "fixed/rows.jsonl")],
)
def test_run_writes_every_row_once_and_registers_the_artifact(
    pipeline: Pipeline, service: BlobServiceClient, container: str, fmt: str, blob_path: str
) -> None:
    """csv source -> passthrough -> azure_append_blob: the blob holds every input row once, the
    landscape's artifact is the blob's sha256 and size, and its calls are our guarded appends."""
    sink = SinkSpec("output", container, blob_path, fmt, "AZ_DIRECT", block="1KiB")
    pipeline.write_settings([sink], gate=False)

    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")

    assert code == 0, output[-4000:]
    run_id, status = pipeline.only_run()
    assert status == "completed"
    blob = blob_path.replace("{{ run_id }}", run_id)
    data = blob_bytes(service, container, blob)
    assert_exactly_once(parse_output(data, fmt), input_rows())
    assert_artifact_matches(pipeline, run_id, "output", f"azure://{container}/{blob}", data)

    calls = pipeline.sink_calls(run_id)
    assert calls and all(c["call_type"] == "http" and c["status"] == "success" for c in calls)
    appends = data_appends(calls, container, blob)
    assert len(appends) > 1, "block_size 1KiB should have split the output into several blocks"
    offset = 0
    for call in appends:  # every append is guarded at exactly the offset it lands at
        assert call["request"]["appendpos_condition"] == offset == call["request"]["offset"]
        assert call["response"]["blob_append_offset"] == offset
        offset += call["request"]["length"]
    assert offset == len(data)
    creates = [
        c for c in calls if c["request"]["operation"] == "create_append_blob" and c["request"]["blob"] == blob
    ]
    assert len(creates) == 1 and creates[0]["request"]["if_none_match"] == "*"


def documented_pipeline() -> str:
    """The first YAML block of README.md's "A first pipeline in five minutes" section."""
    heading = "## A first pipeline in five minutes\n"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert heading in text, "README.md has no 'A first pipeline in five minutes' section"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "```yaml\n" in section, "no YAML block under 'A first pipeline in five minutes'"
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_documented_pipeline_runs(pipeline: Pipeline, service: BlobServiceClient, azurite: Azurite) -> None:
    """The README's pipeline, verbatim (relative paths, from its own directory), runs as documented."""
    (pipeline.root / "data").mkdir()
    write_input(pipeline.root / "data" / "orders.csv", input_rows())
    pipeline.settings.write_text(documented_pipeline(), encoding="utf-8")
    pipeline.env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    service.create_container("pipeline-output")
    try:
        code, output = pipeline.run("run", "-s", "settings.yaml", "-x")
        assert code == 0, output[-4000:]
        landscape = pipeline.root / "state" / "audit.db"
        ((run_id, status),) = pipeline.query_at(landscape, "SELECT run_id, status FROM runs")
        assert status == "completed"
        data = blob_bytes(service, "pipeline-output", f"orders/{run_id}/orders.csv")
        assert_exactly_once(parse_output(data, "csv"), input_rows())
        assert (pipeline.root / "state" / "payloads").is_dir()
    finally:
        service.delete_container("pipeline-output")


# ----------------------------------------------------------------------------------------------
# tests: resume


def two_sinks(pipeline: Pipeline, low_container: str, high_container: str, fmt: str, high_env: str) -> None:
    pipeline.write_settings(
        [
            SinkSpec("low", low_container, "low/{{ run_id }}/rows." + fmt, fmt, "AZ_DIRECT", block="256B"),
            SinkSpec("high", high_container, "high/{{ run_id }}/rows." + fmt, fmt, high_env, block="256B"),
        ],
        gate=True,
    )


def assert_resumed_exactly_once(
    pipeline: Pipeline, service: BlobServiceClient, run_id: str, containers: dict[str, str], fmt: str
) -> dict[str, bytes]:
    status = pipeline.query("SELECT status FROM runs WHERE run_id=?", run_id)
    assert status == [("completed",)]
    rows = input_rows()
    expected = {
        "low": [r for r in rows if r["amount"] <= THRESHOLD],
        "high": [r for r in rows if r["amount"] > THRESHOLD],
    }
    assert expected["low"] and expected["high"]
    blobs = {}
    for sink, container in containers.items():
        blob = f"{sink}/{run_id}/rows.{fmt}"
        data = blob_bytes(service, container, blob)
        assert_exactly_once(parse_output(data, fmt), expected[sink])
        assert_artifact_matches(pipeline, run_id, sink, f"azure://{container}/{blob}", data)
        blobs[sink] = data
    return blobs


def resume(pipeline: Pipeline, run_id: str) -> str:
    from elspeth_appendsink.elspeth import resume_fix

    code, output = pipeline.run("resume", run_id, "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    import elspeth.cli

    needed = resume_fix.needs_fix(inspect.getsource(elspeth.cli.resume))
    assert output.count(resume_fix.NOTICE) == (1 if needed else 0), output[-4000:]
    return output


@pytest.mark.usefixtures("resume_fixed")
def test_resume_after_a_failed_sink_write(
    pipeline: Pipeline, service: BlobServiceClient, container: str
) -> None:
    """A block blob is in the way of ``high``'s fixed path: its write raises and the run fails
    after ``low`` was written and checkpointed. Once the blob is gone, resume writes ``high``'s
    rows once."""
    high_blob = "high/fixed/rows.jsonl"
    pipeline.write_settings(
        [
            SinkSpec("low", container, "low/{{ run_id }}/rows.jsonl", "jsonl", "AZ_DIRECT", block="256B"),
            SinkSpec("high", container, high_blob, "jsonl", "AZ_DIRECT", block="256B"),
        ],
        gate=True,
    )
    blocker = service.get_container_client(container).get_blob_client(high_blob)
    blocker.upload_blob(b"not an append blob\n")

    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")

    assert code == 1, output[-4000:]
    assert "blob_exists" in output or "BlobAlreadyExists" in output or "already exists" in output, output[
        -4000:
    ]
    run_id, status = pipeline.only_run()
    assert status == "failed"
    assert pipeline.query("SELECT count(*) FROM checkpoints WHERE run_id=?", run_id)[0][0] > 0

    blocker.delete_blob()
    code, output = pipeline.run("resume", run_id, "-s", str(pipeline.settings))  # dry run
    assert code == 0 and "can be resumed" in output, output[-4000:]
    unprocessed = sum(1 for r in input_rows() if r["amount"] > THRESHOLD)
    assert f"Unprocessed rows: {unprocessed}" in output
    resume(pipeline, run_id)
    assert pipeline.query("SELECT status FROM runs WHERE run_id=?", run_id) == [("completed",)]
    rows = input_rows()
    for sink, blob in (("low", f"low/{run_id}/rows.jsonl"), ("high", high_blob)):
        data = blob_bytes(service, container, blob)
        expected = [r for r in rows if (r["amount"] > THRESHOLD) == (sink == "high")]
        assert_exactly_once(parse_output(data, "jsonl"), expected)
        assert_artifact_matches(pipeline, run_id, sink, f"azure://{container}/{blob}", data)
    skips = [c for c in pipeline.sink_calls(run_id) if c["request"]["operation"] == "replay_skip"]
    assert skips == []  # nothing of high's was durable, so nothing was skipped


def run_killed(
    pipeline: Pipeline, relay: KillingRelay, blob: str, *, nth: int, when: str, contains: bool = False
) -> None:
    """``run`` the pipeline and SIGKILL it at the ``nth`` append to ``blob`` (a name suffix, or a
    substring with ``contains``), ``before`` or ``after`` it reaches storage; checks it died so."""
    proc = pipeline.start("run", "-s", str(pipeline.settings), "-x")
    relay.arm(proc.pid, blob, nth=nth, when=when, contains=contains)
    try:
        output, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        relay.disarm()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert relay.killed and proc.returncode == -signal.SIGKILL, output[-4000:]


@pytest.mark.usefixtures("resume_fixed")
@pytest.mark.parametrize(
    ("when", "fmt"),
    [("after", "csv"), ("after", "jsonl"), ("before", "jsonl")],
    ids=["block-landed-response-lost-csv", "block-landed-response-lost-jsonl", "intent-only-jsonl"],
)
def test_resume_after_sigkill_mid_write(
    pipeline: Pipeline, service: BlobServiceClient, container: str, relay: KillingRelay, when: str, fmt: str
) -> None:
    """SIGKILL at ``high``'s 2nd data append; mark the run failed; resume. Every row ends up in its
    blob exactly once, and the audit trail says how many replayed rows were already durable."""
    pipeline.env["AZ_RELAYED"] = relay.connection_string
    two_sinks(pipeline, container, container, fmt, "AZ_RELAYED")

    run_killed(pipeline, relay, f"rows.{fmt}", nth=2, when=when)
    run_id, status = pipeline.only_run()
    assert status == "running"  # a hard-killed run is left running
    high_blob = f"high/{run_id}/rows.{fmt}"
    partial = parse_output(blob_bytes(service, container, high_blob), fmt)
    assert partial, "the kill should come after high's first block was committed"

    attempts = pipeline.mark_failed_when_writer_gone(run_id, container, high_blob)
    assert f"held by run {run_id}" in attempts[0]  # the killed writer's lease had not expired yet
    assert "marked run" in attempts[-1] and "LandscapeRecorder.complete_run" in attempts[-1]
    assert pipeline.only_run() == (run_id, "failed")
    again = pipeline.mark_failed_when_writer_gone(run_id, container, high_blob)  # idempotent
    assert len(again) == 1 and "is failed: nothing to mark" in again[0]
    resume(pipeline, run_id)

    assert_resumed_exactly_once(pipeline, service, run_id, {"low": container, "high": container}, fmt)
    skips = [c["response"] for c in pipeline.sink_calls(run_id) if c["request"]["operation"] == "replay_skip"]
    assert len(skips) == 1, skips
    assert skips[0]["rows_skipped"] == len(partial)
    assert skips[0]["rows_in"] == skips[0]["rows_skipped"] + skips[0]["rows_appended"]
    for blob in (high_blob, f"low/{run_id}/rows.{fmt}"):  # ELSPETH's artifacts anchor both outputs
        code, output = pipeline.verify_landscape(container, blob)
        assert code == 0 and "Anchor   ANCHORED: 1 run matches" in output, output


def kill_mid_write(pipeline: Pipeline, relay: KillingRelay, fmt: str) -> str:
    """Run the two-sink pipeline and SIGKILL it at ``high``'s 2nd data append; the run id."""
    run_killed(pipeline, relay, f"rows.{fmt}", nth=2, when="after")
    run_id, status = pipeline.only_run()
    assert status == "running"
    return run_id


@pytest.mark.usefixtures("resume_fixed")
def test_launcher_resume_marks_a_dead_run_failed_first(
    pipeline: Pipeline, service: BlobServiceClient, container: str, relay: KillingRelay
) -> None:
    """kill -9 mid-write, then only ``resume RUN --mark-failed-if-dead`` through the launcher: it
    refuses (and changes nothing) while the killed writer's lease is live, then marks the run
    failed through ELSPETH's recorder and resumes it: every row exactly once."""
    pipeline.env["AZ_RELAYED"] = relay.connection_string
    two_sinks(pipeline, container, container, "jsonl", "AZ_RELAYED")
    run_id = kill_mid_write(pipeline, relay, "jsonl")
    command = ("resume", run_id, "-s", str(pipeline.settings), "-x", "--mark-failed-if-dead")

    code, first = pipeline.run(*command)
    assert code == 1, first[-4000:]
    assert f"held by run {run_id}" in first and "Nothing was changed" in first, first[-4000:]
    assert pipeline.only_run() == (run_id, "running")
    deadline = time.monotonic() + 90  # lease expiry is wall-clock time: wait for it, with a deadline
    while code == 1 and "held by run" in first and time.monotonic() < deadline:
        code, first = pipeline.run(*command)  # each attempt is a full, real check (seconds each)
    assert code == 0, first[-4000:]
    assert "marked run" in first and "LandscapeRecorder.complete_run" in first, first[-4000:]
    assert_resumed_exactly_once(pipeline, service, run_id, {"low": container, "high": container}, "jsonl")

    code, again = pipeline.run(*command)  # the run completed: nothing is marked, ELSPETH refuses
    assert "is completed: nothing to mark" in again, again[-4000:]
    assert pipeline.only_run() == (run_id, "completed")


def test_launcher_refuses_to_mark_a_run_whose_lease_a_live_process_renews(
    pipeline: Pipeline, service: BlobServiceClient, container: str, relay: KillingRelay
) -> None:
    """A live process keeps renewing the run's lease (as a writer that is only slow would): the
    mark-failed step refuses for longer than ``lease_duration``, naming the run, and the run's
    status and output stay as they were."""
    from elspeth_appendsink.protocol.lease import lease_id_for

    pipeline.env["AZ_RELAYED"] = relay.connection_string
    two_sinks(pipeline, container, container, "jsonl", "AZ_RELAYED")
    run_id = kill_mid_write(pipeline, relay, "jsonl")
    blob = f"high/{run_id}/rows.jsonl"
    before = blob_bytes(service, container, blob)
    lease = (
        service.get_container_client(container)
        .get_blob_client(blob)
        .acquire_lease(lease_duration=60, lease_id=lease_id_for(run_id))
    )  # the dead writer's lease id: acquiring it again is what that writer, were it alive, would do
    command = ("resume", run_id, "-s", str(pipeline.settings), "-x", "--mark-failed-if-dead")
    refusals = 0
    deadline = time.monotonic() + 20  # longer than lease_duration (15 s): a dead writer's would lapse
    while time.monotonic() < deadline:
        lease.renew()
        code, output = pipeline.run(*command)
        assert code == 1 and f"held by run {run_id}" in output, output[-4000:]
        refusals += 1
    assert refusals >= 2
    assert pipeline.only_run() == (run_id, "running")
    assert blob_bytes(service, container, blob) == before
    lease.release()


# ----------------------------------------------------------------------------------------------
# tests: re-run (if_exists: continue) when ELSPETH cannot resume

CONTINUE_OPTIONS = "      if_exists: continue\n      identity_fields: id\n"


def rerun_pipeline(pipeline: Pipeline, container: str, env: str) -> str:
    """One sink at a fixed path in continue mode; returns the blob path."""
    pipeline.write_settings(
        [SinkSpec("out", container, "rerun/rows.jsonl", "jsonl", env, block="256B")], gate=False
    )
    text = pipeline.settings.read_text(encoding="utf-8")
    text = text.replace(
        "      schema: {mode: observed}\nlandscape:",
        "      schema: {mode: observed}\n" + CONTINUE_OPTIONS + "landscape:",
    )
    assert "if_exists: continue" in text
    pipeline.settings.write_text(text, encoding="utf-8")
    return "rerun/rows.jsonl"


def test_rerun_after_sigkill_completes_the_output(
    pipeline: Pipeline, service: BlobServiceClient, container: str, relay: KillingRelay, azurite: Azurite
) -> None:
    """kill -9 in the middle of the sink's write leaves a run ELSPETH will not resume ("still in
    progress"); after `elspeth-appendsink unlock --yes`, running the pipeline again (a new run id)
    finishes the same blob: every row exactly once, the first run's rows first, verify clean."""
    pipeline.env["AZ_RELAYED"] = relay.connection_string
    blob = rerun_pipeline(pipeline, container, "AZ_RELAYED")
    run_killed(pipeline, relay, "rows.jsonl", nth=2, when="after")
    partial = parse_output(blob_bytes(service, container, blob), "jsonl")
    assert partial, "the kill should come after the first block was committed"

    tools = {**pipeline.env, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    unlock = subprocess.run(
        [
            sys.executable,
            "-m",
            "elspeth_appendsink",
            "unlock",
            "--container",
            container,
            "--blob-path",
            blob,
            "--yes",
        ],
        env=tools,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr

    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    rows = parse_output(blob_bytes(service, container, blob), "jsonl")
    assert_exactly_once(rows, input_rows())
    assert rows[: len(partial)] == partial  # the first run's rows keep their place
    verify = subprocess.run(
        [sys.executable, "-m", "elspeth_appendsink", "verify", "--container", container, "--blob-path", blob],
        env=tools,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0 and "Runs     2" in verify.stdout, verify.stdout + verify.stderr


def test_rerun_of_a_completed_output_changes_no_byte(
    pipeline: Pipeline, service: BlobServiceClient, container: str
) -> None:
    """Running the same pipeline twice over the same input in continue mode leaves the blob unchanged."""
    blob = rerun_pipeline(pipeline, container, "AZ_DIRECT")
    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    first = blob_bytes(service, container, blob)
    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    assert blob_bytes(service, container, blob) == first
    assert_exactly_once(parse_output(first, "jsonl"), input_rows())


# ----------------------------------------------------------------------------------------------
# tests: the landscape decides which re-delivered rows are durable (issue #12 item 5)

# Two write groups to one sink whose rows are byte-equal at the junction. A gate routes rows with
# a == 'r' straight to ``out`` (outcome ROUTED); the others go through a field_mapper that swaps
# ``a`` and ``b`` (so they, too, read a='r', b='c') and reach ``out`` on success (COMPLETED).
# ELSPETH writes one sink's tokens grouped by outcome, COMPLETED first: call N is the swapped
# rows, call N+1 the routed ones; with the input below N+1 = [2, 3] is byte-equal to N's tail.
EQUAL_TAIL = """\
source:
  plugin: csv
  on_success: gate_in
  options:
    path: @INPUT@
    schema:
      mode: fixed
      fields: ['id: int', 'name: str', 'a: str', 'b: str']
    on_validation_failure: discard
transforms:
- name: swap
  plugin: field_mapper
  input: swap_in
  on_success: out
  on_error: discard
  options:
    schema: {mode: observed}
    select_only: true
    mapping: {id: id, name: name, b: a, a: b}
gates:
- name: split
  input: gate_in
  condition: row['a'] == 'r'
  routes: {'true': out, 'false': swap_in}
sinks:
  out:
    plugin: azure_append_blob
    on_write_failure: discard
    options:
      connection_string: ${AZ_RELAYED}
      container: @CONTAINER@
      blob_path: "out/{{ run_id }}/rows.jsonl"
      format: jsonl
      lease_duration: 15
      schema: {mode: observed}
"""
EQUAL_TAIL_INPUT = [
    {"id": 1, "name": "one", "a": "c", "b": "r"},
    {"id": 2, "name": "two", "a": "c", "b": "r"},
    {"id": 3, "name": "three", "a": "c", "b": "r"},
    {"id": 2, "name": "two", "a": "r", "b": "c"},
    {"id": 3, "name": "three", "a": "r", "b": "c"},
]


def equal_tail_pipeline(pipeline: Pipeline, container: str) -> None:
    with (pipeline.root / "input.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "name", "a", "b"])
        writer.writeheader()
        writer.writerows(EQUAL_TAIL_INPUT)
    text = fill(EQUAL_TAIL, INPUT=pipeline.root / "input.csv", CONTAINER=container)
    text += fill(AUDIT, DB=pipeline.db, PAYLOADS=pipeline.payloads)
    pipeline.settings.write_text(text, encoding="utf-8")


def manifest_blocks(service: BlobServiceClient, container: str, name: str) -> list[Any]:
    from elspeth_appendsink.core.manifest import BlockEntry, ManifestReader

    reader = ManifestReader(name)
    records = list(reader.feed(blob_bytes(service, container, name)))
    return [r.record for r in records if isinstance(r.record, BlockEntry)]


@pytest.mark.usefixtures("resume_fixed")
def test_landscape_decides_a_next_call_equal_to_the_committed_tail(
    pipeline: Pipeline, service: BlobServiceClient, container: str, relay: KillingRelay
) -> None:
    """No identity_fields; call N = rows 1, 2, 3 lands and ELSPETH records its outcomes; call N+1 = rows
    2, 3 (byte-equal to N's tail) is killed before its first intent reaches the manifest. After
    ``runs --mark-failed`` and a resume through the launcher, rows 2 and 3 are in the output
    twice (once per group) and row 1 once; the audit fact says the landscape decided, and that
    the manifest rule alone would have skipped (lost) both re-delivered rows."""
    pipeline.env["AZ_RELAYED"] = relay.connection_string
    equal_tail_pipeline(pipeline, container)
    row = {r["id"]: {"id": r["id"], "name": r["name"], "a": "r", "b": "c"} for r in EQUAL_TAIL_INPUT}
    call_n, call_n1 = [row[1], row[2], row[3]], [row[2], row[3]]

    # manifest appends: 1 the open record with call N's intents, 2 call N+1's intents (killed unsent)
    run_killed(pipeline, relay, ".manifest/", nth=2, when="before", contains=True)
    run_id, status = pipeline.only_run()
    assert status == "running"
    blob = f"out/{run_id}/rows.jsonl"
    assert parse_output(blob_bytes(service, container, blob), "jsonl") == call_n
    blocks = manifest_blocks(service, container, f"{blob}.manifest/{run_id}")
    assert blocks and {b.write_call for b in blocks} == {blocks[0].write_call}  # no intent of N+1
    node = pipeline.sink_node(run_id, "out")
    recorded = pipeline.query(
        "SELECT count(*) FROM token_outcomes o JOIN node_states s ON s.token_id = o.token_id "
        "WHERE o.run_id=? AND o.is_terminal=1 AND s.node_id=?",
        run_id,
        node,
    )
    assert recorded == [(3,)]  # ELSPETH recorded all of call N before it began call N+1

    pipeline.mark_failed_when_writer_gone(run_id, container, blob)
    assert pipeline.only_run() == (run_id, "failed")
    resume(pipeline, run_id)

    assert pipeline.only_run() == (run_id, "completed")
    rows = parse_output(blob_bytes(service, container, blob), "jsonl")
    assert rows == call_n + call_n1
    counts = Counter(json.dumps(r, sort_keys=True) for r in rows)
    expected = Counter(json.dumps(r, sort_keys=True) for r in call_n + call_n1)
    assert counts == expected, (counts, expected)  # every row as often as ELSPETH delivered it
    data = blob_bytes(service, container, blob)
    assert_artifact_matches(pipeline, run_id, "out", f"azure://{container}/{blob}", data)
    skips = [c["response"] for c in pipeline.sink_calls(run_id) if c["request"]["operation"] == "replay_skip"]
    assert len(skips) == 1, skips
    fact = skips[0]
    assert fact["scope"] == "landscape", fact
    assert (fact["rows_in"], fact["rows_skipped"], fact["rows_appended"]) == (2, 0, 2)
    assert (fact["call_committed_rows"], fact["landscape_pending_rows"]) == (3, 0)
    assert fact["landscape"] == {"recorded_rows": 3, "sink_names": ["out"]}
    assert fact["manifest_rule_skip"] == 2  # today's rule would have taken rows 2, 3 for durable: lost


# ----------------------------------------------------------------------------------------------
# tests: ELSPETH's records anchor the manifests (verify --landscape)


@pytest.mark.parametrize("tamper", ["foreign-rows", "manifest-truncated", "rows-rewritten"])
def test_verify_landscape_finds_tampering_plain_verify_cannot(
    pipeline: Pipeline, service: BlobServiceClient, azurite: Azurite, container: str, tamper: str
) -> None:
    """A completed real run: ``verify --landscape`` is OK. Then the container is tampered with
    behind the sink's back — foreign rows appended under a forged manifest record, or the manifest
    recreated without its last write call (and its bytes), or a row edited in place under a
    re-chained manifest — so that plain ``verify`` still passes; ``verify --landscape`` fails and
    names the run, the write call and the offset."""
    from tests.tools.outputs import (
        committed_entries,
        drop_last_call,
        forge_foreign_rows,
        rewrite_rows_in_place,
    )

    path = "anchored/{{ run_id }}/rows.jsonl"
    sink = SinkSpec("output", container, path, "jsonl", "AZ_DIRECT", block="1KiB")
    pipeline.write_settings([sink], gate=False)
    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    run_id, status = pipeline.only_run()
    assert status == "completed"
    blob = f"anchored/{run_id}/rows.jsonl"
    artifacts = pipeline.artifacts(run_id, pipeline.sink_node(run_id, "output"))
    assert artifacts  # ELSPETH hands this sink all its rows in one write call here
    code, output = pipeline.verify_landscape(container, blob)
    assert code == 0 and "Anchor   ANCHORED: 1 run matches" in output, output
    assert f"{run_id}: ELSPETH completed, {len(artifacts)} artifact(s)" in output, output

    if tamper == "foreign-rows":
        foreign = b'{"id": 999, "name": "forged"}\n'
        forge_foreign_rows(azurite, container, foreign, blob_path=blob, run_id=run_id)
        where = f"  offset   {artifacts[-1][2]:,} (in the whole output)"
        call = f"  call     write call {len(artifacts) - 1}"
    elif tamper == "manifest-truncated":
        drop_last_call(azurite, container, blob_path=blob, run_id=run_id)
        where = f"  offset   {artifacts[-1][2]:,} (in the whole output)"
        call = "  call     no write call ends there"
    else:
        first = committed_entries(azurite, container, blob_path=blob, run_id=run_id)[0]
        rewrite_rows_in_place(azurite, container, first.seq, blob_path=blob, run_id=run_id)
        where = f"  offset   {artifacts[0][2]:,} (in the whole output)"
        call = f"  call     write call {first.write_call}"
    code, output = pipeline.verify(container, blob)
    assert code == 0 and "VERIFIED" in output, output  # the container alone cannot tell

    code, output = pipeline.verify_landscape(container, blob)
    assert code == 1, output
    assert "Anchor   NOT ANCHORED" in output and f"  run      {run_id}" in output, output
    assert call in output and where in output, output
    assert ACCOUNT_KEY not in output


# ----------------------------------------------------------------------------------------------
# tests: the identity option and ELSPETH's secret-name rule


def identity_pipeline(pipeline: Pipeline, container: str, option: str) -> None:
    """One sink with no secret-named option at all (the connection string comes from the
    environment by name) and the identity option given as one field name."""
    pipeline.write_settings(
        [SinkSpec("out", container, "out/{{ run_id }}/rows.csv", "csv", "AZ_DIRECT")], gate=False
    )
    text = pipeline.settings.read_text(encoding="utf-8")
    text = text.replace(
        "connection_string: ${AZ_DIRECT}", f"connection_string_env: AZ_DIRECT\n      {option}: id"
    )
    pipeline.settings.write_text(text, encoding="utf-8")
    pipeline.env.pop("ELSPETH_FINGERPRINT_KEY", None)


def test_the_identity_option_runs_without_a_fingerprint_key(
    pipeline: Pipeline, service: BlobServiceClient, container: str
) -> None:
    """``row_key: id`` made ELSPETH refuse to run (SecretFingerprintError) without
    ELSPETH_FINGERPRINT_KEY, and store a fingerprint instead of the field name with it."""
    identity_pipeline(pipeline, container, "identity_fields")
    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 0, output[-4000:]
    ((run_id,),) = pipeline.query("SELECT run_id FROM runs")
    data = blob_bytes(service, container, f"out/{run_id}/rows.csv")
    assert_exactly_once(parse_output(data, "csv"), input_rows())
    configs = [
        json.loads(c) for (c,) in pipeline.query("SELECT config_json FROM nodes WHERE run_id=?", run_id)
    ]
    stored = [c for c in configs if c.get("container") == container]
    assert stored and stored[0]["identity_fields"] == "id" and "identity_fields_fingerprint" not in stored[0]


def test_a_settings_file_still_naming_row_key_is_told_the_new_name(
    pipeline: Pipeline, container: str
) -> None:
    identity_pipeline(pipeline, container, "row_key")
    code, output = pipeline.run("run", "-s", str(pipeline.settings), "-x")
    assert code == 1
    assert "option 'row_key' was renamed 'identity_fields'" in output and "Traceback" not in output
