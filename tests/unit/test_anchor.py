"""core.anchor with a fake landscape."""

from __future__ import annotations

from elspeth_appendsink.core.anchor import Artifact, Prefix, first_mismatch

P = [Prefix(1, 10, "a"), Prefix(2, 25, "b")]


def test_all_match() -> None:
    arts = [Artifact("a", 10), Artifact("b", 25)]
    assert first_mismatch("r", arts, P, completed=True, output_size=25, output_sha256="b") is None


def test_foreign_rows_appended_after_run() -> None:
    arts = [Artifact("a", 10), Artifact("b", 25)]
    m = first_mismatch("r", arts, [*P, Prefix(3, 40, "c")], completed=True, output_size=40, output_sha256="c")
    assert m is not None and m.offset == 25 and "40 bytes" in m.found
    assert m.call == 2  # the last write call ELSPETH saw return: the output should end there


def test_manifest_truncated() -> None:
    arts = [Artifact("a", 10), Artifact("b", 25)]
    m = first_mismatch("r", arts, P[:1], completed=True, output_size=10, output_sha256="a")
    assert m is not None and m.offset == 25 and m.call is None


def test_hash_differs() -> None:
    m = first_mismatch("r", [Artifact("x", 10)], P, completed=False, output_size=25, output_sha256="b")
    assert m is not None and (m.call, m.expected, m.found) == (1, "x", "a")
