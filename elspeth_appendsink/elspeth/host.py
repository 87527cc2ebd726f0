"""What the sink needs from ELSPETH — the real thing when importable, faithful stand-ins otherwise.

ELSPETH is not on PyPI, so this package cannot depend on it. When ``elspeth`` imports, the sink
subclasses its real ``BaseSink`` (the engine relies on BaseSink's private members) and returns
its real result types. When it does not, the same names are small local classes with the same
fields and behaviour, so the sink works standalone (tests, tools, other hosts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "HAVE_ELSPETH",
    "ArtifactDescriptor",
    "AuditIntegrityError",
    "BaseSink",
    "CallStatus",
    "CallType",
    "Determinism",
    "OutputValidationResult",
    "SinkWriteResult",
    "build_input_schema",
]

try:  # pragma: no cover - exercised only where ELSPETH is installed
    from elspeth.contracts import ArtifactDescriptor, CallStatus, CallType, Determinism
    from elspeth.contracts.diversion import SinkWriteResult
    from elspeth.contracts.errors import AuditIntegrityError
    from elspeth.contracts.schema import SchemaConfig
    from elspeth.contracts.sink import OutputValidationResult
    from elspeth.plugins.infrastructure.base import BaseSink
    from elspeth.plugins.infrastructure.schema_factory import create_schema_from_config

    HAVE_ELSPETH = True

    def build_input_schema(schema_options: Mapping[str, Any], fallback: Any) -> Any:
        """ELSPETH's own schema factory, strict (no coercion), as its sinks use it."""
        return create_schema_from_config(
            SchemaConfig.from_dict(dict(schema_options)), "AzureAppendBlobRowSchema", allow_coercion=False
        )

except ImportError:
    HAVE_ELSPETH = False

    class CallType(StrEnum):  # type: ignore[no-redef]
        LLM = "llm"
        HTTP = "http"
        HTTP_REDIRECT = "http_redirect"
        SQL = "sql"
        VECTOR = "vector"
        FILESYSTEM = "filesystem"

    class CallStatus(StrEnum):  # type: ignore[no-redef]
        SUCCESS = "success"
        ERROR = "error"

    class Determinism(StrEnum):  # type: ignore[no-redef]
        DETERMINISTIC = "deterministic"
        SEEDED = "seeded"
        IO_READ = "io_read"
        IO_WRITE = "io_write"
        EXTERNAL_CALL = "external_call"
        NON_DETERMINISTIC = "non_deterministic"

    class AuditIntegrityError(Exception):  # type: ignore[no-redef]
        """A successful external call could not be recorded in the audit trail."""

    @dataclass(frozen=True, slots=True)
    class ArtifactDescriptor:  # type: ignore[no-redef]
        artifact_type: Literal["file", "database", "webhook"]
        path_or_uri: str
        content_hash: str
        size_bytes: int
        metadata: Mapping[str, Any] | None = None

    @dataclass(frozen=True, slots=True)
    class SinkWriteResult:  # type: ignore[no-redef]
        artifact: ArtifactDescriptor
        diversions: tuple[Any, ...] = ()

    @dataclass(frozen=True, slots=True)
    class OutputValidationResult:  # type: ignore[no-redef]
        valid: bool
        target_fields: tuple[str, ...] = ()
        schema_fields: tuple[str, ...] = ()
        missing_fields: tuple[str, ...] = ()
        extra_fields: tuple[str, ...] = ()
        order_mismatch: bool = False
        error_message: str | None = None

        def __post_init__(self) -> None:
            if not self.valid and not self.error_message:
                raise ValueError("a failed OutputValidationResult needs an error_message")

        @classmethod
        def success(cls, target_fields: list[str] | None = None) -> OutputValidationResult:
            return cls(True, tuple(target_fields or ()))

        @classmethod
        def failure(
            cls,
            message: str,
            *,
            target_fields: list[str] | None = None,
            schema_fields: list[str] | None = None,
            missing_fields: list[str] | None = None,
            extra_fields: list[str] | None = None,
            order_mismatch: bool = False,
        ) -> OutputValidationResult:
            return cls(
                False,
                tuple(target_fields or ()),
                tuple(schema_fields or ()),
                tuple(missing_fields or ()),
                tuple(extra_fields or ()),
                order_mismatch,
                message,
            )

    class BaseSink:  # type: ignore[no-redef]
        """Stand-in for ELSPETH's BaseSink: the attributes and defaults the engine relies on."""

        name: str
        input_schema: Any
        idempotent: bool = False
        node_id: str | None = None
        determinism = Determinism.IO_WRITE
        plugin_version = "0.0.0"
        supports_resume = False
        declared_required_fields: frozenset[str] = frozenset()
        validate_input = False
        _on_write_failure: str | None = None

        def __init__(self, config: dict[str, Any]) -> None:
            self.config = config
            self._output_contract: Any = None
            self._needs_resume_field_resolution = False
            self._diversion_log: list[Any] = []

        def _reset_diversion_log(self) -> None:
            self._diversion_log = []

        def _get_diversions(self) -> tuple[Any, ...]:
            return tuple(self._diversion_log)

        def get_output_contract(self) -> Any:
            return self._output_contract

        def set_output_contract(self, contract: Any) -> None:
            self._output_contract = contract

        def on_start(self, ctx: Any) -> None:
            return None

        def on_complete(self, ctx: Any) -> None:
            return None

    def build_input_schema(schema_options: Mapping[str, Any], fallback: Any) -> Any:
        """Without ELSPETH: the strict pydantic model built by our own schema parser."""
        return fallback


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
