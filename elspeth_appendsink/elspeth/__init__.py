"""The ELSPETH adapter: the ``azure_append_blob`` sink, its options, the host shim and the launcher.

``python -m elspeth_appendsink.elspeth`` runs ELSPETH's own command line with the sink registered
(:mod:`.launcher`); :func:`register` does the registration alone. Those names are looked up
lazily (PEP 562): the launcher imports its sibling modules through this package, so the package
itself imports none of them at load time.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ElspethNotAvailable", "main", "register"]


def __getattr__(name: str) -> Any:
    """``ElspethNotAvailable``, ``main`` and ``register``, from :mod:`.launcher` on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module("elspeth_appendsink.elspeth.launcher"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
