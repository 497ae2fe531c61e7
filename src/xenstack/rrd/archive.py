"""Round-robin archives as XAPI's rrdd keeps them: data sources, PDPs and consolidated rows.

An :class:`Rrd` has data sources (:class:`DataSource`) sampled every ``step`` seconds (5) and,
per timescale, one archive per consolidation function (AVERAGE, MIN, MAX) holding ``rows``
consolidated data points (CDPs) of ``pdp_per_row`` primary data points (PDPs) each. XAPI's
timescales: 5 s for 10 minutes (1 x 120), 1 minute for 2 hours (12 x 120), 1 hour for a week
(720 x 168), 1 day for a year (17280 x 366).

An update at time ``t`` gives each data source a value: a gauge is a level (memory, load), an
absolute value a rate already, a derive value a counter whose difference over the interval
is the rate (bytes, CPU seconds). The interval since the previous update is spread over the
PDPs it completes (each gets the interval's average rate), as rrdtool and XAPI do; a source
without a value, or an interval longer than the heartbeat, makes its PDPs unknown. A PDP
completes at every multiple of ``step``: the row stamped ``T`` covers ``(T - span, T]``.

A CDP consolidates the PDPs of its span: AVERAGE the mean of the known ones, MIN and MAX
their extremes; more than ``xff`` (one half) unknown makes it unknown (NaN). The three
archives of a timescale share one accumulator per source, so an update costs a few
operations per source and timescale.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAN = math.nan
STEP = 5
XFF = 0.5
HEARTBEAT = 300.0  # seconds without an update after which values are unknown
CFS = ("AVERAGE", "MIN", "MAX")
# (PDPs per row, rows): 5 s x 120, 1 min x 120, 1 h x 168, 1 day x 366
TIMESCALES: tuple[tuple[int, int], ...] = ((1, 120), (12, 120), (720, 168), (17280, 366))

GAUGE, ABSOLUTE, DERIVE = "GAUGE", "ABSOLUTE", "DERIVE"
KINDS = (GAUGE, ABSOLUTE, DERIVE)


class Ring:
    """A fixed number of floats, newest first by :meth:`peek`; starts full of NaN."""

    __slots__ = ("data", "head")

    def __init__(self, size: int, values: Sequence[float] = ()) -> None:
        self.data = array("d", [NAN]) * size
        self.head = size - 1  # index of the newest value
        for value in values:  # oldest first
            self.push(value)

    def __len__(self) -> int:
        return len(self.data)

    def push(self, value: float) -> None:
        head = self.head + 1
        if head == len(self.data):
            head = 0
        self.data[head] = value
        self.head = head

    def peek(self, age: int) -> float:
        """The value pushed ``age`` pushes ago (0: the newest)."""
        return self.data[(self.head - age) % len(self.data)]

    def oldest_first(self) -> list[float]:
        size = len(self.data)
        return [self.data[(self.head + 1 + i) % size] for i in range(size)]

    def newest(self, count: int) -> list[float]:
        """The newest ``count`` values, newest first."""
        values: list[float] = _newest(self.data, self.head, count).tolist()
        values.reverse()
        return values


def _newest(data: Any, head: int, count: int) -> Any:
    """The slice of ring storage ``data`` holding its newest ``count`` entries, oldest first."""
    size = len(data)
    if count <= head + 1:
        return data[head - count + 1 : head + 1]
    return data[size - (count - head - 1) :] + data[: head + 1]


@dataclass(slots=True)
class DataSource:
    """One data source: its name, how values are read (GAUGE, ABSOLUTE or DERIVE), the range
    outside which a rate is unknown, and the state of the PDP being built."""

    name: str
    kind: str = GAUGE
    min: float = -math.inf
    max: float = math.inf
    heartbeat: float = HEARTBEAT
    last: float = NAN  # the previous raw value (for DERIVE)
    value: float = 0.0  # the rate accumulated over the current PDP, times seconds
    unknown_sec: float = 0.0  # seconds of the current PDP without a value

    def rate(self, raw: float | None, interval: float) -> float:
        """The rate, times ``interval``, that ``raw`` stands for (NaN if unknown)."""
        value = NAN if raw is None else float(raw)
        previous, self.last = self.last, value
        if interval > self.heartbeat:
            return NAN
        if self.kind == GAUGE:
            return value * interval
        if self.kind == ABSOLUTE:
            return value
        return value - previous  # DERIVE: NaN when either is unknown


@dataclass(slots=True)
class Timescale:
    """The archives of one span (one per consolidation function) and their accumulators."""

    pdp_per_row: int
    rows: int
    xff: float = XFF
    rings: dict[str, list[Ring]] = field(default_factory=dict)  # cf -> one ring per source
    total: list[float] = field(default_factory=list)  # sum of the known PDPs
    known: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)

    def add_source(self, unknown: int) -> None:
        for cf in CFS:
            self.rings.setdefault(cf, []).append(Ring(self.rows))
        self.total.append(0.0)
        self.known.append(0)
        self.unknown.append(unknown)
        self.low.append(math.inf)
        self.high.append(-math.inf)

    def remove_source(self, index: int) -> None:
        for rings in self.rings.values():
            del rings[index]
        for column in (self.total, self.known, self.unknown, self.low, self.high):
            del column[index]

    def accumulate(self, count: int, pdps: Sequence[float]) -> None:
        """Add ``count`` PDPs of value ``pdps[i]`` to each source's current CDP."""
        if count <= 0:
            return
        total, known, unknown, low, high = self.total, self.known, self.unknown, self.low, self.high
        for i, pdp in enumerate(pdps):
            if pdp != pdp:  # NaN
                unknown[i] += count
            else:
                total[i] += pdp * count
                known[i] += count
                if pdp < low[i]:
                    low[i] = pdp
                if pdp > high[i]:
                    high[i] = pdp

    def complete(self) -> None:
        """Push the current CDP of every source and start new ones."""
        limit = int(self.xff * self.pdp_per_row)
        averages, lows, highs = self.rings["AVERAGE"], self.rings["MIN"], self.rings["MAX"]
        for i in range(len(self.total)):
            if self.unknown[i] > limit or self.known[i] == 0:
                averages[i].push(NAN)
                lows[i].push(NAN)
                highs[i].push(NAN)
            else:
                averages[i].push(self.total[i] / self.known[i])
                lows[i].push(self.low[i])
                highs[i].push(self.high[i])
            self.total[i] = 0.0
            self.known[i] = self.unknown[i] = 0
            self.low[i] = math.inf
            self.high[i] = -math.inf

    def repeat(self, times: int, pdps: Sequence[float]) -> None:
        """Push ``times`` whole CDPs made of the same PDPs (a long interval)."""
        for _ in range(min(times, self.rows)):
            self.accumulate(self.pdp_per_row, pdps)
            self.complete()

    def prepared(self, cf: str, index: int) -> float:
        """The value the current CDP of a source would have now, for ``cf``."""
        if self.known[index] == 0:
            return NAN
        if cf == "AVERAGE":
            return self.total[index] / self.known[index]
        return self.low[index] if cf == "MIN" else self.high[index]


