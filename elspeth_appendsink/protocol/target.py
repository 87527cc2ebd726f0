"""The output one run writes, as the protocol sees it: :class:`OutputTarget` (no credentials).

Built by the sink from its options (or by a test); the writer, opening and recovery read it.
``format`` and ``if_exists`` are the core's ``StrEnum``s (:mod:`elspeth_appendsink.core.target`),
equal to and serialised as their option text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elspeth_appendsink.core.decisions import Requested
from elspeth_appendsink.core.identity import IdentityScheme
from elspeth_appendsink.core.paths import manifest_name
from elspeth_appendsink.core.target import IfExists, OutputFormat
from elspeth_appendsink.protocol.lease import lease_id_for

__all__ = ["IfExists", "OutputFormat", "OutputTarget"]


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Everything the writer needs to know about one run's output (no credentials)."""

    container: str
    blob_path: str  # rendered
    run_id: str
    format: OutputFormat
    template_digest: str
    block_size: int = 4 * 1024 * 1024
    segment_max_blocks: int = 49_000
    segment_max_bytes: int | None = None
    if_exists: IfExists = IfExists.FAIL
    lease: bool = True
    lease_duration: int = 60
    identity: IdentityScheme = field(default_factory=lambda: IdentityScheme(None))
    # what the configuration asks of an existing output's recorded decisions (None: only the
    # identity is compared; see core.decisions)
    requested: Requested | None = None
    # a resume renders the same blob_path (its template holds no timestamp): the run pointer
    # and segment 0 may then be created together (see opening.py)
    path_is_stable: bool = True

    @property
    def manifest(self) -> str:
        return manifest_name(self.blob_path, self.run_id)

    @property
    def lease_id(self) -> str:
        """Deterministic per run: a resume of the same run re-acquires its own lease."""
        return lease_id_for(self.run_id)
