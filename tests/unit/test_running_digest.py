"""The running digest moves past exactly the blocks adopted, whether hashed inline or off-thread."""

from __future__ import annotations

import hashlib
import threading

import pytest

from elspeth_appendsink.protocol.digest import INLINE_BYTES, RunningDigest


@pytest.mark.parametrize("size", [100, INLINE_BYTES // 2 + 1], ids=["inline", "helper-thread"])
def test_adopting_a_prefix_of_a_batch_digests_exactly_that_prefix(size: int) -> None:
    earlier = b"header\n"
    blocks = [bytes([i]) * size for i in range(4)]
    digest = RunningDigest(hashlib.sha256(earlier))
    ahead = digest.ahead(blocks)
    digest.adopt(ahead, 0)
    digest.adopt(ahead, 1)  # blocks 2 and 3 never landed
    assert digest.hexdigest() == hashlib.sha256(earlier + blocks[0] + blocks[1]).hexdigest()
    retried = digest.ahead(blocks[2:])  # the unlanded rest, sent again
    digest.adopt(retried, 1)
    assert digest.hexdigest() == hashlib.sha256(earlier + b"".join(blocks)).hexdigest()
    digest.close()


def test_small_batches_start_no_thread_and_large_ones_share_one() -> None:
    def helpers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("elspeth-appendsink-digest")}

    before = helpers()  # (another test's helper may still be on its way out)
    digest = RunningDigest()
    digest.adopt(digest.ahead([b"x" * 1000]), 0)
    assert helpers() - before == set()
    for _ in range(3):
        digest.adopt(digest.ahead([b"y" * INLINE_BYTES]), 0)
    assert len(helpers() - before) == 1
    assert digest.hexdigest() == hashlib.sha256(b"x" * 1000 + b"y" * INLINE_BYTES * 3).hexdigest()
    digest.close()
