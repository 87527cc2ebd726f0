"""The output's running sha256, extended past each block off the writer's thread.

Owns :class:`RunningDigest`. The writer's ``content_hash`` is the sha256 of every byte of the
output, so each block is hashed twice: once for its intent (the block's own digest, which must
be in the manifest before the block is sent) and once into the running digest, which may only
move past a block once that block landed.

The second pass needs nothing but the block's bytes, and sha256 releases the GIL, so
:meth:`RunningDigest.ahead` starts it in a helper thread as soon as a batch is prepared. It then
runs beside the intents' digests, the manifest append and the block's own upload, which leave
the second core idle on a small write. :meth:`Ahead.adopt` takes the state after a landed block;
a block that never landed is never adopted, so the digest still describes exactly the bytes in
the segments. A batch smaller than ``INLINE_BYTES`` is hashed inline when adopted: a thread
hand-off (about 50 us) costs more than hashing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["INLINE_BYTES", "Ahead", "RunningDigest"]

#: Batches below this size are hashed in the calling thread (sha256 runs at about 1.5 GB/s here:
#: 256 KiB take about 170 us, a thread hand-off about 50 us).
INLINE_BYTES = 256 * 1024


def _states(start: Any, blocks: Sequence[bytes]) -> list[Any]:
    """The sha256 states after each of ``blocks``, extending a copy of ``start``."""
    running, states = start.copy(), []
    for data in blocks:
        running.update(data)
        states.append(running.copy())
    return states


class Ahead:
    """The running digest's states after each block of one batch, being computed."""

    __slots__ = ("_blocks", "_future", "_start", "_states")

    def __init__(self, start: Any, blocks: Sequence[bytes], future: Future[list[Any]] | None) -> None:
        self._start, self._blocks, self._future = start, blocks, future
        self._states: list[Any] | None = None

    def after(self, index: int) -> Any:
        """The state after block ``index`` (waits for the helper, or hashes inline)."""
        if self._states is None:
            future = self._future
            self._states = future.result() if future is not None else _states(self._start, self._blocks)
        return self._states[index]


class RunningDigest:
    """The sha256 of the whole output so far; moves only past blocks that landed.

    Args:
        state: a ``hashlib.sha256`` object already holding the output's earlier bytes (a
            recovery's or an opening's); it is owned from now on.
    """

    __slots__ = ("_pool", "state")

    def __init__(self, state: Any | None = None) -> None:
        self.state: Any = state if state is not None else hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None

    def hexdigest(self) -> str:
        return str(self.state.hexdigest())

    def ahead(self, blocks: Sequence[bytes]) -> Ahead:
        """Start hashing ``blocks`` (in order, after what is hashed now) for :meth:`adopt`."""
        future = None
        if sum(map(len, blocks)) >= INLINE_BYTES:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elspeth-appendsink-digest")
            future = self._pool.submit(_states, self.state, blocks)
        return Ahead(self.state, blocks, future)

    def adopt(self, ahead: Ahead, index: int) -> None:
        """Block ``index`` of ``ahead``'s batch landed (and every block before it)."""
        self.state = ahead.after(index)

    def close(self) -> None:
        """Stop the helper thread (it is started again if needed)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
