"""Encoder throughput: candidate ways to turn rows into CSV / JSONL / Arrow bytes, no Azure needed.

Run ``python -m benchmarks.encoders [--rows 200000] [--repeat 5] [--slice 4096]``. For every
candidate it prints rows/s, MB/s (output bytes per CPU second) and seconds per million rows
(CPU and wall), each the best of ``--repeat`` runs. Candidates marked ``*`` are the ones the
package uses. ``--slice`` also times them on slices of that many rows, which is how
``AppendWriter`` calls ``encode_packed`` (its slices aim at 1 MiB: ~5,000 such rows).

Rows are generated deterministically: 9 fields, about 200 bytes each as JSON. They hold
2 ints, 2 floats (one with 17 significant digits, one with 3 decimals), a bool, and 4 strs,
one of which is None in 30% of rows. Some text is non-ASCII, and some contains the delimiter.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa

from elspeth_appendsink.core.identity import IdentityScheme
from elspeth_appendsink.encoders import CsvEncoder, create_encoder

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class _Observed:
    mode: str = "observed"
    field_names: tuple[str, ...] = ()


def make_rows(count: int, seed: int = 7) -> Rows:
    """``count`` rows of mixed ELSPETH types, the same for the same seed."""
    rnd = random.Random(seed)
    letters = "abcdefghij klmnopqrstuvwxyzé"
    cities = ["Oslo", "Zürich", "Lisbon", "New York, NY", "Canberra"]
    return [
        {
            "id": i,
            "name": "".join(rnd.choice(letters) for _ in range(rnd.randint(10, 40))),
            "amount": rnd.random() * 1000,
            "flag": rnd.random() < 0.5,
            "note": None if rnd.random() < 0.3 else f"note {i}",
            "city": rnd.choice(cities),
            "score": round(rnd.random(), 3),
            "count": rnd.randint(0, 10**6),
            "description": "lorem ipsum " * rnd.randint(2, 6),
        }
        for i in range(count)
    ]


class _Lines:
    """A file-like collector: the csv module calls ``write`` once per row."""

    __slots__ = ("write",)

    def __init__(self, lines: list[str]) -> None:
        self.write = lines.append


def csv_stdlib_writer(rows: Rows) -> list[bytes]:
    columns = list(rows[0])
    lines: list[str] = []
    csv.writer(_Lines(lines), lineterminator="\r\n").writerows(map(itemgetter(*columns), rows))
    return list(map(str.encode, lines))


def csv_stdlib_dictwriter(rows: Rows) -> list[bytes]:
    lines: list[str] = []
    csv.DictWriter(_Lines(lines), list(rows[0]), lineterminator="\r\n").writerows(rows)
    return [line.encode("utf-8") for line in lines]


def jsonl_json_dumps(rows: Rows) -> list[bytes]:
    return [
        (json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()
        for row in rows
    ]


def jsonl_json_encoder(rows: Rows) -> list[bytes]:
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    return [(encode(row) + "\n").encode() for row in rows]


def jsonl_orjson_bare(rows: Rows) -> list[bytes]:
    return list(map(orjson.dumps, rows, repeat(None), repeat(orjson.OPT_APPEND_NEWLINE)))


def arrow_from_pylist_bare(rows: Rows) -> list[bytes]:
    return [pa.RecordBatch.from_pylist(rows).serialize().to_pybytes()]


def _package(fmt: str, rows: Rows, *, blocks: bool, encode: bool = True) -> Callable[[Rows], list[bytes]]:
    """The package's encoder as the writer calls it: ``encode_packed`` (then ``block``)."""
    encoder = create_encoder(fmt, schema=_Observed(), first_rows=rows[:1000])
    pre = encoder.encode_packed(rows) if not encode else None

    def run(batch: Rows) -> list[bytes]:
        packed = encoder.encode_packed(batch) if pre is None else pre
        # a block from the slice's planned parts, as the writer cuts it
        return [encoder.block([packed.part(0, len(packed))], batch)] if blocks else [packed.data]

    return run


def csv_python_path(rows: Rows) -> list[bytes]:
    """CsvEncoder's column-by-column Python path (the reference the kernels must match)."""
    encoder = create_encoder("csv", schema=_Observed(), first_rows=rows[:1000])
    assert isinstance(encoder, CsvEncoder)
    return encoder._encode_python(rows)


