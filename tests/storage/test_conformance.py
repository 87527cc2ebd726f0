"""One conformance suite for every :class:`~elspeth_appendsink.storage.base.Store`: Azure's semantics.

Each test runs against :class:`MemoryStore` and against :class:`AzureStore` on Azurite (the
``store`` fixture is parametrised, as object_store's ``integration.rs`` runs one suite on every
backend). They pin what the protocol relies on: create-only blobs, ``appendpos`` and the
read-back that settles a 412, seal, metadata, committed block counts, the four lease verbs and
their refusals, the 50,000-block and block-size limits, ranged reads, small create-only objects,
listing, and the error class, status and code of every refusal. Lease expiry needs a clock the
test drives, so it runs on the memory store only. The last test proves both stores report the
same :class:`StorageCall` records for the same requests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from elspeth_appendsink.errors import (
    AppendConflictError,
    BlobExistsError,
    BlobTypeError,
    LeaseHeldError,
    SegmentFullError,
    StorageError,
)
from elspeth_appendsink.storage import AzureStore, StorageCall, build_service_client
from elspeth_appendsink.storage.base import MAX_APPEND_BLOCK_BYTES, MAX_APPEND_BLOCKS, Store
from elspeth_appendsink.storage.memory import MemoryAccount, MemoryStore
from elspeth_appendsink.testing.azurite import Azurite

A = str(uuid.UUID(int=1))
B = str(uuid.UUID(int=2))
FULL_LIMITS = bool(os.environ.get("CONFORMANCE_FULL_LIMITS"))  # 50,001 appends on Azurite: minutes


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    kind: str
    store: Store
    clock: Clock | None = None  # only a memory store's time can be driven

    @property
    def is_memory(self) -> bool:
        return self.kind == "memory"


def _azure_store(azurite: Azurite, container: str, calls: list[StorageCall] | None = None) -> AzureStore:
    from tests.helpers import FAST_RETRY

    service = build_service_client(connection_string=azurite.connection_string, retry=FAST_RETRY)
    return AzureStore(service, container, on_call=None if calls is None else calls.append)


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.azurite)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        clock = Clock()
        account = MemoryAccount(clock)
        account.create_container("conformance")
        yield Backend("memory", account.store("conformance"), clock)
    else:
        azurite: Azurite = request.getfixturevalue("azurite")
        yield Backend("azurite", _azure_store(azurite, request.getfixturevalue("container")))


@pytest.fixture()
def store(backend: Backend) -> Store:
    return backend.store


def _refused(
    exc: pytest.ExceptionInfo[StorageError], kind: type[StorageError], status: int, code: str
) -> None:
    assert type(exc.value) is kind, f"{type(exc.value).__name__} is not {kind.__name__}"
    assert (exc.value.status, exc.value.error_code) == (status, code)


def _blob(store: Store, name: str = "seg", data: bytes = b"") -> str:
    store.create_append_blob(name, {"Creator": "run-1"})
    if data:
        store.append_block(name, data, 0)
    return name


class TestCreate:
    def test_create_is_create_only_and_leaves_the_existing_blob_untouched(self, store: Store) -> None:
        """A second create of the same name is 409 BlobAlreadyExists; the bytes stay."""
        _blob(store, data=b"abc")
        with pytest.raises(BlobExistsError) as exc:
            store.create_append_blob("seg")
        _refused(exc, BlobExistsError, 409, "BlobAlreadyExists")
        assert store.read("seg", 0, 10) == b"abc"

    def test_create_over_a_block_blob_is_refused(self, store: Store) -> None:
        """An append blob is never created over a small object."""
        assert store.put_if_missing("pointer", b"{}")
        with pytest.raises(BlobExistsError):
            store.create_append_blob("pointer")
        assert store.get("pointer") == b"{}"

    def test_new_blob_properties(self, store: Store) -> None:
        """An empty, unsealed append blob with no blocks, its metadata (key case kept), no lease."""
        _blob(store)
        info = store.properties("seg")
        assert info is not None
        assert (info.name, info.size, info.is_append_blob, info.sealed, info.committed_blocks) == (
            "seg",
            0,
            True,
            False,
            0,
        )
        assert info.metadata == {"Creator": "run-1"}
        assert info.lease_state == "available"
        assert info.etag and info.last_modified is not None

    def test_properties_of_a_missing_blob_is_none(self, store: Store) -> None:
        """No blob: properties answers None, not an error."""
        assert store.properties("absent") is None

    def test_a_missing_container_is_an_error_not_an_absent_blob(self, backend: Backend) -> None:
        """Properties, create, append and listing in a missing container: 404 ContainerNotFound."""
        store = backend.store
        missing: Store
        if isinstance(store, MemoryStore):
            missing = MemoryStore(store.account, "nocontainer")
        else:
            assert isinstance(store, AzureStore)
            missing = AzureStore(store.service, "nocontainer")
        for attempt in (
            lambda: missing.properties("x"),
            lambda: missing.create_append_blob("x"),
            lambda: missing.append_block("x", b"1", 0),
            lambda: missing.list_names(""),
        ):
            with pytest.raises(StorageError) as exc:
                attempt()
            _refused(exc, StorageError, 404, "ContainerNotFound")
        assert missing.get("x") is None


class TestAppend:
    def test_append_lands_at_its_offset_and_counts_blocks(self, store: Store) -> None:
        """Each guarded append lands at the offset it names; the committed block count follows."""
        _blob(store)
        first = store.append_block("seg", b"hello ", 0)
        second = store.append_block("seg", b"world", 6)
        assert (first.offset, first.length, first.committed_blocks, first.resolved) == (0, 6, 1, False)
        assert (second.offset, second.length, second.committed_blocks) == (6, 5, 2)
        info = store.properties("seg")
        assert info is not None and (info.size, info.committed_blocks) == (11, 2)
        assert store.read("seg", 0, 11) == b"hello world"

    def test_resending_a_block_that_landed_is_resolved_not_duplicated(self, store: Store) -> None:
        """A 412 whose read-back finds our own bytes (a lost response, a hidden retry) is a success."""
        _blob(store)
        store.append_block("seg", b"block-1", 0)
        again = store.append_block("seg", b"block-1", 0)
        assert (again.offset, again.length, again.resolved) == (0, 7, True)
        assert store.read("seg", 0, 100) == b"block-1"
        info = store.properties("seg")
        assert info is not None and info.committed_blocks == 1

    def test_foreign_bytes_at_the_offset_are_a_conflict(self, store: Store) -> None:
        """appendpos refused and the read-back finds other bytes (or none): AppendConflictError, no write."""
        _blob(store, data=b"theirs")
        for offset in (0, 3, 99):  # inside foreign bytes, mid-way, past the end
            with pytest.raises(AppendConflictError) as exc:
                store.append_block("seg", b"ours", offset)
            assert (exc.value.status, exc.value.error_code) == (412, "AppendPositionConditionNotMet")
        assert store.read("seg", 0, 100) == b"theirs"

    def test_an_empty_block_is_never_sent(self, store: Store) -> None:
        """Appending nothing is a programming error, refused before any request."""
        _blob(store)
        with pytest.raises(ValueError, match="empty block"):
            store.append_block("seg", b"", 0)

    def test_append_to_a_missing_blob(self, store: Store) -> None:
        """404 BlobNotFound (a StorageError), with appendpos too."""
        with pytest.raises(StorageError) as exc:
            store.append_block("absent", b"x", 0)
        _refused(exc, StorageError, 404, "BlobNotFound")

    def test_append_to_a_block_blob(self, store: Store) -> None:
        """409 InvalidBlobType: a BlobTypeError."""
        store.put_if_missing("pointer", b"abc")
        with pytest.raises(BlobTypeError) as exc:
            store.append_block("pointer", b"x", 3)
        _refused(exc, BlobTypeError, 409, "InvalidBlobType")

    def test_a_block_over_the_size_limit_is_refused_and_nothing_lands(self, store: Store) -> None:
        """One byte over 100 MiB: 413 RequestEntityTooLarge; the blob stays empty."""
        _blob(store)
        with pytest.raises(StorageError) as exc:
            store.append_block("seg", bytes(MAX_APPEND_BLOCK_BYTES + 1), 0)
        _refused(exc, StorageError, 413, "RequestEntityTooLarge")
        info = store.properties("seg")
        assert info is not None and (info.size, info.committed_blocks) == (0, 0)

    def test_the_50000th_block_is_the_last(self, backend: Backend) -> None:
        """Block 50,001 is 409 BlockCountExceedsLimit (a SegmentFullError), even at a wrong offset."""
        if not backend.is_memory and not FULL_LIMITS:
            pytest.skip("50,001 appends take minutes on Azurite; set CONFORMANCE_FULL_LIMITS=1")
        store = _blob(backend.store)
        for offset in range(MAX_APPEND_BLOCKS):
            backend.store.append_block(store, b"x", offset)
        for offset in (MAX_APPEND_BLOCKS, 0):
            with pytest.raises(SegmentFullError) as exc:
                backend.store.append_block(store, b"x", offset)
            _refused(exc, SegmentFullError, 409, "BlockCountExceedsLimit")
        info = backend.store.properties(store)
        assert info is not None and (info.size, info.committed_blocks) == (
            MAX_APPEND_BLOCKS,
            MAX_APPEND_BLOCKS,
        )


class TestSeal:
    def test_a_sealed_blob_takes_no_more_appends(self, store: Store) -> None:
        """After a seal every append is 409 BlobIsSealed; sealing again succeeds; metadata still set."""
        _blob(store, data=b"abc")
        store.seal("seg", 3)
        store.seal("seg", 3)
        for offset in (3, 0):
            with pytest.raises(BlobTypeError) as exc:
                store.append_block("seg", b"more", offset)
            _refused(exc, BlobTypeError, 409, "BlobIsSealed")
        store.set_metadata("seg", {"done": "yes"})
        info = store.properties("seg")
        assert info is not None and info.sealed and info.size == 3 and info.metadata == {"done": "yes"}

    def test_sealing_a_block_blob_or_a_missing_blob(self, store: Store) -> None:
        """409 InvalidBlobType on a block blob; 404 BlobNotFound when absent."""
        store.put_if_missing("pointer", b"abc")
        with pytest.raises(BlobTypeError) as exc:
            store.seal("pointer", 3)
        _refused(exc, BlobTypeError, 409, "InvalidBlobType")
        with pytest.raises(StorageError) as missing:
            store.seal("absent", 0)
        _refused(missing, StorageError, 404, "BlobNotFound")

    def test_seal_at_a_wrong_length(self, backend: Backend) -> None:
        """Azure refuses a seal whose appendpos is not the length (412); Azurite ignores appendpos on
        seal. The memory store follows Azure; this pins the gap so it stays known."""
        store = backend.store
        _blob(store, data=b"abc")
        if backend.is_memory:
            with pytest.raises(StorageError) as exc:
                store.seal("seg", 5)
            _refused(exc, StorageError, 412, "AppendPositionConditionNotMet")
            info = store.properties("seg")
            assert info is not None and not info.sealed
        else:
            store.seal("seg", 5)
            info = store.properties("seg")
            assert info is not None and info.sealed and info.size == 3


class TestMetadata:
    def test_set_metadata_replaces_the_whole_set(self, store: Store) -> None:
        """Metadata is replaced, not merged; the size stays; every append and set changes the etag."""
        _blob(store, data=b"abc")
        before = store.properties("seg")
        store.set_metadata("seg", {"Writer": "run-2"})
        after_set = store.properties("seg")
        store.append_block("seg", b"d", 3)
        after_append = store.properties("seg")
        assert before is not None and after_set is not None and after_append is not None
        assert after_set.metadata == {"Writer": "run-2"} and after_set.size == 3
        assert len({before.etag, after_set.etag, after_append.etag}) == 3

    def test_metadata_of_a_missing_blob(self, store: Store) -> None:
        """404 BlobNotFound."""
        with pytest.raises(StorageError) as exc:
            store.set_metadata("absent", {})
        _refused(exc, StorageError, 404, "BlobNotFound")


class TestLeases:
    def test_a_lease_fences_every_write_of_other_writers(self, store: Store) -> None:
        """Without the lease: 412 LeaseIdMissing; with another id: 412 LeaseIdMismatchWithBlobOperation."""
        _blob(store, data=b"abc")
        store.acquire_lease("seg", A, 15)
        writes: list[Callable[[str | None], object]] = [
            lambda lease: store.append_block("seg", b"d", 3, lease=lease),
            lambda lease: store.set_metadata("seg", {"x": "1"}, lease=lease),
            lambda lease: store.seal("seg", 3, lease=lease),
        ]
        for write in writes:
            for lease, code in ((None, "LeaseIdMissing"), (B, "LeaseIdMismatchWithBlobOperation")):
                with pytest.raises(LeaseHeldError) as exc:
                    write(lease)
                _refused(exc, LeaseHeldError, 412, code)
        assert store.append_block("seg", b"d", 3, lease=A).offset == 3
        info = store.properties("seg")
        assert info is not None and info.lease_state == "leased" and info.size == 4

    def test_acquire_by_the_holder_again_succeeds_by_another_is_refused(self, store: Store) -> None:
        """The same id re-acquires (a crashed run takes its lease back); another id: 409."""
        _blob(store)
        store.acquire_lease("seg", A, 15)
        store.acquire_lease("seg", A, -1)
        with pytest.raises(LeaseHeldError) as exc:
            store.acquire_lease("seg", B, 15)
        _refused(exc, LeaseHeldError, 409, "LeaseAlreadyPresent")

    def test_renew_and_release_need_the_holders_id(self, store: Store) -> None:
        """Another id (or no lease at all): 409 LeaseIdMismatchWithLeaseOperation; the holder's works."""
        _blob(store)
        for verb in (store.renew_lease, store.release_lease):
            with pytest.raises(LeaseHeldError) as exc:
                verb("seg", A)
            _refused(exc, LeaseHeldError, 409, "LeaseIdMismatchWithLeaseOperation")
        store.acquire_lease("seg", A, 15)
        for verb in (store.renew_lease, store.release_lease):
            with pytest.raises(LeaseHeldError) as mismatch:
                verb("seg", B)
            _refused(mismatch, LeaseHeldError, 409, "LeaseIdMismatchWithLeaseOperation")
        store.renew_lease("seg", A)
        store.release_lease("seg", A)
        info = store.properties("seg")
        assert info is not None and info.lease_state == "available"
        store.append_block("seg", b"free", 0)

    def test_a_lease_id_on_an_unleased_blob_is_refused(self, store: Store) -> None:
        """412 LeaseNotPresentWithBlobOperation; and the probe says the id holds nothing."""
        _blob(store)
        with pytest.raises(LeaseHeldError) as exc:
            store.append_block("seg", b"x", 0, lease=A)
        _refused(exc, LeaseHeldError, 412, "LeaseNotPresentWithBlobOperation")
        assert store.holds_lease("seg", A) is False

    def test_holds_lease_names_the_active_lease_only(self, store: Store) -> None:
        """True for the holder's id, False for another; a missing blob is an error."""
        _blob(store)
        store.acquire_lease("seg", A, 15)
        assert store.holds_lease("seg", A) is True
        assert store.holds_lease("seg", B) is False
        with pytest.raises(StorageError) as exc:
            store.holds_lease("absent", A)
        _refused(exc, StorageError, 404, "BlobNotFound")

    def test_break_frees_the_blob_at_once(self, store: Store) -> None:
        """A broken lease fences nothing, cannot be renewed (409) and is taken by another."""
        _blob(store)
        store.acquire_lease("seg", A, 15)
        store.break_lease("seg")
        info = store.properties("seg")
        assert info is not None and info.lease_state == "broken"
        assert store.holds_lease("seg", A) is False
        with pytest.raises(StorageError) as renew:
            store.renew_lease("seg", A)
        _refused(renew, StorageError, 409, "LeaseIsBrokenAndCannotBeRenewed")
        with pytest.raises(LeaseHeldError) as stale:
            store.append_block("seg", b"y", 0, lease=A)
        _refused(stale, LeaseHeldError, 412, "LeaseNotPresentWithBlobOperation")
        store.append_block("seg", b"x", 0)
        with pytest.raises(StorageError) as again:
            store.break_lease("seg")
        _refused(again, StorageError, 409, "LeaseNotPresentWithLeaseOperation")
        store.acquire_lease("seg", B, -1)
        assert store.holds_lease("seg", B) is True

    def test_break_without_a_lease_is_refused(self, store: Store) -> None:
        """409 LeaseNotPresentWithLeaseOperation."""
        _blob(store)
        with pytest.raises(StorageError) as exc:
            store.break_lease("seg")
        _refused(exc, StorageError, 409, "LeaseNotPresentWithLeaseOperation")

    def test_a_lease_duration_outside_15_to_60_or_infinite_is_refused(self, store: Store) -> None:
        """400 InvalidHeaderValue; no lease is taken."""
        _blob(store)
        for duration in (0, 10, 14, 61, -2):
            with pytest.raises(StorageError) as exc:
                store.acquire_lease("seg", A, duration)
            _refused(exc, StorageError, 400, "InvalidHeaderValue")
        info = store.properties("seg")
        assert info is not None and info.lease_state == "available"

    def test_lease_verbs_on_a_missing_blob(self, store: Store) -> None:
        """404 BlobNotFound for acquire, renew, release and break."""
        for attempt in (
            lambda: store.acquire_lease("absent", A, 15),
            lambda: store.renew_lease("absent", A),
            lambda: store.release_lease("absent", A),
            lambda: store.break_lease("absent"),
        ):
            with pytest.raises(StorageError) as exc:
                attempt()
            _refused(exc, StorageError, 404, "BlobNotFound")

    def test_an_expired_lease_fences_nothing_and_its_holder_may_renew(self, backend: Backend) -> None:
        """After its duration the lease is "expired": writes without it pass, with it get 412
        LeaseNotPresentWithBlobOperation; the holder renews it back; another writer may acquire."""
        if backend.clock is None:
            pytest.skip("Azurite's clock cannot be driven (lease expiry takes 15 s of real time)")
        store, clock = backend.store, backend.clock
        _blob(store)
        store.acquire_lease("seg", A, 15)
        clock.now += 14.9
        assert store.holds_lease("seg", A)
        clock.now += 0.1
        info = store.properties("seg")
        assert info is not None and info.lease_state == "expired"
        with pytest.raises(LeaseHeldError) as exc:
            store.append_block("seg", b"x", 0, lease=A)
        _refused(exc, LeaseHeldError, 412, "LeaseNotPresentWithBlobOperation")
        store.append_block("seg", b"x", 0)
        store.renew_lease("seg", A)
        assert store.holds_lease("seg", A)
        clock.now += 15
        store.acquire_lease("seg", B, 15)
        assert store.holds_lease("seg", B) and not store.holds_lease("seg", A)


