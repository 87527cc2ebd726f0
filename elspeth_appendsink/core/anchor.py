"""Pure cross-check of ELSPETH's recorded artifacts against the output's prefix hashes (#12 item 4).

The shell (:mod:`elspeth_appendsink.tools.anchor`, ``verify --landscape``) gets the sha256 of the
whole output at the end of each write call the manifest records, and reads this sink node's
artifacts from the landscape in order. :func:`first_mismatch` then says where the two disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Artifact", "Mismatch", "Prefix", "first_mismatch"]


@dataclass(frozen=True)
class Artifact:
    """One artifact ELSPETH recorded for the sink node (content hash = sha256 hex, size in bytes)."""

    content_hash: str
    size: int


@dataclass(frozen=True)
class Prefix:
    """The output's first ``size`` bytes, as they stood when write call ``call`` returned."""

    call: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Mismatch:
    """Where the landscape and the output first disagree: the run, the write call (None when no
    write call of the manifest ends there), the offset in the whole output, what the landscape
    recorded (``expected``) and what the output holds (``found``)."""

    run_id: str
    call: int | None
    offset: int
    expected: str
    found: str


def first_mismatch(
    run_id: str,
    artifacts: Sequence[Artifact],
    prefixes: Sequence[Prefix],
    *,
    completed: bool,
    output_size: int,
    output_sha256: str,
) -> Mismatch | None:
    """The first disagreement between the landscape and the output, or None.

    Every artifact must equal a prefix the manifest knows (by size, then hash); for a completed
    run the last artifact must be the whole output.
    """
    by_size = {p.size: p for p in prefixes}
    for artifact in artifacts:
        prefix = by_size.get(artifact.size)
        if prefix is None:
            return Mismatch(
                run_id,
                None,
                artifact.size,
                f"{artifact.content_hash} ({artifact.size} bytes)",
                "no write call of the manifest ends at this offset",
            )
        if prefix.sha256 != artifact.content_hash:
            return Mismatch(run_id, prefix.call, artifact.size, artifact.content_hash, prefix.sha256)
    if completed and artifacts:
        last = artifacts[-1]
        if (last.size, last.content_hash) != (output_size, output_sha256):
            # The write call ELSPETH saw return last: the output should have ended there.
            head = by_size.get(last.size)
            return Mismatch(
                run_id,
                None if head is None else head.call,
                last.size,
                f"{last.content_hash} ({last.size} bytes, the landscape's head)",
                f"{output_sha256} ({output_size} bytes, the output now)",
            )
    return None