def _content_digests(rows: Rows) -> Callable[[Rows], list[bytes]]:
    """Per-row identity digests of pre-encoded CSV rows (8-byte BLAKE2b each): what writing cost
    per row while manifests stored digests, and what recovery now spends on the rows it matches."""
    encoder = create_encoder("csv", schema=_Observed(), first_rows=rows[:1000])
    packed = encoder.encode_packed(rows)

    def run(batch: Rows) -> list[bytes]:
        return [IdentityScheme(None).digests(batch, packed)]

    return run


def _sliced(run: Callable[[Rows], list[bytes]], size: int) -> Callable[[Rows], list[bytes]]:
    def sliced(rows: Rows) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(rows), size):
            out.extend(run(rows[start : start + size]))
        return out

    return sliced


def measure(run: Callable[[Rows], list[bytes]], rows: Rows, repeats: int) -> tuple[float, float, int]:
    """Best CPU time and best wall time over ``repeats`` runs, and the output size in bytes.

    CPU time (``time.process_time``) is the headline because the encoders are single-threaded.
    On a shared machine it moves far less than wall time when other processes compete.

    Each run's output stays alive until the next run has finished. If it is freed first,
    CPython hands the emptied arenas back to the OS, and the next run then pays a page fault
    for every fresh page. On the 2-vCPU VM these numbers come from, that made the same run
    vary 3-4x (150-600 ms for orjson on 200k rows).
    """
    best_cpu = best_wall = float("inf")
    size, previous = 0, None
    for _ in range(repeats):
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        out = run(rows)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
        size, previous = sum(map(len, out)), out
    del previous
    return best_cpu, best_wall, size


def candidates(rows: Rows, slice_size: int) -> list[tuple[str, Callable[[Rows], list[bytes]]]]:
    """(label, callable) pairs; ``*`` marks what the package uses."""
    chosen = [
        ("* csv: CsvEncoder.encode_packed (Arrow kernels)", _package("csv", rows, blocks=False)),
        ("* jsonl: JsonlEncoder.encode_packed", _package("jsonl", rows, blocks=False)),
        ("* arrow: ArrowEncoder.encode_packed", _package("arrow", rows, blocks=False)),
        ("* arrow: ArrowEncoder encode + block", _package("arrow", rows, blocks=True)),
    ]
    block_only = (
        "* arrow: ArrowEncoder.block (record batch)",
        _package("arrow", rows, blocks=True, encode=False),
    )
    out: list[tuple[str, Callable[[Rows], list[bytes]]]] = [
        ("  csv: stdlib csv.writer, list collector", csv_stdlib_writer),
        ("  csv: stdlib csv.DictWriter", csv_stdlib_dictwriter),
        ("  csv: CsvEncoder Python path (columnar)", csv_python_path),
        ("  identity digests only (csv rows pre-encoded)", _content_digests(rows)),
        ("  jsonl: json.dumps per row", jsonl_json_dumps),
        ("  jsonl: JSONEncoder.encode per row", jsonl_json_encoder),
        ("  jsonl: orjson.dumps per row, no checks", jsonl_orjson_bare),
        ("  arrow: RecordBatch.from_pylist, no checks", arrow_from_pylist_bare),
        *chosen,
        block_only,
    ]
    if slice_size:
        out += [(f"{label}, {slice_size}-row slices", _sliced(run, slice_size)) for label, run in chosen]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slice", type=int, default=5000, help="also time in slices of N rows (0: off)")
    args = parser.parse_args(argv)
    rows = make_rows(args.rows)
    json_size = sum(map(len, jsonl_orjson_bare(rows))) / len(rows)
    print(
        f"{len(rows)} rows, {json_size:.0f} bytes/row as JSON; python {sys.version.split()[0]}, "
        f"orjson {orjson.__version__}, pyarrow {pa.__version__}; best of {args.repeat}"
    )
    print(f"{'candidate':58s} {'rows/s':>10s} {'MB/s':>7s} {'s/1M rows':>9s} {'wall s/1M':>9s}")
    for label, run in candidates(rows, args.slice):
        cpu, wall, size = measure(run, rows, args.repeat)
        per_million = 1e6 / len(rows)
        print(
            f"{label:58s} {len(rows) / cpu:10,.0f} {size / cpu / 1e6:7.1f} "
            f"{cpu * per_million:9.2f} {wall * per_million:9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
