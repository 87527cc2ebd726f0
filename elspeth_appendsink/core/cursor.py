"""The writer's position: where the next block goes and what the manifest's head is.

A :class:`Cursor` is a value. It only moves forward, and only after storage has confirmed the
step it describes (a block durable in its segment, a record durable in the manifest). When the
writer is in doubt (an error whose outcome is unknown) it drops its cursor and re-derives one
from storage through :mod:`reconcile`, as litestream resets its position on any error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from elspeth_appendsink.errors import InvariantViolation

__all__ = ["Cursor"]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position of one run's output.

    ``segment``/``offset``: the current segment and its committed length; ``blocks``: committed
    blocks in it; ``next_token``: the next row sequence number; ``write_call``: index of the last
    write call that began; ``manifest_length``/``next_seq``/``head``: the manifest's committed
    length, next record number and last record hash; ``total_bytes``: size of the whole output
    (every segment, pre-existing bytes included).
    """

    segment: int
    offset: int
    blocks: int
    next_token: int
    write_call: int
    manifest_length: int
    next_seq: int
    head: str
    total_bytes: int

    def after_record(self, length: int, record_hash: str) -> Cursor:
        """The cursor once a manifest record of ``length`` bytes is durable."""
        if length < 0:
            raise InvariantViolation(f"manifest record of negative length {length}")
        return replace(
            self, manifest_length=self.manifest_length + length, next_seq=self.next_seq + 1, head=record_hash
        )

    def after_block(self, length: int, rows: int, committed_blocks: int | None) -> Cursor:
        """The cursor once a data block of ``length`` bytes holding ``rows`` rows is durable."""
        if length < 0 or rows < 0:
            raise InvariantViolation(f"block of negative length {length} or row count {rows}")
        blocks = self.blocks + 1 if committed_blocks is None else committed_blocks
        if blocks < self.blocks:
            raise InvariantViolation(f"committed block count went backwards: {self.blocks} -> {blocks}")
        return replace(
            self,
            offset=self.offset + length,
            blocks=blocks,
            next_token=self.next_token + rows,
            total_bytes=self.total_bytes + length,
        )

    def next_segment(self) -> Cursor:
        return replace(self, segment=self.segment + 1, offset=0, blocks=0)
