"""``python -m benchmarks [--quick]``: see :mod:`benchmarks.suite`."""

from benchmarks.suite import main

raise SystemExit(main())
