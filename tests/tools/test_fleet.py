"""``verify --prefix`` and ``runs --prefix``: every output under a prefix, found from the sink's own
run pointers and manifests, verified and anchored against a real PostgreSQL landscape.

Outputs are written by the real writer over Azurite (one run each; one with no file extension,
one outside the prefix); the landscape holds what the sink returned after each write, as ELSPETH
stores it (:func:`tests.tools.test_landscape.build_landscape`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from elspeth_appendsink.testing.azurite import Azurite
from elspeth_appendsink.testing.postgres import PASSWORD
from elspeth_appendsink.tools.anchor import output_uri
from elspeth_appendsink.tools.cli import ENV_CONNECTION_STRING, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, main
from elspeth_appendsink.tools.fleet import find_outputs
from tests.helpers import make_store, make_writer
from tests.tools.outputs import batches, flip_byte, segment
from tests.tools.test_landscape import build_landscape

pytestmark = pytest.mark.azurite

FLEET = {"fleet/a/rows.jsonl": "run-a", "fleet/b/rows.jsonl": "run-b", "fleet/c/data": "run-c"}
OUTSIDE = {"other/rows.jsonl": "run-x"}


def _write(azurite: Azurite, container: str, blob_path: str, run_id: str) -> list[tuple[str, int]]:
    """One completed run of the real writer (2 write calls); the artifacts the sink returned."""
    writer = make_writer(make_store(azurite, container), run_id=run_id, blob_path=blob_path)
    recorded = []
    for batch in batches(2):
        writer.write(batch)
        recorded.append((writer.content_hash, writer.size))
    writer.finish(seal=True)
    writer.close()
    return recorded


@pytest.fixture()
def fleet(azurite: Azurite, container: str) -> dict[str, tuple[str, list[tuple[str, int]]]]:
    """blob path -> (run id, artifacts) for the fleet and one output outside its prefix."""
    return {path: (run, _write(azurite, container, path, run)) for path, run in {**FLEET, **OUTSIDE}.items()}


def _cli(azurite: Azurite, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), env={ENV_CONNECTION_STRING: azurite.connection_string}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _landscape(url: str, container: str, fleet: dict[str, tuple[str, list[tuple[str, int]]]]) -> None:
    build_landscape(
        url,
        {run: "completed" for run, _ in fleet.values()},
        artifacts={
            run: [(output_uri(container, path), h, s) for h, s in arts] for path, (run, arts) in fleet.items()
        },
    )


class TestFindOutputs:
    def test_outputs_come_from_pointers_and_manifests_not_names(
        self, azurite: Azurite, container: str, fleet: Any
    ) -> None:
        """Every output under the prefix, an extension-less one included; none outside it."""
        assert find_outputs(make_store(azurite, container), "fleet/") == sorted(FLEET)
        assert find_outputs(make_store(azurite, container), "fleet/c") == ["fleet/c/data"]
        assert find_outputs(make_store(azurite, container), "nothing/") == []


class TestVerifyPrefix:
    def test_every_output_is_verified_one_line_each_with_a_summary(
        self, azurite: Azurite, container: str, fleet: Any
    ) -> None:
        code, out, err = _cli(
            azurite, "verify", "--container", container, "--prefix", "fleet/", "--no-progress"
        )
        assert code == EXIT_OK, out + err
        for path in FLEET:
            assert f"ok      {path}  VERIFIED: 50 rows" in out
        assert "other/rows.jsonl" not in out
        assert "Fleet    ALL VERIFIED: 3 outputs under 'fleet/'" in out and "outputs/s" in out

    def test_one_tampered_output_fails_the_fleet_and_is_named(
        self, azurite: Azurite, container: str, fleet: Any
    ) -> None:
        """A byte flipped in one output: exit 1, that output FAILED with its first problem, the
        others still verified; --json says the same."""
        flip_byte(azurite, container, segment(0, "fleet/b/rows.jsonl"), 5)
        code, out, _ = _cli(
            azurite, "verify", "--container", container, "--prefix", "fleet/", "--no-progress"
        )
        assert code == EXIT_PROBLEM
        assert "FAILED  fleet/b/rows.jsonl  NOT VERIFIED" in out and "[sha_mismatch]" in out
        assert "ok      fleet/a/rows.jsonl  VERIFIED" in out
        assert "Fleet    1 of 3 FAILED" in out and "  failed: fleet/b/rows.jsonl" in out
        code, out, _ = _cli(azurite, "verify", "--container", container, "--prefix", "fleet/", "--json")
        document = json.loads(out)
        assert code == EXIT_PROBLEM and document["ok"] is False
        assert document["summary"]["failed"] == ["fleet/b/rows.jsonl"] and document["summary"]["outputs"] == 3

    def test_with_a_postgres_landscape_every_output_is_anchored(
        self, azurite: Azurite, container: str, fleet: Any, postgres_url: str
    ) -> None:
        _landscape(postgres_url, container, fleet)
        code, out, err = _cli(
            azurite, "verify", "--container", container, "--prefix", "fleet/", "--no-progress",
            "--landscape", postgres_url,
        )  # fmt: skip
        assert code == EXIT_OK, out + err
        assert out.count("VERIFIED, ANCHORED") == 3
        assert "Fleet    ALL VERIFIED AND ANCHORED: 3 outputs" in out
        assert "holds 3 of the 3 runs of these outputs" in out
        assert PASSWORD not in out + err and "elspeth:***@" in out

    def test_a_landscape_holding_none_of_the_runs_is_reported(
        self, azurite: Azurite, container: str, fleet: Any, postgres_url: str
    ) -> None:
        """The wrong landscape: every output NOT ANCHORED (its runs unknown), exit 1, and the
        summary asks whether it is the right landscape. Nothing is written anywhere."""
        build_landscape(postgres_url, {"someone-else": "completed"})
        code, out, _ = _cli(
            azurite, "verify", "--container", container, "--prefix", "fleet/", "--no-progress",
            "--landscape", postgres_url,
        )  # fmt: skip
        assert code == EXIT_PROBLEM
        assert out.count("VERIFIED, NOT ANCHORED") == 3
        assert "holds 0 of the 3 runs" in out and "is it the landscape these runs used?" in out

    def test_a_prefix_with_no_output_is_a_usage_error(
        self, azurite: Azurite, container: str, fleet: Any
    ) -> None:
        code, _, err = _cli(azurite, "verify", "--container", container, "--prefix", "nothing/")
        assert code == EXIT_USAGE and "--prefix: no output of this sink under 'nothing/'" in err

    def test_prefix_and_blob_path_together_are_refused(self, azurite: Azurite, container: str) -> None:
        code, _, err = _cli(
            azurite, "verify", "--container", container, "--prefix", "a/", "--blob-path", "a/b"
        )
        assert code == EXIT_USAGE and "not both" in err
        code, _, err = _cli(azurite, "inspect", "--container", container)
        assert code == EXIT_USAGE and "--blob-path is required" in err


class TestRunsPrefix:
    def test_every_run_of_every_output_with_its_next_step(
        self, azurite: Azurite, container: str, fleet: Any, postgres_url: str
    ) -> None:
        _landscape(postgres_url, container, fleet)
        code, out, err = _cli(
            azurite, "runs", "--container", container, "--prefix", "fleet/", "--landscape", postgres_url
        )
        assert code == EXIT_OK, out + err
        for path, run in FLEET.items():
            assert f"output {path}\n  run {run}: ELSPETH status completed, 0 checkpoint(s)" in out
        assert "3 output(s), 3 run(s) known to the landscape; next steps: 3 nothing" in out
        code, out, _ = _cli(
            azurite,
            "runs",
            "--container",
            container,
            "--prefix",
            "fleet/",
            "--landscape",
            postgres_url,
            "--json",
        )
        document = json.loads(out)
        assert [o["blob_path"] for o in document["outputs"]] == sorted(FLEET)
        assert document["summary"]["runs"] == 3

    def test_runs_unknown_to_the_landscape_are_listed(
        self, azurite: Azurite, container: str, fleet: Any, postgres_url: str
    ) -> None:
        build_landscape(postgres_url, {"someone-else": "completed"})
        code, out, _ = _cli(
            azurite, "runs", "--container", container, "--prefix", "fleet/", "--landscape", postgres_url
        )
        assert code == EXIT_OK
        assert "run run-a: not in the landscape" in out
        assert "3 run(s) of these outputs are not in" in out and "is it the landscape these runs used?" in out
