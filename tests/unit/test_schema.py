"""The schema option, parsed as ELSPETH's SchemaConfig.from_dict does, and the strict row model."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from elspeth_appendsink.elspeth.schema import FieldDefinition, RowSchema
from elspeth_appendsink.encoders.base import SchemaSpec
from elspeth_appendsink.errors import ConfigError


def _parse_error(options: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        RowSchema.from_dict(options)
    assert info.value.option == "schema"
    return info.value


class TestFieldSpecs:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("id: int", FieldDefinition("id", "int", True)),
            ("score: float?", FieldDefinition("score", "float", False)),
            ("  name:str  ", FieldDefinition("name", "str", True)),
            ({"flag": "bool?"}, FieldDefinition("flag", "bool", False)),
            ({"name": "x", "type": "any", "required": False}, FieldDefinition("x", "any", False)),
            ({"name": "x", "type": "str", "required": True}, FieldDefinition("x", "str", True)),
        ],
    )
    def test_every_spec_form_parses(self, spec: Any, expected: FieldDefinition) -> None:
        """Strings, single-key mappings and round-trip mappings give the same definitions."""
        schema = RowSchema.from_dict({"mode": "fixed", "fields": [spec]})
        assert schema.fields == (expected,)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("id: integer", "Unknown type 'integer'"),
            ("user-id: int", "Use 'user_id' instead"),
            ("1id: int", "cannot start with a digit"),
            ("id int", "Expected format"),
            ({"a": "int", "b": "str"}, "dict with 2 keys"),
            ({"a": 1}, "keys and values must be strings"),
            ({"name": "x", "type": "int"}, "'required' key is missing"),
            ({"name": "x", "type": "int", "required": "yes"}, "'required' must be a bool"),
            ({"name": 1, "type": "int", "required": True}, "'name' must be a string"),
            (42, "got int"),
        ],
    )
    def test_bad_specs_are_refused_with_elspeth_messages(self, spec: Any, message: str) -> None:
        """Each malformed field spec fails with the message ELSPETH gives for it."""
        assert message in str(_parse_error({"mode": "fixed", "fields": [spec]}))


class TestModes:
    def test_mode_is_required(self) -> None:
        """A schema without mode is refused."""
        assert "'mode' is required" in str(_parse_error({"fields": ["id: int"]}))

    @pytest.mark.parametrize("mode", ["strict", "free", "dynamic", None])
    def test_unknown_modes_are_refused(self, mode: Any) -> None:
        """Only fixed, flexible and observed exist (old names included)."""
        message = str(_parse_error({"mode": mode, "fields": ["id: int"]}))
        assert "fixed" in message and "flexible" in message and "observed" in message

    @pytest.mark.parametrize("fields", [None, []])
    def test_observed_needs_no_fields(self, fields: Any) -> None:
        """Observed accepts a missing, null or empty field list, and declares nothing."""
        options: dict[str, Any] = {"mode": "observed"}
        if fields is not None:
            options["fields"] = fields
        schema = RowSchema.from_dict(options)
        assert schema.is_observed and schema.field_names == () and schema.allows_extra_fields

    def test_observed_refuses_fields(self) -> None:
        """An observed schema cannot also declare fields."""
        assert "cannot have explicit field" in str(_parse_error({"mode": "observed", "fields": ["id: int"]}))

    @pytest.mark.parametrize("mode", ["fixed", "flexible"])
    def test_explicit_modes_need_fields(self, mode: str) -> None:
        """fixed/flexible need a non-empty list under 'fields'."""
        assert "'fields' key is required" in str(_parse_error({"mode": mode}))
        assert "at least one field" in str(_parse_error({"mode": mode, "fields": []}))
        assert "must be a list" in str(_parse_error({"mode": mode, "fields": "id: int"}))

    def test_duplicate_names_are_refused(self) -> None:
        """A field declared twice is an error naming it."""
        message = str(_parse_error({"mode": "fixed", "fields": ["id: int", {"id": "str"}]}))
        assert "Duplicate field names in schema: id" in message

    def test_non_mapping_is_refused(self) -> None:
        """The schema option must be a mapping."""
        assert "must be a dict" in str(_parse_error(["mode", "observed"]))

    def test_extra_fields_follow_the_mode(self) -> None:
        """Only fixed forbids fields beyond the declared ones."""
        fixed = RowSchema.from_dict({"mode": "fixed", "fields": ["a: int"]})
        flexible = RowSchema.from_dict({"mode": "flexible", "fields": ["a: int"]})
        assert not fixed.allows_extra_fields and flexible.allows_extra_fields

    def test_unknown_keys_are_ignored_as_in_elspeth(self) -> None:
        """Keys ELSPETH does not read are ignored, and kept in the configured options."""
        schema = RowSchema.from_dict({"mode": "observed", "comment": "hi"})
        assert schema.options() == {"mode": "observed", "comment": "hi"}


class TestContractFields:
    def test_required_fields_is_declared_required_plus_explicit(self) -> None:
        """required_fields() = required declared fields plus the required_fields list."""
        schema = RowSchema.from_dict(
            {"mode": "flexible", "fields": ["a: int", "b: str?", "c: str?"], "required_fields": ["b"]}
        )
        assert schema.required_fields() == frozenset({"a", "b"})

    def test_observed_required_fields_come_from_the_list(self) -> None:
        """An observed schema requires only what required_fields names."""
        schema = RowSchema.from_dict({"mode": "observed", "required_fields": ["id"]})
        assert schema.required_fields() == frozenset({"id"})
        assert RowSchema.from_dict({"mode": "observed"}).required_fields() == frozenset()

    @pytest.mark.parametrize("key", ["guaranteed_fields", "required_fields", "audit_fields"])
    def test_contract_lists_must_be_declared(self, key: str) -> None:
        """For explicit schemas, contract lists are subsets of the declared names."""
        message = str(_parse_error({"mode": "fixed", "fields": ["a: int"], key: ["a", "zz"]}))
        assert f"'{key}' contains fields not declared in schema: zz" in message

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("a", "must be a list"),
            ([1], "must be a string"),
            ([" "], "cannot be empty"),
            (["a-b"], "valid Python identifier"),
            (["a", "a"], "Duplicate field names in 'required_fields': a"),
        ],
    )
    def test_contract_lists_are_name_lists(self, value: Any, message: str) -> None:
        """Contract lists hold unique identifier strings."""
        assert message in str(_parse_error({"mode": "observed", "required_fields": value}))

    def test_empty_contract_list_means_unset(self) -> None:
        """An empty list is the same as no list, as in ELSPETH."""
        schema = RowSchema.from_dict({"mode": "observed", "guaranteed_fields": []})
        assert schema.guaranteed_fields is None


class TestSerialisation:
    def test_to_dict_round_trips(self) -> None:
        """from_dict(to_dict()) gives an equal schema, as ELSPETH's round-trip form promises."""
        schema = RowSchema.from_dict(
            {
                "mode": "flexible",
                "fields": ["a: int", "b: float?"],
                "guaranteed_fields": ["a"],
                "audit_fields": ["b"],
            }
        )
        assert RowSchema.from_dict(schema.to_dict()) == schema

    def test_options_are_a_fresh_copy_of_the_configured_dict(self) -> None:
        """Mutating the input or the returned copy changes nothing inside the schema."""
        raw: dict[str, Any] = {"mode": "fixed", "fields": ["a: int"]}
        schema = RowSchema.from_dict(raw)
        raw["fields"].append("b: int")
        copy = schema.options()
        copy["fields"].append("c: int")
        assert schema.options() == {"mode": "fixed", "fields": ["a: int"]}
        assert schema.field_names == ("a",)

    def test_is_a_schema_spec(self) -> None:
        """A RowSchema is what encoders take as their SchemaSpec."""
        spec: SchemaSpec = RowSchema.from_dict({"mode": "fixed", "fields": ["a: int", "b: str"]})
        assert spec.mode == "fixed" and spec.field_names == ("a", "b")


