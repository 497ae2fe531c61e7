"""The archives on the wire, in XAPI's formats: ``/rrd_updates`` (the rrdtool ``xport`` XML, or
JSON) and a whole RRD (``/host_rrd``, ``/vm_rrd``: rrdtool's dump XML, version 0003).

Representation only: :func:`updates` picks the rows an ``/rrd_updates`` query asks for (as
XAPI's ``Rrd_updates.create_multi``: the finest timescale that reaches back to ``start`` and
is at least ``interval`` seconds coarse, rows newest first, every RRD read at the first one's
times); :func:`xport_xml` and :func:`xport_json` render them. Numbers are written as XAPI
writes them (five significant digits, ``NaN``, ``Infinity``, ``0.0``). In the JSON form meta
fields and ``t`` are numbers and unknown values are ``null`` (what Xen Orchestra's stats code
and browsers parse without a JSON5 reader).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from .archive import CFS, Ring, Rrd, cells

XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


class NoArchive(Exception):
    """No RRD to read, or none with the consolidation function asked for."""


def f_to_s(value: float) -> str:
    """A float as XAPI writes it (``%0.5g``; ``NaN``; ``Infinity``; ``0.0``)."""
    if value != value:
        return "NaN"
    if value == 0.0:
        return "0.0"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return format(value, ".5g")


@dataclass(frozen=True, slots=True)
class Updates:
    """The answer of an ``/rrd_updates`` query: its times, legend and columns (the values, or
    for the XML form their xport cells)."""

    start: int
    step: int
    end: int
    legend: list[str]
    times: list[int]  # newest first
    columns: list[list[float]]  # one per legend entry, newest first
    cells: list[list[str]] | None = None  # the same as xport cells, when asked for

    def rows(self) -> list[tuple[int, list[float]]]:
        return [(t, [c[i] for c in self.columns]) for i, t in enumerate(self.times)]


def updates(
    prefixed: Sequence[tuple[str, Rrd]],
    start: int,
    interval: int,
    cf: str | None,
    *,
    as_cells: bool = False,
) -> Updates:
    """The rows of ``prefixed`` RRDs (each with its legend prefix, ``host:<uuid>:``) from
    ``start`` (negative: seconds before the last update) at ``interval`` seconds or coarser,
    for one consolidation function or (None) all; ``as_cells``: as xport cells (for
    :func:`xport_xml`) rather than values. NoArchive when there is nothing to read."""
    if not prefixed:
        raise NoArchive("no RRD")
    first = prefixed[0][1]
    step, last_updated = first.step, first.last_updated
    chosen = [(p, r) for p, r in prefixed if r.step == step]
    if start < 0:
        start = min(int(start + r.last_updated) for _, r in chosen)
    pdp_interval = interval // step
    cfs = CFS if cf is None else (cf,)
    if any(c not in CFS for c in cfs):
        raise NoArchive(f"no archive for {cf}")
    scales = [(p, r, r.best_timescale(pdp_interval, start)) for p, r in chosen]
    shape = (scales[0][2].pdp_per_row, scales[0][2].rows)
    span = step * shape[0]
    end = int(last_updated // span) * span
    first_time = int(start // span) * span + span
    times: list[int] = []
    while len(times) < shape[1] and end - len(times) * span >= start:
        times.append(end - len(times) * span)
    legend: list[str] = []
    rings: list[Ring] = []
    for prefix, rrd, scale in scales:
        if (scale.pdp_per_row, scale.rows) != shape:
            continue
        names = rrd.names()
        for c in cfs:
            legend.extend(f"{c}:{prefix}{name}" for name in names)
            rings.extend(scale.rings[c])
    count = len(times)
    if as_cells:
        cells = [ring.newest_cells(count) for ring in rings]
        return Updates(first_time, span, end, legend, times, [], cells)
    columns = [ring.newest(count) for ring in rings]
    return Updates(first_time, span, end, legend, times, columns)


def xport_xml(u: Updates) -> bytes:
    """``u`` as XAPI's ``xport`` XML."""
    columns = u.cells if u.cells is not None else [cells(c) for c in u.columns]
    parts = [
        XML_HEAD,
        f"<xport><meta><start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
        f"<rows>{len(u.times)}</rows><columns>{len(u.legend)}</columns><legend>",
        "".join(f"<entry>{_escape(e)}</entry>" for e in u.legend),
        "</legend></meta><data>",
    ]
    if columns:
        for t, row in zip(u.times, zip(*columns, strict=True), strict=False):
            parts.append(f"<row><t>{t}</t>")
            parts.append("".join(row))
            parts.append("</row>")
    else:
        parts.extend(f"<row><t>{t}</t></row>" for t in u.times)
    parts.append("</data></xport>")
    return "".join(parts).encode()


def xport_json(u: Updates) -> bytes:
    """``u`` as JSON: ``{"meta": {start, step, end, rows, columns, legend}, "data": [{t,
    values}]}``, rows newest first."""
    data = [{"t": t, "values": values} for t, values in u.rows()]
    meta = {
        "start": u.start,
        "step": u.step,
        "end": u.end,
        "rows": len(u.times),
        "columns": len(u.legend),
        "legend": u.legend,
    }
    return orjson.dumps({"meta": meta, "data": data})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
