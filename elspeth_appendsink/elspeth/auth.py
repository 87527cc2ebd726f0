"""Authentication options: which one way to reach the account, and the secrets' first handling.

Owns :class:`AuthSettings` (the one configured method, for :mod:`elspeth_appendsink.storage` to
turn into a client), :func:`resolve_auth` (exactly one method, with the stock ``azure_blob``
sink's messages for partial configurations), :func:`resolve_env_secrets` (``<secret>_env``
options read from the environment) and the shape checks of endpoint URLs, connection strings and
SAS tokens. Every secret seen is registered with :func:`~elspeth_appendsink.core.redact.register_secret`
the moment it is parsed, so no later message can echo it. :class:`~.options.SinkConfig` calls these.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from elspeth_appendsink.core.redact import REDACTED, looks_like_key, register_secret
from elspeth_appendsink.errors import ConfigError

__all__ = [
    "SECRET_OPTIONS",
    "URL_EXAMPLE",
    "AuthMethod",
    "AuthSettings",
    "check_connection_string",
    "check_url",
    "register_signature",
    "resolve_auth",
    "resolve_env_secrets",
]

AuthMethod = Literal["connection_string", "sas_token", "managed_identity", "service_principal"]
SECRET_OPTIONS = ("connection_string", "sas_token", "client_secret")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_AUTH_CHOICES = (
    "connection_string, sas_token + account_url, managed identity (use_managed_identity + account_url), "
    "or service principal (tenant_id + client_id + client_secret + account_url)"
)
URL_EXAMPLE = "Example: https://mystorageaccount.blob.core.windows.net"


def check_url(url: str, option: str) -> None:
    """An endpoint URL is https, or http to a loopback host (Azurite); no query, no credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError(option, f"is not a valid URL. {URL_EXAMPLE}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(option, f"must be an http(s) URL with a host. {URL_EXAMPLE}")
    if parts.query or parts.fragment:
        raise ConfigError(
            option,
            "must not carry a query string or fragment",
            hint="give a SAS token through the sas_token option, not inside the URL",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(option, "must not carry a user name or password")
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ConfigError(
            option,
            f"plain http is only allowed for a loopback host (127.0.0.1, localhost, [::1]), not {host!r}",
            hint="use https",
        )


def check_connection_string(value: str) -> None:
    """Check the shape of a connection string without ever echoing a value from it."""
    pairs: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                "connection_string",
                "is not a connection string: every part must be key=value, separated by ';'",
            )
        pairs[key.strip().lower()] = item.strip()
    for key in ("accountkey", "sharedaccesssignature"):
        if pairs.get(key):
            register_secret(pairs[key])
    register_signature(pairs.get("sharedaccesssignature", ""))
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return
    if not pairs.get("accountname") and not pairs.get("blobendpoint"):
        raise ConfigError(
            "connection_string",
            "names no storage account: it needs AccountName or BlobEndpoint (or UseDevelopmentStorage=true)",
        )
    if pairs.get("blobendpoint"):
        check_url(pairs["blobendpoint"], "connection_string")
    elif pairs.get("defaultendpointsprotocol", "https").lower() != "https":
        raise ConfigError(
            "connection_string",
            "DefaultEndpointsProtocol must be https (plain http is only allowed for a loopback BlobEndpoint)",
        )


def register_signature(sas: str) -> None:
    """Register the ``sig`` of a SAS query string on its own (raw and percent-decoded)."""
    for part in sas.lstrip("?").split("&"):
        key, _, item = part.partition("=")
        if key.strip().lower() == "sig" and item:
            register_secret(item)
            register_secret(unquote(item))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The one configured way to authenticate, for the storage module to turn into a client.

    * ``connection_string``: ``connection_string``;
    * ``sas_token``: ``account_url`` + ``sas_token`` (without a leading ``?``);
    * ``managed_identity``: ``account_url`` (``DefaultAzureCredential``);
    * ``service_principal``: ``account_url`` + ``tenant_id`` + ``client_id`` + ``client_secret``.
    """

    method: AuthMethod
    account_url: str | None = None
    connection_string: SecretStr | None = None
    sas_token: SecretStr | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None

    def public_summary(self) -> dict[str, Any]:
        """The method and non-secret fields, with each secret shown as ``***`` when set."""
        return {
            "auth_method": self.method,
            "account_url": self.account_url,
            "connection_string": REDACTED if self.connection_string is not None else None,
            "sas_token": REDACTED if self.sas_token is not None else None,
            "use_managed_identity": self.method == "managed_identity",
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": REDACTED if self.client_secret is not None else None,
        }


def resolve_auth(
    *,
    account_url: str | None,
    connection_string: SecretStr | None,
    sas_token: SecretStr | None,
    use_managed_identity: bool,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: SecretStr | None,
) -> AuthSettings:
    """Exactly one method, with the stock sink's messages for partial configurations."""
    has_url = account_url is not None
    sp_fields = {
        "tenant_id": tenant_id,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    sp_given = [name for name, value in sp_fields.items() if value is not None]
    if sas_token is not None and not has_url:
        raise ConfigError("account_url", f"SAS token auth requires account_url. {URL_EXAMPLE}")
    if use_managed_identity and not has_url:
        raise ConfigError("account_url", f"Managed Identity auth requires account_url. {URL_EXAMPLE}")
    if 0 < len(sp_given) < len(sp_fields):
        missing = [name for name in sp_fields if name not in sp_given]
        raise ConfigError(
            missing[0], f"Service Principal auth requires all fields. Missing: {', '.join(missing)}"
        )
    if sp_given and not has_url:
        raise ConfigError("account_url", f"Service Principal auth requires account_url. {URL_EXAMPLE}")
    methods: list[AuthMethod] = []
    if connection_string is not None:
        methods.append("connection_string")
    if sas_token is not None:
        methods.append("sas_token")
    if use_managed_identity:
        methods.append("managed_identity")
    if sp_given:
        methods.append("service_principal")
    if not methods:
        raise ConfigError("auth", f"No authentication method configured. Provide one of: {_AUTH_CHOICES}")
    if len(methods) > 1:
        raise ConfigError(
            "auth",
            f"Multiple authentication methods configured: {', '.join(methods)}. "
            f"Provide exactly one of: {_AUTH_CHOICES}",
        )
    method = methods[0]
    token_auth = method in ("managed_identity", "service_principal")
    if token_auth and urlsplit(str(account_url)).scheme != "https":
        # The storage client refuses to send a bearer token over plain http (it raises a bare
        # ValueError at the first write); say so here, naming the option.
        raise ConfigError(
            "account_url",
            f"{method.replace('_', ' ')} auth sends a bearer token, which is only allowed over https; "
            "plain http (a loopback emulator) works only with connection_string or sas_token",
            hint="use an https account_url",
        )
    if method == "connection_string" and has_url:
        raise ConfigError(
            "account_url",
            "cannot be combined with connection_string (the connection string names the endpoint)",
        )
    return AuthSettings(
        method=method,
        account_url=account_url,
        connection_string=connection_string,
        sas_token=sas_token,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
    )


def resolve_env_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """``<secret>_env: VAR`` options: take the secret from the environment variable ``VAR``.

    ELSPETH stores every sink option verbatim in its audit database (``nodes.config_json``) and
    hashes options into node ids (so a rotated token blocks resume). Naming an environment
    variable instead keeps the secret out of both; a name ending in ``_env`` is not treated as a
    secret by ELSPETH.
    """
    resolved = dict(options)
    for name in SECRET_OPTIONS:
        key = f"{name}_env"
        if key not in resolved:
            continue
        variable = resolved.pop(key)
        if not isinstance(variable, str) or not variable.strip():
            raise ConfigError(key, "must name an environment variable")
        if _VARIABLE_NAME.fullmatch(variable.strip()) is None:
            # never echoed: a value that is no variable name may well be the secret itself
            raise ConfigError(
                key,
                "must name an environment variable (letters, digits and underscores, not starting "
                "with a digit); the value given is not one and is not shown, since it may be the "
                "secret itself",
                hint=f"put the secret in an environment variable and give its name as {key}",
            )
        if resolved.get(name) not in (None, ""):
            raise ConfigError(key, f"give either {name} or {key}, not both")
        value = os.environ.get(variable.strip())
        if not value:
            shown = (
                repr(variable.strip())
                if not looks_like_key(variable)
                else "(name not shown: it looks like a secret)"
            )
            raise ConfigError(key, f"environment variable {shown} is not set or empty")
        resolved[name] = value
    return resolved


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
