"""A clock a test moves by hand, for ``Toolstack(clock=...)`` and ``simulated_pool(clock=...)``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from ..core.clock import xenapi_date
from ..idl.types import DateTime

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """A :class:`xenstack.core.clock.Clock` that stands still until :meth:`advance` is called.

    It starts at ``start`` (2030-01-01T00:00:00Z by default: a date no real clock shows, so a
    stamp from it is recognisable) with a monotonic reading of 0. Safe to move from a test's
    thread while the toolstack reads it on its own.
    """

    def __init__(self, start: datetime = EPOCH) -> None:
        self._lock = threading.Lock()
        self._wall = start
        self._elapsed = 0.0

    def now(self) -> DateTime:
        with self._lock:
            return xenapi_date(self._wall)

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move both clocks ``seconds`` (>= 0) forward."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._wall += timedelta(seconds=seconds)
            self._elapsed += seconds

    @property
    def datetime(self) -> datetime:
        """The current wall-clock time, as a timezone-aware datetime."""
        with self._lock:
            return self._wall
