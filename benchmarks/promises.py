"""What the sink's promises cost in CPU, next to the serialisation a user writes without them.

``python -m benchmarks.promises [--rows 200000] [--repeat 5]`` times, per format and per million
rows of the suite's rows (``rows.py``), in the slices the writer encodes (about 1 MiB each):

* ``user``: ``adlfs_user``'s serialisation (``strategies.user_serialiser``: ``from_pylist`` +
  ``write_csv``, one ``RecordBatch.serialize`` per slice, or ``orjson`` lines), which checks
  nothing and spells CSV as pyarrow does;
* ``sink encoder``: what the writer calls per slice (``encode_packed``; for Arrow also
  ``block`` from the planned parts, since a user's serialisation includes the message);
* steps of the sink encoder that exist only for a promise, each timed alone on the same slices
  with its inputs prepared beforehand: the exact-type check of every value (CSV, Arrow: an
  ``int`` column never takes ``2.0`` or ``True``; the columns are extracted beforehand, as the
  kernels need them anyway), the declared-fields check (``fixed`` schemas: no field is dropped;
  CSV and Arrow count each row's keys, the extraction proves the rest; JSONL takes the batch's
  key union), JSONL's NaN/Infinity check (orjson would write ``null``);
* ``sha256 x2``: every output byte hashed twice, once for its block's intent (recovery and
  ``verify`` prove a block against it) and once for the artifact's ``content_hash`` (the sha256
  of the whole output, which ELSPETH records); the writer runs the second in a helper thread.

CPU seconds (``time.process_time``), best of ``--repeat``; each run's output stays alive until the
next run ends (see ``benchmarks.encoders.measure`` for why). Writes ``results/promises.md``.
The steps are part of ``sink encoder``, not additions to it; ``sink encoder - user`` is the
encoder's whole extra cost, and the steps say how much of it a promise accounts for.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import is_
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from benchmarks.encoders import _sliced, measure
from benchmarks.report import machine_info
from benchmarks.rows import SCHEMA, make_rows
from benchmarks.strategies import user_serialiser
from elspeth_appendsink.elspeth.schema import RowSchema
from elspeth_appendsink.encoders import create_encoder
from elspeth_appendsink.encoders.base import Packed
from elspeth_appendsink.encoders.csv import declared_values, reject_undeclared
from elspeth_appendsink.encoders.jsonl import _rows_holding_null

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
Rows = list[dict[str, Any]]
Step = Callable[[Rows], list[bytes]]
# rows per slice: what the writer's ~1 MiB slices hold of these rows (CSV ~200 B, JSONL ~300 B)
SLICE = {"csv": 5000, "jsonl": 3500, "arrow": 5000}


def _over(prepared: Sequence[Any], step: Callable[[Any], Any]) -> Step:
    """A step over inputs prepared before timing (the rows handed to it are ignored). Its
    results are dropped as they come: a check or a hash leaves nothing whose memory matters."""
    return lambda _rows: [b"" for _ in map(step, prepared)]


def steps(fmt: str, rows: Rows) -> list[tuple[str, Step]]:
    """``(label, run over all rows)`` for one format, in the order of the table."""
    encoder = create_encoder(fmt, schema=RowSchema.from_dict(SCHEMA), first_rows=rows[:64])
    user = user_serialiser(fmt)
    columns = list(rows[0])
    allowed = frozenset(columns)
    slices = [rows[start : start + SLICE[fmt]] for start in range(0, len(rows), SLICE[fmt])]

    def sink(batch: Rows) -> bytes:
        packed = encoder.encode_packed(batch)
        if fmt == "arrow":
            return encoder.block([packed.part(0, len(packed))], batch)
        return packed.data

    def exact_types(values: list[list[Any]]) -> list[set[type]]:
        return [set(map(type, column)) for column in values]

    def nan_check(item: tuple[Rows, Packed]) -> int:
        batch, packed = item
        suspects, _ = _rows_holding_null(packed)
        held = [batch[index] for index in suspects]
        return sum(map(is_, chain.from_iterable(map(dict.values, held)), repeat(None)))

    running = hashlib.sha256()

    def hash_twice(block: bytes) -> bytes:
        hashlib.sha256(block).digest()  # the block's intent
        running.update(block)  # the output's content_hash
        return b""

    out: list[tuple[str, Step]] = [
        ("user", _sliced(lambda batch: [user(batch, False)], SLICE[fmt])),
        ("sink encoder", _sliced(lambda batch: [sink(batch)], SLICE[fmt])),
    ]
    if fmt == "jsonl":  # the batch's key union, then the NaN check on encoded slices
        packs = [(batch, encoder.encode_packed(batch)) for batch in slices]
        out.append(("declared-fields check", _over(slices, lambda b: reject_undeclared(b, allowed, columns))))
        out.append(("NaN/Infinity check", _over(packs, nan_check)))
    else:  # each row's key count (the column extraction proves the rest), then the value types
        extracted = [declared_values(batch, allowed, columns) for batch in slices]
        out.append(("declared-fields check", _over(slices, lambda b: set(map(len, b)) == {len(columns)})))
        out.append(("exact-type check", _over(extracted, exact_types)))
    out.append(("sha256 x2 (intents + content_hash)", _over([sink(batch) for batch in slices], hash_twice)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.promises", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "promises.md")
    args = parser.parse_args(argv)
    rows = make_rows(args.rows)
    info = machine_info()
    per_million = 1e6 / len(rows)
    lines = [
        "# What the promises cost (CPU seconds per million rows, no Azure)",
        "",
        f"`python -m benchmarks.promises --rows {args.rows} --repeat {args.repeat}` at git "
        f"{info['git_commit']}, {datetime.now(UTC).isoformat(timespec='seconds')}: {info['cpu_model']}, "
        f"Python {info['python']}, orjson {orjson.__version__}, pyarrow {pa.__version__}. Best of the "
        "repeats; the module docstring says what each line times.",
        "",
        "| format | step | CPU s / 1M rows |",
        "|---|---|---:|",
    ]
    for fmt in ("csv", "jsonl", "arrow"):
        timed: dict[str, float] = {}
        for label, run in steps(fmt, rows):
            cpu, _, _ = measure(run, rows, args.repeat)
            timed[label] = cpu * per_million
            print(f"{fmt:6s} {label:40s} {timed[label]:6.2f} s/1M rows", flush=True)
        items = list(timed.items())  # user, sink encoder, the promise steps, the hashes
        lines += [f"| {fmt} | {label} | {seconds:.2f} |" for label, seconds in items[:2]]
        lines.append(f"| {fmt} | **sink encoder - user** | **{items[1][1] - items[0][1]:.2f}** |")
        lines += [f"| {fmt} | of which: {label} | {seconds:.2f} |" for label, seconds in items[2:-1]]
        lines.append(f"| {fmt} | {items[-1][0]}, besides the encoder | {items[-1][1]:.2f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
