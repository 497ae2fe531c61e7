"""The answers of XAPI's metric HTTP handlers, from a store: ``/rrd_updates``, ``/host_rrd``,
``/vm_rrd`` and ``/sr_rrd``, as (body, content type).

``/rrd_updates`` reads ``start`` (required; negative: seconds before the last sample),
``cf`` (AVERAGE, MIN, MAX; all when absent), ``interval`` (seconds, default 0: the finest),
``host=true`` (include the host), ``vm_uuid`` (``all`` by default, ``none``, or one VM),
``sr_uuid`` (``none`` by default, ``all``, or one SR) and ``json`` (any value) or an
``Accept: application/json``: as XAPI's rrdd does. ``vm_uuid=all`` is the VMs last sampled on
the host; one VM named is answered wherever it runs, for the master keeps the archives of
its members' VMs too (their counters come with the members' reports). A bad query raises
:class:`BadQuery` (a ValueError), one naming nothing kept :class:`Missing` (a LookupError).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping

from .archive import CFS, Rrd
from .dump import to_xml
from .export import NoArchive, updates, xport_json, xport_xml
from .store import RrdStore

XML = "text/xml"
JSON = "application/json"


class BadQuery(ValueError):
    """The query is malformed."""


class Missing(LookupError):
    """The query names nothing this host keeps."""


def _int(query: Mapping[str, str], key: str, default: int | None = None) -> int:
    text = query.get(key)
    if text is None or text == "":
        if default is None:
            raise BadQuery(f"{key} is required")
        return default
    try:
        return int(text)
    except ValueError:
        raise BadQuery(f"{key} is not an integer: {text!r}") from None


def wants_json(query: Mapping[str, str], accept: str | None) -> bool:
    if accept:
        kinds = [part.split(";")[0].strip() for part in accept.split(",")]
        if JSON in kinds and (XML not in kinds or kinds.index(JSON) < kinds.index(XML)):
            return True
        if XML in kinds:
            return False
    return "json" in query


def rrd_updates(
    store: RrdStore, host_uuid: str, query: Mapping[str, str], accept: str | None = None
) -> tuple[bytes, str]:
    start = _int(query, "start")
    interval = _int(query, "interval", 0)
    cf = query.get("cf") or None
    if cf is not None and cf not in CFS:
        cf = None  # XAPI: an unknown consolidation function means all of them
    chosen: list[tuple[str, Rrd]] = []
    host = store.get("host", host_uuid)
    if query.get("host") == "true" and host is not None:
        chosen.append((f"host:{host_uuid}:", host))
    vm_uuid = query.get("vm_uuid", "all")
    if vm_uuid == "all":
        for uuid, resident in store.resident.items():
            rrd = store.get("vm", uuid)
            if resident == host_uuid and rrd is not None:
                chosen.append((f"vm:{uuid}:", rrd))
    elif (one := store.get("vm", vm_uuid)) is not None:
        chosen.append((f"vm:{vm_uuid}:", one))  # kept here wherever it runs (a pool member)
    sr_uuid = query.get("sr_uuid", "none")
    if sr_uuid != "none":
        for (owner, uuid), rrd in store.rrds.items():
            if owner == "sr" and sr_uuid in ("all", uuid):
                chosen.append((f"sr:{uuid}:", rrd))
    as_json = wants_json(query, accept)
    with _no_collection():
        try:
            result = updates(chosen, start, interval, cf, as_xml=not as_json, as_json=as_json)
        except NoArchive as exc:
            raise Missing(str(exc)) from None
        if as_json:
            return xport_json(result), JSON
        return xport_xml(result), XML


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while an answer is built: it makes hundreds of thousands
    of short-lived objects (no cycles among them), each batch of which would otherwise make
    the collector walk every archive the toolstack keeps."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def whole_rrd(store: RrdStore, owner: str, uuid: str) -> tuple[bytes, str]:
    rrd = store.get(owner, uuid)
    if rrd is None:
        raise Missing(f"no RRD for {owner} {uuid}")
    return to_xml(rrd), XML
