"""LeaseHeartbeat: renews on every beat until stopped, survives a failed renewal, stops cleanly."""

from __future__ import annotations

import threading

from elspeth_appendsink.protocol.heartbeat import LeaseHeartbeat


class Beats:
    """A ``wait`` that lets ``n`` beats through without waiting, then blocks until released."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.periods: list[float] = []
        self.parked = threading.Event()
        self.release = threading.Event()

    def __call__(self, period: float) -> bool:
        self.periods.append(period)
        if self.left:
            self.left -= 1
            return False
        self.parked.set()
        self.release.wait()
        return True


def test_every_beat_renews_at_the_given_period_until_stopped() -> None:
    renewals: list[int] = []
    beats = Beats(3)
    heart = LeaseHeartbeat(lambda: renewals.append(1), 5.0, wait=beats).start()
    assert beats.parked.wait(10)
    assert len(renewals) == 3 and heart.beats == 3
    assert beats.periods == [5.0] * 4
    beats.release.set()
    heart.stop()
    assert len(renewals) == 3


def test_a_failed_renewal_is_retried_at_the_next_beat() -> None:
    calls: list[int] = []

    def renew() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection reset")

    beats = Beats(2)
    heart = LeaseHeartbeat(renew, 1.0, wait=beats).start()
    assert beats.parked.wait(10)
    assert len(calls) == 2 and heart.beats == 1
    beats.release.set()
    heart.stop()


def test_stop_before_the_first_beat_renews_nothing() -> None:
    renewals: list[int] = []
    heart = LeaseHeartbeat(lambda: renewals.append(1), 3600.0).start()
    heart.stop()
    assert renewals == [] and heart.beats == 0
