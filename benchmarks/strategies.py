"""The six ways of getting the same rows into a blob that the suite puts side by side.

Each strategy is prepared first (untimed: clients, pre-encoded bytes for the limit) and then run
(timed). Every one writes the rows of ``batches`` in order, one ``batches`` item per ELSPETH
``write()`` call, and each call is durable when it returns — except ``oneshot``, which by design
uploads the whole output once at the end.

``limit``    raw ``append_block(appendpos_condition=…)`` of **pre-encoded** bytes: the sink's own
             encoder output, cut into blocks the way the sink cuts them (whole rows, at most
             ``block_size``, never across a write call, the format header in the first block).
             Encoding is not timed: this is the upload ceiling.
``sink``     ``AzureAppendBlobSink`` through its ELSPETH-facing class: ``write(rows, ctx)`` per
             call with a ``RecordingContext``, then ``flush``, ``on_complete``, ``close``.
``stock``    ELSPETH's ``azure_blob`` strategy, re-implemented: keep every row so far; on every
             call serialise all of them, sha256 the result (its artifact hash) and
             ``upload_blob(overwrite=True)`` with the SDK's defaults (one PUT up to 64 MiB,
             4 MiB staged blocks + commit above). Quadratic, so it may stop after a time
             budget and project the remaining calls (``projected`` in the result).
``adlfs``    ``AzureBlobFileSystem.open(path, "ab")`` / ``write`` / ``close`` per call: each call
             is made durable by closing the file (fsspec's ``flush()`` only uploads full buffers).
``adlfs_user`` adlfs append mode as a Python user would write it, without this package: per call
             ``pyarrow.Table.from_pylist(batch, schema)``, then ``pyarrow.csv.write_csv`` (header on
             the first call only), Arrow IPC messages (the schema message once, then one record
             batch message per call) or orjson lines, into ``fs.open(path, "ab")``. Its CSV bytes
             are pyarrow's (quoting differs), so its output size is not checked against the limit.
``oneshot``  one ``upload_blob`` of the whole output as a block blob: fast, not resumable.

Serialisation for the baselines (``stock``, ``adlfs``, ``oneshot``) is the package's own
encoders, so the bytes are the sink's: CSV and JSONL are byte-identical to the sink's output;
for Arrow the baselines write the same schema message and one record batch per upload (the
sink writes one record batch per block), without the sink's per-row validation. It is timed.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import BlobServiceClient

from benchmarks.rows import SCHEMA
from benchmarks.transport import CountingTransport, Counts
from elspeth_appendsink.elspeth.schema import RowSchema
from elspeth_appendsink.encoders import create_encoder
from elspeth_appendsink.encoders.base import Encoder

__all__ = ["BLOCK_SIZE", "STRATEGIES", "Env", "Prepared", "prepare"]

BLOCK_SIZE = 4 * 1024 * 1024
Row = dict[str, Any]


@dataclass
class Env:
    """Everything a strategy needs; built in the case's child process before timing starts."""

    connection_string: str
    container: str
    fmt: str
    batches: list[list[Row]]
    counts: Counts
    latency: float = 0.0
    encoded: Sequence[bytes] | None = None  # per-row bytes of all rows (limit only)
    stock_budget: float | None = None  # seconds; None: run every call
    block_size: int = BLOCK_SIZE

    @property
    def blob_path(self) -> str:
        return f"out/data.{self.fmt}"

    def service(self) -> BlobServiceClient:
        transport = CountingTransport(self.counts, self.latency)
        return BlobServiceClient.from_connection_string(self.connection_string, transport=transport)

    def encoder(self) -> Encoder:
        return create_encoder(self.fmt, schema=RowSchema.from_dict(SCHEMA), first_rows=self.batches[0])


@dataclass
class Prepared:
    """A strategy ready to go: ``run()`` is timed and returns extra facts; ``blob`` is what to check."""

    run: Callable[[], dict[str, Any]]
    blob: str
    close: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


def serialise(encoder: Encoder, fmt: str, rows: Sequence[Row], header: bool) -> bytes:
    """The baselines' serialisation: the package encoder's bytes (see the module docstring)."""
    head = encoder.header() if header else b""
    if fmt == "arrow":
        return head + encoder.block([b""] * len(rows), rows) if rows else head
    return head + b"".join(encoder.encode(rows))


