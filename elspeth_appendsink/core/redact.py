"""Secret redaction: the one function every message, log event and audit payload passes through.

It recognises credentials by shape, so it also catches secrets it was never told about:
``AccountKey=…`` inside connection strings, SAS signatures (``sig=…``), client secrets and
account keys given as options, and bearer tokens. Known secret values can be registered with
:func:`register_secret` (the config does this for every secret option) and are then removed
wherever they appear, whatever surrounds them. Text echoed from the user's own options (a
config error) is redacted harder, :func:`redact_keylike`: a secret put in the wrong option was
never registered, so any long key-shaped run goes too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "looks_like_key", "redact", "redact_keylike", "redact_value", "register_secret"]

REDACTED = "***"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # connection-string fields
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|SharedAccessKey|ClientSecret)=)([^;\s\"']+)"),
    # SAS query parameters: the signature is the secret; keep the rest readable
    re.compile(r"(?i)([?&]sig=)([^&\s\"']+)"),
    re.compile(r"(?i)(\bsig=)([A-Za-z0-9%+/=]{8,})"),
    # key/value pairs in reprs and JSON: `'sas_token': 'v'`, `"client_secret": "v"`, `password=v`
    re.compile(
        r"(?i)(['\"]?(?:account_key|sas_token|client_secret|connection_string|credential|password)['\"]?"
        r"\s*(?:=\s*['\"]?|:\s*['\"]))([^'\",\s}]+)"
    ),
    re.compile(r"(?i)(Bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
)

# A run of base64/base64url characters long enough to be a key, a client secret or a token
# (account keys are 88, SAS signatures 44+, client secrets 34-40). Only runs that mix upper
# case, lower case and digits count: a lowercase hex sha256 or a plain word is no key.
_KEYLIKE = re.compile(r"[A-Za-z0-9+/_~.-]{32,}={0,2}")
_MIXED = (re.compile(r"[A-Z]"), re.compile(r"[a-z]"), re.compile(r"[0-9]"))

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is removed wherever it appears later."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)
            # SAS tokens are often given with or without the leading '?'
            _known.add(value.lstrip("?"))


def redact(text: str) -> str:
    """Return ``text`` with every recognised or registered secret replaced by ``***``."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def looks_like_key(text: str) -> bool:
    """Whether ``text`` holds a run shaped like a key, a client secret or a token."""
    return any(all(p.search(m.group(0)) for p in _MIXED) for m in _KEYLIKE.finditer(text))


def redact_keylike(text: str) -> str:
    """:func:`redact`, and every key-shaped run (see :func:`looks_like_key`) replaced by ``***``:
    for text that echoes what the user typed, where a secret may sit in any option."""
    text = redact(text)
    return _KEYLIKE.sub(lambda m: REDACTED if all(p.search(m.group(0)) for p in _MIXED) else m.group(0), text)


def redact_value(value: Any) -> Any:
    """Redact strings inside a JSON-like value (dicts, lists, tuples), leaving other types alone."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
