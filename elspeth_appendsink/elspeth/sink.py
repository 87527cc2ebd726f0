"""``azure_append_blob``: the ELSPETH sink — the only module that knows ELSPETH's contract.

:class:`AzureAppendBlobSink` turns ELSPETH's calls into
:class:`~elspeth_appendsink.protocol.writer.AppendWriter` calls and every storage request into an
audit record:

* ``on_start(ctx)`` — one audited request proves the container exists and the credentials work;
  a wrong container or key fails here, naming sink, container and account.
* ``write(rows, ctx)`` — renders the blob path once per run (``run_id``, ``timestamp``; or takes
  the crashed run's path the launcher's ``recover`` registered in :mod:`.session`), appends the
  rows exactly once, and returns an artifact whose ``content_hash`` is the sha256 of the whole
  output so far and ``size_bytes`` its size. Every Azure request made inside ``write`` is recorded
  through ``ctx.record_call`` (``CallType.HTTP``, provider ``azure_blob_storage``), success or error;
  failing to record a successful call raises ``AuditIntegrityError``. Rows recognised as already
  durable (resume, ``if_exists: continue``) are counted in a recorded call of their own.
* ``flush()`` — a no-op that is nonetheless true to the contract: ``write`` returns only once
  every block it sent is durable and described.
* ``configure_for_resume()`` — the next ``write`` first recovers the run from its manifest and
  skips the replayed rows already in the blob. Before it, the sink asks ELSPETH's landscape
  (``ctx.landscape``) how many of this run's rows at its node have a terminal outcome
  (:mod:`~elspeth_appendsink.elspeth.outcomes`), which decides exactly how many re-delivered rows
  are durable (:mod:`~elspeth_appendsink.core.replay`); the ``replay_skip`` fact says which rule
  decided.
* ``on_complete`` / ``close`` — seal (if asked) and release the lease. ELSPETH forbids recording
  calls there, so those few requests are logged instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from elspeth_appendsink._version import __version__
from elspeth_appendsink.core.decisions import Requested, check_recorded
from elspeth_appendsink.core.identity import IdentityScheme
from elspeth_appendsink.core.paths import run_pointer_name
from elspeth_appendsink.core.redact import redact_value
from elspeth_appendsink.core.target import IfExists, OutputFormat
from elspeth_appendsink.elspeth import session
from elspeth_appendsink.elspeth.host import EMPTY_SHA256 as _EMPTY
from elspeth_appendsink.elspeth.host import (
    HAVE_ELSPETH,
    ArtifactDescriptor,
    AuditIntegrityError,
    BaseSink,
    CallStatus,
    CallType,
    Determinism,
    OutputValidationResult,
    SinkWriteResult,
    build_input_schema,
)
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.elspeth.outcomes import recorded_outcomes
from elspeth_appendsink.encoders import create_encoder, restore_encoder
from elspeth_appendsink.encoders.base import Encoder, Row
from elspeth_appendsink.errors import (
    AppendSinkError,
    ClosedError,
    SchemaDriftError,
    SettingsChangedError,
    StorageError,
    StorageUnavailableError,
)
from elspeth_appendsink.logs import get_logger
from elspeth_appendsink.protocol.opening import ExistingBlob
from elspeth_appendsink.protocol.recovery import last_opening
from elspeth_appendsink.protocol.target import OutputTarget
from elspeth_appendsink.protocol.writer import AppendWriter
from elspeth_appendsink.storage import (
    PROVIDER,
    AzureStore,
    StorageCall,
)
from elspeth_appendsink.storage.credentials import open_store
from elspeth_appendsink.storage.store import Transport

__all__ = ["AzureAppendBlobSink", "store_for"]

log = get_logger("elspeth_appendsink.elspeth.sink")


class AzureAppendBlobSink(BaseSink):  # type: ignore[misc]
    """Exactly-once, resumable Azure Append Blob output for ELSPETH. Options: docs/options.md.

    ~310 lines as one class because ELSPETH's ``BaseSink`` contract is one object: its hooks
    (validation, resume configuration, write, complete, close) and the audit recording they all
    feed share one context and one writer; the protocol itself lives in ``protocol/``.
    """

    name = "azure_append_blob"
    plugin_version = __version__
    determinism = Determinism.IO_WRITE
    supports_resume = True
    # A write() retried after it failed appends only the rows not already durable (the writer
    # re-derives its position and the failed call's committed rows); see writer.py.
    idempotent = True

    def __init__(self, config: dict[str, Any], *, transport: Transport | None = None) -> None:
        super().__init__(config)
        self._cfg = SinkConfig.from_options(config)
        self.input_schema = build_input_schema(
            self._cfg.schema_options, self._cfg.row_schema.build_row_model("AzureAppendBlobRowSchema")
        )
        self.declared_required_fields = frozenset(self._cfg.row_schema.required_fields())
        self._transport = transport
        self._resume = False
        self._landscape_facts: dict[str, Any] | None = None  # what the landscape said, once per resume
        self._store: AzureStore | None = None
        self._writer: AppendWriter | None = None
        self._ctx: Any = None
        self._run_id: str | None = None
        self._field_resolution: dict[str, str] | None = None
        self._needs_resume_field_resolution = self._cfg.headers == "original"
        self._closed = False
        # Calls made where ELSPETH forbids record_call (on_start): recorded at the first write.
        self._held_calls: list[StorageCall] = []
        self._continuation: session.Continuation | None = None
        self._continuation_recorded = False

    # --- ELSPETH contract -----------------------------------------------------------------------
    @property
    def needs_resume_field_resolution(self) -> bool:
        return self._needs_resume_field_resolution

    def set_resume_field_resolution(self, mapping: dict[str, str]) -> None:
        """original → normalized header names, given by the engine before validation on resume."""
        self._field_resolution = dict(mapping)

    def configure_for_resume(self) -> None:
        """The next write recovers this run from its manifest and skips rows already durable."""
        self._resume = True

    def validate_output_target(self) -> OutputValidationResult:
        """Check an existing output at a fixed ``blob_path`` before a resume or an append.

        It checks that the blob is an (unsealed) append blob and that its first line or schema
        message matches the columns this schema would write (CSV header; JSONL first object's keys
        for fixed/flexible schemas). It cannot check a path whose template uses ``run_id`` or
        ``timestamp`` (the run id is not known yet, and a timestamp path is resolved from the
        run's pointer at the first write) nor the manifest chain: the first ``write`` does that
        fully, reading every segment, and stops with a clear error on any mismatch.
        """
        template = self._cfg.path_template
        if not template.is_static:
            return OutputValidationResult.success()
        store = self._make_store(None)
        path = template.render(run_id="validation", timestamp="1970-01-01T00:00:00+00:00")
        info = store.properties(path)
        if info is None or info.size == 0:
            return OutputValidationResult.success()
        if not info.is_append_blob:
            return OutputValidationResult.failure(f"{path} exists but is not an append blob")
        recorded = last_opening(store, path)
        if recorded is not None:
            # this sink's own output: the rule the writer applies when it opens it
            try:
                check_recorded(
                    recorded.encoder,
                    recorded.identity,
                    identity_fields=self._cfg.identity_fields or (),
                    requested=self._requested(),
                    run_id=recorded.run_id,
                    output=f"{self._cfg.container}/{path}",
                )
            except SettingsChangedError as exc:
                return OutputValidationResult.failure(str(exc))
            return OutputValidationResult.success()
        head = store.read(path, 0, min(info.size, 64 * 1024))
        return self._validate_head(head)

    def on_start(self, ctx: Any) -> None:
        """Prove the container exists and the credentials work, before the run reads a row.

        One request: the properties of this run's pointer blob (absent for a fresh run), which
        needs only the read access the sink needs anyway and tells a missing container
        (``ContainerNotFound``) from refused credentials (403). ELSPETH forbids ``record_call``
        here, so the call is held and recorded at the first write (``purpose: start_check``). A
        failure raises a :class:`~elspeth_appendsink.errors.StorageError` naming sink, container
        and account (never a secret); the sink closes its client itself, since ELSPETH calls neither
        ``on_complete`` nor ``close`` after a failed ``on_start``.
        """
        log.debug("sink.start", sink=self.name, node_id=self.node_id)
        cfg = self._cfg
        run_id = str(ctx.run_id)
        facts = {"sink": self._label(), "run_id": run_id, "container": cfg.container, "options": self.config}
        session.report(cfg.template_digest, **facts)
        store = self._make_store(self._hold_start_check)
        try:
            store.properties(run_pointer_name(cfg.template_digest, run_id))
        except StorageError as exc:
            error = self._start_error(store, exc)
            session.report(cfg.template_digest, error=str(error))
            self.close()
            raise error from None

    def write(self, rows: list[dict[str, Any]], ctx: Any) -> SinkWriteResult:
        if self._closed:  # a new writer would take this run for a second start of it
            raise ClosedError(
                f"the {self.name} sink for {self._cfg.blob_path} is closed; nothing more can be written",
                hint="write before close(); ELSPETH builds a new sink for each run",
            )
        self._ctx = ctx
        try:
            held, self._held_calls = self._held_calls, []
            for call in held:
                self._on_call(call)
            writer = self._writer_for(str(ctx.run_id))
            if self._continuation is not None and not self._continuation_recorded:
                self._continuation_recorded = True
                self._record_fact("recover_continues", self._continuation_facts(self._continuation))
            if self._resume and self._landscape_facts is None:
                self._ask_landscape(writer, ctx)
            report = writer.write(rows)
            for event in writer.events:
                self._record_fact("writer_event", event)
            writer.events.clear()
            if report.rows_skipped or report.replay is not None:
                # Recorded whenever the re-delivered call was matched -- also when nothing was
                # skipped -- so the audit trail says which rule decided and on what counts.
                self._record_fact(
                    "replay_skip",
                    {
                        "rows_in": report.rows_in,
                        "rows_skipped": report.rows_skipped,
                        "rows_appended": report.rows_appended,
                        "already_durable_in_runs": list(report.skipped_from_runs),
                        **(report.replay or {}),
                        "landscape": self._landscape_facts,
                    },
                )
        finally:
            self._ctx = None
        return SinkWriteResult(artifact=self._artifact())

    def flush(self) -> None:
        """Nothing is buffered: write() returns only after every block it sent is durable."""

    def on_complete(self, ctx: Any) -> None:
        if not self._cfg.seal_on_complete or self._closed:
            return
        if self._writer is None and self._resume:
            # a resume that replayed nothing to this sink still owes the seal its run recorded
            self._writer_for(str(ctx.run_id))
        if self._writer is not None:
            self._writer.finish(seal=True)

    def close(self) -> None:
        self._closed = True
        held, self._held_calls = self._held_calls, []
        for call in held:  # no write came to record them in: ELSPETH forbids record_call here, so log
            self._on_call(call)
        if self._writer is not None:
            self._writer.close()
        if self._store is not None:
            self._store.service.close()
        self._writer = None
        self._store = None

    # --- internals ----------------------------------------------------------------------------
    @property
    def options(self) -> SinkConfig:
        return self._cfg

    def _artifact(self) -> ArtifactDescriptor:
        """The output so far. Before its first row there is no output (an empty run creates none:
        the encoder is decided by the first rows); the descriptor then says ``created: False`` —
        ELSPETH never sees it, since it calls ``write`` only with rows, and ``verify`` finds
        nothing at the path either."""
        writer = self._writer
        path = writer.target.blob_path if writer is not None else self._cfg.blob_path
        opened = writer is not None and writer.is_open
        return ArtifactDescriptor(
            artifact_type="file",
            path_or_uri=f"azure://{self._cfg.container}/{path}",
            content_hash=writer.content_hash if writer is not None and opened else _EMPTY,
            size_bytes=writer.size if writer is not None else 0,
            metadata=None
            if opened or self._resume
            else {"created": False, "why": "no row has been written: no output yet"},
        )

    def _ask_landscape(self, writer: AppendWriter, ctx: Any) -> None:
        """Before the first resumed write: give the writer ELSPETH's count of recorded outcomes."""
        node_id = self.node_id if self.node_id is not None else getattr(ctx, "node_id", None)
        found = recorded_outcomes(getattr(ctx, "landscape", None), str(ctx.run_id), node_id)
        if isinstance(found, str):
            self._landscape_facts = {"recorded_rows": None, "unknown_because": found}
            return
        writer.recorded_rows = found.rows
        self._landscape_facts = found.facts()

    def _make_store(self, on_call: Any) -> AzureStore:
        if self._store is None:
            self._store = store_for(self._cfg, transport=self._transport)
        self._store.on_call = on_call
        return self._store

    def _hold_start_check(self, call: StorageCall) -> None:
        """Keep the start-up check for the first write; a pointer not found is its expected answer.

        A fresh run has no pointer yet, so ``BlobNotFound`` proves what the check asks (container
        there, credentials accepted) and is recorded as a success saying so, not as an error.
        """
        request = {**call.request, "purpose": "start_check"}
        error = call.error or {}
        if not call.ok and error.get("error_code") == "BlobNotFound":
            response = {"exists": False, "status": error.get("status"), "error_code": "BlobNotFound"}
            call = replace(call, ok=True, response=response, error=None)
        self._held_calls.append(replace(call, request=request))

    def _start_error(self, store: AzureStore, exc: StorageError) -> StorageError:
        """``exc`` of the start-up check as one line naming sink, container and account."""
        account = _account(store)
        where = f"sink {self._label()}: container {self._cfg.container!r} in storage account {account!r}"
        if exc.error_code == "ContainerNotFound":
            problem, hint = "does not exist", "create the container, or correct the sink's 'container' option"
        elif exc.status in (401, 403):
            problem = "refused the sink's credentials"
            hint = "check the sink's credentials (key, SAS token, identity) and their read/write permissions"
        else:
            problem = "could not be reached"
            hint = "check the account endpoint and the network; nothing was written"
        # throttling or an outage stays retryable: the run can simply be started again
        kind = StorageUnavailableError if isinstance(exc, StorageUnavailableError) else StorageError
        return kind(
            f"{where} {problem} (checked at the start of the run, before any row was read)",
            status=exc.status,
            error_code=exc.error_code,
            hint=hint,
        )

    def _label(self) -> str:
        """The sink's name in the settings, from ELSPETH's node id (``sink_<name>_<hash>``)."""
        found = re.fullmatch(r"sink_(.+)_[0-9a-f]{8,}", str(self.node_id or ""))
        return found.group(1) if found else self.name

    @staticmethod
    def _continuation_facts(cont: session.Continuation) -> dict[str, Any]:
        return {
            "completes_run": cont.completes,
            "sink": cont.sink,
            "container": cont.container,
            "blob_path": cont.blob_path,
            "if_exists": "continue",
            "by": "python -m elspeth_appendsink.elspeth recover",
        }

    def _writer_for(self, run_id: str) -> AppendWriter:
        if self._writer is not None:
            return self._writer
        cfg = self._cfg
        store = self._make_store(self._on_call)
        timestamp = datetime.now(UTC).isoformat()
        blob_path = cfg.path_template.render(run_id=run_id, timestamp=timestamp)
        if_exists = cfg.if_exists
        stable = not cfg.path_template.uses_timestamp
        # The launcher's recover: continue the crashed run's output at the path it rendered, as
        # if_exists: continue does (its manifest chained, rows already durable skipped). A resume
        # of this very run keeps its own path.
        cont = None if self._resume else session.continuation_for(cfg.template_digest)
        if cont is not None:
            self._continuation = cont
            blob_path, if_exists, stable = cont.blob_path, "continue", True
        session.report(cfg.template_digest, run_id=run_id, container=cfg.container, blob_path=blob_path)
        target = OutputTarget(
            container=cfg.container,
            blob_path=blob_path,
            run_id=run_id,
            format=OutputFormat(cfg.format),
            template_digest=cfg.template_digest,
            block_size=cfg.block_size,
            segment_max_blocks=cfg.segment_max_blocks,
            segment_max_bytes=cfg.segment_max_bytes,
            if_exists=IfExists(if_exists),
            lease=cfg.lease,
            lease_duration=cfg.lease_duration,
            identity=IdentityScheme(cfg.identity_fields),
            requested=self._requested(),
            path_is_stable=stable,
        )
        self._writer = AppendWriter(
            store,
            target,
            make_encoder=self._new_encoder,
            restore_encoder=self._restore_encoder,
            resume=self._resume,
            check_existing=self._check_existing,
        )
        return self._writer

    def _requested(self) -> Requested:
        """What these options ask of an existing output's recorded decisions (core.decisions)."""
        cfg = self._cfg
        display: dict[str, str] | None = self._display_headers() or {}
        if cfg.headers == "original" and not self._field_resolution:
            display = None  # the display names are not known before ELSPETH resolves them
        return Requested(
            format=cfg.format,
            schema_mode=cfg.row_schema.mode,
            declared_fields=tuple(cfg.row_schema.field_names),
            csv=cfg.csv_options.model_dump() if cfg.format == "csv" else None,
            display_headers=display,
        )

    def _display_headers(self) -> dict[str, str] | None:
        headers = self._cfg.headers
        if isinstance(headers, Mapping):
            return dict(headers)
        if headers == "original" and self._field_resolution:
            return {normalized: original for original, normalized in self._field_resolution.items()}
        return None

    def _new_encoder(self, first_rows: Sequence[Row]) -> Encoder:
        cfg = self._cfg
        return create_encoder(
            cfg.format,
            schema=cfg.row_schema,
            first_rows=first_rows,
            csv_options=cfg.csv_options.encoder_options() if cfg.format == "csv" else None,
            headers=self._display_headers(),
        )

    def _restore_encoder(self, described: dict[str, Any]) -> Encoder:
        if described.get("format") != self._cfg.format:
            raise SchemaDriftError(
                f"the output was written as {described.get('format')}, but the sink is configured for "
                f"{self._cfg.format}",
                hint="keep the format of an existing output",
            )
        return restore_encoder(described)

    def _check_existing(self, encoder: Encoder, existing: ExistingBlob) -> None:
        """``if_exists: append`` onto a foreign blob: it must start the way this encoder would and,
        for text, end between rows (a line break, outside any quoted CSV field), or the first
        appended row would be fused into its last line."""
        result = self._validate_head(existing.head, encoder)
        if not result.valid:
            raise SchemaDriftError(
                str(result.error_message), hint="the existing blob was written with other columns"
            )
        if self._cfg.format == "arrow":
            return
        encoding = self._cfg.csv_options.encoding if self._cfg.format == "csv" else "utf-8"
        if not existing.tail.endswith("\n".encode(encoding)):
            raise SchemaDriftError(
                "the existing blob does not end with a line break: the first appended row would be "
                f"fused into its last line (it ends with {existing.tail[-20:]!r})",
                hint="end the blob with a line break, or write to a new blob_path",
            )
        if self._cfg.format == "csv" and '"'.encode(encoding) == b'"' and existing.quotes % 2:
            raise SchemaDriftError(
                "the existing blob ends inside a quoted CSV field (it holds an odd number of '\"'): "
                "every appended row would be read as part of that field",
                hint="close the quoted field, or write to a new blob_path",
            )

    def _validate_head(self, head: bytes, encoder: Encoder | None = None) -> OutputValidationResult:
        cfg = self._cfg
        declared = list(cfg.row_schema.field_names)
        if cfg.format == "csv":
            if encoder is not None and encoder.header():
                expected = encoder.header()
                if not head.startswith(expected):
                    # shown with its line ending: a header that differs only there reads the same
                    line = head.split(b"\n", 1)[0] + (b"\n" if b"\n" in head else b"")
                    first = line.decode(cfg.csv_options.encoding, errors="replace")
                    ours = expected.decode(cfg.csv_options.encoding, errors="replace")
                    ending = (
                        f" (line ending {_ending(line)} where this sink writes {_ending(expected)})"
                        if line.rstrip(b"\r\n") == expected.rstrip(b"\r\n")
                        else ""
                    )
                    return OutputValidationResult.failure(
                        f"existing CSV header {first!r} differs from the header this sink writes, "
                        f"{ours!r}{ending}",
                        target_fields=first.strip().split(cfg.csv_options.delimiter),
                        schema_fields=declared,
                    )
                return OutputValidationResult.success()
            if not cfg.csv_options.include_header or cfg.row_schema.mode == "observed":
                return OutputValidationResult.success()
            first = head.split(b"\n", 1)[0].decode(cfg.csv_options.encoding, errors="replace").strip()
            found = [f.strip('"') for f in first.split(cfg.csv_options.delimiter)]
            return _compare_fields(found, declared, cfg.row_schema.mode)
        if cfg.format == "jsonl":
            line = head.split(b"\n", 1)[0]
            try:
                obj = json.loads(line)
            except ValueError:
                return OutputValidationResult.failure("the existing blob's first line is not JSON")
            if not isinstance(obj, dict):
                return OutputValidationResult.failure("the existing blob's first line is not a JSON object")
            if cfg.row_schema.mode == "observed":
                return OutputValidationResult.success(list(obj))
            return _compare_fields(list(obj), declared, cfg.row_schema.mode)
        if encoder is not None and not head.startswith(encoder.header()):
            return OutputValidationResult.failure(
                "the existing blob does not start with this sink's Arrow schema"
            )
        return OutputValidationResult.success()

    # --- audit ----------------------------------------------------------------------------------
    def _on_call(self, call: StorageCall) -> None:
        ctx = self._ctx
        if ctx is None:  # outside write(): ELSPETH forbids record_call; keep a log line instead
            log.debug(
                "storage.call",
                operation=call.operation,
                blob=call.blob,
                ok=call.ok,
                latency_ms=round(call.latency_ms, 2),
                error=call.error,
            )
            return
        request = redact_value({**call.request, "provider": PROVIDER})
        if call.ok:
            try:
                ctx.record_call(
                    CallType.HTTP,
                    CallStatus.SUCCESS,
                    request,
                    redact_value(call.response or {}),
                    None,
                    call.latency_ms,
                    provider=PROVIDER,
                )
            except Exception as exc:
                raise AuditIntegrityError(
                    f"Azure {call.operation} on {call.blob} succeeded but could not be recorded: {exc}"
                ) from exc
        else:
            ctx.record_call(
                CallType.HTTP,
                CallStatus.ERROR,
                request,
                None,
                redact_value(call.error or {}),
                call.latency_ms,
                provider=PROVIDER,
            )

    def _record_fact(self, operation: str, facts: Mapping[str, Any]) -> None:
        """Record a decision the sink made (not a request): recovery steps, rows skipped as durable."""
        ctx = self._ctx
        if ctx is None:
            log.debug(f"sink.{operation}", **facts)
            return
        request = {"operation": operation, "provider": PROVIDER, "container": self._cfg.container}
        try:
            ctx.record_call(
                CallType.HTTP,
                CallStatus.SUCCESS,
                request,
                redact_value(dict(facts)),
                None,
                0.0,
                provider=PROVIDER,
            )
        except Exception as exc:
            raise AuditIntegrityError(f"could not record the sink's {operation} decision: {exc}") from exc


def _ending(line: bytes) -> str:
    """A line's terminator, named: CRLF, LF, CR or none."""
    for terminator, name in ((b"\r\n", "CRLF"), (b"\n", "LF"), (b"\r", "CR")):
        if line.endswith(terminator):
            return name
    return "none"


def _compare_fields(found: list[str], declared: list[str], mode: str) -> OutputValidationResult:
    missing = [f for f in declared if f not in found]
    extra = [f for f in found if f not in declared]
    if mode == "fixed" and (missing or extra or found != declared):
        return OutputValidationResult.failure(
            "existing output's fields do not match the fixed schema",
            target_fields=found,
            schema_fields=declared,
            missing_fields=missing,
            extra_fields=extra,
            order_mismatch=not missing and not extra,
        )
    if missing:
        return OutputValidationResult.failure(
            "existing output lacks fields the schema declares",
            target_fields=found,
            schema_fields=declared,
            missing_fields=missing,
        )
    return OutputValidationResult.success(found)


def _account(store: AzureStore) -> str:
    """The storage account's name (never a credential)."""
    return str(getattr(store.service, "account_name", None) or store.service.url)


def store_for(cfg: SinkConfig, *, transport: Transport | None = None) -> AzureStore:
    """The :class:`AzureStore` of ``cfg``'s container, authenticated and retried as configured.

    The sink and the launcher's ``--mark-failed-if-dead`` (:mod:`.recover`) both open storage
    through this, so a run's recovery sees the output exactly as its writer did; the command
    line reaches the same :func:`~elspeth_appendsink.storage.credentials.open_store`.
    """
    return open_store(
        cfg.auth,
        cfg.container,
        retry=cfg.retry.settings(),
        transport=transport,
        api_version=cfg.api_version,
        validate_content=cfg.validate_content,
    )


if HAVE_ELSPETH:  # pragma: no cover - documented for readers: the real BaseSink is in use
    log.debug("sink.host", host="elspeth")

_ = AppendSinkError  # re-exported through errors; kept referenced for readers of this module
