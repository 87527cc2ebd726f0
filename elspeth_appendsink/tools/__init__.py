"""Operator tools: the ``elspeth-appendsink`` command (verify, inspect, unlock) and ``make demo``."""
