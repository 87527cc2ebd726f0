"""``python -m elspeth_appendsink``: the ``elspeth-appendsink`` command (see :mod:`.cli`)."""

from elspeth_appendsink.tools.cli import main

raise SystemExit(main())
