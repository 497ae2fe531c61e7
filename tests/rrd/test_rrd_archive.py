"""The archives' consolidation against an independent model, with hypothesis.

The model knows nothing of accumulators: it takes the samples as a piecewise-constant signal
(an update at ``t`` holds for ``(t_prev, t]``), cuts it into 5-second PDPs, groups the PDPs
of each row (the row stamped ``T`` holds the PDPs ending in ``(T - span, T]``) and applies
the consolidation function, a row being unknown when more than half its PDPs are.
"""

from __future__ import annotations

import gzip
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstack.rrd.archive import DERIVE, DataSource, Ring, Rrd
from xenstack.rrd.dump import from_xml, to_xml
from xenstack.rrd.export import SegmentCache, f_to_s, updates, xport_json, xport_xml

SCALES = ((1, 12), (3, 8), (12, 4))  # small timescales: same code, quick to fill
START = 6000  # a multiple of every span (5, 15, 60 seconds)


def model_rows(samples: list[tuple[int, float]], pdp: int, rows: int) -> dict[int, float]:
    """{row time: AVERAGE} of the model for one timescale, NaN for unknown rows."""
    values: dict[int, float] = {}  # PDP end time -> value
    previous = START
    for t, v in samples:
        for end in range(previous + 5, t + 1, 5):
            values[end] = v
        previous = t
    span = 5 * pdp
    last = samples[-1][0] // span * span
    out: dict[int, float] = {}
    for row in range(rows):
        end = last - row * span
        if end <= START:  # before the RRD existed: unknown
            out[end] = math.nan
            continue
        pdps = [values.get(end - 5 * k, math.nan) for k in range(pdp)]
        known = [p for p in pdps if p == p]
        unknown = len(pdps) - len(known)
        out[end] = math.nan if unknown > pdp // 2 or not known else sum(known) / len(known)
    return out


def same(a: float, b: float) -> bool:
    return (a != a and b != b) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# updates on step boundaries, with gaps of one to four steps, and unknown values now and then
sample_lists = st.lists(
    st.tuples(st.integers(1, 4), st.one_of(st.floats(0, 1000, allow_nan=False), st.just(math.nan))),
    min_size=1,
    max_size=80,
)


def _feed(steps: list[tuple[int, float]]) -> tuple[Rrd, list[tuple[int, float]]]:
    rrd = Rrd([DataSource("x")], START, timescales=SCALES)
    samples = []
    t = START
    for gap, value in steps:
        t += 5 * gap
        samples.append((t, value))
        rrd.update(t, {} if value != value else {"x": value})
    return rrd, samples


@settings(max_examples=150, deadline=None)
@given(sample_lists)
def test_averages_match_the_model(steps: list[tuple[int, float]]) -> None:
    rrd, samples = _feed(steps)
    for scale, (pdp, rows) in zip(rrd.timescales, SCALES, strict=True):
        expected = model_rows(samples, pdp, rows)
        ring = scale.rings["AVERAGE"][0]
        last = rrd.row_time(scale)
        for age in range(rows):
            time = last - age * 5 * pdp
            assert same(ring.peek(age), expected[time]), (pdp, time, ring.peek(age), expected[time])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=12, max_size=60))