class TestReads:
    def test_ranged_reads(self, store: Store) -> None:
        """Exact ranges; a range past the end is cut; the end itself reads as empty; past it: 416."""
        _blob(store, data=b"0123456789")
        assert store.read("seg", 3, 4) == b"3456"
        assert store.read("seg", 8, 100) == b"89"
        assert store.read("seg", 10, 5) == b""
        with pytest.raises(StorageError) as exc:
            store.read("seg", 11, 1)
        _refused(exc, StorageError, 416, "InvalidRange")

    def test_an_empty_blob_reads_as_empty(self, store: Store) -> None:
        """b"" from offset 0; 416 beyond; stream yields nothing."""
        _blob(store)
        assert store.read("seg", 0, 1) == b""
        with pytest.raises(StorageError) as exc:
            store.read("seg", 1, 1)
        _refused(exc, StorageError, 416, "InvalidRange")
        assert list(store.stream("seg")) == []

    def test_stream_yields_the_range_in_chunks(self, store: Store) -> None:
        """Chunks of at most ``chunk`` bytes that concatenate to the range."""
        _blob(store, data=b"abcdefghij")
        assert list(store.stream("seg", chunk=4)) == [b"abcd", b"efgh", b"ij"]
        assert list(store.stream("seg", offset=2, length=5, chunk=3)) == [b"cde", b"fg"]

    def test_reading_a_missing_blob(self, store: Store) -> None:
        """A ranged read is 404 BlobNotFound; a whole-object get is None."""
        with pytest.raises(StorageError) as exc:
            store.read("absent", 0, 1)
        _refused(exc, StorageError, 404, "BlobNotFound")
        assert store.get("absent") is None


