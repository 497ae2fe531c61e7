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

from .archive import CFS, Ring, Rrd, Timescale

XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
# what "%.5g" writes -> what XAPI's f_to_s writes
_SPECIAL = (
    ("<v>nan</v>", "<v>NaN</v>"),
    ("<v>-nan</v>", "<v>NaN</v>"),
    ("<v>inf</v>", "<v>Infinity</v>"),
    ("<v>-inf</v>", "<v>-Infinity</v>"),
    ("<v>0</v>", "<v>0.0</v>"),
    ("<v>-0</v>", "<v>0.0</v>"),
)


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
    """The answer of an ``/rrd_updates`` query: its times, legend and columns."""

    start: int
    step: int
    end: int
    legend: list[str]
    times: list[int]  # newest first
    columns: list[list[float]]  # one per legend entry, newest first

    def rows(self) -> list[tuple[int, list[float]]]:
        return [(t, [c[i] for c in self.columns]) for i, t in enumerate(self.times)]


def _newest(ring: Ring, count: int) -> list[float]:
    """The ring's newest ``count`` values, newest first."""
    data, head, size = ring.data, ring.head, len(ring.data)
    if count <= head + 1:
        part = data[head - count + 1 : head + 1]
    else:
        part = data[size - (count - head - 1) :] + data[: head + 1]
    values = part.tolist()
    values.reverse()
    return values


def updates(
    prefixed: Sequence[tuple[str, Rrd]], start: int, interval: int, cf: str | None
) -> Updates:
    """The rows of ``prefixed`` RRDs (each with its legend prefix, ``host:<uuid>:``) from
    ``start`` (negative: seconds before the last update) at ``interval`` seconds or coarser,
    for one consolidation function or (None) all. NoArchive when there is nothing to read."""
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
    columns: list[list[float]] = []
    for prefix, rrd, scale in scales:
        if (scale.pdp_per_row, scale.rows) != shape:
            continue
        _columns_of(prefix, rrd, scale, cfs, len(times), legend, columns)
    return Updates(first_time, span, end, legend, times, columns)


def _columns_of(
    prefix: str,
    rrd: Rrd,
    scale: Timescale,
    cfs: Sequence[str],
    count: int,
    legend: list[str],
    columns: list[list[float]],
) -> None:
    names = rrd.names()
    for cf in cfs:
        for name, ring in zip(names, scale.rings[cf], strict=True):
            legend.append(f"{cf}:{prefix}{name}")
            columns.append(_newest(ring, count))


def xport_xml(u: Updates) -> bytes:
    """``u`` as XAPI's ``xport`` XML."""
    parts = [
        XML_HEAD,
        f"<xport><meta><start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
        f"<rows>{len(u.times)}</rows><columns>{len(u.legend)}</columns><legend>",
    ]
    parts.extend(f"<entry>{_escape(e)}</entry>" for e in u.legend)
    parts.append("</legend></meta><data>")
    # one C-level format per row, XAPI's spellings of the special values fixed afterwards
    cell = "<v>%.5g</v>" * len(u.columns)
    for t, values in zip(u.times, zip(*u.columns, strict=True), strict=False):
        parts.append(f"<row><t>{t}</t>{cell % values}</row>")
    if not u.columns:
        parts.extend(f"<row><t>{t}</t></row>" for t in u.times)
    parts.append("</data></xport>")
    text = "".join(parts)
    for python, xapi in _SPECIAL:
        text = text.replace(python, xapi)
    return text.encode()


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
