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
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import orjson

from .archive import CFS, Ring, Rrd, Timescale, cells

_SEP = "\x00"

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
    for the XML form its rows already rendered)."""

    start: int
    step: int
    end: int
    legend: list[str]
    times: list[int]  # newest first
    columns: list[list[float]]  # one per legend entry, newest first
    xml_rows: list[bytes] | None = None  # ``<row>...</row>`` per time, when asked for
    json_rows: list[bytes] | None = None  # ``{"t":..,"values":[..]}`` per time, when asked

    def rows(self) -> list[tuple[int, list[float]]]:
        return [(t, [c[i] for c in self.columns]) for i, t in enumerate(self.times)]


def updates(
    prefixed: Sequence[tuple[str, Rrd]],
    start: int,
    interval: int,
    cf: str | None,
    *,
    as_xml: bool = False,
    as_json: bool = False,
) -> Updates:
    """The rows of ``prefixed`` RRDs (each with its legend prefix, ``host:<uuid>:``) from
    ``start`` (negative: seconds before the last update) at ``interval`` seconds or coarser,
    for one consolidation function or (None) all; ``as_xml``/``as_json``: the rows rendered
    for :func:`xport_xml`/:func:`xport_json` rather than the values. NoArchive when there is
    nothing to read."""
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
    used: list[tuple[Rrd, Timescale]] = []
    for prefix, rrd, scale in scales:
        if (scale.pdp_per_row, scale.rows) != shape:
            continue
        names = rrd.names()
        used.append((rrd, scale))
        for c in cfs:
            legend.extend(f"{c}:{prefix}{name}" for name in names)
            rings.extend(scale.rings[c])
    if as_xml or as_json:
        aligned = all(r.row_time(sc) == end for r, sc in used)
        form = "json" if as_json else "xml"
        # the rings themselves: a forgotten source's new rings are another key
        key = (form, shape, tuple(legend), tuple(rings)) if aligned else None
        render = _render_json_rows if as_json else _render_rows
        rows = _ROWS.rows(key, rings, times, end, span, render)
        if as_json:
            return Updates(first_time, span, end, legend, times, [], json_rows=rows)
        return Updates(first_time, span, end, legend, times, [], rows)
    columns = [ring.newest(len(times)) for ring in rings]
    return Updates(first_time, span, end, legend, times, columns)


def _render_rows(rings: Sequence[Ring], times: Sequence[int], ages: Sequence[int]) -> list[bytes]:
    """``<row>`` elements for the rows ``ages`` pushes old (times ``times``), in one format."""
    if not rings:
        return [f"<row><t>{t}</t></row>".encode() for t in times]
    count = len(ages)
    if count > 1 and list(ages) == list(range(count)):  # the newest rows: column slices
        flat: list[float] = []
        for ring in rings:
            flat.extend(ring.newest(count))
        texts = cells(flat)  # column-major: row i is every count-th cell from i
        return [
            f"<row><t>{t}</t>{''.join(texts[i::count])}</row>".encode() for i, t in enumerate(times)
        ]
    rows = []
    for t, age in zip(times, ages, strict=True):
        rows.append(f"<row><t>{t}</t>{''.join(cells([r.peek(age) for r in rings]))}</row>".encode())
    return rows


def _render_json_rows(
    rings: Sequence[Ring], times: Sequence[int], ages: Sequence[int]
) -> list[bytes]:
    """The JSON form's rows, ``{"t": T, "values": [...]}`` (unknown values null)."""
    count = len(ages)
    if count > 1 and list(ages) == list(range(count)):
        flat: list[float] = []
        for ring in rings:
            flat.extend(ring.newest(count))
        return [orjson.dumps({"t": t, "values": flat[i::count]}) for i, t in enumerate(times)]
    return [
        orjson.dumps({"t": t, "values": [r.peek(age) for r in rings]})
        for t, age in zip(times, ages, strict=True)
    ]


Render = Callable[[Sequence[Ring], Sequence[int], Sequence[int]], list[bytes]]


class RowCache:
    """Rendered xport rows, by what was asked (the legend and the very rings read).

    A row is final once its time has passed (the rings only push), so a read after a tick
    renders the one new row and reuses the others: XAPI's clients (Xen Orchestra, XenCenter)
    ask for the same host and VMs every few seconds. Only reads where every RRD's newest row
    is at the same time are cached (rows then name the same moment in every RRD). A few
    shapes are kept, the least recently read dropped first."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, dict[int, bytes]] = OrderedDict()

    def rows(
        self,
        key: Hashable | None,
        rings: Sequence[Ring],
        times: Sequence[int],
        end: int,
        span: int,
        render: Render = _render_rows,
    ) -> list[bytes]:
        ages = [(end - t) // span for t in times]
        if key is None:
            return render(rings, times, ages)
        known = self.entries.pop(key, {})
        self.entries[key] = known
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        missing = [(t, a) for t, a in zip(times, ages, strict=True) if t not in known]
        if missing:
            if len(missing) > len(times) // 2:
                fresh = dict(zip(times, render(rings, times, ages), strict=True))
            else:
                new_times, new_ages = [t for t, _ in missing], [a for _, a in missing]
                fresh = dict(zip(new_times, render(rings, new_times, new_ages), strict=True))
            oldest = times[-1] if times else end
            for t in [t for t in known if t < oldest]:
                del known[t]
            known.update(fresh)
        return [known[t] for t in times]


_ROWS = RowCache()


def xport_xml(u: Updates) -> bytes:
    """``u`` as XAPI's ``xport`` XML."""
    head = [
        XML_HEAD,
        f"<xport><meta><start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
        f"<rows>{len(u.times)}</rows><columns>{len(u.legend)}</columns><legend>",
        f"<entry>{_escape(_SEP.join(u.legend))}</entry>".replace(_SEP, "</entry><entry>")
        if u.legend
        else "",
        "</legend></meta><data>",
    ]
    rows = u.xml_rows
    if rows is None:
        rings = [Ring(len(c), list(reversed(c))) for c in u.columns]
        ages = list(range(len(u.times)))
        rows = _render_rows(rings, u.times, ages) if u.columns else _render_rows([], u.times, [])
    return b"".join([("".join(head)).encode(), *rows, b"</data></xport>"])


def xport_json(u: Updates) -> bytes:
    """``u`` as JSON: ``{"meta": {start, step, end, rows, columns, legend}, "data": [{t,
    values}]}``, rows newest first."""
    meta = {
        "start": u.start,
        "step": u.step,
        "end": u.end,
        "rows": len(u.times),
        "columns": len(u.legend),
        "legend": u.legend,
    }
    rows = u.json_rows
    if rows is None:
        if u.columns:  # the rows by one C-level transpose (orjson writes tuples as arrays)
            data = zip(u.times, zip(*u.columns, strict=True), strict=True)
            rows = [orjson.dumps({"t": t, "values": v}) for t, v in data]
        else:
            rows = [orjson.dumps({"t": t, "values": []}) for t in u.times]
    return b"".join([b'{"meta":', orjson.dumps(meta), b',"data":[', b",".join(rows), b"]}"])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
