"""elspeth_appendsink: an exactly-once Azure Append Blob sink for ELSPETH."""

__version__ = "0.1.0"