class TestSmallObjects:
    def test_put_if_missing_creates_once(self, store: Store) -> None:
        """The first put creates; later puts (also over an append blob) change nothing and say so."""
        assert store.put_if_missing("runs/r1.json", b"first") is True
        assert store.put_if_missing("runs/r1.json", b"second") is False
        assert store.get("runs/r1.json") == b"first"
        _blob(store, data=b"abc")
        assert store.put_if_missing("seg", b"over") is False
        assert store.read("seg", 0, 10) == b"abc"
        info = store.properties("runs/r1.json")
        assert info is not None and not info.is_append_blob and info.committed_blocks is None

    def test_list_names_by_prefix_sorted(self, store: Store) -> None:
        """Every blob whose name starts with the prefix, sorted; an empty prefix lists all."""
        for name in ("out/b.jsonl", "out/a.jsonl", "out.manifest/r1", "other"):
            store.put_if_missing(name, b"x")
        assert store.list_names("out/") == ["out/a.jsonl", "out/b.jsonl"]
        assert store.list_names("out") == ["out.manifest/r1", "out/a.jsonl", "out/b.jsonl"]
        assert store.list_names("") == ["other", "out.manifest/r1", "out/a.jsonl", "out/b.jsonl"]
        assert store.list_names("none") == []


def _script(store: Store) -> None:
    """A run's requests, good and refused, in one fixed order."""
    store.create_append_blob("seg", {"Creator": "r"})
    store.acquire_lease("seg", A, 15)
    store.append_block("seg", b"one\n", 0, lease=A)
    store.append_block("seg", b"one\n", 0, lease=A)  # landed already: 412 and a read-back
    for attempt in (
        lambda: store.append_block("seg", b"two\n", 4),
        lambda: store.append_block("seg", b"two\n", 9, lease=A),
        lambda: store.create_append_blob("seg"),
        lambda: store.acquire_lease("seg", B, 15),
        lambda: store.read("seg", 40, 1),
    ):
        with pytest.raises(StorageError):
            attempt()
    store.holds_lease("seg", B)
    store.set_metadata("seg", {"Writer": "r"}, lease=A)
    store.seal("seg", 4, lease=A)
    store.renew_lease("seg", A)
    store.release_lease("seg", A)
    store.properties("seg")
    store.properties("absent")
    list(store.stream("seg"))
    store.put_if_missing("p", b"{}")
    store.put_if_missing("p", b"{}")
    store.get("p")
    store.get("absent")
    store.list_names("")
    store.acquire_lease("seg", B, -1)
    store.break_lease("seg")


def _comparable(call: StorageCall) -> dict[str, Any]:
    """A call without what differs between services by nature (timing, etag values)."""
    response = dict(call.response or {})
    if "etag" in response:
        response["etag"] = "<etag>"
    request = {k: v for k, v in call.request.items() if k != "container"}
    return {
        "operation": call.operation,
        "blob": call.blob,
        "ok": call.ok,
        "request": request,
        "response": response if call.ok else None,
        "error": call.error,
    }


@pytest.mark.azurite
def test_both_stores_report_the_same_calls(azurite: Azurite, container: str) -> None:
    """The same requests give the same StorageCall records (operation, request, response, error)."""
    azure_calls: list[StorageCall] = []
    memory_calls: list[StorageCall] = []
    _script(_azure_store(azurite, container, azure_calls))
    memory = MemoryStore.new("conformance")
    memory.on_call = memory_calls.append
    _script(memory)
    azure = [_comparable(c) for c in azure_calls]
    mine = [_comparable(c) for c in memory_calls]
    assert len(mine) == len(azure)
    for index, (got, want) in enumerate(zip(mine, azure, strict=True)):
        assert got == want, f"call {index} differs"
