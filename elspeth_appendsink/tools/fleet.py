"""Many outputs at once: every output under a blob prefix, verified, anchored and surveyed.

An *output* is found from what the sink itself wrote, never from how files are named: every run
pointer (``.elspeth-appendsink/runs/<run>/<digest>.json``) names the blob path its run rendered,
and every run manifest is ``<blob path>.manifest/<run>`` (``core.paths.manifest_name``, checked
by round trip). The outputs under a prefix are the union of both, sorted; a pointer whose
run never created a manifest still names its output (verify then reports what is missing).

:func:`verify_outputs` runs :func:`~elspeth_appendsink.protocol.verify.verify_output` over them
with bounded parallelism (a thread pool: the work is network reads and hashing, which release the
GIL) and, given a landscape, anchors each against ELSPETH's artifacts, read once for all outputs
(:func:`~elspeth_appendsink.tools.anchor.anchor_runs`). :func:`survey_outputs` joins every run of
every output with ELSPETH's status (:func:`~elspeth_appendsink.tools.runs.survey`). Both read only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from elspeth_appendsink.core.paths import POINTER_ROOT, manifest_name
from elspeth_appendsink.errors import AppendSinkError
from elspeth_appendsink.protocol.verify import VerifyReport, inspect_output, verify_output
from elspeth_appendsink.storage.base import Store
from elspeth_appendsink.tools.anchor import AnchorReport, anchor_runs, group_artifacts, output_uri
from elspeth_appendsink.tools.landscape import LandscapeRun, open_landscape
from elspeth_appendsink.tools.runs import RunState, survey

__all__ = ["FleetVerdict", "OutputVerdict", "find_outputs", "survey_outputs", "verify_outputs"]

_MANIFEST = ".manifest/"


def _manifest_output(name: str) -> str | None:
    """The output a manifest blob belongs to, or None when ``name`` is not a manifest's name."""
    head, sep, run_id = name.rpartition(_MANIFEST)
    if not sep or not head or not run_id or "/" in run_id:
        return None
    try:
        return head if manifest_name(head, run_id) == name else None
    except ValueError:  # ConfigError is a ValueError: not a name the sink would give a manifest
        return None


def _pointed_output(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)["blob_path"]
    except (ValueError, KeyError, TypeError):
        return None  # not a pointer this sink wrote; verify of its output would say more
    return value if isinstance(value, str) else None


def find_outputs(store: Store, prefix: str, *, workers: int = 8) -> list[str]:
    """Every output whose blob path starts with ``prefix``, from the run pointers and manifests."""
    outputs = {o for name in store.list_names(prefix) if (o := _manifest_output(name)) is not None}
    pointers = store.list_names(POINTER_ROOT)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for output in pool.map(lambda name: _pointed_output(store.get(name)), pointers):
            if output is not None and output.startswith(prefix):
                outputs.add(output)
    return sorted(outputs)


@dataclass(frozen=True, slots=True)
class OutputVerdict:
    """One output of the fleet: its verify report, its anchor (with a landscape), or an error."""

    blob_path: str
    report: VerifyReport | None
    anchor: AnchorReport | None
    error: str | None  # verify could not run (e.g. nothing at the path, storage refused)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.report is not None
            and self.report.ok
            and (self.anchor is None or self.anchor.ok)
        )

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {"blob_path": self.blob_path, "ok": self.ok, "error": self.error}
        if self.report is not None:
            document["verify"] = self.report.as_dict()
        if self.anchor is not None:
            document["anchor"] = self.anchor.as_dict()
        return document


@dataclass(frozen=True, slots=True)
class FleetVerdict:
    """Every output under a prefix, verified; ``ok`` when every one is."""

    container: str
    prefix: str
    outputs: tuple[OutputVerdict, ...]
    landscape: str | None
    landscape_runs: int  # runs the landscape holds of these outputs (None landscape: 0)
    seconds: float

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def bytes(self) -> int:
        return sum(o.report.bytes for o in self.outputs if o.report is not None)

    def as_dict(self) -> dict[str, object]:
        failed = [o.blob_path for o in self.outputs if not o.ok]
        return {
            "container": self.container,
            "prefix": self.prefix,
            "ok": self.ok,
            "landscape": self.landscape,
            "summary": {
                "outputs": len(self.outputs),
                "verified": len(self.outputs) - len(failed),
                "failed": failed,
                "bytes": self.bytes,
                "rows": sum(o.report.rows for o in self.outputs if o.report is not None),
                "landscape_runs": self.landscape_runs,
                "seconds": round(self.seconds, 3),
            },
            "outputs": [o.as_dict() for o in self.outputs],
        }


def verify_outputs(
    store: Store,
    prefix: str,
    outputs: Sequence[str],
    *,
    landscape: str | None = None,
    passphrase: str | None = None,
    workers: int = 4,
    on_done: Callable[[OutputVerdict], None] | None = None,
) -> FleetVerdict:
    """Verify (and, with ``landscape``, anchor) each of ``outputs``, ``workers`` at a time.

    The landscape is read first and once (a wrong URL fails before any scan, as a
    :class:`~elspeth_appendsink.tools.landscape.LandscapeError`). ``on_done`` is called with each
    verdict as it is ready (from the calling thread, in the order of ``outputs``).
    """
    started = time.monotonic()
    runs: list[LandscapeRun] = []
    artifacts = []
    if landscape is not None:
        with open_landscape(landscape, passphrase=passphrase) as opened:
            shown = opened.url
            runs = opened.runs()
            artifacts = opened.artifacts(output_uri(store.container, o) for o in outputs)
    else:
        shown = None

    def one(blob_path: str) -> OutputVerdict:
        try:
            report = verify_output(store, blob_path)
        except AppendSinkError as exc:
            return OutputVerdict(blob_path, None, None, str(exc))
        anchor = None
        if shown is not None:
            uri = output_uri(store.container, blob_path)
            nodes = group_artifacts(runs, [a for a in artifacts if a.path_or_uri == uri])
            anchor = anchor_runs(shown, report, report.prefixes, runs, nodes)
        return OutputVerdict(blob_path, report, anchor, None)

    verdicts: dict[str, OutputVerdict] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for verdict in pool.map(one, outputs):
            verdicts[verdict.blob_path] = verdict
            if on_done is not None:
                on_done(verdict)
    known = {r.run_id for r in runs}
    fleet_runs = {run.run_id for v in verdicts.values() if v.report for run in v.report.runs}
    return FleetVerdict(
        store.container,
        prefix,
        tuple(verdicts[o] for o in outputs),
        shown,
        len(fleet_runs & known),
        time.monotonic() - started,
    )


def survey_outputs(
    store: Store,
    outputs: Sequence[str],
    runs: Sequence[LandscapeRun],
    *,
    lease_duration: timedelta,
    now: datetime | None = None,
    workers: int = 4,
) -> list[tuple[str, list[RunState], list[str]]]:
    """Per output: the states of its runs ELSPETH knows, and the ids of its runs ELSPETH does not."""

    def one(blob_path: str) -> tuple[str, list[RunState], list[str]]:
        report = inspect_output(store, blob_path)
        mine = {r.run_id for r in report.runs}
        states = survey(
            store,
            blob_path,
            [r for r in runs if r.run_id in mine],
            lease_duration=lease_duration,
            now=now,
            report=report,
        )
        known = {s.landscape.run_id for s in states}
        return blob_path, states, [r.run_id for r in report.runs if r.run_id not in known]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, outputs))
