"""The exactly-once append protocol over a store: write path, opening, recovery, scan, verify.

It decides from the pure core (:mod:`elspeth_appendsink.core`) and acts through
:class:`~elspeth_appendsink.storage.base.Store`, the store interface; it never imports ``azure``.
"""
