"""The output's prefix hashes: sha256 and size of the whole output as each write call left it.

This is the one input ``verify --landscape`` needs from the output besides the verify report
(:mod:`elspeth_appendsink.tools.anchor` compares it with ELSPETH's artifacts). It is a separate,
self-contained pass on purpose: :mod:`.verify`'s scan is being reshaped to compute the same
mapping while it streams the segments, and :func:`prefixes_of` is the seam where that result
replaces this one. Nothing else depends on how the mapping is computed.

The output is every segment, in index order, concatenated — what the sink's artifact
``content_hash`` hashes. For each run, the prefixes are:

* ``call == -1``: the output as the run opened it (its base: everything before its first
  block). A write call whose rows were all already durable returns that size, and so does a
  first write of an empty output (size 0);
* one per write call that committed a block: the output up to the end of that call's last
  committed block (a block entry counts as committed when recorded, or, for the manifest's
  last batch, when its bytes are in the segment — as recovery and verify judge it).

A manifest that cannot be read or interpreted contributes no prefix (verify reports why).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from elspeth_appendsink.core.anchor import Prefix
from elspeth_appendsink.core.manifest import BlockEntry, DecodedRecord, ManifestReader
from elspeth_appendsink.core.paths import manifest_prefix, segment_name
from elspeth_appendsink.core.reconcile import RunLayout, walk
from elspeth_appendsink.errors import ManifestCorruptError
from elspeth_appendsink.protocol.verify import VerifyReport
from elspeth_appendsink.storage import AzureStore

__all__ = ["BASE_CALL", "prefixes_of"]

#: The ``call`` of the prefix that is a run's base (the output before its first block).
BASE_CALL = -1

_CHUNK = 8 * 1024 * 1024
_UNREADABLE = (ManifestCorruptError, TypeError, ValueError, KeyError, IndexError, AttributeError)


@dataclass(frozen=True, slots=True)
class _End:
    """A run's write call (or base) ends at ``offset`` bytes into the whole output."""

    run_id: str
    call: int
    offset: int


def prefixes_of(store: AzureStore, blob_path: str, report: VerifyReport) -> dict[str, list[Prefix]]:
    """Every run's prefixes (see the module docstring), in write order, keyed by run id.

    ``report`` is :func:`~elspeth_appendsink.protocol.verify.verify_output`'s report of the same
    output: its segment sizes place each segment in the whole output. Reads the manifests and
    streams every segment once.
    """
    sizes = {s.index: s.size for s in report.segments if s.exists}
    starts: dict[int, int] = {}
    total = 0
    for index in sorted(sizes):
        starts[index] = total
        total += sizes[index]
    ends: list[_End] = []
    prefix = manifest_prefix(blob_path)
    for name in store.list_names(prefix):
        layout = _layout(store, name)
        if layout is None:
            continue
        run_id = name[len(prefix) :]
        opening = layout.open
        ends.append(_End(run_id, BASE_CALL, starts.get(opening.base_segment, total) + opening.base_length))
        entries = _committed(layout, sizes)
        # A call ends where the next entry belongs to another call (not keyed by call number:
        # a resumed process must not hide the end of a call the killed one left behind).
        for k, entry in enumerate(entries):
            after = entries[k + 1] if k + 1 < len(entries) else None
            if (after is None or after.write_call != entry.write_call) and entry.segment in starts:
                ends.append(_End(run_id, entry.write_call, starts[entry.segment] + entry.end))
    digests = _digests_at(store, blob_path, sorted(sizes), {e.offset for e in ends if e.offset <= total})
    out: dict[str, list[Prefix]] = {}
    for end in ends:
        run = out.setdefault(end.run_id, [])
        if end.offset in digests:
            run.append(Prefix(end.call, end.offset, digests[end.offset]))
    return out


def _layout(store: AzureStore, name: str) -> RunLayout | None:
    reader = ManifestReader(name)
    records: list[DecodedRecord] = []
    try:
        for chunk in store.stream(name, chunk=_CHUNK):
            records.extend(reader.feed(chunk))
        reader.finish()
        return walk(records, name)
    except _UNREADABLE:
        return None


def _committed(layout: RunLayout, sizes: dict[int, int]) -> list[BlockEntry]:
    """The recorded entries, then the last batch's intents while their bytes are in the segment."""
    entries = list(layout.committed)
    for entry in layout.pending:
        if sizes.get(entry.segment, 0) < entry.end:
            break
        entries.append(entry)
    return entries


def _digests_at(
    store: AzureStore, blob_path: str, indices: Iterable[int], offsets: set[int]
) -> dict[int, str]:
    """sha256 of the whole output's first ``n`` bytes, for each ``n`` in ``offsets`` (one pass)."""
    wanted = sorted(offsets)
    digests: dict[int, str] = {}
    full = hashlib.sha256()
    position = 0
    k = 0
    while k < len(wanted) and wanted[k] == 0:
        digests[0] = full.hexdigest()
        k += 1
    for index in indices:
        if k == len(wanted):
            break
        for chunk in store.stream(segment_name(blob_path, index), chunk=_CHUNK):
            view = memoryview(chunk)
            while k < len(wanted) and wanted[k] <= position + len(view):
                cut = wanted[k] - position
                full.update(view[:cut])
                view, position = view[cut:], wanted[k]
                digests[wanted[k]] = full.hexdigest()
                k += 1
            full.update(view)
            position += len(view)
            if k == len(wanted):
                break
    return digests