# --- limit ----------------------------------------------------------------------------------------
def plan_limit_blocks(env: Env, encoder: Encoder) -> list[bytes]:
    """Cut the pre-encoded rows into blocks exactly as the sink's writer does (greedy, whole rows)."""
    assert env.encoded is not None
    limit = env.block_size
    blocks: list[bytes] = []
    header = encoder.header()
    position = 0
    for batch in env.batches:
        encoded = env.encoded[position : position + len(batch)]
        start, used, cut = 0, len(header), []
        for index, enc in enumerate(encoded):
            if used + len(enc) > limit and (index > start or header):
                cut.append((start, index, header))
                start, used, header = index, 0, b""
            used += len(enc)
        cut.append((start, len(encoded), header))
        header = b""
        for lo, hi, head in cut:
            _emit_block(blocks, env.fmt, encoder, head, encoded[lo:hi], batch[lo:hi], limit)
        position += len(batch)
    return [b for b in blocks if b]


def _emit_block(
    out: list[bytes],
    fmt: str,
    encoder: Encoder,
    head: bytes,
    enc: Sequence[bytes],
    rows: Sequence[Row],
    limit: int,
) -> None:
    body = encoder.block(enc, rows) if rows else b""
    data = head + body
    if len(data) > limit and len(rows) > 1:  # arrow: the per-row estimate was short; halve, as the sink does
        half = len(rows) // 2
        _emit_block(out, fmt, encoder, head, enc[:half], rows[:half], limit)
        _emit_block(out, fmt, encoder, b"", enc[half:], rows[half:], limit)
        return
    out.append(data)


def prepare_limit(env: Env) -> Prepared:
    blocks = plan_limit_blocks(env, env.encoder())
    service = env.service()
    blob = service.get_blob_client(env.container, env.blob_path)

    def run() -> dict[str, Any]:
        blob.create_append_blob()
        position = 0
        for block in blocks:
            blob.append_block(block, length=len(block), appendpos_condition=position)
            position += len(block)
        return {"blocks": len(blocks)}

    return Prepared(run, env.blob_path, service.close, {"pre_encoded_bytes": sum(map(len, blocks))})


# --- the sink ---------------------------------------------------------------------------------------
def sink_options(env: Env, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connection_string": env.connection_string,
        "container": env.container,
        "blob_path": env.blob_path,
        "format": env.fmt,
        "schema": SCHEMA,
        "block_size": env.block_size,
    }
    options.update(overrides)
    return options


def prepare_sink(env: Env) -> Prepared:
    from elspeth_appendsink.elspeth.sink import AzureAppendBlobSink
    from elspeth_appendsink.testing import RecordingContext

    sink = AzureAppendBlobSink(sink_options(env), transport=CountingTransport(env.counts, env.latency))
    ctx = RecordingContext(run_id=f"bench-{uuid.uuid4().hex[:12]}")
    batches = env.batches

    def run() -> dict[str, Any]:
        result = None
        for batch in batches:
            result = sink.write(batch, ctx)
        sink.flush()
        sink.on_complete(ctx)
        sink.close()
        artifact = result.artifact if result is not None else None
        return {
            "artifact_size": getattr(artifact, "size_bytes", None),
            "audit_records": len(ctx.calls),
        }

    return Prepared(run, env.blob_path)


# --- stock azure_blob strategy ----------------------------------------------------------------------
def prepare_stock(env: Env) -> Prepared:
    encoder = env.encoder()
    service = env.service()
    blob = service.get_blob_client(env.container, env.blob_path)
    batches = env.batches
    budget = env.stock_budget
    fmt = env.fmt

    def run() -> dict[str, Any]:
        buffered: list[Row] = []
        per_call: list[tuple[int, int, float]] = []  # rows so far, bytes uploaded, seconds
        start = time.perf_counter()
        for batch in batches:
            began = time.perf_counter()
            rows = buffered + batch
            content = serialise(encoder, fmt, rows, header=True)
            hashlib.sha256(content).hexdigest()  # the stock sink's artifact content_hash
            blob.upload_blob(content, overwrite=True)
            buffered = rows
            per_call.append((len(rows), len(content), time.perf_counter() - began))
            del content
            if budget is not None and time.perf_counter() - start > budget and len(per_call) >= 3:
                break
        return {"per_call": per_call}

    return Prepared(run, env.blob_path, service.close)


def project_stock(per_call: list[tuple[int, int, float]], batches: Sequence[Sequence[Row]]) -> dict[str, Any]:
    """Least-squares lines ``seconds ~ rows so far`` and ``bytes ~ rows so far`` over the measured calls,
    summed over the calls that were not run. Requests follow the SDK's upload rule."""
    done = len(per_call)
    xs = [float(r) for r, _, _ in per_call]
    seconds = _fit([s for _, _, s in per_call], xs)
    sizes = _fit([float(b) for _, b, _ in per_call], xs)
    total_rows = sum(len(b) for b in batches[:done])
    extra_s = extra_bytes = 0.0
    extra_requests = 0
    for batch in batches[done:]:
        total_rows += len(batch)
        extra_s += max(0.0, seconds[0] + seconds[1] * total_rows)
        size = sizes[0] + sizes[1] * total_rows
        extra_bytes += size
        extra_requests += upload_requests(int(size))
    return {
        "seconds": extra_s,
        "bytes": int(extra_bytes),
        "requests": extra_requests,
        "calls": len(batches) - done,
    }


