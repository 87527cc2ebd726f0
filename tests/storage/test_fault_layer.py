"""The seeded fault layer does to a store exactly what each fault's name says."""

from __future__ import annotations

import pytest

from elspeth_appendsink.errors import BlobExistsError, StorageUnavailableError
from elspeth_appendsink.storage import MemoryStore, StorageCall
from elspeth_appendsink.testing import FaultPlan, FaultyStore, SimulatedCrash


def _faulty(at: dict[int, str]) -> tuple[MemoryStore, FaultyStore, list[StorageCall]]:
    calls: list[StorageCall] = []
    inner = MemoryStore.new("faults")
    inner.on_call = calls.append
    inner.create_append_blob("seg")
    calls.clear()
    return inner, FaultyStore(inner, at=at), calls


class TestFaults:
    def test_fail_takes_no_effect_and_is_reported(self) -> None:
        """Fail: StorageUnavailableError (503 ServerBusy), nothing appended, one failed call."""
        inner, store, calls = _faulty({1: "fail"})
        with pytest.raises(StorageUnavailableError) as exc:
            store.append_block("seg", b"abc", 0)
        assert (exc.value.status, exc.value.error_code) == (503, "ServerBusy")
        assert inner.read("seg", 0, 10) == b""
        assert [(c.operation, c.ok) for c in calls[:1]] == [("append", False)]

    def test_lost_takes_effect_but_the_caller_sees_a_failure(self) -> None:
        """Lost: the block landed, the caller gets StorageUnavailableError, the audit one failure."""
        inner, store, calls = _faulty({1: "lost"})
        with pytest.raises(StorageUnavailableError):
            store.append_block("seg", b"abc", 0)
        assert inner.read("seg", 0, 10) == b"abc"
        assert [(c.operation, c.ok) for c in calls] == [("append", False), ("download_range", True)]

    def test_retry_of_an_append_is_settled_by_the_read_back(self) -> None:
        """Retry: the hidden retry's 412 is resolved as our own block, once."""
        inner, store, _ = _faulty({1: "retry"})
        result = store.append_block("seg", b"abc", 0)
        assert result.resolved and inner.read("seg", 0, 10) == b"abc"
        info = inner.properties("seg")
        assert info is not None and info.committed_blocks == 1

    def test_retry_of_a_create_answers_that_the_blob_exists(self) -> None:
        """Retry of a create: the first attempt created it, the retry gets 409 BlobAlreadyExists."""
        inner, store, _ = _faulty({1: "retry"})
        with pytest.raises(BlobExistsError):
            store.create_append_blob("new")
        assert inner.properties("new") is not None

    @pytest.mark.parametrize(("mode", "landed"), [("crash-before", b""), ("crash-after", b"abc")])
    def test_a_crash_is_not_an_exception_and_lands_as_named(self, mode: str, landed: bytes) -> None:
        """SimulatedCrash escapes ``except Exception``; before: nothing landed; after: it did."""
        inner, store, _ = _faulty({1: mode})
        with pytest.raises(SimulatedCrash):
            try:
                store.append_block("seg", b"abc", 0)
            except Exception:  # pragma: no cover - the point: a crash is not caught here
                pytest.fail("a simulated crash was caught as an Exception")
        assert inner.read("seg", 0, 10) == landed

    def test_requests_are_numbered_in_order(self) -> None:
        """Every Store verb is one numbered request; the heartbeat's store is not faulted."""
        _, store, _ = _faulty({})
        store.properties("seg")
        store.append_block("seg", b"a", 0)
        list(store.stream("seg", chunk=1))
        store.unrecorded().properties("seg")
        assert store.operations() == ["properties", "append", "read", "read"]


class TestPlans:
    def test_the_same_seed_gives_the_same_plan(self) -> None:
        """A schedule is reproducible from its seed alone."""
        assert FaultPlan.random(1234) == FaultPlan.random(1234)
        assert len({repr(FaultPlan.random(seed)) for seed in range(50)}) > 40

    def test_a_storm_fails_consecutive_requests(self) -> None:
        """A storm of length n fails requests storm_at .. storm_at+n-1 and nothing else."""
        rule = FaultPlan(storm_at=3, storm_length=2).rule()
        assert [rule(n, "append") for n in range(1, 7)] == [None, None, "fail", "fail", None, None]
