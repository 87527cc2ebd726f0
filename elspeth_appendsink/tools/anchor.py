"""``verify --landscape``: ELSPETH's own records anchor the output's manifests (#12 item 4).

After every ``write`` the sink returns an artifact whose ``content_hash`` is the sha256 of the
whole output so far and ``size_bytes`` its length; ELSPETH stores it in its landscape
(``artifacts``: ``run_id``, ``sink_node_id``, ``path_or_uri``, in the order the writes returned).
That record lives outside the container, so it holds the head of the output where no one
editing the container can reach it. Each run's artifacts for this output (matched by
``path_or_uri`` = ``azure://<container>/<blob path>``, one sequence per sink node) must each
equal a prefix of the output at the end of one of the run's write calls (the mapping
:attr:`~elspeth_appendsink.protocol.verify.VerifyReport.prefixes`, which the one scan of the
segments takes while verify streams them), and for a run ELSPETH
recorded as ``completed``, the last one must be where the run left the output: the whole
output for the output's last run, the run's last write call for an earlier one (the next run's
continuation of it is checked by verify's run chain). So removing a manifest's last records (with
their bytes), or appending foreign rows under a forged record, is found even when every manifest
decodes and every byte is described.

Every run of the output (or the one asked for) must be known to the landscape: a run it does not
know is not anchored by it, which is reported as a mismatch too (a forged run). A run ELSPETH
knows but holds no artifact for (every write it started was killed) is anchored by nothing and
said so; that is not a mismatch unless ELSPETH says the run completed.

The landscape is read read-only through SQLAlchemy (:mod:`.landscape`); the comparison is
:func:`~elspeth_appendsink.core.anchor.first_mismatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from elspeth_appendsink.core.anchor import Artifact, Mismatch, Prefix, first_mismatch
from elspeth_appendsink.protocol.verify import VerifyReport
from elspeth_appendsink.tools.landscape import LandscapeArtifact, LandscapeRun, open_landscape

__all__ = [
    "AnchorReport",
    "NodeArtifacts",
    "RunAnchor",
    "anchor_runs",
    "group_artifacts",
    "output_uri",
    "read_artifacts",
]


@dataclass(frozen=True, slots=True)
class NodeArtifacts:
    """The artifacts one sink node of one run recorded for the output, in the order recorded."""

    run_id: str
    node_id: str
    artifacts: tuple[Artifact, ...]


@dataclass(frozen=True, slots=True)
class RunAnchor:
    """One run of the output checked against the landscape."""

    run_id: str
    status: str | None  # ELSPETH's status; None: the landscape does not know the run
    nodes: tuple[str, ...]  # the sink nodes whose artifacts were checked
    artifacts: int
    mismatch: Mismatch | None
    note: str

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "nodes": list(self.nodes),
            "artifacts": self.artifacts,
            "mismatch": None if self.mismatch is None else asdict(self.mismatch),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class AnchorReport:
    """What ``verify --landscape`` found; ``ok`` when no run disagrees with the landscape."""

    landscape: str
    runs: tuple[RunAnchor, ...]

    @property
    def mismatch(self) -> Mismatch | None:
        """The first mismatch, oldest run first."""
        return next((r.mismatch for r in self.runs if r.mismatch is not None), None)

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def as_dict(self) -> dict[str, object]:
        first = self.mismatch
        return {
            "landscape": self.landscape,
            "ok": self.ok,
            "mismatch": None if first is None else asdict(first),
            "runs": [r.as_dict() for r in self.runs],
        }


def output_uri(container: str, blob_path: str) -> str:
    """The ``path_or_uri`` the sink's artifacts carry for this output."""
    return f"azure://{container}/{blob_path}"