class Rrd:
    """One object's round-robin database (a host, a VM or an SR)."""

    def __init__(
        self,
        sources: Sequence[DataSource],
        timestamp: float,
        *,
        step: int = STEP,
        timescales: Sequence[tuple[int, int]] = TIMESCALES,
    ) -> None:
        self.step = step
        self.last_updated = float(timestamp)
        self.sources: list[DataSource] = []
        self.timescales = [Timescale(pdp, rows) for pdp, rows in timescales]
        for source in sources:
            self.add_source(source)

    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def index(self, name: str) -> int:
        for i, source in enumerate(self.sources):
            if source.name == name:
                return i
        raise KeyError(name)

    def add_source(self, source: DataSource) -> None:
        """Add a source (no-op if one has its name); its past is unknown."""
        if any(s.name == source.name for s in self.sources):
            return
        self.sources.append(source)
        pdp_index = int(self.last_updated // self.step)
        for scale in self.timescales:
            scale.add_source(pdp_index % scale.pdp_per_row)

    def remove_source(self, name: str) -> None:
        """Drop a source and every value it had (KeyError if there is none)."""
        index = self.index(name)
        del self.sources[index]
        for scale in self.timescales:
            scale.remove_source(index)

    def update(self, timestamp: float, values: Mapping[str, float]) -> None:
        """Record the sources' values at ``timestamp`` (missing ones are unknown).

        An update at or before the last one is ignored (a clock that went back).
        """
        interval = timestamp - self.last_updated
        if interval <= 0:
            return
        step = self.step
        processed = (self.last_updated // step) * step  # start of the PDP being built
        occupied = (timestamp // step) * step
        elapsed = int((occupied - processed) // step)
        age = timestamp - occupied
        before, after = (interval - age, age) if elapsed > 0 else (interval, 0.0)
        self.last_updated = timestamp
        rates = [s.rate(values.get(s.name), interval) for s in self.sources]
        for source, rate in zip(self.sources, rates, strict=True):
            if rate != rate:
                source.unknown_sec += before
            else:
                source.value += before * rate / interval
        if elapsed == 0:
            return
        span = occupied - processed
        pdps = [self._pdp(s, span) for s in self.sources]
        self._consolidate(int(processed // step), elapsed, pdps)
        for source, rate in zip(self.sources, rates, strict=True):
            if rate != rate:
                source.value, source.unknown_sec = 0.0, after
            else:
                source.value, source.unknown_sec = after * rate / interval, 0.0

    @staticmethod
    def _pdp(source: DataSource, span: float) -> float:
        known = span - source.unknown_sec
        if known <= 0:
            return NAN
        pdp = source.value / known
        return pdp if source.min <= pdp <= source.max else NAN

    def _consolidate(self, first_pdp: int, elapsed: int, pdps: Sequence[float]) -> None:
        """Add ``elapsed`` PDPs (the first numbered ``first_pdp``) to every timescale."""
        for scale in self.timescales:
            n = scale.pdp_per_row
            to_complete = n - first_pdp % n  # PDPs that finish the current CDP
            if elapsed < to_complete:
                scale.accumulate(elapsed, pdps)
                continue
            scale.accumulate(to_complete, pdps)
            scale.complete()
            whole, rest = divmod(elapsed - to_complete, n)
            scale.repeat(whole, pdps)
            scale.accumulate(rest, pdps)

    # ---- reading ---------------------------------------------------------------------------

    def latest(self, name: str, cf: str = "AVERAGE") -> float:
        """The newest consolidated value of a source in the finest archive (KeyError if none)."""
        index = self.index(name)
        return self.timescales[0].rings[cf][index].peek(0)

    def row_time(self, scale: Timescale) -> int:
        """The time stamp of a timescale's newest row."""
        span = self.step * scale.pdp_per_row
        return int(self.last_updated // span) * span

    def best_timescale(self, pdp_interval: int, start: int) -> Timescale:
        """The finest timescale at least ``pdp_interval`` PDPs coarse that still holds
        ``start``; else the one reaching furthest back (as XAPI's ``find_best_rras``)."""
        last_pdp = (self.last_updated // self.step) * self.step
        for scale in self.timescales:
            oldest = last_pdp - self.step * scale.rows * scale.pdp_per_row
            if scale.pdp_per_row >= pdp_interval and start > oldest:
                return scale
        return self.timescales[-1]
