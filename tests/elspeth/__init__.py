"""Tests that run real ELSPETH pipelines (skipped where ELSPETH is not importable)."""
