"""The sink's options: :class:`SinkConfig`, built once from the ``options`` mapping and frozen.

:meth:`SinkConfig.from_options` is the only way in. It validates every option at construction
and turns every problem into a :class:`~elspeth_appendsink.errors.ConfigError` whose ``option``
names the offending option (``auth`` when the problem is the combination of credentials).
Option names follow the stock ``azure_blob`` sink where it has them:

==========================  ==================================================================
auth (exactly one method)   ``connection_string`` | ``sas_token`` + ``account_url`` |
                            ``use_managed_identity: true`` + ``account_url`` |
                            ``tenant_id`` + ``client_id`` + ``client_secret`` + ``account_url``
where                       ``container``, ``blob_path`` (Jinja2: ``run_id``, ``timestamp``)
what                        ``format`` (csv|jsonl|arrow), ``csv_options``, ``headers``, ``schema``
existing output             ``if_exists`` (fail|append|continue), ``identity_fields``
blocks and segments         ``block_size``, ``segment_max_blocks``, ``segment_max_bytes``,
                            ``seal_on_complete``
fencing and transport       ``lease``, ``lease_duration``, ``validate_content``, ``retry``,
                            ``api_version``
==========================  ==================================================================

Secrets (``connection_string``, ``sas_token``, ``client_secret``, and the account key or SAS
inside a connection string) are held as :class:`pydantic.SecretStr`, registered with
:func:`~elspeth_appendsink.core.redact.register_secret` the moment they are seen, and never appear in
an error, ``repr``, ``str`` or :meth:`SinkConfig.public_summary`.

Why one piece (~650 lines, :class:`SinkConfig` ~390): it is one pydantic model — every field's
validator and the cross-field checks (``if_exists`` with ``identity_fields``, segment caps with
``block_size``, format with ``csv_options``/``schema``) must see the same frozen instance;
authentication (:mod:`~elspeth_appendsink.storage.credentials`) and the schema
(:mod:`~elspeth_appendsink.elspeth.schema`) are already cut out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from elspeth_appendsink.core import target
from elspeth_appendsink.core.paths import BlobPathTemplate, validate_container_name
from elspeth_appendsink.core.redact import redact_value, register_secret
from elspeth_appendsink.elspeth.schema import RowSchema
from elspeth_appendsink.encoders import csv as csv_encoder
from elspeth_appendsink.errors import ConfigError
from elspeth_appendsink.storage.credentials import (
    SECRET_OPTIONS,
    AuthMethod,
    AuthSettings,
    check_connection_string,
    check_sas_token,
    check_url,
    resolve_auth,
    resolve_env_secrets,
)
from elspeth_appendsink.storage.store import RetrySettings

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_SEGMENT_MAX_BLOCKS",
    "LARGE_BLOCK_API_VERSION",
    "LEGACY_MAX_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "MAX_SEGMENT_BLOCKS",
    "MIN_API_VERSION",
    "AuthMethod",
    "AuthSettings",
    "CsvOptions",
    "ExistingBlobPolicy",
    "OutputFormat",
    "RetryOptions",
    "SinkConfig",
    "parse_size",
]

KiB = 1024
MiB = 1024 * KiB

#: Default block size: the append-block limit every service version accepts.
DEFAULT_BLOCK_SIZE = 4 * MiB
LEGACY_MAX_BLOCK_SIZE = 4 * MiB
#: The largest append block, accepted from service version 2022-11-02 ("preview").
MAX_BLOCK_SIZE = 100 * MiB
LARGE_BLOCK_API_VERSION = "2022-11-02"
#: Append Blob Seal (used on segment rollover) needs this service version or later.
MIN_API_VERSION = "2019-12-12"
MAX_SEGMENT_BLOCKS = 50_000
DEFAULT_SEGMENT_MAX_BLOCKS = 49_000

#: The option texts of :class:`~elspeth_appendsink.core.target.OutputFormat` and
#: :class:`~elspeth_appendsink.core.target.IfExists` (the core owns the choices; these literals
#: type the parsed options, and ``tests/unit/test_target.py`` holds them equal).
OutputFormat = Literal["csv", "jsonl", "arrow"]
ExistingBlobPolicy = Literal["fail", "append", "continue"]

_FORMATS: tuple[str, ...] = tuple(member.value for member in target.OutputFormat)
_IF_EXISTS: tuple[str, ...] = tuple(member.value for member in target.IfExists)

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": KiB,
    "mib": MiB,
    "gib": 1024 * MiB,
}


# --------------------------------------------------------------------------------------------
# small value parsers


def parse_size(value: Any, option: str) -> int:
    """Bytes from an int or a string such as ``"4MiB"``, ``"512 KiB"``, ``"100MB"``, ``"4096"``.

    Units: ``B``, ``KiB``/``MiB``/``GiB`` (powers of 1024), ``KB``/``MB``/``GB`` (powers of
    1000), case-insensitive. The result must be a whole number of bytes.

    Raises:
        ConfigError: for ``option``, naming the accepted syntax.
    """
    syntax = "a byte count such as 4194304 or a size such as '4MiB', '512KiB', '100MB'"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(option, f"must be {syntax}, got {type(value).__name__}")
    if isinstance(value, int):
        return int(value)
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ConfigError(option, f"must be {syntax}, got {value!r}")
    number, unit = match.group(1), (match.group(2) or "").lower()
    whole, _, fraction = number.partition(".")
    scale = _SIZE_UNITS[unit]
    numerator = int(whole + fraction) * scale
    denominator: int = 10 ** len(fraction)
    if numerator % denominator:
        raise ConfigError(option, f"{value!r} is not a whole number of bytes")
    return numerator // denominator


def _reject_bool(value: Any) -> Any:
    """Refuse ``True``/``False`` where a number is expected (pydantic would read them as 1/0)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _choice(value: Any, option: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(option, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# nested option groups


_CSV = csv_encoder.CsvOptions()
_RETRY = RetrySettings()


class CsvOptions(BaseModel):
    """``csv_options``: how rows become CSV text and bytes (only for ``format: csv``).

    The option's face of :class:`encoders.csv.CsvOptions <elspeth_appendsink.encoders.csv.CsvOptions>`,
    the one model of a CSV shape: keys and types are parsed here, defaults and rules are the
    encoder's (:func:`~elspeth_appendsink.encoders.csv.csv_options_problem`), and
    :meth:`encoder_options` hands the encoder its own value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    delimiter: str = _CSV.delimiter
    encoding: str = _CSV.encoding
    include_header: bool = _CSV.include_header
    line_terminator: str = _CSV.line_terminator

    @model_validator(mode="after")
    def _encoder_rules(self) -> Self:
        problem = csv_encoder.csv_options_problem(**self.model_dump())
        if problem is not None:
            key, message, hint = problem
            raise ConfigError("csv_options", f"{key}: {message}", hint=hint)
        return self

    def encoder_options(self) -> csv_encoder.CsvOptions:
        """The encoder's :class:`~elspeth_appendsink.encoders.csv.CsvOptions` with these values."""
        return csv_encoder.CsvOptions(**self.model_dump())


class RetryOptions(BaseModel):
    """``retry``: the storage client's own retry policy and timeouts (seconds).

    The option's face of :class:`~elspeth_appendsink.storage.store.RetrySettings`, whose
    defaults it takes; it adds the bounds an option must keep, and :meth:`settings` hands the
    storage layer its own value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)

    total: int = Field(default=_RETRY.total, ge=0, le=20)
    initial_backoff: float = Field(default=_RETRY.initial_backoff, ge=0)
    increment_base: float = Field(default=_RETRY.increment_base, ge=0)
    jitter: float = Field(default=_RETRY.jitter, ge=0)
    connection_timeout: float = Field(default=_RETRY.connection_timeout, gt=0)
    read_timeout: float = Field(default=_RETRY.read_timeout, gt=0)

    _numbers = field_validator("*", mode="before")(_reject_bool)

    def settings(self) -> RetrySettings:
        """The storage layer's :class:`~elspeth_appendsink.storage.store.RetrySettings` with these values."""
        return RetrySettings(**self.model_dump())


# --------------------------------------------------------------------------------------------
# the sink config


class SinkConfig(BaseModel):
    """Every option of the ``azure_append_blob`` sink, validated and frozen.

    Build it with :meth:`from_options`. Derived values: :attr:`auth`, :attr:`path_template`
    (the compiled ``blob_path``), :attr:`row_schema` (the parsed ``schema``). Long because a
    pydantic model's fields and validators must live in its class body (see the module docstring).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        arbitrary_types_allowed=True,
        allow_inf_nan=False,
    )

    # authentication
    connection_string: SecretStr | None = None
    sas_token: SecretStr | None = None
    account_url: str | None = None
    use_managed_identity: bool = False
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # where and what
    container: str
    blob_path: str
    format: OutputFormat = "csv"
    csv_options: CsvOptions = CsvOptions()
    headers: str | Mapping[str, str] = "normalized"
    row_schema: RowSchema = Field(alias="schema")
    # existing output and row identity
    if_exists: ExistingBlobPolicy = "fail"
    identity_fields: tuple[str, ...] | None = None
    # blocks and segments
    block_size: int = DEFAULT_BLOCK_SIZE
    segment_max_blocks: int = Field(default=DEFAULT_SEGMENT_MAX_BLOCKS, ge=1, le=MAX_SEGMENT_BLOCKS)
    segment_max_bytes: int | None = None
    seal_on_complete: bool = False
    # fencing and transport
    lease: bool = True
    lease_duration: int = 60
    validate_content: bool = False
    retry: RetryOptions = RetryOptions()
    api_version: str | None = None

    _auth: AuthSettings = PrivateAttr()
    _template: BlobPathTemplate = PrivateAttr()

    OPTION_NAMES: ClassVar[tuple[str, ...]]

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SinkConfig:
        """Validate the sink's ``options`` mapping.

        Raises:
            ConfigError: naming the offending option and the rule it breaks; secrets redacted.
        """
        if not isinstance(options, Mapping):
            raise ConfigError("options", f"sink options must be a mapping, got {type(options).__name__}")
        if "row_key" in options or "row_key_fingerprint" in options:
            raise ConfigError(
                "row_key",
                "was renamed 'identity_fields' (ELSPETH treats every option ending in '_key' as a "
                "secret and refuses or fingerprints it)",
                hint="write identity_fields with the same field names; outputs written with row_key "
                "keep their identity and are continued and resumed as before",
            )
        options = resolve_env_secrets(options)
        for name in SECRET_OPTIONS:
            value = options.get(name)
            if isinstance(value, str):
                register_secret(value)
                register_secret(value.strip())
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            # ``from None``: the pydantic error holds option values, secrets among them.
            raise _config_error(exc) from None

    # -- field rules ------------------------------------------------------------------------

    @field_validator(
        "connection_string",
        "sas_token",
        "client_secret",
        "account_url",
        "tenant_id",
        "client_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        if info.field_name in SECRET_OPTIONS:
            register_secret(value)
            register_secret(value.strip())
        stripped = value.strip()
        return stripped or None

    @field_validator("account_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value, "account_url")
        return value

    @field_validator("connection_string")
    @classmethod
    def _connection_string_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_connection_string(value.get_secret_value())
        return value

    @field_validator("sas_token")
    @classmethod
    def _sas_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else SecretStr(check_sas_token(value.get_secret_value()))

    @field_validator("container", mode="before")
    @classmethod
    def _container_name(cls, value: Any) -> Any:
        return validate_container_name(value)

    @field_validator("blob_path", mode="before")
    @classmethod
    def _blob_path_text(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("blob_path", "must be a non-empty template such as 'out/{{ run_id }}/rows.csv'")
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if value == "json":
            raise ConfigError(
                "format",
                "'json' writes one JSON array, which cannot be appended to without rewriting the blob",
                hint="use 'jsonl' (one JSON object per line)",
            )
        return _choice(value, "format", _FORMATS)

    @field_validator("csv_options", mode="before")
    @classmethod
    def _csv_options_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping | CsvOptions):
            raise ConfigError("csv_options", f"must be a mapping, got {type(value).__name__}")
        return value

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping | RetryOptions):
            raise ConfigError("retry", f"must be a mapping, got {type(value).__name__}")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _header_mode(cls, value: Any) -> Any:
        if value is None:
            return "normalized"
        if isinstance(value, str):
            if value not in ("normalized", "original"):
                raise ConfigError(
                    "headers",
                    f"invalid header mode {value!r}; expected 'normalized', 'original' or a mapping",
                )
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                "headers", f"must be 'normalized', 'original' or a mapping, got {type(value).__name__}"
            )
        for field_name, display in value.items():
            if not isinstance(field_name, str) or not isinstance(display, str) or not display.strip():
                raise ConfigError(
                    "headers",
                    f"mapping must be field name -> non-empty display name, got {field_name!r}: {display!r}",
                )
        targets = list(value.values())
        duplicates = sorted({t for t in targets if targets.count(t) > 1})
        if duplicates:
            raise ConfigError(
                "headers", f"duplicate display names {duplicates}; each output header must be unique"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _freeze_headers(cls, value: str | Mapping[str, str]) -> str | Mapping[str, str]:
        return value if isinstance(value, str) else MappingProxyType(dict(value))

    @field_validator("row_schema", mode="before")
    @classmethod
    def _parse_schema(cls, value: Any) -> Any:
        return value if isinstance(value, RowSchema) else RowSchema.from_dict(value)

    @field_validator("if_exists", mode="before")
    @classmethod
    def _known_policy(cls, value: Any) -> Any:
        return _choice(value, "if_exists", _IF_EXISTS)

    @field_validator("identity_fields", mode="before")
    @classmethod
    def _key_fields(cls, value: Any) -> Any:
        if value is None:
            return None
        option = "identity_fields"
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names:
            raise ConfigError(option, "must be a field name or a non-empty list of field names")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(option, f"field names must be non-empty strings, got {name!r}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(option, f"lists a field more than once: {', '.join(duplicates)}")
        return tuple(names)

    @field_validator("block_size", "segment_max_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "segment_max_bytes":
            return None
        size = parse_size(value, str(info.field_name))
        if size <= 0:
            raise ConfigError(str(info.field_name), f"must be greater than 0, got {size}")
        return size

    @field_validator("block_size")
    @classmethod
    def _block_limit(cls, value: int) -> int:
        if value > MAX_BLOCK_SIZE:
            raise ConfigError(
                "block_size", f"{value} bytes is more than the service's append-block limit of 100 MiB"
            )
        return value

    @field_validator("segment_max_blocks", "lease_duration", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        return _reject_bool(value)

    @field_validator("lease_duration")
    @classmethod
    def _lease_seconds(cls, value: int) -> int:
        if value != -1 and not 15 <= value <= 60:
            raise ConfigError(
                "lease_duration", f"must be 15-60 seconds, or -1 for an infinite lease; got {value}"
            )
        return value

    @field_validator("api_version")
    @classmethod
    def _service_version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                "api_version", f"must be a service version date such as '2025-01-05', got {value!r}"
            ) from None
        if value < MIN_API_VERSION:
            raise ConfigError(
                "api_version",
                f"{value} is older than {MIN_API_VERSION}, the first version with Append Blob Seal "
                "(used when a segment is full)",
            )
        return value

    # -- rules across options ---------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        self._auth = self._resolve_auth()
        if self.format != "csv" and "csv_options" in self.model_fields_set:
            raise ConfigError("csv_options", f"applies only to format 'csv', and format is '{self.format}'")
        self._template = BlobPathTemplate(self.blob_path, self.container)
        if self.if_exists == "continue" and not self._template.is_static:
            used = " and ".join(f"{{{{ {name} }}}}" for name in sorted(self._template.variables))
            raise ConfigError(
                "if_exists",
                f"'continue' resumes the output an earlier run wrote, but blob_path uses {used}, "
                "so every run writes a different blob",
                hint="use a blob_path without run_id/timestamp, or if_exists: fail",
            )
        if not self.lease and self.if_exists in ("append", "continue"):
            # Two unfenced runs claiming one existing output both append at its end: the second's
            # 412 is read back, and with equal rows its bytes look like its own. Only a lease
            # makes one of them wait.
            raise ConfigError(
                "lease",
                f"false cannot be combined with if_exists: {self.if_exists}: an existing output is "
                "only claimed under a lease, or two runs started together could both report the "
                "same bytes as their own",
                hint="remove lease: false (the default, true, fences the output)",
            )
        if self.identity_fields is not None and not self.row_schema.is_observed:
            declared = set(self.row_schema.field_names)
            for name in self.identity_fields:
                if name not in declared:
                    raise ConfigError(
                        "identity_fields",
                        f"field {name!r} is not declared in the schema",
                        hint=f"declared fields: {', '.join(self.row_schema.field_names)}",
                    )
        if self.segment_max_bytes is not None and self.segment_max_bytes < self.block_size:
            raise ConfigError(
                "segment_max_bytes",
                f"{self.segment_max_bytes} is smaller than block_size ({self.block_size}); "
                "a segment must hold at least one block",
            )
        if (
            self.api_version is not None
            and self.api_version < LARGE_BLOCK_API_VERSION
            and self.block_size > LEGACY_MAX_BLOCK_SIZE
        ):
            raise ConfigError(
                "block_size",
                f"blocks over 4 MiB need service version {LARGE_BLOCK_API_VERSION} or later, "
                f"and api_version is {self.api_version}",
            )
        return self

    def _resolve_auth(self) -> AuthSettings:
        return resolve_auth(
            account_url=self.account_url,
            connection_string=self.connection_string,
            sas_token=self.sas_token,
            use_managed_identity=self.use_managed_identity,
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
        )

    # -- derived values -------------------------------------------------------------------

    @property
    def auth(self) -> AuthSettings:
        """The one configured authentication method and its fields."""
        return self._auth

    @property
    def path_template(self) -> BlobPathTemplate:
        """The compiled ``blob_path``."""
        return self._template

    @property
    def template_digest(self) -> str:
        """Keys the per-run path pointers (see :func:`~elspeth_appendsink.core.paths.run_pointer_name`)."""
        return self._template.template_digest

    @property
    def schema_options(self) -> dict[str, Any]:
        """A fresh copy of the ``schema`` option as configured (what ELSPETH parses)."""
        return self.row_schema.options()

    def public_summary(self) -> dict[str, Any]:
        """Every option, JSON-safe, secrets shown as ``***``: for audit records and logs."""
        summary: dict[str, Any] = {
            **self._auth.public_summary(),
            "container": self.container,
            "blob_path": self.blob_path,
            "template_digest": self.template_digest,
            "format": self.format,
            "csv_options": self.csv_options.model_dump() if self.format == "csv" else None,
            "headers": self.headers if isinstance(self.headers, str) else dict(self.headers),
            "schema": self.schema_options,
            "if_exists": self.if_exists,
            "identity_fields": list(self.identity_fields) if self.identity_fields is not None else None,
            "block_size": self.block_size,
            "segment_max_blocks": self.segment_max_blocks,
            "segment_max_bytes": self.segment_max_bytes,
            "seal_on_complete": self.seal_on_complete,
            "lease": self.lease,
            "lease_duration": self.lease_duration,
            "validate_content": self.validate_content,
            "retry": self.retry.model_dump(),
            "api_version": self.api_version,
        }
        return cast(dict[str, Any], redact_value(summary))

    # -- serialisation of the derived types -------------------------------------------------

    @field_serializer("headers")
    def _plain_headers(self, value: str | Mapping[str, str]) -> str | dict[str, str]:
        return value if isinstance(value, str) else dict(value)

    @field_serializer("row_schema")
    def _plain_schema(self, value: RowSchema) -> dict[str, Any]:
        return value.options()


SinkConfig.OPTION_NAMES = tuple(
    sorted(
        [(info.alias or name) for name, info in SinkConfig.model_fields.items()]
        + [f"{name}_env" for name in SECRET_OPTIONS]
    )
)


# --------------------------------------------------------------------------------------------
# pydantic errors -> ConfigError


def _config_error(exc: ValidationError) -> ConfigError:
    """The first problem in ``exc`` as a ConfigError naming its option (never echoing input)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    loc = [str(part) for part in error["loc"]]
    option = loc[0] if loc else "options"
    inner = ".".join(loc[1:])
    kind = error["type"]
    if kind == "extra_forbidden":
        if not inner:
            return ConfigError(
                option,
                f"unknown option {option!r}{_did_you_mean(option, SinkConfig.OPTION_NAMES)}",
                hint=f"allowed options: {', '.join(SinkConfig.OPTION_NAMES)}",
            )
        groups: dict[str, type[BaseModel]] = {"csv_options": CsvOptions, "retry": RetryOptions}
        group = groups.get(option)
        keys = tuple(group.model_fields) if group is not None else ()
        return ConfigError(
            option,
            f"unknown key {inner!r} in {option}{_did_you_mean(inner, keys)}",
            hint=f"allowed keys: {', '.join(keys)}",
        )
    if kind == "missing":
        return ConfigError(option, "required option is missing" if not inner else f"{inner} is required")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    return ConfigError(option, f"{inner}: {message}" if inner else message)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` -- did you mean 'x'?`` for the closest known name, or nothing when none is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" -- did you mean {close[0]!r}?" if close else ""
