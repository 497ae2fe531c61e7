"""The toolstack's clock: wall-clock dates as XenAPI writes them, and a monotonic counter.

Code that stamps times on records (tasks, messages, sessions, guest metrics) asks the clock
of its toolstack (``ctx.toolstack.clock``), so a test can put a fake one in its place
(``xenstack.testing.FakeClock``). :class:`SystemClock` is the real one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from ..idl.types import DateTime

DATE_FORMAT = "%Y%m%dT%H:%M:%SZ"  # XenAPI's DateTime, always in UTC


def xenapi_date(moment: datetime) -> DateTime:
    """``moment`` as XenAPI dates it (UTC, to the second)."""
    return DateTime(moment.astimezone(UTC).strftime(DATE_FORMAT))


class Clock(Protocol):
    """What the toolstack reads the time from."""

    def now(self) -> DateTime:
        """The current UTC date, as a XenAPI DateTime."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and intervals)."""
        ...


class SystemClock:
    """The host's clocks."""

    def now(self) -> DateTime:
        return xenapi_date(datetime.now(UTC))

    def monotonic(self) -> float:
        return time.monotonic()
