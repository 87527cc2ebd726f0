"""Credentials, one path for every caller: options → :class:`AuthSettings` → Azure client.

The sink's options (:class:`~elspeth_appendsink.elspeth.options.SinkConfig`), the
``elspeth-appendsink`` command's flags and environment variables, and the launcher (through the
sink) all reach the account here:

* the shape checks of endpoint URLs, connection strings and SAS tokens (:func:`check_url`,
  :func:`check_connection_string`, :func:`check_sas_token`); every secret seen is registered
  with :func:`~elspeth_appendsink.core.redact.register_secret` the moment it is parsed
  (:func:`register_credential` for a value whose kind is not known yet), so no later message
  can echo it;
* :func:`resolve_auth`: exactly one method, with the stock ``azure_blob`` sink's messages for
  partial configurations; :func:`auth_settings` checks each value's shape first;
* :func:`resolve_env_secrets`: the sink's ``<secret>_env`` options, read from the environment;
* :func:`credential_for`, :func:`service_client` and :func:`open_store`: the SDK credential
  (azure-identity only when needed), the ``BlobServiceClient`` with our retry policy, and the
  :class:`~elspeth_appendsink.storage.store.AzureStore` of one container.

A value that breaks a rule raises :class:`~elspeth_appendsink.errors.ConfigError` naming its option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from elspeth_appendsink.core.redact import REDACTED, looks_like_key, register_secret
from elspeth_appendsink.errors import ConfigError
from elspeth_appendsink.storage.store import AzureStore, RetrySettings, Transport, build_service_client

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

__all__ = [
    "SECRET_OPTIONS",
    "URL_EXAMPLE",
    "AuthMethod",
    "AuthSettings",
    "auth_settings",
    "check_connection_string",
    "check_sas_token",
    "check_url",
    "credential_for",
    "open_store",
    "register_credential",
    "register_signature",
    "resolve_auth",
    "resolve_env_secrets",
    "service_client",
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


def check_sas_token(token: str) -> str:
    """The token without a leading ``?``; its signature registered; refused without ``sig=``."""
    token = token.lstrip("?")
    register_signature(token)
    if "sig=" not in token:
        raise ConfigError(
            "sas_token",
            "does not look like a SAS token (it has no 'sig=' parameter)",
            hint="pass the token's query string, e.g. 'sv=...&sig=...'; an account key belongs "
            "in a connection_string",
        )
    return token


def register_credential(value: str | None) -> None:
    """Register a secret whose kind is not known yet, and every key or signature inside it.

    For values seen before a method is chosen (the command's flags and environment), so that
    none can be printed, used or not.
    """
    if not value:
        return
    register_secret(value)
    register_secret(value.strip())
    for part in value.replace("&", ";").replace("?", ";").split(";"):
        key, _, item = part.partition("=")
        if key.strip().lower() in ("accountkey", "sharedaccesssignature", "sig") and item:
            register_secret(item.strip())
            register_secret(unquote(item.strip()))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The one configured way to authenticate, for :func:`service_client` to turn into a client.

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


def auth_settings(
    *,
    account_url: str | None = None,
    connection_string: str | None = None,
    sas_token: str | None = None,
    use_managed_identity: bool = False,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> AuthSettings:
    """Check each given value's shape, then :func:`resolve_auth` (secrets registered first)."""
    for secret in (connection_string, sas_token, client_secret):
        register_credential(secret)
    if account_url is not None:
        check_url(account_url, "account_url")
    if connection_string is not None:
        check_connection_string(connection_string)
    if sas_token is not None:
        sas_token = check_sas_token(sas_token)
    return resolve_auth(
        account_url=account_url,
        connection_string=None if connection_string is None else SecretStr(connection_string),
        sas_token=None if sas_token is None else SecretStr(sas_token),
        use_managed_identity=use_managed_identity,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=None if client_secret is None else SecretStr(client_secret),
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


def credential_for(auth: AuthSettings) -> Any:
    """The SDK credential of a method other than a connection string: the SAS token itself,
    ``DefaultAzureCredential`` (managed identity) or a ``ClientSecretCredential`` (service
    principal). azure-identity is imported only when it is needed."""
    if auth.method == "sas_token" and auth.sas_token is not None:
        return auth.sas_token.get_secret_value()
    if auth.method == "managed_identity":
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()
    if auth.method == "service_principal" and auth.client_secret is not None:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            str(auth.tenant_id), str(auth.client_id), auth.client_secret.get_secret_value()
        )
    raise ValueError(f"no SDK credential for auth method {auth.method!r} with these fields")


def service_client(
    auth: AuthSettings,
    *,
    retry: RetrySettings | None = None,
    transport: Transport | None = None,
    api_version: str | None = None,
) -> BlobServiceClient:
    """The ``BlobServiceClient`` for ``auth``, with our retry policy, timeouts and transport.

    Raises:
        ValueError: the SDK refused the connection string or URL (its message may hold a
            secret: pass it through :func:`~elspeth_appendsink.core.redact.redact`).
    """
    common: dict[str, Any] = {"retry": retry, "transport": transport, "api_version": api_version}
    if auth.method == "connection_string" and auth.connection_string is not None:
        return build_service_client(connection_string=auth.connection_string.get_secret_value(), **common)
    return build_service_client(account_url=auth.account_url, credential=credential_for(auth), **common)


def open_store(
    auth: AuthSettings,
    container: str,
    *,
    retry: RetrySettings | None = None,
    transport: Transport | None = None,
    api_version: str | None = None,
    validate_content: bool = False,
) -> AzureStore:
    """The :class:`AzureStore` of ``container``, authenticated by ``auth`` (see :func:`service_client`)."""
    service = service_client(auth, retry=retry, transport=transport, api_version=api_version)
    return AzureStore(service, container, validate_content=validate_content)
