"""The Arrow-kernel CSV path writes exactly the Python path's bytes, and leaves errors to it."""

from __future__ import annotations

import math
import random
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elspeth_appendsink.encoders import CsvEncoder, CsvOptions, csv_kernels
from elspeth_appendsink.encoders import csv as csv_module
from elspeth_appendsink.errors import UnencodableRow
from tests.unit.test_encoders_csv import stdlib_lines

MANY = csv_module._KERNEL_MIN_ROWS  # from this row count on, the encoder uses the kernels
FIELDS = ("i", "f", "b", "s", "t")

text = st.text(alphabet=st.sampled_from(list('ab ,;"\r\n\t|é€\u2028.e1')), max_size=8)
per_type = {
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "big": st.integers(min_value=2**63, max_value=2**80),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "bool": st.booleans(),
    "str": text,
}


@st.composite
def typed_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """MANY+ rows whose columns each hold one type (kernel territory), some None, some mixed."""
    kinds = {field: draw(st.sampled_from([*per_type, "mixed"])) for field in FIELDS}
    distinct = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for _ in range(distinct):
        row: dict[str, Any] = {}
        for field, kind in kinds.items():
            values = per_type[kind] if kind != "mixed" else st.one_of(*per_type.values())
            row[field] = draw(st.one_of(st.none(), values) if draw(st.booleans()) else values)
        rows.append(row)
    return [rows[i % distinct] for i in range(MANY + draw(st.integers(min_value=0, max_value=50)))]


def fixed_encoder(**options: Any) -> CsvEncoder:
    return CsvEncoder(FIELDS, CsvOptions(**options))


def python_bytes(encoder: CsvEncoder, rows: list[dict[str, Any]]) -> bytes:
    return b"".join(encoder._encode_python(rows))


class TestSameBytes:
    @settings(max_examples=150)
    @given(
        rows=typed_batches(),
        delimiter=st.sampled_from([",", ";", "\t", "|", ".", "e", "1", "§"]),
        terminator=st.sampled_from(["\r\n", "\n"]),
    )
    def test_kernel_lines_equal_the_python_path(
        self, rows: list[dict[str, Any]], delimiter: str, terminator: str
    ) -> None:
        """Whatever the types, delimiter and terminator, a large batch encodes to the same bytes."""
        encoder = fixed_encoder(delimiter=delimiter, line_terminator=terminator)
        packed = encoder.encode_packed(rows)
        assert packed.data == python_bytes(encoder, rows)
        assert packed.rows() == encoder._encode_python(rows)

    @settings(max_examples=60)
    @given(rows=typed_batches())
    def test_kernel_lines_equal_the_stdlib_csv_writer(self, rows: list[dict[str, Any]]) -> None:
        """With CRLF, the kernels' bytes are what ``csv.writer`` writes, row by row."""
        encoder = fixed_encoder()
        assert encoder.encode(rows) == stdlib_lines(encoder, rows)

    def test_floats_across_every_magnitude_are_spelled_like_repr(self) -> None:
        """200,000 doubles from 1e-320 to 1e308, both signs, whole and not: text equals repr."""
        rng = random.Random(7)
        values = [
            rng.choice([-1.0, 1.0]) * rng.random() * 10.0 ** rng.randint(-320, 308) for _ in range(150_000)
        ]
        values += [float(rng.randint(-(10**17), 10**17)) for _ in range(25_000)]
        values += [round(rng.random() * 1000, rng.randint(0, 6)) for _ in range(25_000)]
        values += [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e-4, 1e10, 9999999999.999998]
        rows = [{"i": 1, "f": value} for value in values]
        encoder = CsvEncoder(("i", "f"))
        expected = [f"1,{value!r}\r\n".encode() for value in values]
        assert encoder.encode(rows) == expected

    def test_a_pyarrow_that_spells_floats_differently_is_not_trusted(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the self-check fails, floats take the Python path and the bytes stay the same."""
        monkeypatch.setattr(csv_kernels, "floats_agree", lambda: False)
        rows = [{"i": n, "f": n / 7} for n in range(MANY)]
        encoder = CsvEncoder(("i", "f"))
        assert encoder.encode(rows) == [f"{n},{n / 7!r}\r\n".encode() for n in range(MANY)]

    def test_the_self_check_holds_for_the_installed_pyarrow(self) -> None:
        """The pinned pyarrow passes the float self-check (else the float kernel is never used)."""
        assert csv_kernels.floats_agree()

    def test_single_type_columns_take_the_kernels(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """int, float, bool and str columns never reach the Python path; a date column does."""
        asked: list[int] = []
        real = csv_kernels.kernel_lines

        def spy(columns: Any, delimiter: str, terminator: str, plain: bool, python_column: Any) -> Any:
            def recorded(index: int) -> list[str]:
                asked.append(index)
                return list(python_column(index))

            return real(columns, delimiter, terminator, plain, recorded)

        monkeypatch.setattr(csv_module, "kernel_lines", spy)
        encoder = CsvEncoder(("i", "f", "b", "s", "d"))
        rows = [
            {"i": n, "f": n + 0.5, "b": n % 2 == 0, "s": f'x,"{n}"', "d": date(2024, 1, 1 + n % 28)}
            for n in range(MANY)
        ]
        assert encoder.encode_packed(rows).data == python_bytes(encoder, rows)
        assert asked == [4]


class TestErrorsStayWithThePythonPath:
    @pytest.mark.parametrize("bad", [b"bytes", {"nested": 1}, object(), "\udc80"], ids=repr)
    def test_a_bad_cell_deep_in_a_large_batch_names_its_row(self, bad: Any) -> None:
        """The error (row index, field) is the Python path's, as for a small batch."""
        rows = [{"i": n, "f": 0.5, "b": True, "s": "x", "t": "y"} for n in range(MANY)]
        rows[271] = {**rows[271], "t": bad}
        with pytest.raises(UnencodableRow) as info:
            fixed_encoder().encode(rows)
        assert info.value.row_index == 271
        assert "'t'" in str(info.value)


def test_packed_offsets_are_row_boundaries() -> None:
    """Offsets start at 0, end at the data length, and cut it into the rows' own lines."""
    rows = [{"i": n, "f": n * 1.25, "b": None, "s": "é\n" * (n % 3), "t": ""} for n in range(MANY)]
    packed = fixed_encoder().encode_packed(rows)
    assert packed.offsets[0] == 0 and packed.offsets[-1] == len(packed.data) and len(packed) == MANY
    assert packed.rows() == fixed_encoder()._encode_python(rows)
    assert packed.span(10, 20).tobytes() == b"".join(packed.rows()[10:20])
