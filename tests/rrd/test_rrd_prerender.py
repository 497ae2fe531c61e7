"""The rows clients read, rendered ahead of the reads (issue 16: a first read after a restart
as fast as any other): after a store is read back from disk, and after each tick, the
5-second AVERAGE rows are rendered in both forms, one RRD per turn of the event loop; a
read then renders nothing and answers what a fresh rendering does."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from xenstack.rrd import export
from xenstack.rrd.archive import DataSource, Rrd
from xenstack.rrd.collector import Collector
from xenstack.rrd.export import updates, xport_json, xport_xml
from xenstack.rrd.store import RrdStore

START = 6000


class _NoFeed:
    def hosts(self) -> list[Any]:
        return []

    def vms(self) -> list[Any]:
        return []

    def srs(self) -> list[Any]:
        return []

    async def refresh(self) -> None:
        return None


def _rrd(seed: int, ticks: int = 150) -> Rrd:
    rrd = Rrd([DataSource("a"), DataSource("b")], START)
    for k in range(1, ticks + 1):
        value = math.nan if k % 17 == 0 else (seed * 1000 + k) * 1.37
        rrd.update(START + 5 * k, {"a": value, "b": 0.0 if k % 5 else -value})
    return rrd


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each rendering of segments made (all caches emptied first)."""
    export._SEGMENTS.entries.clear()
    export._ROWS.entries.clear()
    made: list[int] = []
    real = export.render_segments

    def counted(form: str, rings: Any, ages: Any) -> list[bytes]:
        made.append(len(ages))
        return real(form, rings, ages)

    monkeypatch.setattr(export, "render_segments", counted)
    return made


def _answers(rrds: list[tuple[str, Rrd]], start: int) -> tuple[bytes, bytes]:
    xml = xport_xml(updates(rrds, start, 0, "AVERAGE", as_xml=True))
    return xml, xport_json(updates(rrds, start, 0, "AVERAGE", as_json=True))


def _fresh(rrds: list[tuple[str, Rrd]], start: int) -> tuple[bytes, bytes]:
    u = updates(rrds, start, 0, "AVERAGE")  # the values, rendered on their own
    return xport_xml(u), xport_json(u)


def test_reads_after_prerendering_render_nothing(renders: list[int], tmp_path: Path) -> None:
    """A store read back from disk, rendered ahead as the collector's loop does at start: the
    first XML and JSON reads of the last ten minutes render no row and answer what a fresh
    rendering does; a tick renders one row per RRD and form; a shorter read keeps the rest."""
    store = RrdStore(tmp_path)
    store.rrds = {("vm", f"v{i}"): _rrd(i) for i in range(3)}
    store.rrds[("vm", "old")] = _rrd(9, ticks=10)  # stopped long ago: not read at start
    store.save_all()
    loaded = RrdStore(tmp_path)
    assert loaded.load() == 4
    collector = Collector(loaded, _NoFeed())
    now = START + 5 * 150 + 2
    recent = collector.recent(now)
    assert len(recent) == 3 and loaded.rrds[("vm", "old")] not in recent
    rendered = asyncio.run(collector.prerender_gently(recent))
    assert rendered == 3 * 2 * 120 and sum(renders) == rendered  # every row, both forms
    chosen = [(f"vm:v{i}:", loaded.rrds[("vm", f"v{i}")]) for i in range(3)]
    start = int(chosen[0][1].last_updated) - 595
    renders.clear()
    first = _answers(chosen, start)
    assert renders == []  # the first reads rendered nothing
    assert first == _fresh(chosen, start)
    for _, rrd in chosen:  # a tick
        rrd.update(rrd.last_updated + 5, {"a": 1.5, "b": 2.5})
    assert collector.prerender([r for _, r in chosen]) == 3 * 2  # the new row, both forms
    renders.clear()
    assert _answers(chosen, start + 5) == _fresh(chosen, start + 5)
    assert renders == [120]  # only the rows of the values read afresh
    for _, rrd in chosen:  # a tick read before the loop renders it, by the last minute
        rrd.update(rrd.last_updated + 5, {"a": 3.5})
    renders.clear()
    last_minute = _answers(chosen, start + 550)
    assert renders == [1] * 6 and last_minute[0].count(b"<row>") == 12
    assert collector.prerender([r for _, r in chosen]) == 0  # the older rows kept
    assert last_minute == _fresh(chosen, start + 550)


def test_prerendering_yields_between_archives(monkeypatch: pytest.MonkeyPatch) -> None:
    """At start the loop renders one RRD per turn: another task runs between any two."""
    export._SEGMENTS.entries.clear()
    store = RrdStore(None)
    store.rrds = {("vm", f"v{i}"): _rrd(i) for i in range(4)}
    collector = Collector(store, _NoFeed())
    order: list[str] = []
    real = export.prerender

    def traced(rrd: Rrd) -> int:
        order.append("render")
        return real(rrd)

    async def main() -> None:
        async def other() -> None:
            for _ in range(8):
                order.append("other")
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        await collector.prerender_gently(collector.recent(START + 5 * 150))
        await task

    monkeypatch.setattr(export, "prerender", traced)
    asyncio.run(main())
    assert order.count("render") == 4
    pairs = list(itertools.pairwise(order))
    assert ("render", "render") not in pairs
