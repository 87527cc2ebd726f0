"""``python -m elspeth_appendsink.elspeth``: ELSPETH's command line with ``azure_append_blob``."""

from elspeth_appendsink.elspeth.launcher import main

raise SystemExit(main())
