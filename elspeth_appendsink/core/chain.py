"""How the runs of one output follow one another, and the bytes no run of it wrote.

Pure decisions over interpreted manifests (:class:`~elspeth_appendsink.core.reconcile.RunLayout`,
oldest run first), for :mod:`~elspeth_appendsink.protocol.verify`:

* :func:`same_start` — two runs that opened the output at the same point of its history (the
  same earlier runs, the same segment and offset): two writers at once, e.g. without a lease;
* :func:`is_unlinked_append` — a run that appended (``if_exists: append``) onto the runs before
  it without continuing them, as sink versions before chained appends did: its open record
  names no earlier run and links to ``GENESIS``, but its base is exactly their output;
* :func:`unverified_base` — the bytes that were in the output's first segment before its first
  run appended to them: no entry describes them, so verification proves only that they are
  the bytes the run found (their sha256, recorded in its open record), never what they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from elspeth_appendsink.core.manifest import GENESIS
from elspeth_appendsink.core.paths import segment_name
from elspeth_appendsink.core.reconcile import RunLayout, expected_lengths

__all__ = ["UnverifiedBase", "is_unlinked_append", "same_start", "unverified_base"]


@dataclass(frozen=True, slots=True)
class UnverifiedBase:
    """Bytes ``[offset, offset + length)`` of segment ``segment`` that no run of the output wrote.

    ``run_id`` appended to them. ``matches``: they hash to the ``sha256`` that run recorded
    (None: not read, or no sha256 recorded). ``written_by``: a run of this sink that created
    the segment although no manifest present is its (a lost manifest), else None.
    """

    blob: str
    segment: int
    offset: int
    length: int
    sha256: str | None
    run_id: str
    matches: bool | None = None
    written_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _start(layout: RunLayout) -> tuple[tuple[str, ...], int, int]:
    opening = layout.open
    return opening.continues, opening.base_segment, opening.base_length


def same_start(a: RunLayout, b: RunLayout) -> bool:
    """Both runs opened the output at the same point: after the same runs, at the same offset."""
    return _start(a) == _start(b)


def is_unlinked_append(layout: RunLayout, earlier: Sequence[RunLayout]) -> bool:
    """``layout`` appended onto exactly the output ``earlier`` left, without continuing them.

    Sink versions before chained appends opened such a run as the output's first: no earlier
    run named, a link to ``GENESIS``, and the bytes found recorded as its base (segment 0 only:
    they appended to segment 0, and refused a sealed one, so every earlier byte is in it).
    """
    opening = layout.open
    ends = expected_lengths(earlier)
    for entry in (e for before in earlier for e in before.pending):  # their last intents, not yet settled
        ends[entry.segment] = max(ends.get(entry.segment, 0), entry.end)
    return (
        bool(earlier)
        and opening.if_exists == "append"
        and not opening.continues
        and opening.prev == GENESIS
        and opening.base_sha256 != GENESIS
        and opening.base_segment == 0
        and set(ends) == {0}
        and 0 < opening.base_length == ends[0]
    )


def unverified_base(
    layouts: Sequence[RunLayout], blob_path: str, creator: str | None = None
) -> UnverifiedBase | None:
    """The first run's base, when it has one (``creator``: segment 0's creator, from its metadata)."""
    if not layouts:
        return None
    opening = layouts[0].open
    if not opening.base_length:
        return None
    return UnverifiedBase(
        blob=segment_name(blob_path, opening.base_segment),
        segment=opening.base_segment,
        offset=0,
        length=opening.base_length,
        sha256=None if opening.base_sha256 == GENESIS else opening.base_sha256,
        run_id=opening.run_id,
        written_by=creator if creator is not None and creator != opening.run_id else None,
    )