def test_min_and_max_are_the_extremes_of_each_row(values: list[float]) -> None:
    rrd = Rrd([DataSource("x", min=-math.inf)], START, timescales=SCALES)
    for i, v in enumerate(values, start=1):
        rrd.update(START + 5 * i, {"x": v})
    scale = rrd.timescales[2]  # one minute: 12 PDPs
    end = START + 5 * len(values)
    complete = [k for k in range(1, len(values) // 12 + 1)]
    for k in complete:  # row ending at START + 60 k holds values[12(k-1):12k]
        age = (end // 60 * 60 - (START + 60 * k)) // 60
        if age >= scale.rows:
            continue  # overwritten by newer rows
        chunk = values[12 * (k - 1) : 12 * k]
        assert math.isclose(scale.rings["MIN"][0].peek(age), min(chunk), abs_tol=1e-9)
        assert math.isclose(scale.rings["MAX"][0].peek(age), max(chunk), abs_tol=1e-9)
        average = scale.rings["AVERAGE"][0].peek(age)
        assert math.isclose(average, sum(chunk) / 12, abs_tol=1e-9)


@given(st.integers(0, 10**9), st.integers(1, 60))
def test_a_counter_becomes_its_rate(per_second: int, steps: int) -> None:
    rrd = Rrd([DataSource("rx", DERIVE, min=0)], START, timescales=SCALES)
    for i in range(steps + 1):
        rrd.update(START + 5 * i, {"rx": per_second * 5 * i})
    if steps >= 2:  # the first sample only sets the counter's origin
        assert rrd.latest("rx") == per_second


def test_a_counter_that_goes_back_is_unknown_not_negative() -> None:
    rrd = Rrd([DataSource("rx", DERIVE, min=0)], START, timescales=SCALES)
    rrd.update(START + 5, {"rx": 1000})
    rrd.update(START + 10, {"rx": 10})  # a new domain: counters restart
    assert math.isnan(rrd.latest("rx"))


def test_updates_between_steps_are_time_weighted() -> None:
    rrd = Rrd([DataSource("x")], START, timescales=SCALES)
    rrd.update(START + 2, {"x": 10.0})
    rrd.update(START + 5, {"x": 20.0})
    assert math.isclose(rrd.latest("x"), (2 * 10 + 3 * 20) / 5)


@settings(max_examples=40, deadline=None)
@given(sample_lists)
def test_the_file_form_reads_back_exactly(steps: list[tuple[int, float]]) -> None:
    rrd, samples = _feed(steps)
    text = to_xml(rrd, exact=True)
    again = from_xml(gzip.decompress(gzip.compress(text)))
    assert to_xml(again, exact=True) == text
    t = samples[-1][0] + 5
    rrd.update(t, {"x": 3.0})
    again.update(t, {"x": 3.0})  # and goes on consolidating the same way
    for mine, theirs in zip(rrd.timescales, again.timescales, strict=True):
        for cf in ("AVERAGE", "MIN", "MAX"):
            a, b = mine.rings[cf][0].oldest_first(), theirs.rings[cf][0].oldest_first()
            assert all(same(x, y) for x, y in zip(a, b, strict=True))


def test_xport_rows_are_newest_first_with_xapis_legend() -> None:
    rrd, _ = _feed([(1, float(i)) for i in range(1, 21)])
    u = updates([("vm:abc:", rrd)], START + 50, 0, "AVERAGE")
    assert u.legend == ["AVERAGE:vm:abc:x"]
    assert u.step == 5 and u.end == START + 100 and u.times[0] == u.end
    assert [v for _, (v,) in u.rows()][:3] == [20.0, 19.0, 18.0]
    xml = xport_xml(u).decode()
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta><start>')
    assert "<row><t>6100</t><v>20</v></row>" in xml
    assert b'"legend":["AVERAGE:vm:abc:x"]' in xport_json(u)


_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 123456789.0, 0.1]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(_VALUES, max_size=4), st.integers(0, 6)), max_size=10))
def test_cached_segments_are_a_fresh_rendering(steps: list[tuple[list[float], int]]) -> None:
    """Pushes (one a step, as ticks do) between reads of any number of rows: the segment
    cache answers what rendering the rings afresh does, in XAPI's spellings (NaN, Infinity,
    0.0) and as JSON (null)."""
    cache = SegmentCache()
    rings = [Ring(6), Ring(6)]
    end = 1000
    for pushed, count in steps:
        for value in pushed:
            end += 5
            rings[0].push(value)
            rings[1].push(-value)
        fresh = [
            "".join(f"<v>{f_to_s(r.peek(i))}</v>" for r in rings).encode() for i in range(count)
        ]
        assert cache.segments("xml", rings, end, 5, count) == fresh
        as_json = [
            b",".join(orjson.dumps(r.peek(i) if math.isfinite(r.peek(i)) else None) for r in rings)
            for i in range(count)
        ]
        assert cache.segments("json", rings, end, 5, count) == as_json


def test_the_xml_form_from_rows_is_the_xml_form_from_values() -> None:
    rrd, _ = _feed([(1, float(i) * 1.37) for i in range(1, 40)])
    for _ in range(2):  # rendered, then from the cache
        u = updates([("vm:abc:", rrd)], START + 50, 0, None, as_xml=True)
        v = updates([("vm:abc:", rrd)], START + 50, 0, None)
        assert u.xml_rows is not None and not u.columns
        assert xport_xml(u) == xport_xml(v)
    rrd.update(rrd.last_updated + 5, {"x": 2.0})  # a tick: one new row, the rest reused
    u = updates([("vm:abc:", rrd)], START + 55, 0, None, as_xml=True)
    v = updates([("vm:abc:", rrd)], START + 55, 0, None)
    assert xport_xml(u) == xport_xml(v)


def test_the_json_form_from_rows_is_the_json_form_from_values() -> None:
    rrd, _ = _feed([(1, float(i) * 1.37) for i in range(1, 40)])
    rrd.update(rrd.last_updated + 400, {})  # a gap past the heartbeat: unknown values, null
    for _ in range(2):
        u = updates([("vm:abc:", rrd)], START + 50, 0, None, as_json=True)
        v = updates([("vm:abc:", rrd)], START + 50, 0, None)
        assert u.json_rows is not None and not u.columns
        assert xport_json(u) == xport_json(v)
        assert b"null" in xport_json(u) and b"NaN" not in xport_json(u)
        doc = orjson.loads(xport_json(u))
        assert [row["values"] for row in doc["data"]] == [
            [None if x != x else x for x in values] for _, values in v.rows()
        ]
