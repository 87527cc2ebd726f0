"""The closed choices an output is configured with: its format and what to do with an existing one.

:class:`OutputFormat` and :class:`IfExists` are ``StrEnum``s, so each member *is* its option
text (``IfExists.CONTINUE == "continue"``, formatted and serialised as ``continue``): the values
recorded in manifests and audit records are the same strings either way. The options
(:mod:`elspeth_appendsink.elspeth.options`) accept exactly these values; the protocol's
:class:`~elspeth_appendsink.protocol.target.OutputTarget` carries them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["IfExists", "OutputFormat"]


class OutputFormat(StrEnum):
    """How rows become bytes (:mod:`elspeth_appendsink.encoders`); each one can be appended to."""

    CSV = "csv"
    JSONL = "jsonl"
    ARROW = "arrow"


class IfExists(StrEnum):
    """What a fresh run does when its output already exists."""

    FAIL = "fail"  # refuse; only an empty blob the run itself created is taken
    APPEND = "append"  # add after whatever is there (another writer's bytes become the base)
    CONTINUE = "continue"  # complete and extend what earlier runs of this sink wrote