class TestRowModel:
    @pytest.fixture(name="model")
    def _model(self) -> Any:
        schema = RowSchema.from_dict(
            {"mode": "fixed", "fields": ["i: int", "f: float", "b: bool", "s: str", "x: any", "o: int?"]}
        )
        return schema.build_row_model("Row")

    def _valid(self, **overrides: Any) -> dict[str, Any]:
        return {"i": 1, "f": 1.5, "b": True, "s": "a", "x": object(), **overrides}

    def test_valid_row_passes_and_optional_defaults_to_none(self, model: Any) -> None:
        """A row with every required field validates; optional fields default to None."""
        row = model.model_validate(self._valid())
        assert row.i == 1 and row.o is None

    @pytest.mark.parametrize(
        "overrides",
        [
            {"i": "1"},
            {"i": True},
            {"i": 1.0},
            {"b": 1},
            {"b": "true"},
            {"s": 1},
            {"f": "1.5"},
            {"f": math.nan},
            {"f": math.inf},
        ],
    )
    def test_no_coercion(self, model: Any, overrides: dict[str, Any]) -> None:
        """Strict types: '1' is not an int, True is not an int, 1 is not a bool; floats are finite."""
        with pytest.raises(ValidationError):
            model.model_validate(self._valid(**overrides))

    def test_float_accepts_int(self, model: Any) -> None:
        """An int is a valid float value (pydantic strict semantics, as ELSPETH)."""
        assert model.model_validate(self._valid(f=2)).f == 2

    def test_fixed_forbids_extra_and_missing(self, model: Any) -> None:
        """Fixed mode refuses undeclared fields and missing required ones."""
        with pytest.raises(ValidationError):
            model.model_validate(self._valid(extra=1))
        row = self._valid()
        del row["i"]
        with pytest.raises(ValidationError):
            model.model_validate(row)

    def test_flexible_allows_extra(self) -> None:
        """Flexible mode keeps fields beyond the declared ones."""
        model = RowSchema.from_dict({"mode": "flexible", "fields": ["a: int"]}).build_row_model("Row")
        assert model.model_validate({"a": 1, "more": "x"}).model_dump() == {"a": 1, "more": "x"}

    def test_observed_accepts_anything(self) -> None:
        """Observed mode validates any mapping."""
        model = RowSchema.from_dict({"mode": "observed"}).build_row_model("Row")
        assert model.model_validate({"q": [1], "r": None}).model_dump() == {"q": [1], "r": None}

    @pytest.mark.parametrize("name", ["_private", "model_config", "json", "schema", "copy"])
    def test_names_pydantic_reserves_still_validate(self, name: str) -> None:
        """Fields named like pydantic internals are validated under their own name."""
        schema = RowSchema.from_dict({"mode": "fixed", "fields": [f"{name}: int"]})
        model = schema.build_row_model("Row")
        assert model.model_validate({name: 3}).model_dump(by_alias=True) == {name: 3}
        with pytest.raises(ValidationError):
            model.model_validate({name: "3"})
