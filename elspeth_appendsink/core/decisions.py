"""An output's recorded decisions against what a later run configures: adopt, or refuse.

The first run of an output freezes how its rows are written and recognised, in its ``open``
record (:class:`~elspeth_appendsink.core.manifest.OpenRecord`): the row identity, the format and
the encoder's decisions. Every later run of the same output (a resume, ``if_exists: continue``,
``append`` onto this sink's own output) is checked here, before its first request that writes,
by :func:`check_recorded` — the one rule that the writer and the sink's
``validate_output_target`` both apply:

========================  =========  ==========================================================
option                    rule       why
========================  =========  ==========================================================
``identity_fields``       refuse     committed rows were recognised by the recorded identity
``format``                refuse     one output holds one format
``csv_options.*``         refuse     delimiter, encoding, header, line ending are in the bytes
``headers``               refuse     the header line and JSONL keys are in the bytes
``schema`` (fixed)        refuse     fixed fields must equal the recorded columns (and, for
                                     JSONL, its fixed mode)
``schema`` (other modes)  adopt      observed/flexible columns are the output's; every declared
                                     field must be one of them
========================  =========  ==========================================================

Options that never change which bytes exist or which rows are recognised (block size, segment
caps, sealing, lease, retry, transport, credentials, ``if_exists``) apply to the run that
configures them and are recorded in its own ``open`` record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from elspeth_appendsink.errors import SettingsChangedError

__all__ = ["Difference", "Requested", "check_recorded", "differences"]


@dataclass(frozen=True, slots=True)
class Requested:
    """What a run's configuration asks of its output's frozen decisions.

    ``None`` (or empty) fields are not compared: a writer built without a sink configuration
    (the protocol's own tests) states only what it knows. ``display_headers`` is None when the
    configuration cannot know the display names yet (``headers: original`` before ELSPETH
    resolved the field names).
    """

    format: str | None = None
    schema_mode: str | None = None
    declared_fields: tuple[str, ...] = ()
    csv: Mapping[str, Any] | None = None
    display_headers: Mapping[str, str] | None = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Difference:
    """One option whose configured value differs from the output's recorded decision."""

    option: str
    recorded: Any
    configured: Any


def _identity_fields(described: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(described.get("fields") or ())


def differences(
    encoder: Mapping[str, Any],
    identity: Mapping[str, Any],
    *,
    identity_fields: Sequence[str],
    requested: Requested | None,
) -> list[Difference]:
    """Every configured value that differs from the recorded ``encoder`` and ``identity``
    descriptions (as an ``open`` record holds them), in the order of the module's table."""
    found: list[Difference] = []
    recorded_key = _identity_fields(identity)
    if recorded_key != tuple(identity_fields):
        found.append(Difference("identity_fields", list(recorded_key) or None, list(identity_fields) or None))
    if requested is None:
        return found
    fmt = encoder.get("format")
    if requested.format is not None and fmt != requested.format:
        return [*found, Difference("format", fmt, requested.format)]
    if requested.csv is not None and fmt == "csv":
        for key, wanted in requested.csv.items():
            if key in encoder and encoder[key] != wanted:
                found.append(Difference(f"csv_options.{key}", encoder[key], wanted))
    found.extend(_header_differences(encoder, requested))
    found.extend(_schema_differences(encoder, requested))
    return found


def _columns(encoder: Mapping[str, Any]) -> list[str]:
    """The recorded column names (Arrow records each column with its kind)."""
    columns = encoder.get("columns") or []
    return [c["name"] if isinstance(c, Mapping) else str(c) for c in columns]


def _header_differences(encoder: Mapping[str, Any], requested: Requested) -> list[Difference]:
    wanted = requested.display_headers
    fmt = encoder.get("format")
    if wanted is None or fmt not in ("csv", "jsonl"):
        return []
    columns = _columns(encoder)
    if fmt == "csv":
        recorded = list(encoder.get("header_names") or columns)
        expected = [wanted.get(column, column) for column in columns]
        return [] if recorded == expected else [Difference("headers", recorded, expected)]
    recorded_map = {k: v for k, v in dict(encoder.get("headers") or {}).items() if k != v}
    expected_map = {k: v for k, v in wanted.items() if k != v}
    return [] if recorded_map == expected_map else [Difference("headers", recorded_map, expected_map)]


def _schema_differences(encoder: Mapping[str, Any], requested: Requested) -> list[Difference]:
    if requested.schema_mode is None or "columns" not in encoder:
        return []
    columns = _columns(encoder)
    declared = list(requested.declared_fields)
    if requested.schema_mode == "fixed":
        recorded_mode = encoder.get("mode", "fixed")
        if columns != declared or (encoder.get("format") == "jsonl" and recorded_mode != "fixed"):
            return [
                Difference(
                    "schema",
                    {"mode": recorded_mode, "fields": columns},
                    {"mode": "fixed", "fields": declared},
                )
            ]
        return []
    missing = [name for name in declared if name not in columns]
    if missing:
        return [Difference("schema", {"fields": columns}, {"declared, not among them": missing})]
    return []


def check_recorded(
    encoder: Mapping[str, Any],
    identity: Mapping[str, Any],
    *,
    identity_fields: Sequence[str],
    requested: Requested | None,
    run_id: str,
    output: str,
) -> None:
    """Refuse a run whose configuration differs from what run ``run_id`` recorded for ``output``.

    Raises:
        SettingsChangedError: naming every differing option with its recorded and configured
            value; raised before the run sends any request that writes.
    """
    found = differences(encoder, identity, identity_fields=identity_fields, requested=requested)
    if found:
        raise SettingsChangedError(found[0].option, found, run_id=run_id, output=output)
