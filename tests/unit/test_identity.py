"""Row identity: digests by key or by content, and multiset matching that never over-absorbs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.core.identity import DIGEST_SIZE, DigestMultiset, IdentityScheme, content_digests
from elspeth_appendsink.encoders.base import Packed

# A small alphabet of digests, so that committed and replayed rows collide often.
digests = st.sampled_from([bytes([i]) * DIGEST_SIZE for i in range(6)]) | st.binary(
    min_size=DIGEST_SIZE, max_size=DIGEST_SIZE
)
rows = st.dictionaries(
    st.sampled_from(["id", "name", "v"]), st.none() | st.integers() | st.text(max_size=5), max_size=3
)


class TestDigestMultiset:
    @given(st.lists(digests, max_size=30), st.lists(digests, max_size=40))
    def test_take_behaves_like_a_counter_that_is_used_up(
        self, committed: list[bytes], replayed: list[bytes]
    ) -> None:
        """Each replayed digest is absorbed only while an equal committed one is left (Counter model)."""
        multiset = DigestMultiset(committed)
        model = Counter(committed)
        for digest in replayed:
            expected = model[digest] > 0
            assert multiset.take(digest) is expected
            if expected:
                model[digest] -= 1
            assert len(multiset) == model.total()
        assert multiset.taken == len(committed) - model.total()

    @given(st.lists(digests, max_size=30), st.lists(digests, max_size=60))
    def test_never_absorbs_more_than_was_committed(
        self, committed: list[bytes], replayed: list[bytes]
    ) -> None:
        """However many equal rows are replayed, at most as many are skipped as were committed."""
        multiset = DigestMultiset(committed)
        absorbed = Counter(d for d in replayed if multiset.take(d))
        committed_counts = Counter(committed)
        for digest, count in absorbed.items():
            assert count <= committed_counts[digest]
        assert absorbed == Counter(replayed) & committed_counts

    @given(st.lists(st.lists(digests, max_size=6), max_size=6), st.lists(digests, max_size=40))
    def test_packed_bodies_build_the_same_multiset(
        self, blocks: list[list[bytes]], replayed: list[bytes]
    ) -> None:
        """Building from block entries' packed digest bodies matches building from the digests."""
        flat = [d for block in blocks for d in block]
        packed = DigestMultiset.from_packed(b"".join(block) for block in blocks)
        plain = DigestMultiset(flat)
        assert len(packed) == len(plain) == len(flat)
        assert [packed.take(d) for d in replayed] == [plain.take(d) for d in replayed]

    @given(st.lists(digests, max_size=30), st.lists(digests, max_size=40), st.lists(digests, max_size=40))
    def test_giving_back_a_calls_matches_restores_what_it_took(
        self, committed: list[bytes], before: list[bytes], failed: list[bytes]
    ) -> None:
        """After a call's matches are undone, the multiset answers as if that call never ran."""
        multiset, reference = DigestMultiset(committed), DigestMultiset(committed)
        for digest in before:
            assert multiset.take(digest) is reference.take(digest)
        multiset.mark()
        for digest in failed:
            multiset.take(digest)
        multiset.undo_since_mark()
        assert len(multiset) == len(reference) and multiset.taken == reference.taken
        assert [multiset.take(d) for d in failed] == [reference.take(d) for d in failed]

    def test_an_empty_multiset_absorbs_nothing(self) -> None:
        """With nothing committed, every replayed row is new."""
        multiset = DigestMultiset()
        assert multiset.take(b"\0" * DIGEST_SIZE) is False
        assert len(multiset) == 0 and multiset.taken == 0

    @given(st.lists(digests, max_size=50))
    def test_memory_is_about_eight_bytes_per_committed_row(self, committed: list[bytes]) -> None:
        """Before any match, the multiset holds 8 bytes per row and nothing else."""
        assert DigestMultiset(committed).nbytes == DIGEST_SIZE * len(committed)


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + DIGEST_SIZE] for i in range(0, len(packed), DIGEST_SIZE)]


class TestIdentityScheme:
    @given(st.lists(rows, max_size=10))
    def test_content_identity_is_the_digest_of_the_encoded_bytes(
        self, batch: list[dict[str, object]]
    ) -> None:
        """Without a row key, rows with equal encoded bytes share an identity and others do not."""
        encoded = [repr(sorted(r.items())).encode() for r in batch]
        packed = IdentityScheme(None).digests(batch, Packed.join(encoded))
        assert len(packed) == DIGEST_SIZE * len(batch)
        found = _split(packed)
        for i in range(len(batch)):
            for j in range(len(batch)):
                assert (found[i] == found[j]) == (encoded[i] == encoded[j])

    @given(st.lists(rows, max_size=10), st.lists(st.binary(max_size=8), min_size=10, max_size=10))
    def test_key_identity_depends_only_on_the_key_fields(
        self, batch: list[dict[str, object]], encoded: list[bytes]
    ) -> None:
        """With ``identity_fields``, rows with equal key values share an identity whatever else differs."""
        scheme = IdentityScheme(["id"])
        found = _split(scheme.digests(batch, Packed.join(encoded[: len(batch)])))
        for i in range(len(batch)):
            for j in range(len(batch)):
                assert (found[i] == found[j]) == (batch[i].get("id") == batch[j].get("id"))

    @given(st.lists(st.binary(max_size=40), max_size=20), st.binary(max_size=30))
    def test_content_digests_from_a_block_equal_those_computed_when_encoding(
        self, encoded: list[bytes], header: bytes
    ) -> None:
        """A block's bytes and its rows' lengths give back the digests computed while writing,
        whatever header precedes the rows (what recovery relies on when the manifest holds lengths)."""
        packed = Packed.join(encoded)
        assert content_digests(header + packed.data, list(map(len, encoded))) == IdentityScheme(None).digests(
            [{}] * len(encoded), packed
        )

    def test_key_values_are_told_apart_by_type(self) -> None:
        """Key 1 and key "1" are different rows (canonical JSON keeps the type)."""
        scheme = IdentityScheme(["id"])
        one, text = _split(scheme.digests([{"id": 1}, {"id": "1"}], Packed.join([b"", b""])))
        assert one != text

    @pytest.mark.parametrize("fields", [None, [], ["id"], ["tenant", "id"]])
    def test_the_scheme_survives_its_description(self, fields: list[str] | None) -> None:
        """``restore(describe())`` gives a scheme with the same fields (it is frozen in the manifest)."""
        scheme = IdentityScheme(fields)
        restored = IdentityScheme.restore(scheme.describe())
        assert restored.fields == scheme.fields and restored.is_keyed == bool(fields)
        assert scheme.describe()["scheme"] == ("key" if fields else "content")
