"""A whole RRD as XML (rrdtool's dump, version 0003, as XAPI writes and reads it), both ways.

``/host_rrd`` and ``/vm_rrd`` answer with :func:`to_xml` in XAPI's number format; the state
directory keeps archives in the same layout with full precision (``exact=True``), gzipped,
and :func:`from_xml` reads either back. Parsing is strict: a document that is not an RRD of
this shape raises :class:`ValueError`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable

from .archive import CFS, KINDS, DataSource, Ring, Rrd, Timescale
from .export import XML_HEAD, f_to_s

MAX_ROWS = 100_000  # no archive of ours is near this; a larger file is not ours


def _exact(value: float) -> str:
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def to_xml(rrd: Rrd, *, exact: bool = False) -> bytes:
    fmt: Callable[[float], str] = _exact if exact else f_to_s
    parts = [XML_HEAD, "<rrd><version>0003</version>"]
    parts.append(f"<step>{rrd.step}</step><lastupdate>{int(rrd.last_updated)}</lastupdate>")
    if exact:
        parts.append(f"<lastupdate_exact>{_exact(rrd.last_updated)}</lastupdate_exact>")
    for s in rrd.sources:
        parts.append(
            f"<ds><name>{s.name}</name><type>{s.kind}</type>"
            f"<minimal_heartbeat>{fmt(s.heartbeat)}</minimal_heartbeat>"
            f"<min>{fmt(s.min)}</min><max>{fmt(s.max)}</max><last_ds>{fmt(s.last)}</last_ds>"
            f"<value>{fmt(s.value)}</value><unknown_sec>{int(s.unknown_sec)}</unknown_sec></ds>"
        )
    for scale in rrd.timescales:
        for cf in CFS:
            parts.append(_rra(rrd, scale, cf, fmt))
    parts.append("</rrd>")
    return "".join(parts).encode()


def _rra(rrd: Rrd, scale: Timescale, cf: str, fmt: Callable[[float], str]) -> str:
    parts = [
        f"<rra><cf>{cf}</cf><pdp_per_row>{scale.pdp_per_row}</pdp_per_row>",
        f"<params><xff>{fmt(scale.xff)}</xff></params><cdp_prep>",
    ]
    for i in range(len(rrd.sources)):
        parts.append(
            "<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
            f"<value>{fmt(scale.prepared(cf, i))}</value>"
            f"<unknown_datapoints>{scale.unknown[i]}</unknown_datapoints></ds>"
        )
    parts.append("</cdp_prep><database>")
    columns = [ring.oldest_first() for ring in scale.rings[cf]]
    for row in range(scale.rows):
        values = "".join(f"<v>{fmt(c[row])}</v>" for c in columns)
        parts.append(f"<row>{values}</row>")
    parts.append("</database></rra>")
    return "".join(parts)


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    if child is None:
        raise ValueError(f"<{element.tag}> has no <{tag}>")
    return child.text or ""


def _float(text: str) -> float:
    return float(text)  # float() reads NaN, Infinity and -Infinity as XAPI writes them


def from_xml(data: bytes) -> Rrd:
    """The RRD in ``data``; ValueError if it is not one."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != "rrd" or _text(root, "version") != "0003":
        raise ValueError("not an RRD (version 0003)")
    step = int(_text(root, "step"))
    exact = root.find("lastupdate_exact")
    last = _float(exact.text or "") if exact is not None else float(_text(root, "lastupdate"))
    sources = [_source(ds) for ds in root.findall("ds")]
    scales: dict[int, dict[str, ET.Element]] = {}
    for rra in root.findall("rra"):
        cf = _text(rra, "cf")
        if cf not in CFS:
            raise ValueError(f"unknown consolidation function {cf}")
        scales.setdefault(int(_text(rra, "pdp_per_row")), {})[cf] = rra
    shape = []
    for pdp, by_cf in scales.items():
        if set(by_cf) != set(CFS):
            raise ValueError(f"timescale {pdp} lacks a consolidation function")
        shape.append((pdp, len(by_cf["AVERAGE"].findall("database/row"))))
    rrd = Rrd([], last, step=step, timescales=shape)
    rrd.sources = sources
    for scale in rrd.timescales:
        _fill(scale, scales[scale.pdp_per_row], len(sources), last, step)
    return rrd


def _source(ds: ET.Element) -> DataSource:
    kind = _text(ds, "type")
    if kind not in KINDS:
        raise ValueError(f"unknown data source type {kind}")
    return DataSource(
        name=_text(ds, "name"),
        kind=kind,
        min=_float(_text(ds, "min")),
        max=_float(_text(ds, "max")),
        heartbeat=_float(_text(ds, "minimal_heartbeat")),
        last=_float(_text(ds, "last_ds") or "NaN"),
        value=_float(_text(ds, "value")),
        unknown_sec=_float(_text(ds, "unknown_sec")),
    )


def _fill(
    scale: Timescale, by_cf: dict[str, ET.Element], count: int, last: float, step: int
) -> None:
    if scale.rows > MAX_ROWS:
        raise ValueError("archive too long")
    in_cdp = int(last // step) % scale.pdp_per_row  # PDPs already in the current CDP
    for _ in range(count):
        scale.add_source(0)
    for cf, rra in by_cf.items():
        rows = [
            [_float(v.text or "") for v in row.findall("v")] for row in rra.findall("database/row")
        ]
        if len(rows) != scale.rows or any(len(r) != count for r in rows):
            raise ValueError("ragged archive")
        scale.rings[cf] = [Ring(scale.rows, [r[i] for r in rows]) for i in range(count)]
        preps = rra.findall("cdp_prep/ds")
        if len(preps) != count:
            raise ValueError("cdp_prep does not match the data sources")
        for i, prep in enumerate(preps):
            value = _float(_text(prep, "value"))
            unknown = int(_text(prep, "unknown_datapoints"))
            known = max(0, in_cdp - unknown)
            scale.unknown[i] = unknown
            if value != value or known == 0:
                continue
            scale.known[i] = known
            if cf == "AVERAGE":
                scale.total[i] = value * known
            elif cf == "MIN":
                scale.low[i] = value
            else:
                scale.high[i] = value