def upload_requests(size: int, single_put: int = 64 * 1024 * 1024, block: int = 4 * 1024 * 1024) -> int:
    """Requests ``upload_blob`` makes with the SDK defaults: one PUT, or staged blocks + a commit."""
    return 1 if size <= single_put else -(-size // block) + 1


def _fit(ys: list[float], xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0, my / mx if mx else 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return my - slope * mx, slope


# --- adlfs append mode ------------------------------------------------------------------------------
def prepare_adlfs(env: Env) -> Prepared:
    from adlfs import AzureBlobFileSystem

    from benchmarks.transport import patch_aiohttp_transport

    patch_aiohttp_transport(env.counts, env.latency)
    encoder = env.encoder()
    fs = AzureBlobFileSystem(connection_string=env.connection_string, skip_instance_cache=True)
    path = f"{env.container}/{env.blob_path}"
    batches = env.batches
    fmt = env.fmt

    def run() -> dict[str, Any]:
        for index, batch in enumerate(batches):
            data = serialise(encoder, fmt, batch, header=index == 0)
            with fs.open(path, "ab") as handle:
                handle.write(data)
        return {}

    return Prepared(run, env.blob_path)


# --- adlfs append mode, user-style serialisation -----------------------------------------------------
_ARROW_TYPES = {"int": "int64", "float": "float64", "bool": "bool_", "str": "string"}


def user_arrow_schema() -> Any:
    """The pyarrow schema a user would declare for :data:`SCHEMA` (``str?`` is nullable)."""
    import pyarrow as pa

    fields = []
    for spec in SCHEMA["fields"]:
        name, kind = (part.strip() for part in spec.split(":"))
        nullable = kind.endswith("?")
        fields.append(pa.field(name, getattr(pa, _ARROW_TYPES[kind.rstrip("?")])(), nullable=nullable))
    return pa.schema(fields)


def user_serialiser(fmt: str) -> Callable[[Sequence[Row], bool], bytes]:
    """``(rows, first_call) -> bytes`` the way a user writes it with pyarrow / orjson."""
    import io

    import orjson
    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema = user_arrow_schema()
    if fmt == "jsonl":
        return lambda rows, first: b"".join(orjson.dumps(row) + b"\n" for row in rows)
    if fmt == "csv":

        def csv_bytes(rows: Sequence[Row], first: bool) -> bytes:
            table = pa.Table.from_pylist(list(rows), schema=schema)
            sink = io.BytesIO()
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=first))
            return sink.getvalue()

        return csv_bytes

    def arrow_bytes(rows: Sequence[Row], first: bool) -> bytes:
        head = schema.serialize().to_pybytes() if first else b""
        if not rows:
            return head
        batch = pa.RecordBatch.from_pylist(list(rows), schema=schema)
        body: bytes = batch.serialize().to_pybytes()
        return head + body

    return arrow_bytes


def prepare_adlfs_user(env: Env) -> Prepared:
    from adlfs import AzureBlobFileSystem

    from benchmarks.transport import patch_aiohttp_transport

    patch_aiohttp_transport(env.counts, env.latency)
    serialise_user = user_serialiser(env.fmt)
    fs = AzureBlobFileSystem(connection_string=env.connection_string, skip_instance_cache=True)
    path = f"{env.container}/{env.blob_path}"
    batches = env.batches

    def run() -> dict[str, Any]:
        for index, batch in enumerate(batches):
            data = serialise_user(batch, index == 0)
            with fs.open(path, "ab") as handle:
                handle.write(data)
        return {}

    return Prepared(run, env.blob_path)


# --- block blob, one shot ---------------------------------------------------------------------------
def prepare_oneshot(env: Env) -> Prepared:
    encoder = env.encoder()
    service = env.service()
    blob = service.get_blob_client(env.container, env.blob_path)
    rows = [row for batch in env.batches for row in batch]
    fmt = env.fmt

    def run() -> dict[str, Any]:
        content = serialise(encoder, fmt, rows, header=True)
        blob.upload_blob(content, overwrite=True)
        return {}

    return Prepared(run, env.blob_path, service.close)


STRATEGIES: dict[str, Callable[[Env], Prepared]] = {
    "limit": prepare_limit,
    "sink": prepare_sink,
    "stock": prepare_stock,
    "adlfs": prepare_adlfs,
    "adlfs_user": prepare_adlfs_user,
    "oneshot": prepare_oneshot,
}


def prepare(strategy: str, env: Env) -> Prepared:
    return STRATEGIES[strategy](env)