def read_artifacts(
    url: str, uri: str, run_id: str | None = None, *, passphrase: str | None = None
) -> tuple[list[LandscapeRun], list[NodeArtifacts]]:
    """The landscape's runs (or the one asked for) and their artifacts for ``uri``; read-only.

    Raises :class:`~elspeth_appendsink.tools.landscape.LandscapeError` naming ``--landscape``
    (not a readable ELSPETH landscape) or ``--run-id`` (no such run).
    """
    with open_landscape(url, passphrase=passphrase) as landscape:
        runs = landscape.runs(run_id)
        rows = landscape.artifacts([uri])
    return runs, group_artifacts(runs, rows)


def group_artifacts(runs: Sequence[LandscapeRun], rows: Sequence[LandscapeArtifact]) -> list[NodeArtifacts]:
    """``rows`` of the ``runs`` as one sequence per (run, sink node), each in the order recorded."""
    wanted = {r.run_id for r in runs}
    grouped: dict[tuple[str, str], list[Artifact]] = {}
    for row in rows:
        if row.run_id in wanted:
            grouped.setdefault((row.run_id, row.sink_node_id), []).append(
                Artifact(row.content_hash, row.size_bytes)
            )
    return [NodeArtifacts(run, node, tuple(arts)) for (run, node), arts in grouped.items()]


def anchor_runs(
    landscape: str,
    report: VerifyReport,
    prefixes: Mapping[str, Sequence[Prefix]],
    runs: Sequence[LandscapeRun],
    nodes: Sequence[NodeArtifacts],
    *,
    run_id: str | None = None,
) -> AnchorReport:
    """Check each run of the output (or ``run_id``) against what the landscape recorded for it.

    ``report`` gives the output's runs (oldest first) and its whole size and sha256;
    ``prefixes`` the output's prefix hashes per run. Pure: no I/O.
    """
    statuses = {r.run_id: r.status for r in runs}
    by_run: dict[str, list[NodeArtifacts]] = {}
    for node in nodes:
        by_run.setdefault(node.run_id, []).append(node)
    order = [r.run_id for r in report.runs]
    checked = []
    previous_end = 0
    for position, run in enumerate(order):
        own = list(prefixes.get(run, ()))
        start, previous_end = previous_end, (own[-1].size if own else previous_end)
        if run_id is not None and run != run_id:
            continue
        status = statuses.get(run)
        if status is None:
            checked.append(
                RunAnchor(
                    run,
                    None,
                    (),
                    0,
                    Mismatch(
                        run,
                        None,
                        start,
                        f"no run {run} in {landscape}",
                        f"a manifest of run {run} in the output",
                    ),
                    "not anchored: unknown to the landscape",
                )
            )
            continue
        mine = by_run.get(run, [])
        if not mine:
            mismatch = None
            note = "no artifact recorded (no write of this run returned to ELSPETH): anchored by nothing"
            if status == "completed" and own and own[-1].size > start:
                mismatch = Mismatch(
                    run,
                    own[-1].call,
                    start,
                    "no artifact of this output, for a run ELSPETH recorded completed",
                    f"{own[-1].size - start} bytes of the run in the output",
                )
            checked.append(RunAnchor(run, status, (), 0, mismatch, note))
            continue
        last = position == len(order) - 1
        if last:
            end_size, end_sha = report.bytes, report.sha256
        else:  # where the run left the output; the next run's continuation is verify's to check
            end_size, end_sha = (own[-1].size, own[-1].sha256) if own else (start, "")
        found = None
        for node in mine:
            found = first_mismatch(
                run,
                node.artifacts,
                own,
                completed=status == "completed",
                output_size=end_size,
                output_sha256=end_sha,
            )
            if found is not None:
                break
        count = sum(len(n.artifacts) for n in mine)
        if found is not None:
            note = "NOT ANCHORED"
        elif status == "completed":
            note = (
                f"anchored: every artifact is the output as a write call left it, the last is "
                f"{'the whole output' if last else 'where the run left the output'}"
            )
        else:
            note = f"anchored: every artifact is the output as a write call left it (run {status})"
        checked.append(RunAnchor(run, status, tuple(n.node_id for n in mine), count, found, note))
    return AnchorReport(landscape, tuple(checked))
