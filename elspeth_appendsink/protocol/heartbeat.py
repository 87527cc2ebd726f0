"""Keeping a live writer's lease held between write calls: :class:`LeaseHeartbeat`.

A lease is the one sign of life storage keeps for a writer: ``runs --mark-failed`` and the
launcher's ``--mark-failed-if-dead`` mark a run failed only when its lease is not held. Renewing
only inside ``write`` would let the lease of a live, merely quiet run lapse (ELSPETH can spend
minutes in transforms between two sink writes) and make that proof wrong. So while a writer
holds a lease, a daemon thread renews it every third of ``lease_duration``: the lease then lapses
only when the process is gone (or its lease was broken), within ``lease_duration``.

The thread renews nothing else and decides nothing: a failed renewal is logged and retried at the
next beat; if the lease is really lost, the writer's next guarded request fails on it. Its
requests are not audit records of any ``write`` call (ELSPETH accepts records only from inside
``write``), so they go to the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from elspeth_appendsink.logs import get_logger

__all__ = ["LeaseHeartbeat"]

log = get_logger("elspeth_appendsink.protocol.heartbeat")


class LeaseHeartbeat:
    """Calls ``renew()`` every ``period`` seconds on a daemon thread until :meth:`stop`, or until
    ``renew()`` returns False (nothing is left to keep).

    ``wait(period)`` returns True when the heartbeat should stop; it defaults to the stop event's
    ``wait``, and tests pass their own to beat without waiting for wall-clock time.
    """

    def __init__(
        self,
        renew: Callable[[], bool | None],
        period: float,
        *,
        name: str = "lease-heartbeat",
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._renew = renew
        self._period = period
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.beats = 0  # renewals that succeeded (read by tests and logs)

    def start(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def stop_soon(self) -> None:
        """Ask the thread to stop at its next wake-up, without waiting for it."""
        self._stopped.set()

    def stop(self) -> None:
        """Stop beating; returns once no renewal is in flight (the caller may then release)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._wait(self._period) and not self._stopped.is_set():
            try:
                kept = self._renew()
            except Exception as exc:  # logged, not raised: the next guarded request fails if it is lost
                log.warning("lease.renew_failed", error=type(exc).__name__, detail=str(exc)[:200])
                continue
            if kept is False:
                return
            self.beats += 1
