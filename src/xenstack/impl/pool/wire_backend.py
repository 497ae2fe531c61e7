"""The backend calls a master sends a member, and the member's side of them.

The master's :class:`~.remote_backend.PoolBackend` sends a batch of backend operations
(``[name, args]``, in order) through the hidden ``host.xenstack_backend``; the member runs
them on its own backend (the simulator, or QEMU) and answers each result and a snapshot of
the hosts it runs (free memory, domains, saved images), which the master caches. A backend
failure stops the batch and comes back as data (its class and arguments), to be raised on
the master as the same :class:`~xenstack.xenops.interface.XenopsError`, so that impl
cannot tell a member's backend from its own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from ...core.context import Context
from ...errors import ApiError
from ...xenops import interface as xi
from ..registry import internal
from . import member_disks, membership, xenstore_mirror

BACKEND_CALL = "host.xenstack_backend"

# backend operation -> (async?, argument kinds); kinds: s str, b bool, i int, spec, hostspec,
# doc (a JSON object: a domain's state or image on its way between two backends), disk (a
# suspend image's, named by file), plug (a hot-plugged disk, named by file), nic; a kind
# ending in ? may be null (the simulator opens no disks)
OPERATIONS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "host_add": (False, ("hostspec",)),
    "vm_start": (True, ("s", "spec", "b")),
    "vm_shutdown": (True, ("s", "b")),
    "vm_reboot": (True, ("s", "b", "spec")),
    "vm_pause": (True, ("s",)),
    "vm_unpause": (True, ("s",)),
    "vm_suspend": (True, ("s", "disk?")),
    "vm_resume": (True, ("s", "s", "b", "spec?", "disk?")),
    "vm_save_image": (True, ("s", "s", "disk?")),
    "vm_copy_image": (False, ("s", "s")),
    "vm_discard_image": (False, ("s",)),
    "vm_set_vcpus": (True, ("s", "i")),
    "vm_set_memory_dynamic_range": (True, ("s", "i", "i")),
    "vm_reset": (False, ("s",)),
    "vbd_plug": (True, ("s", "s", "plug?")),
    "vbd_unplug": (True, ("s", "s")),
    "vif_plug": (True, ("s", "s", "nic?")),
    "vif_unplug": (True, ("s", "s")),
    "vm_migrate": (True, ("s", "s")),
    "vm_migrate_receive": (True, ("s", "spec", "i")),
    "vm_migrate_send": (True, ("s", "s")),
    "vm_migrate_finish": (True, ("s", "doc")),
    "vm_migrate_abort": (False, ("s",)),
    "vm_migrate_release": (True, ("s",)),
    "vm_image_send": (False, ("s",)),
    "vm_image_receive": (False, ("s", "doc")),
    "xenstore_nodes": (False, ("i", "strs", "nodes")),
    # the chain of a plugged disk (its VHD file) changes on the master: stop, then reopen
    "export_stop": (False, ("s",)),
    "export_start": (False, ("s", "b")),
    "snapshot": (False, ()),
    "vm_send_trigger": (True, ("s", "s")),
    "refresh_stats": (True, ()),  # answers every domain's counters (the metrics' feed)
}

_ERRORS: dict[str, type[xi.XenopsError]] = {
    c.__name__: c
    for c in (
        xi.XenopsError,
        xi.UnknownHost,
        xi.NoSuchDomain,
        xi.DomainExists,
        xi.BadDomainState,
        xi.DeviceError,
    )
}


def dump(value: Any) -> Any:
    """Backend values as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def domain_info(doc: dict[str, Any]) -> xi.DomainInfo:
    return xi.DomainInfo(
        **{
            **doc,
            "vbds": tuple(doc["vbds"]),
            "vifs": tuple(doc["vifs"]),
            "vif_networks": tuple(tuple(p) for p in doc["vif_networks"]),
        }
    )


def _pairs(items: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in items)


def domain_spec(doc: dict[str, Any]) -> xi.DomainSpec:
    """The spec a master sent, with its devices and boot method as the backend's data
    classes again (JSON made them plain objects)."""
    nics = [{**n, "other_config": _pairs(n.get("other_config", ()))} for n in doc.get("nics", ())]
    return xi.DomainSpec(
        **{
            **doc,
            "vbds": tuple(doc["vbds"]),
            "vifs": tuple(doc["vifs"]),
            "platform": _pairs(doc["platform"]),
            "vif_networks": _pairs(doc["vif_networks"]),
            "disks": tuple(xi.DiskSpec(**d) for d in doc.get("disks", ())),
            "nics": tuple(xi.NicSpec(**n) for n in nics),
            "boot": xi.BootSpec(**doc["boot"]) if "boot" in doc else xi.BootSpec(),
            "xenstore_data": _pairs(doc.get("xenstore_data", ())),
        }
    )


