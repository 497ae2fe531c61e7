"""Helpers for tests of pools of ``xenstack serve`` processes: what a member's own backend
runs, a VDI's raw bytes over HTTP, a guest with a disk and a VIF."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import XenAPI
from vmkit import disk_record, local_sr, vbd_record, vif_record

from xenstack.testing import RunningPool, ServerProcess, halted_vm, server_process

MIB = 1 << 20
DATA = b"written on the joiner before it joined\n" * 1000


@contextmanager
def two_servers(root: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two ``xenstack serve`` processes with HTTPS (pool calls go over TLS), not yet a pool."""
    https = ["--https-port", "0"]
    with server_process(root / "a", https) as a, server_process(root / "b", https) as b:
        yield a, b


@contextmanager
def joined_pair(root: Path) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    """:func:`two_servers`, the second joined to the first's pool; and the second's host
    ref on the master."""
    with two_servers(root) as (a, b):
        xb = connect(b)
        uuid = xb.host.get_uuid(xb.host.get_all()[0])
        xb.pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        yield a, b, str(connect(a).host.get_by_uuid(uuid))


def connect(server: ServerProcess | RunningPool) -> Any:
    s = XenAPI.Session(server.url)
    s.xenapi.login_with_password("root", server.password, "1.0", "pool-tests")
    return s.xenapi


def raw_vdi(server: ServerProcess, vdi: str, body: bytes | None = None) -> bytes:
    """PUT (``body``) or GET a VDI's raw bytes over the server's HTTP handlers."""
    s = XenAPI.Session(server.url)
    s.xenapi.login_with_password("root", server.password, "1.0", "pool-tests")
    query = urllib.parse.urlencode({"session_id": s._session, "vdi": vdi, "format": "raw"})
    verb = "import" if body is not None else "export"
    url = f"http://127.0.0.1:{server.port}/{verb}_raw_vdi?{query}"
    req = urllib.request.Request(url, data=body, method="PUT" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            return bytes(answer.read())
    finally:
        s.xenapi.session.logout()


def meta(state_dir: Path, key: str) -> str:
    with sqlite3.connect(state_dir / "xapi.db") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(value)


def uuid_of(server: ServerProcess) -> str:
    """A toolstack's own host uuid, from its database (a member's standalone one too)."""
    with sqlite3.connect(server.state_dir / "xapi.db") as db:
        (this,) = db.execute("SELECT value FROM meta WHERE key = 'this_host'").fetchone()
        (blob,) = db.execute("SELECT record FROM objects WHERE ref = ?", (this,)).fetchone()
    return str(orjson.loads(blob)["uuid"])


def member_domains(master: ServerProcess, member_uuid: str, host: str) -> list[str]:
    """What the member's own backend runs on ``host`` (asked with the pool secret)."""
    from xenstack.impl.pool.peer import Peer

    entry = orjson.loads(meta(master.state_dir, "pool_members"))[member_uuid]
    secret = meta(master.state_dir, "pool_secret")

    async def ask() -> Any:
        peer = Peer.of(entry)
        try:
            ops = orjson.dumps([["snapshot", []]]).decode()
            return orjson.loads(await peer.call("host.xenstack_backend", secret, ops))
        finally:
            await peer.close()

    state = asyncio.run(ask())["snapshot"]["hosts"].get(host, {"domains": []})
    return sorted(d["vm_id"] for d in state["domains"])


def guest_with_disk(x: Any, server: ServerProcess, name: str) -> dict[str, str]:
    """A halted VM with a disk on the host's Local storage (DATA at its start) and a VIF on
    the management network; the uuids of each."""
    vm = halted_vm(x, name)
    vdi = x.VDI.create(disk_record(local_sr(x), f"{name}-disk", 16 * MIB))
    raw_vdi(server, vdi, DATA)
    vbd = x.VBD.create(vbd_record(vm, vdi, "0", bootable=True))
    management = next(p for p in x.PIF.get_all() if x.PIF.get_management(p))
    vif = x.VIF.create(vif_record(vm, x.PIF.get_network(management), mac="02:00:00:0a:0b:0c"))
    uuids = {cls: getattr(x, cls).get_uuid(ref) for cls, ref in
             (("VM", vm), ("VDI", vdi), ("VBD", vbd), ("VIF", vif))}  # fmt: skip
    return uuids | {"SR": x.SR.get_uuid(local_sr(x)), "ref": vm}
