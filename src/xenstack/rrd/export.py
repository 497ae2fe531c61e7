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
from itertools import chain

import orjson

from .archive import CFS, Ring, Rrd, Timescale

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
        form = "json" if as_json else "xml"
        count = len(times)

        def build(indexes: Sequence[int]) -> list[bytes]:
            parts = [  # each RRD's segments, one consolidation function at a time
                _SEGMENTS.segments(form, scale.rings[c], rrd.row_time(scale), span, count)
                for rrd, scale in used
                for c in cfs
            ]
            return _join_rows(form, [times[i] for i in indexes], parts, indexes)

        # a whole row is final too while the same rings are read at the same offsets
        offsets = tuple(end - rrd.row_time(scale) for rrd, scale in used)
        rows = _ROWS.rows((form, span, tuple(rings), offsets), times, build)
        if as_json:
            return Updates(first_time, span, end, legend, times, [], json_rows=rows)
        return Updates(first_time, span, end, legend, times, [], rows)
    columns = [ring.newest(len(times)) for ring in rings]
    return Updates(first_time, span, end, legend, times, columns)


# what "%.5g" writes -> what XAPI's f_to_s writes, inside an xport cell
_SPECIAL = (
    ("<v>nan</v>", "<v>NaN</v>"),
    ("<v>inf</v>", "<v>Infinity</v>"),
    ("<v>-inf</v>", "<v>-Infinity</v>"),
    ("<v>0</v>", "<v>0.0</v>"),
    ("<v>-0</v>", "<v>0.0</v>"),
)


def render_segments(form: str, rings: Sequence[Ring], ages: Sequence[int]) -> list[bytes]:
    """The part of each row (``ages`` pushes old) that ``rings`` (one RRD's) make: XML cells
    ``<v>..</v>`` in XAPI's spellings, or JSON numbers (null unknown) joined by commas. One
    format for them all."""
    n, count = len(rings), len(ages)
    if n == 0 or count == 0:
        return [b""] * count
    if list(ages) == list(range(count)):  # the newest rows: a transpose of the columns
        rows: Sequence[Sequence[float]] = list(zip(*(r.newest(count) for r in rings), strict=True))
    else:
        rows = [[r.peek(age) for r in rings] for age in ages]
    if form == "json":
        text = orjson.dumps(rows)[2:-2]  # [[a,b],[c,d]] -> a,b],[c,d
        return text.split(b"],[")
    xml = (("<v>%.5g</v>" * n + _SEP) * count) % tuple(chain.from_iterable(rows))
    for python, xapi in _SPECIAL:
        xml = xml.replace(python, xapi)
    return [part.encode() for part in xml.split(_SEP)[:-1]]


