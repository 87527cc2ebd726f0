"""Row identity: compact digests of what makes a row "the same row", and multiset replay matching.

ELSPETH gives a sink no token ids, so a row is recognised by its identity:

* ``identity_fields`` configured — the canonical JSON of the key fields' values (a business key such as
  ``id``: the reliable choice, stable whatever else changes in the row);
* otherwise — the row's encoded output bytes (the encoders are deterministic, so the same row
  always encodes to the same bytes; two rows with the same bytes are indistinguishable in the
  output anyway, which is exactly when treating them as equal is harmless).

Identities are kept as 8-byte BLAKE2b digests (64 bits: for a million committed and a million
replayed rows the chance of any false match is about 2^-24). :class:`DigestMultiset` holds them
for matching at 8 bytes per row plus a small dict of consumed counts, and matches as a multiset:
two equal committed rows absorb two equal replayed rows, no more.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, pairwise
from typing import Any

from elspeth_appendsink.core.rows import Packed

__all__ = ["DIGEST_SIZE", "DigestMultiset", "IdentityScheme", "content_digests"]

DIGEST_SIZE = 8


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def _each(data: bytes, offsets: Iterable[int]) -> bytes:
    blake2b, size = hashlib.blake2b, DIGEST_SIZE
    return b"".join([blake2b(data[a:b], digest_size=size).digest() for a, b in pairwise(offsets)])


def content_digests(block: bytes, lengths: Sequence[int]) -> bytes:
    """The content identities of the rows that end ``block``, ``lengths`` bytes each, packed.

    The same digests :meth:`IdentityScheme.digests` gave those rows when they were encoded
    (without ``identity_fields``); anything before the rows (a CSV header line) is skipped.
    """
    return _each(block, accumulate(lengths, initial=len(block) - sum(lengths)))


class IdentityScheme:
    """How this output identifies rows; frozen in the manifest so every run agrees."""

    __slots__ = ("fields",)

    def __init__(self, fields: Sequence[str] | None) -> None:
        self.fields: tuple[str, ...] = tuple(fields or ())

    @property
    def is_keyed(self) -> bool:
        return bool(self.fields)

    def describe(self) -> dict[str, Any]:
        return {"scheme": "key" if self.fields else "content", "fields": list(self.fields)}

    @classmethod
    def restore(cls, described: Mapping[str, Any]) -> IdentityScheme:
        return cls(described.get("fields") or None)

    def digests(self, rows: Sequence[Mapping[str, Any]], encoded: Packed) -> bytes:
        """One digest per row, packed (``DIGEST_SIZE`` bytes each, in row order).

        ``encoded`` holds the rows' canonical encoded bytes.
        """
        if not self.fields:
            return _each(encoded.data, encoded.offsets)
        fields = self.fields
        out = []
        for row in rows:
            key = json.dumps(
                [row.get(f) for f in fields],
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                default=str,
            )
            out.append(_digest(key.encode("utf-8")))
        return b"".join(out)


class DigestMultiset:
    """A read-mostly multiset of 8-byte digests with consuming lookups.

    Built once from committed digests (sorted ``array('Q')``: 8 bytes per row), then
    :meth:`take` removes one occurrence if present. ``taken`` counts successful matches.
    The matches since the last :meth:`mark` are kept (8 bytes each, never more than the
    multiset holds) so that :meth:`undo_since_mark` can put them back.
    """

    __slots__ = ("_consumed", "_since_mark", "_values", "taken")

    def __init__(self, digests: Iterable[bytes] = ()) -> None:
        self._values = array("Q", sorted(int.from_bytes(d, "big") for d in digests))
        self._consumed: dict[int, int] = {}
        self._since_mark = array("Q")
        self.taken = 0

    @classmethod
    def from_packed(cls, chunks: Iterable[bytes]) -> DigestMultiset:
        """Build from packed digest bodies (8 bytes per row, as stored in block entries)."""
        ints: list[int] = []
        for chunk in chunks:
            ints.extend(int.from_bytes(chunk[i : i + 8], "big") for i in range(0, len(chunk), 8))
        ints.sort()
        result = cls()
        result._values = array("Q", ints)
        return result

    def __len__(self) -> int:
        return len(self._values) - self.taken

    @property
    def nbytes(self) -> int:
        """Approximate memory held: the digest array, the consumed-count dict, the matches since the mark."""
        values, since = self._values, self._since_mark
        return values.itemsize * (len(values) + len(since)) + 100 * len(self._consumed)

    def take(self, digest: bytes) -> bool:
        """Remove one occurrence of ``digest``; False if none is left."""
        value = int.from_bytes(digest, "big")
        lo = bisect_left(self._values, value)
        if lo == len(self._values) or self._values[lo] != value:
            return False
        available = bisect_right(self._values, value, lo) - lo
        used = self._consumed.get(value, 0)
        if used >= available:
            return False
        self._consumed[value] = used + 1
        self._since_mark.append(value)
        self.taken += 1
        return True

    def mark(self) -> None:
        """Let the matches so far stand: :meth:`undo_since_mark` undoes only later ones."""
        self._since_mark = array("Q")

    def undo_since_mark(self) -> None:
        """Put back every match made since the last :meth:`mark` (or since the start)."""
        consumed = self._consumed
        for value in self._since_mark:
            used = consumed[value] - 1
            if used:
                consumed[value] = used
            else:
                del consumed[value]
        self.taken -= len(self._since_mark)
        self._since_mark = array("Q")
