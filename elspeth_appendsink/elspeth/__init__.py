"""The ELSPETH adapter: the ``azure_append_blob`` sink, its options, the host shim and the launcher.

``python -m elspeth_appendsink.elspeth`` runs ELSPETH's own command line with the sink registered
(:mod:`.launcher`); :func:`register` does the registration alone.
"""

from elspeth_appendsink.elspeth.launcher import ElspethNotAvailable, main, register

__all__ = ["ElspethNotAvailable", "main", "register"]
