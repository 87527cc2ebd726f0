"""Options renamed since a release, caught in a settings file before ELSPETH reads it.

ELSPETH fingerprints (or, without ``ELSPETH_FINGERPRINT_KEY``, refuses) every string option
whose name ends in ``_key``, before any plugin is built; a settings file still naming the sink's
``row_key`` would die there with ``SecretFingerprintError``. The launcher reads the settings
file first (:func:`renamed_options`) and names the new option instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["RENAMED", "renamed_options"]

#: old option name -> new option name
RENAMED = {"row_key": "identity_fields"}
_PLUGIN = "azure_append_blob"


def renamed_options(path: Path) -> list[str]:
    """One message per ``azure_append_blob`` sink of the settings file that uses a renamed option.

    Reads the YAML as plain data (no ``${VAR}`` expansion is needed to see option names); a file
    that cannot be read or parsed yields nothing here, and ELSPETH reports it in its own words.
    """
    try:
        import yaml

        settings: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # ELSPETH reports unreadable settings itself
        return []
    sinks = settings.get("sinks") if isinstance(settings, dict) else None
    if not isinstance(sinks, dict):
        return []
    messages = []
    for name, sink in sinks.items():
        if not isinstance(sink, dict) or sink.get("plugin") != _PLUGIN:
            continue
        options = sink.get("options")
        for old, new in RENAMED.items():
            if isinstance(options, dict) and old in options:
                messages.append(
                    f"sink {name!r} ({_PLUGIN}): option {old!r} was renamed {new!r} -- ELSPETH treats "
                    f"every option ending in '_key' as a secret; write {new}: with the same field "
                    f"names in {path} (outputs written with {old} keep their identity)"
                )
    return messages
