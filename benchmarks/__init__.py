"""Benchmarks for elspeth_appendsink: run ``python -m benchmarks`` (see ``benchmarks/suite.py``)."""
