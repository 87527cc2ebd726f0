"""The output's closed choices (core.target) and the protocol's OutputTarget that carries them."""

from __future__ import annotations

import json
from typing import get_args

from elspeth_appendsink import OutputTarget
from elspeth_appendsink.core.target import IfExists, OutputFormat
from elspeth_appendsink.elspeth import options
from elspeth_appendsink.encoders import FORMATS


class TestChoices:
    def test_members_are_their_option_text(self) -> None:
        """A member equals, formats and serialises as the text an option gives: no byte changes."""
        assert IfExists.CONTINUE == "continue" and f"{OutputFormat.JSONL}" == "jsonl"
        assert json.dumps({"if_exists": IfExists.APPEND}) == '{"if_exists": "append"}'

    def test_the_options_accept_exactly_the_core_choices(self) -> None:
        """The options' literal types list the enums' values, in order."""
        assert get_args(options.OutputFormat) == tuple(OutputFormat)
        assert get_args(options.ExistingBlobPolicy) == tuple(IfExists)

    def test_every_format_has_an_encoder(self) -> None:
        """The encoder registry knows each format, in the same order."""
        assert tuple(OutputFormat) == FORMATS


class TestOutputTarget:
    def test_defaults_are_members(self) -> None:
        """An OutputTarget built without if_exists fails on an existing output, as an enum member."""
        target = OutputTarget("c", "a.csv", "run-1", OutputFormat.CSV, "digest")
        assert target.if_exists is IfExists.FAIL and target.manifest == "a.csv.manifest/run-1"

    def test_it_is_importable_where_it_was(self) -> None:
        """protocol.writer still re-exports OutputTarget (its home is protocol.target)."""
        from elspeth_appendsink.protocol import target, writer

        assert writer.OutputTarget is target.OutputTarget is OutputTarget
