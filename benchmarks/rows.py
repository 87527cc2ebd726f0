"""Deterministic benchmark rows: about 200 bytes each as CSV, ELSPETH's value types mixed.

Every row has the same 10 keys: 3 ints, 2 floats (one a 17-significant-digit ``random()``
product, one rounded to 2 decimals), 1 bool, 4 strs, one of which is ``None`` in 30 % of rows.
Some text is non-ASCII and some needs CSV quoting (a comma or a double quote). The same
``seed`` always gives the same rows, and ``make_rows(n)[:k] == make_rows(k)``.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["SCHEMA", "make_rows"]

#: The ``schema`` option the sink is configured with (ELSPETH syntax; ``note`` is optional).
SCHEMA: dict[str, Any] = {
    "mode": "fixed",
    "fields": [
        "id: int",
        "customer: str",
        "amount: float",
        "price: float",
        "paid: bool",
        "note: str?",
        "city: str",
        "quantity: int",
        "description: str",
        "created_ms: int",
    ],
}

_CITIES = ("Oslo", "Zürich", "Lisbon", "New York, NY", "Canberra", "São Paulo", 'The "Hague"', "Kyiv")
_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "naïve",
    "café",
]


def _pool(rnd: random.Random, count: int, low: int, high: int) -> list[str]:
    return [" ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(low, high))) for _ in range(count)]


def make_rows(count: int, seed: int = 20240601) -> list[dict[str, Any]]:
    """``count`` rows, the same for the same seed (about 3-5 s per million rows on a 2-core VM)."""
    rnd = random.Random(seed)
    names = [
        f"{a.title()} {b.title()}"
        for a, b in zip(_pool(rnd, 4096, 1, 1), _pool(rnd, 4096, 1, 2), strict=True)
    ]
    texts = _pool(rnd, 4096, 14, 20)
    notes = _pool(rnd, 512, 1, 3)
    random_ = rnd.random
    getrandbits = rnd.getrandbits
    rows: list[dict[str, Any]] = []
    append = rows.append
    base_ms = 1_717_200_000_000
    for i in range(count):
        bits = getrandbits(32)
        append(
            {
                "id": i,
                "customer": names[bits & 4095],
                "amount": random_() * 10_000,
                "price": round(random_() * 500, 2),
                "paid": bool(bits & 0x1000),
                "note": None if random_() < 0.3 else notes[(bits >> 13) & 511],
                "city": _CITIES[(bits >> 22) & 7],
                "quantity": (bits >> 25) & 127,
                "description": texts[getrandbits(12)],
                "created_ms": base_ms + i * 37,
            }
        )
    return rows
