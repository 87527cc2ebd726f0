"""The ``schema`` option without ELSPETH: parsing it, and the strict row model built from it.

ELSPETH is not importable everywhere this package runs, so :class:`RowSchema` reimplements what
a sink needs of ELSPETH's ``SchemaConfig`` (``elspeth.contracts.schema``) and of
``create_schema_from_config(..., allow_coercion=False)``, with the same rules and messages:

* ``mode`` is required: ``fixed`` (exactly the declared fields), ``flexible`` (at least them)
  or ``observed`` (anything; no field list, ``None`` or ``[]`` only);
* ``fields`` (fixed/flexible: at least one) holds ``"name: type"``, ``"name: type?"`` (optional),
  a single-key mapping ``{name: type}``, or the round-trip mapping ``{name, type, required}``;
  types are ``str``, ``int``, ``float``, ``bool``, ``any``; names are Python identifiers and
  unique;
* ``guaranteed_fields``, ``required_fields``, ``audit_fields`` are optional name lists, subsets
  of the declared names for explicit schemas; other keys are ignored, as ELSPETH ignores them.

A :class:`RowSchema` satisfies :class:`~elspeth_appendsink.encoders.base.SchemaSpec`. Every
problem raises :class:`~elspeth_appendsink.errors.ConfigError` with option ``schema``.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from elspeth_appendsink.errors import ConfigError

if TYPE_CHECKING:
    from elspeth_appendsink.encoders.base import SchemaSpec

__all__ = ["FIELD_TYPES", "SCHEMA_MODES", "FieldDefinition", "FieldType", "RowSchema", "SchemaMode"]

FieldType = Literal["str", "int", "float", "bool", "any"]
SchemaMode = Literal["fixed", "flexible", "observed"]

FIELD_TYPES: tuple[FieldType, ...] = ("str", "int", "float", "bool", "any")
SCHEMA_MODES: tuple[SchemaMode, ...] = ("fixed", "flexible", "observed")

_FIELD_PATTERN = re.compile(r"^(\w+):\s*(str|int|float|bool|any)(\?)?$")

# As ELSPETH's schema factory: float fields refuse NaN and infinities (canonical JSON cannot hold them).
_FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
_PYTHON_TYPES: dict[str, Any] = {"str": str, "int": int, "float": _FiniteFloat, "bool": bool, "any": Any}


def _error(message: str) -> ConfigError:
    return ConfigError("schema", message)


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """One declared field: its name, type and whether rows must carry it.

    Args:
        name: a Python identifier.
        field_type: ``str``, ``int``, ``float``, ``bool`` or ``any``.
        required: if false, the field may be missing or ``None``.
    """

    name: str
    field_type: FieldType
    required: bool = True

    @classmethod
    def parse(cls, spec: str) -> FieldDefinition:
        """Parse ``"name: type"`` or ``"name: type?"``."""
        spec = spec.strip()
        match = _FIELD_PATTERN.match(spec)
        if not match:
            if ":" in spec:
                name_part, type_part = (part.strip() for part in spec.split(":", 1))
                type_part = type_part.rstrip("?")
                if type_part not in FIELD_TYPES:
                    raise _error(
                        f"Unknown type '{type_part}' in field spec '{spec}'. "
                        f"Supported types: {', '.join(sorted(FIELD_TYPES))}"
                    )
                if not name_part.isidentifier():
                    raise _error(
                        f"Invalid field name '{name_part}' in field spec '{spec}'. Field names must be "
                        "valid Python identifiers (letters, digits, underscores only). "
                        f"Use '{name_part.replace('-', '_').replace('.', '_')}' instead."
                    )
            raise _error(
                f"Invalid field spec '{spec}'. Expected format: 'field_name: type' or 'field_name: type?'"
            )
        name, field_type, optional_marker = match.groups()
        if not name.isidentifier():
            raise _error(
                f"Invalid field name '{name}' in field spec '{spec}'. Field names must be valid "
                "Python identifiers (cannot start with a digit)."
            )
        return cls(name=name, field_type=cast(FieldType, field_type), required=optional_marker is None)

    def to_dict(self) -> dict[str, str | bool]:
        """The round-trip form ``{name, type, required}``."""
        return {"name": self.name, "type": self.field_type, "required": self.required}


def _normalize_field_spec(spec: Any, index: int) -> str:
    """Turn one entry of ``fields`` into the string form ``"name: type[?]"``."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        if "name" in spec and "type" in spec:
            name, type_spec = spec["name"], spec["type"]
            if not isinstance(name, str):
                raise _error(
                    f"Field spec at index {index}: 'name' must be a string, got {type(name).__name__}."
                )
            if not isinstance(type_spec, str):
                raise _error(
                    f"Field spec at index {index}: 'type' must be a string, got {type(type_spec).__name__}."
                )
            if "required" not in spec:
                raise _error(
                    f"Field spec at index {index}: 'required' key is missing. "
                    "Round-trip dict format requires 'name', 'type', and 'required' keys."
                )
            required = spec["required"]
            if type(required) is not bool:
                raise _error(
                    f"Field spec at index {index}: 'required' must be a bool, got "
                    f"{type(required).__name__} ({required!r}). "
                    "Use true/false (YAML) or True/False (Python), not strings."
                )
            return f"{name}: {type_spec}{'' if required else '?'}"
        if len(spec) != 1:
            raise _error(
                f"Field spec at index {index} is a dict with {len(spec)} keys. Expected single-key dict "
                "like {'field_name': 'type'} or a string like 'field_name: type'."
            )
        name, type_spec = next(iter(spec.items()))
        if not isinstance(name, str) or not isinstance(type_spec, str):
            raise _error(
                f"Field spec at index {index}: dict keys and values must be strings, "
                f"got {{{type(name).__name__}: {type(type_spec).__name__}}}."
            )
        return f"{name}: {type_spec}"
    raise _error(
        f"Field spec at index {index} must be a string like 'field_name: type' or a dict like "
        f"{{'field_name': 'type'}}, got {type(spec).__name__}."
    )


