"""How many leading rows of a re-delivered write call are already durable (pure).

After a crash, ELSPETH replays the tokens that have no terminal outcome, in order. The writer
knows the rows the interrupted (last begun) write call committed, as packed identity digests;
this module decides how many leading rows of the first re-delivered call are those rows.

Two rules, and the decision says which one decided:

* ``landscape`` -- the engine's audit trail says how many of this run's rows at this sink have a
  terminal outcome. ELSPETH records a call's outcomes only after its write returned, one token at
  a time, in order, so ``pending = rows committed by this run - outcomes recorded`` rows are
  durable but unrecorded, and they are exactly the last ``pending`` rows of the interrupted
  call: the re-delivered call starts with them. ``pending == 0`` means the interrupted call was
  fully recorded and the re-delivered rows belong to the *next* call, whatever their bytes.
* ``manifest`` -- without that count (no landscape, an older engine, or a count that contradicts
  the bytes), the rows are matched in order against the committed rows: all of them, or a
  re-delivered call that is wholly a tail of them. This is ambiguous when the next call's rows
  equal the interrupted call's (tail of) rows byte for byte, and identity is the row's bytes
  (no ``identity_fields``): they are then taken for durable ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["ReplayDecision", "decide_replay"]

Rule = Literal["landscape", "manifest"]


@dataclass(frozen=True)
class ReplayDecision:
    """Rows to skip at the head of the re-delivered call, and whether it is the interrupted call again."""

    skip: int
    same_call: bool
    rule: Rule
    committed_rows: int  # rows the interrupted call committed
    pending: int | None  # durable rows whose outcome the landscape lacks; None: no landscape count
    reason: str
    manifest_skip: int = 0  # what the manifest rule alone would skip (shows what the landscape changed)

    def facts(self) -> dict[str, Any]:
        """The decision for the audit trail (JSON-ready)."""
        return {
            "scope": self.rule,
            "call_committed_rows": self.committed_rows,
            "landscape_pending_rows": self.pending,
            "same_call": self.same_call,
            "reason": self.reason,
            "manifest_rule_skip": self.manifest_skip,
        }


def decide_replay(
    committed: bytes, head: bytes, rows_in: int, digest_size: int, pending: int | None
) -> ReplayDecision:
    """Decide the skip for a re-delivered call of ``rows_in`` rows.

    ``committed`` is the packed digests of the rows the interrupted call committed, ``head`` the
    packed digests of the call's first ``min(rows_in, len(committed) // digest_size)`` rows, and
    ``pending`` the landscape's count of durable-but-unrecorded rows of this run (None: unknown).
    """
    decision = _decide(committed, head, rows_in, digest_size, pending)
    alone = _by_manifest(committed, head, rows_in, digest_size, pending, "")
    return replace(decision, manifest_skip=alone.skip)


def _decide(
    committed: bytes, head: bytes, rows_in: int, digest_size: int, pending: int | None
) -> ReplayDecision:
    size = len(committed) // digest_size
    if pending is not None:
        if not 0 <= pending <= size:
            return _by_manifest(
                committed, head, rows_in, digest_size, pending,
                f"landscape says {pending} rows are unrecorded, outside 0..{size} (the interrupted "
                "call's rows): it disagrees with the manifest",
            )  # fmt: skip
        if pending == 0:
            return ReplayDecision(
                0, size == 0, "landscape", size, 0,
                "every committed row has a recorded outcome: the re-delivered rows are new",
            )  # fmt: skip
        n = min(rows_in, pending)
        tail = committed[(size - pending) * digest_size :]
        if head[: n * digest_size] == tail[: n * digest_size]:
            return ReplayDecision(
                n, True, "landscape", size, pending,
                f"the last {pending} committed rows have no recorded outcome and lead the call",
            )  # fmt: skip
        return _by_manifest(
            committed, head, rows_in, digest_size, pending,
            f"landscape says {pending} rows are unrecorded, but the call does not start with the "
            "last committed rows",
        )  # fmt: skip
    return _by_manifest(committed, head, rows_in, digest_size, None, "no landscape count")


def _by_manifest(
    committed: bytes, head: bytes, rows_in: int, digest_size: int, pending: int | None, why: str
) -> ReplayDecision:
    """The in-order match against the committed rows alone (the rule before the landscape count)."""
    size = len(committed) // digest_size
    if size == 0:
        skip, same, how = 0, True, "the interrupted call committed no row"
    elif rows_in >= size and head == committed:
        skip, same, how = size, True, "the call starts with all committed rows"
    elif rows_in < size and head == committed[-len(head) :]:
        skip, same, how = rows_in, True, "the call is a tail of the committed rows"
    else:
        skip, same, how = 0, False, "the call does not start with committed rows"
    return ReplayDecision(skip, same, "manifest", size, pending, f"{why}; {how}")