class SegmentCache:
    """Rendered row segments: per RRD and consolidation function read (the very rings, so a
    forgotten source's new rings are another entry), what it puts in the row of each time.

    A row is final once its time has passed (the rings only push), and XAPI's clients (Xen
    Orchestra, XenCenter) ask for the same host and VMs every few seconds: a read after a
    tick renders each RRD's one new row and reuses the rest, and a VM that starts costs its
    own rows only. Segments are kept by their RRD's own time (an RRD a tick behind the
    others is read at the same ages, as XAPI does, and cached by what its rows stand for)
    until they fall out of their ring, whatever the reads ask for. The collector renders
    the finest AVERAGE rows ahead of any read (:func:`prerender`). The least recently used
    entries go first past ``size``."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, dict[int, bytes]] = OrderedDict()

    def _known(self, key: Hashable) -> dict[int, bytes]:
        known = self.entries.pop(key, None)
        if known is None:
            known = {}
        self.entries[key] = known
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return known

    def segments(
        self, form: str, rings: Sequence[Ring], newest: int, span: int, count: int
    ) -> list[bytes]:
        """The segments of the rows 0..``count``-1 pushes old, the newest one at ``newest``."""
        known = self._known((form, span, tuple(rings)))
        times = [newest - age * span for age in range(count)]
        missing = [age for age, t in enumerate(times) if t not in known]
        if missing:
            self._render(form, rings, known, times, missing, newest, span)
        return [known[t] for t in times]

    def fill(self, form: str, rings: Sequence[Ring], newest: int, span: int) -> int:
        """Render every row the rings hold that is not rendered yet (after a tick: the new
        one); return how many were."""
        known = self._known((form, span, tuple(rings)))
        count = len(rings[0]) if rings else 0
        if len(known) == count and newest in known:  # kept whole since the last tick
            return 0
        times = [newest - age * span for age in range(count)]
        missing = [age for age, t in enumerate(times) if t not in known]
        if missing:
            self._render(form, rings, known, times, missing, newest, span)
        return len(missing)

    @staticmethod
    def _render(
        form: str,
        rings: Sequence[Ring],
        known: dict[int, bytes],
        times: Sequence[int],
        missing: list[int],
        newest: int,
        span: int,
    ) -> None:
        if len(missing) == len(times):
            missing = list(range(len(times)))
        for age, text in zip(missing, render_segments(form, rings, missing), strict=True):
            known[times[age]] = text
        held = len(rings[0]) if rings else len(times)  # older rows have left the rings
        oldest = newest - (held - 1) * span
        for t in [t for t in known if t < oldest]:
            del known[t]


_SEGMENTS = SegmentCache()
PRERENDERED = ("AVERAGE",)  # what Xen Orchestra, XenCenter and ``xenstack top`` read


def prerender(rrd: Rrd) -> int:
    """Render, in both forms, the rows of ``rrd``'s finest archives that clients read (its
    AVERAGE rows) not rendered yet: all of them for an RRD just read from disk, the new row
    after a tick. Returns how many segments were rendered."""
    scale = rrd.timescales[0]
    span = rrd.step * scale.pdp_per_row
    newest = rrd.row_time(scale)
    rendered = 0
    for cf in PRERENDERED:
        for form in ("xml", "json"):
            rendered += _SEGMENTS.fill(form, scale.rings[cf], newest, span)
    return rendered


def prerendered_bytes() -> int:
    """The size of every segment kept rendered (for the benchmark)."""
    return sum(len(text) for known in _SEGMENTS.entries.values() for text in known.values())


class RowCache:
    """Whole rows of the answers last given, by what was read (the form, the rings and each
    RRD's offset): a client asking the same again after a tick gets the rows it had, and
    the new one joined from the RRDs' segments. A few answers are kept."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, dict[int, bytes]] = OrderedDict()

    def rows(
        self,
        key: Hashable,
        times: Sequence[int],
        build: Callable[[Sequence[int]], list[bytes]],
    ) -> list[bytes]:
        known = self.entries.pop(key, None)
        if known is None:
            known = {}
        self.entries[key] = known
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        missing = [i for i, t in enumerate(times) if t not in known]
        if missing:
            for i, row in zip(missing, build(missing), strict=True):
                known[times[i]] = row
            oldest = times[-1]
            for t in [t for t in known if t < oldest]:
                del known[t]
        return [known[t] for t in times]


_ROWS = RowCache()


def _join_rows(
    form: str,
    times: Sequence[int],
    parts: Sequence[Sequence[bytes]],
    indexes: Sequence[int] | None = None,
) -> list[bytes]:
    """Each time's row from every RRD's segment of it (segment ``indexes[k]`` for
    ``times[k]``; by default the k-th)."""
    rows = []
    for k, t in enumerate(times):
        i = k if indexes is None else indexes[k]
        if form == "json":
            values = b",".join([p[i] for p in parts if p[i]])
            rows.append(b'{"t":%d,"values":[%b]}' % (t, values))
        else:
            rows.append(b"<row><t>%d</t>%b</row>" % (t, b"".join([p[i] for p in parts])))
    return rows


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
        rings = [Ring(len(u.times), list(reversed(c))) for c in u.columns]
        segments = render_segments("xml", rings, range(len(u.times)))
        rows = _join_rows("xml", u.times, [segments])
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