def _parse_name_list(value: Any, key: str) -> tuple[str, ...] | None:
    """Parse ``guaranteed_fields`` / ``required_fields`` / ``audit_fields`` (empty list = unset)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise _error(f"'{key}' must be a list of field names, got {type(value).__name__}")
    if not value:
        return None
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _error(f"'{key}[{i}]' must be a string, got {type(item).__name__}")
        name = item.strip()
        if not name:
            raise _error(f"'{key}[{i}]' cannot be empty or whitespace-only")
        if not name.isidentifier():
            raise _error(
                f"'{key}[{i}]' must be a valid Python identifier, got '{name}'. Field names must contain "
                "only letters, digits, and underscores, and cannot start with a digit."
            )
        names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _error(f"Duplicate field names in '{key}': {', '.join(duplicates)}")
    return tuple(names)


def _freeze(value: Any) -> Any:
    """A deep, read-only copy of a JSON-like value (mappings become mapping proxies, lists tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return copy.deepcopy(value)


def _thaw(value: Any) -> Any:
    """The plain ``dict``/``list`` form of a value made by :func:`_freeze`."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return copy.deepcopy(value)


def _non_finite_path(value: Any, path: str = "$") -> str | None:
    """Where in ``value`` a NaN or infinity sits (nested mappings and lists included), if anywhere."""
    if isinstance(value, numbers.Real) and not isinstance(value, int):
        return None if math.isfinite(float(value)) else path
    if isinstance(value, Mapping):
        items: Any = ((f"{path}.{key!s}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _non_finite_path(item, where)
        if found is not None:
            return found
    return None


class _ObservedRow(BaseModel):
    """Base of observed-mode row models: any fields, but no NaN/infinity anywhere (as ELSPETH)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        where = _non_finite_path(data)
        if where is not None:
            raise ValueError(
                f"Non-finite float at {where}. Use null/None for missing values, not NaN/Infinity."
            )
        return data


# Field names pydantic cannot use as attribute names: they are validated through an alias instead.
_RESERVED_ATTRIBUTES = frozenset(dir(BaseModel))


@dataclass(frozen=True)
class RowSchema:
    """The parsed ``schema`` option. Build it with :meth:`from_dict`.

    Attributes:
        mode: ``fixed``, ``flexible`` or ``observed``.
        fields: the declared fields in order (empty when observed).
        guaranteed_fields: names the producer guarantees, or ``None``.
        explicit_required_fields: the ``required_fields`` list as configured, or ``None``.
        audit_fields: names outside the stability contract, or ``None``.
    """

    mode: SchemaMode
    fields: tuple[FieldDefinition, ...] = ()
    guaranteed_fields: tuple[str, ...] | None = None
    explicit_required_fields: tuple[str, ...] | None = None
    audit_fields: tuple[str, ...] | None = None
    _options: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, options: Any) -> RowSchema:
        """Parse the ``schema`` option as ELSPETH's ``SchemaConfig.from_dict`` does.

        Raises:
            ConfigError: option ``schema``, naming the rule broken.
        """
        if not isinstance(options, Mapping):
            raise _error(f"Schema config must be a dict, got {type(options).__name__}")
        guaranteed = _parse_name_list(options.get("guaranteed_fields"), "guaranteed_fields")
        required = _parse_name_list(options.get("required_fields"), "required_fields")
        audit = _parse_name_list(options.get("audit_fields"), "audit_fields")
        if "mode" not in options:
            raise _error("'mode' is required for all schema configs (e.g. 'fixed', 'flexible', 'observed')")
        mode = options["mode"]
        frozen = _freeze(options)
        if mode == "observed":
            fields_value = options.get("fields")
            if fields_value is not None and fields_value != []:
                raise _error(
                    "Observed schemas (mode: observed) cannot have explicit field definitions. "
                    "Use guaranteed_fields/required_fields for contracts instead."
                )
            return cls("observed", (), guaranteed, required, audit, frozen)
        if mode is None:
            raise _error(
                "'mode' key is required in schema config. Use 'mode: observed' (infer types from data), "
                "'mode: fixed' (exactly these fields), or 'mode: flexible' (at least these fields)."
            )
        if mode not in ("fixed", "flexible"):
            raise _error(f"Invalid schema mode '{mode}'. Expected 'fixed', 'flexible', or 'observed'.")
        if "fields" not in options:
            raise _error(
                f"'fields' key is required for mode '{mode}'. Provide explicit field definitions, "
                "or use 'mode: observed' to infer types from data."
            )
        fields_value = options["fields"]
        if not isinstance(fields_value, list | tuple):
            raise _error(f"Schema fields must be a list, got {type(fields_value).__name__}")
        if not fields_value:
            raise _error(
                "Schema must define at least one field for fixed/flexible modes. "
                "Use 'mode: observed' to accept any fields."
            )
        specs = [_normalize_field_spec(spec, index) for index, spec in enumerate(fields_value)]
        parsed = tuple(FieldDefinition.parse(spec) for spec in specs)
        names = [f.name for f in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _error(f"Duplicate field names in schema: {', '.join(duplicates)}")
        declared = frozenset(names)
        contracts = {"guaranteed_fields": guaranteed, "required_fields": required, "audit_fields": audit}
        for key, listed in contracts.items():
            undefined = set(listed or ()) - declared
            if undefined:
                raise _error(
                    f"'{key}' contains fields not declared in schema: {', '.join(sorted(undefined))}. "
                    f"Declared fields are: {', '.join(sorted(declared))}."
                )
        return cls(cast(SchemaMode, mode), parsed, guaranteed, required, audit, frozen)

    # -- what encoders need (SchemaSpec) ---------------------------------------------------

    @property
    def field_names(self) -> tuple[str, ...]:
        """The declared field names, in order (empty when observed)."""
        return tuple(f.name for f in self.fields)

    # -- ELSPETH's helpers -----------------------------------------------------------------

    @property
    def is_observed(self) -> bool:
        """Whether the schema accepts any fields (types inferred from data)."""
        return self.mode == "observed"

    @property
    def allows_extra_fields(self) -> bool:
        """Whether rows may carry fields beyond the declared ones."""
        return self.mode != "fixed"

    def required_fields(self) -> frozenset[str]:
        """Required declared fields plus ``required_fields``: what a sink declares it requires."""
        declared = frozenset(f.name for f in self.fields if f.required)
        return declared | frozenset(self.explicit_required_fields or ())

    def guaranteed(self) -> frozenset[str]:
        """Required declared fields plus ``guaranteed_fields``."""
        declared = frozenset(f.name for f in self.fields if f.required)
        return declared | frozenset(self.guaranteed_fields or ())

    def to_dict(self) -> dict[str, Any]:
        """The canonical form ELSPETH's ``SchemaConfig.to_dict`` produces (round-trips)."""
        result: dict[str, Any] = {
            "mode": self.mode,
            "fields": None if self.is_observed else [f.to_dict() for f in self.fields],
        }
        for key, value in (
            ("guaranteed_fields", self.guaranteed_fields),
            ("required_fields", self.explicit_required_fields),
            ("audit_fields", self.audit_fields),
        ):
            if value is not None:
                result[key] = list(value)
        return result

    def options(self) -> dict[str, Any]:
        """A fresh copy of the option exactly as configured (for ``SchemaConfig.from_dict``)."""
        return cast(dict[str, Any], _thaw(self._options)) if self._options is not None else self.to_dict()

    # -- the strict row model ---------------------------------------------------------------

    def build_row_model(self, name: str) -> type[BaseModel]:
        """A pydantic model that validates rows strictly (no coercion), as a sink's input schema.

        ``fixed`` forbids extra fields, ``flexible`` and ``observed`` allow them; optional fields
        default to ``None``; ``any`` accepts any value. Strict means an ``int`` field refuses
        ``"1"`` and ``True``; a ``float`` field accepts ints but refuses NaN and infinities, and
        an observed model refuses NaN and infinities anywhere in the row, as ELSPETH's does.
        Validate rows with ``model.model_validate(row)``; ``model_dump(by_alias=True)`` gives
        back the original names.
        """
        if self.is_observed:
            return create_model(name, __base__=_ObservedRow)
        definitions: dict[str, Any] = {}
        for index, spec in enumerate(self.fields):
            python_type = _PYTHON_TYPES[spec.field_type]
            annotation = python_type if spec.required else python_type | None
            default = ... if spec.required else None
            if spec.name.startswith(("_", "model_")) or spec.name in _RESERVED_ATTRIBUTES:
                definitions[f"field_{index}"] = (annotation, Field(default, alias=spec.name))
            else:
                definitions[spec.name] = (annotation, default)
        config = ConfigDict(extra="forbid" if self.mode == "fixed" else "allow", strict=True)
        model: type[BaseModel] = create_model(name, __config__=config, **definitions)
        return model


if TYPE_CHECKING:
    _conforms: SchemaSpec = RowSchema("observed")
