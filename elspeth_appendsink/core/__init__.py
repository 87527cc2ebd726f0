"""The pure core of the protocol: values and decisions, no I/O.

Cursor, manifest records, row identity, block planning, reconciliation, naming rules and secret
redaction. Nothing here imports ``azure``, opens a file or socket, or reads the clock: times, run
ids and bytes come in as arguments, values go out (``tests/unit/test_layers.py`` holds it so).
"""
