"""A stand-in for ELSPETH's ``SinkContext`` that keeps every audited call: :class:`RecordingContext`.

Tests and the engine harness hand it to the sink where ELSPETH would hand its own context; every
payload is round-tripped through JSON, as ELSPETH's canonical-JSON audit store requires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RECORDED_PAYLOADS", "RecordedCall", "RecordingContext"]


#: Every RecordingContext's call list, for test-suite guards (e.g. "no secret in any audit payload").
RECORDED_PAYLOADS: list[list[Any]] = []


@dataclass
class RecordedCall:
    call_type: str
    status: str
    request_data: dict[str, Any]
    response_data: dict[str, Any] | None
    error: dict[str, Any] | None
    latency_ms: float | None
    provider: str


@dataclass
class RecordingContext:
    """A stand-in for ELSPETH's SinkContext: ``run_id`` and a ``record_call`` that keeps every call.

    ``fail_records`` makes ``record_call`` raise (to test the audit-integrity path). Every payload
    is round-tripped through JSON, as ELSPETH's canonical-JSON audit store would require.
    """

    run_id: str
    operation_id: str | None = "op-sink-write"
    contract: Any = None
    landscape: Any = None
    calls: list[RecordedCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        RECORDED_PAYLOADS.append(self.calls)  # so a suite-wide guard can scan every audit payload

    fail_records: bool = False

    def record_call(
        self,
        call_type: Any,
        status: Any,
        request_data: dict[str, Any],
        response_data: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        latency_ms: float | None = None,
        *,
        provider: str = "unknown",
    ) -> None:
        if self.fail_records:
            raise RuntimeError("audit store unavailable")
        payloads = json.loads(json.dumps([request_data, response_data, error], allow_nan=False))
        self.calls.append(
            RecordedCall(
                str(call_type), str(status), payloads[0], payloads[1], payloads[2], latency_ms, provider
            )
        )