def _argument(kind: str, value: Any) -> Any:
    if kind.endswith("?"):
        return None if value is None else _argument(kind[:-1], value)
    if kind in ("disk", "plug"):
        try:
            return xi.DiskSpec(**value)
        except TypeError as exc:
            raise ApiError("INVALID_VALUE", ["disk", str(exc)[:80]]) from exc
    if kind == "nic":
        try:
            return xi.NicSpec(**{**value, "other_config": _pairs(value.get("other_config", ()))})
        except (AttributeError, TypeError, ValueError) as exc:
            raise ApiError("INVALID_VALUE", ["nic", str(exc)[:80]]) from exc
    if kind == "spec":
        try:
            return domain_spec(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError("INVALID_VALUE", ["spec", str(exc)[:80]]) from exc
    if kind == "hostspec":
        return xi.HostSpec(**value)
    if kind == "doc":
        if not isinstance(value, dict):
            raise ApiError("INVALID_VALUE", ["state", str(value)[:80]])
        return value
    if kind == "strs":
        if not isinstance(value, list):
            raise ApiError("INVALID_VALUE", ["paths", str(value)[:80]])
        return [str(v) for v in value]
    if kind == "nodes":
        if value is not None and not isinstance(value, list):
            raise ApiError("INVALID_VALUE", ["nodes", str(value)[:80]])
        return value
    if kind == "b":
        return bool(value)
    if kind == "i":
        return int(value)
    return str(value)


def raise_failure(failure: dict[str, Any]) -> None:
    """Raise on the master the backend error a member reported."""
    kind, args = str(failure["kind"]), list(failure["args"])
    if kind == "OutOfMemory":
        raise xi.OutOfMemory(int(args[0]), int(args[1]))
    if kind == "Unimplemented":
        raise xi.Unimplemented(str(args[0]))
    raise _ERRORS.get(kind, xi.XenopsError)(*args)


def snapshot(backend: xi.Backend) -> dict[str, Any]:
    """What the member's backend holds, per host: free memory, domains, saved images."""
    hosts: dict[str, Any] = {}
    for host in backend.host_ids():
        hosts[host] = {
            "memory_free": backend.host_memory_free(host),
            "domains": [dump(d) for d in backend.host_domains(host)],
        }
    images = [vm for vm in _images(backend)]
    return {"hosts": hosts, "images": images}


async def _all_stats(backend: xi.Backend) -> dict[str, Any]:
    """Every domain's counters, read afresh: what the master's metrics record for them."""
    await backend.refresh_stats()
    found = {}
    for host in backend.host_ids():
        for dom in backend.host_domains(host):
            stats = backend.vm_stats(dom.vm_id)
            if stats is not None:
                found[dom.vm_id] = dump(stats)
    return found


def domain_stats(doc: dict[str, Any]) -> xi.DomainStats:
    return xi.DomainStats(**{**doc, "cpu_seconds": tuple(doc["cpu_seconds"])})


def _images(backend: xi.Backend) -> list[str]:
    known = getattr(backend, "images", None)
    return sorted(known) if isinstance(known, dict | set) else []  # QEMU's: a set


XenstoreNodes = Callable[[int, list[str], Any], None]  # domid, tops, nodes (None: removed)


class BatchHooks(Protocol):
    """What this host does around its backend's operations (the disks it exports itself,
    see :mod:`.member_disks`)."""

    async def localise(self, op: str, spec: xi.DomainSpec) -> xi.DomainSpec: ...

    async def localise_image(self, disk: xi.DiskSpec) -> xi.DiskSpec: ...

    async def localise_plug(self, vm: str, disk: xi.DiskSpec) -> xi.DiskSpec: ...

    async def before(self, op: str, values: list[Any]) -> None: ...

    async def done(self, op: str, values: list[Any], ok: bool) -> None: ...

    async def export(self, op: str, values: list[Any]) -> None: ...


async def _localised(hooks: BatchHooks, op: str, kind: str, value: Any, vm: Any) -> Any:
    if value is None:
        return None
    if kind.startswith("spec"):
        return await hooks.localise(op, value)
    if kind.startswith("disk"):
        return await hooks.localise_image(value)
    if kind.startswith("plug"):
        return await hooks.localise_plug(str(vm), value)
    return value


async def run_batch(
    backend: xi.Backend,
    ops: list[list[Any]],
    xenstore: XenstoreNodes | None = None,
    hooks: BatchHooks | None = None,
) -> dict[str, Any]:
    """Run ``ops`` in order on ``backend`` (``xenstore_nodes`` on this host's XenStore, each
    spec through ``hooks`` first); stop at the first failure."""
    results: list[Any] = []
    failure: dict[str, Any] | None = None
    for name, args in ops:
        if name not in OPERATIONS:
            raise ApiError("INVALID_VALUE", ["operation", str(name)])
        is_async, kinds = OPERATIONS[name]
        if len(args) != len(kinds):
            raise ApiError("INVALID_VALUE", ["arguments", str(name)])
        if name == "snapshot":
            results.append(None)
            continue
        if name == "refresh_stats":
            results.append(await _all_stats(backend))
            continue
        values = [_argument(k, v) for k, v in zip(kinds, args, strict=True)]
        if hooks is not None:
            try:
                pairs = zip(kinds, values, strict=True)
                values = [await _localised(hooks, name, k, v, values[0]) for k, v in pairs]
                await hooks.before(name, values)
            except ApiError as exc:  # this host could not open a disk: the operation failed
                failure = {"kind": "XenopsError", "args": [exc.code, *map(str, exc.params)]}
                break
        if name in HOST_OPERATIONS:
            await _host_operation(name, values, xenstore, hooks)
            results.append(None)
            continue
        result, failure = await _backend_operation(backend, name, is_async, values)
        if hooks is not None:
            await hooks.done(name, values, failure is None)
        if failure is not None:
            break
        results.append(dump(result))
    return {"results": results, "failure": failure, "snapshot": snapshot(backend)}


HOST_OPERATIONS = ("xenstore_nodes", "export_stop", "export_start")  # not the backend's


async def _host_operation(
    name: str, values: list[Any], xenstore: XenstoreNodes | None, hooks: BatchHooks | None
) -> None:
    if name == "xenstore_nodes":
        if xenstore is not None:
            try:
                xenstore(*values)
            except ValueError as exc:
                raise ApiError("INVALID_VALUE", ["nodes", str(exc)[:80]]) from exc
    elif hooks is not None:
        await hooks.export(name, values)


async def _backend_operation(
    backend: xi.Backend, name: str, is_async: bool, values: list[Any]
) -> tuple[Any, dict[str, Any] | None]:
    """The result of operation ``name`` on ``backend``, or its failure as data."""
    try:
        result = getattr(backend, name)(*values)
        if is_async:
            result = await result
    except xi.OutOfMemory as exc:
        return None, {"kind": "OutOfMemory", "args": [exc.needed, exc.available]}
    except xi.Unimplemented as exc:
        return None, {"kind": "Unimplemented", "args": [exc.operation]}
    except xi.XenopsError as exc:
        return None, {"kind": type(exc).__name__, "args": [str(a) for a in exc.args]}
    return result, None


@internal(BACKEND_CALL, "string pool_secret, string operations", "string", roles="")
async def backend_call(ctx: Context, pool_secret: str, operations: str) -> str:
    """On a member: run the master's backend operations on this host's own backend."""
    ts = ctx.toolstack
    membership.check_secret(ts.persistence, pool_secret)
    backend = ts.hypervisor.backend
    # this host's own backend (its journal included), not a pool's view of its members
    local = backend.local if hasattr(backend, "is_remote") else backend
    ops = orjson.loads(operations)
    store = ts.xenstore(ts.this_host)
    mirror = functools.partial(xenstore_mirror.apply, store)
    disks = member_disks.MemberDisks(ts, local)
    try:
        answer = await run_batch(local, ops, mirror, disks)
        member_disks.remember_hosts(ts.persistence, ops)  # run, so well-formed
        member_disks.remember_images(ts.persistence, answer["snapshot"]["images"])
    finally:
        await disks.release_unused()
    answer["guest"] = {
        host: xenstore_mirror.agent_nodes(store, [d.domid for d in local.host_domains(host)])
        for host in local.host_ids()
    }
    return orjson.dumps(answer).decode()
