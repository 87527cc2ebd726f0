"""One model per concept: the sink's ``csv_options`` and ``retry`` are faces of the encoder's
``CsvOptions`` and the storage layer's ``RetrySettings``, with their defaults and their rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from elspeth_appendsink.elspeth import options
from elspeth_appendsink.elspeth.options import SinkConfig
from elspeth_appendsink.encoders import csv
from elspeth_appendsink.errors import ConfigError
from elspeth_appendsink.storage.store import RetrySettings

BASE = {
    "connection_string": "UseDevelopmentStorage=true",
    "container": "out",
    "blob_path": "a.csv",
    "schema": {"mode": "observed"},
}
PAIRS = [(options.CsvOptions, csv.CsvOptions), (options.RetryOptions, RetrySettings)]


def defaults(plain: type[Any]) -> dict[str, Any]:
    return {field.name: field.default for field in dataclasses.fields(plain)}


class TestOneModel:
    @pytest.mark.parametrize(("face", "plain"), PAIRS, ids=["csv_options", "retry"])
    def test_the_option_face_has_the_models_keys_and_defaults(self, face: Any, plain: type[Any]) -> None:
        """Same keys, same order, same defaults: the option cannot drift from what it configures."""
        assert face().model_dump() == defaults(plain)
        assert list(face.model_fields) == list(defaults(plain))

    def test_the_sink_hands_each_layer_its_own_value(self) -> None:
        """csv_options becomes the encoder's CsvOptions, retry the storage layer's RetrySettings."""
        config = SinkConfig.from_options(
            {**BASE, "csv_options": {"delimiter": ";", "line_terminator": "\n"}, "retry": {"total": 2}}
        )
        assert config.csv_options.encoder_options() == csv.CsvOptions(delimiter=";", line_terminator="\n")
        assert config.retry.settings() == RetrySettings(total=2)


class TestOneRuleSet:
    @pytest.mark.parametrize(
        "values",
        [
            {"delimiter": "\x00"},
            {"delimiter": ";;"},
            {"delimiter": '"'},
            {"encoding": "base64"},
            {"encoding": "utf-16"},
            {"line_terminator": "\r"},
        ],
        ids=["nul-delimiter", "two-characters", "quote", "bytes-codec", "bom-codec", "bare-cr"],
    )
    def test_the_sink_and_the_encoder_refuse_alike(self, values: dict[str, Any]) -> None:
        """A CSV rule is stated once: the sink's options refuse at construction, with the encoder's words.

        (A NUL delimiter used to pass the options and fail at the first write.)
        """
        with pytest.raises(ConfigError) as plain:
            csv.CsvOptions(**values)
        with pytest.raises(ConfigError) as face:
            SinkConfig.from_options({**BASE, "csv_options": values})
        key = next(iter(values))
        assert plain.value.option == f"csv_options.{key}" and face.value.option == "csv_options"
        said = str(plain.value).removeprefix(f"option 'csv_options.{key}': ")
        assert str(face.value) == f"option 'csv_options': {key}: {said}"
