"""The XenStore socket judged by the PyPI ``pyxs`` client: Xen's semantics over xs_wire.h."""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyxs import PyXSError
from pyxs._internal import Op
from xskit import Served, pyxs_client, served

from xenstack.xenstore.store import Quota


@pytest.fixture
def xs(tmp_path: Path) -> Iterator[Served]:
    with served(tmp_path) as s:
        yield s


def _errno(fn: Any, *args: Any) -> int:
    with pytest.raises(PyXSError) as info:
        fn(*args)
    return int(info.value.args[0])


def restrict(client: Any, domid: int) -> None:
    """Make a pyxs connection act as domain ``domid`` (oxenstored's XS_RESTRICT)."""
    client.ack(Op.RESTRICT, str(domid).encode() + b"\0")


def test_read_write_directory(xs: Served) -> None:
    with pyxs_client(xs.path) as c:
        c.write(b"/local/domain/7/name", b"guest-7")
        c.mkdir(b"/local/domain/7/data/a")
        c.write(b"/local/domain/7/data/b", b"spaces and = signs")
        assert c.read(b"/local/domain/7/name") == b"guest-7"
        assert c.read(b"/local/domain/7/data/b") == b"spaces and = signs"
        assert c.list(b"/local/domain/7") == [b"name", b"data"]
        assert c.list(b"/local/domain/7/data") == [b"a", b"b"]
        assert c.exists(b"/local/domain/7/data") and not c.exists(b"/local/domain/7/nope")
        assert _errno(c.read, b"/local/domain/7/nope") == errno.ENOENT
        c.mkdir(b"/vm/abc/x")
        assert c.read(b"/vm/abc/x") == b""
        c.delete(b"/local/domain/7/data")
        assert c.list(b"/local/domain/7") == [b"name"]
        assert _errno(c.delete, b"/nope/deeper") == errno.ENOENT
        assert c.get_domain_path(7) == b"/local/domain/7"


def test_permissions_across_domains(xs: Served) -> None:
    with pyxs_client(xs.path) as dom0, pyxs_client(xs.path) as g5, pyxs_client(xs.path) as g6:
        for domid in (5, 6):
            dom0.mkdir(f"/local/domain/{domid}".encode())
            dom0.set_perms(f"/local/domain/{domid}".encode(), [f"n{domid}".encode(), b"r0"])
        dom0.write(b"/local/domain/5/vm-data/k", b"v")
        dom0.set_perms(b"/local/domain/5/vm-data", [b"n0", b"r5"])
        dom0.set_perms(b"/local/domain/5/vm-data/k", [b"n0", b"r5"])
        restrict(g5, 5)
        restrict(g6, 6)
        g5.write(b"data/os_name", b"Debian")  # relative: its own home
        assert dom0.read(b"/local/domain/5/data/os_name") == b"Debian"
        assert dom0.get_perms(b"/local/domain/5/data/os_name") == [b"n5", b"r0"]  # inherited
        assert g5.read(b"vm-data/k") == b"v"
        assert _errno(g5.write, b"vm-data/k", b"mine") == errno.EACCES
        assert _errno(g6.read, b"/local/domain/5/data/os_name") == errno.EACCES
        assert _errno(g6.write, b"/local/domain/5/data/x", b"1") == errno.EACCES
        assert _errno(g6.list, b"/local/domain/5") == errno.EACCES
        assert _errno(g6.delete, b"/local/domain/5/data") == errno.EACCES
        assert _errno(g6.write, b"/vm/evil", b"1") == errno.EACCES
        assert _errno(g5.set_perms, b"vm-data/k", [b"b5"]) == errno.EACCES
        g5.set_perms(b"data/os_name", [b"n5", b"r6"])  # an owner shares with domain 6
        assert g6.read(b"/local/domain/5/data/os_name") == b"Debian"
        assert _errno(g5.execute_command, Op.INTRODUCE, b"9\x00", b"0\x00", b"0\x00") in (
            errno.EACCES,
        )


class Events:
    """A pyxs monitor's events, read in a helper thread only while the test waits for them
    (pyxs's ``Monitor.wait`` must not run while ``watch`` is still registering)."""

    def __init__(self, client: Any) -> None:
        self.monitor = client.monitor()
        self.stream = self.monitor.wait()

    def watch(self, path: bytes, token: bytes) -> None:
        self.monitor.watch(path, token)

    def take(self, n: int = 1) -> list[Any]:
        got: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(
            target=lambda: [got.put(next(self.stream)) for _ in range(n)], daemon=True
        )
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "no event within 60 s"
        return [got.get_nowait() for _ in range(n)]

    def one(self) -> Any:
        return self.take(1)[0]


def test_watches_fire_in_order_with_tokens(xs: Served) -> None:
    with pyxs_client(xs.path) as writer, pyxs_client(xs.path) as watcher:
        ev = Events(watcher)
        ev.watch(b"/local/domain/3", b"tok-a")
        assert ev.one() == (b"/local/domain/3", b"tok-a")  # once at registration
        ev.watch(b"/local/domain/3/control", b"tok-b")
        assert ev.one() == (b"/local/domain/3/control", b"tok-b")
        writer.write(b"/local/domain/3/name", b"n")
        writer.write(b"/local/domain/3/control/shutdown", b"poweroff")
        writer.write(b"/local/domain/4/name", b"other")  # not watched
        writer.delete(b"/local/domain/3")
        seen = ev.take(5)
        assert seen == [
            (b"/local/domain/3/name", b"tok-a"),
            (b"/local/domain/3/control/shutdown", b"tok-a"),
            (b"/local/domain/3/control/shutdown", b"tok-b"),
            (b"/local/domain/3", b"tok-a"),
            (b"/local/domain/3/control", b"tok-b"),  # a removal fires watches under it
        ]
        ev.monitor.unwatch(b"/local/domain/3", b"tok-a")
        writer.write(b"/local/domain/3/control/again", b"x")
        assert ev.one() == (b"/local/domain/3/control/again", b"tok-b")  # tok-a is gone


def test_watch_events_respect_permissions(xs: Served) -> None:
    with pyxs_client(xs.path) as dom0, pyxs_client(xs.path) as g8:
        dom0.mkdir(b"/local/domain/8")
        dom0.set_perms(b"/local/domain/8", [b"n8"])
        restrict(g8, 8)
        ev = Events(g8)
        ev.watch(b"/local/domain", b"all")
        assert ev.one() == (b"/local/domain", b"all")
        dom0.write(b"/local/domain/9/secret", b"x")  # domain 8 may not read it
        dom0.write(b"/local/domain/8/mine", b"y")
        assert ev.one() == (b"/local/domain/8/mine", b"all")  # and not domain 9's


def test_conflicting_transaction_answers_eagain(xs: Served) -> None:
    with pyxs_client(xs.path) as a, pyxs_client(xs.path) as b:
        a.write(b"/tool/counter", b"1")
        a.transaction()
        assert a.read(b"/tool/counter") == b"1"
        a.write(b"/tool/counter", b"2")
        a.write(b"/tool/other", b"x")
        assert b.read(b"/tool/counter") == b"1"  # not visible before commit
        assert not b.exists(b"/tool/other")
        b.write(b"/tool/counter", b"9")  # conflicts with what a read
        assert a.commit() is False  # EAGAIN
        assert b.read(b"/tool/counter") == b"9" and not b.exists(b"/tool/other")
        a.transaction()
        a.write(b"/tool/counter", b"10")
        b.write(b"/tool/unrelated", b"ok")  # touches nothing a did
        assert a.commit() is True
        assert b.read(b"/tool/counter") == b"10"
        a.transaction()
        a.write(b"/tool/dropped", b"x")
        a.rollback()
        assert not b.exists(b"/tool/dropped")


def test_quotas(tmp_path: Path) -> None:
    quota = Quota(nodes=5, entry_size=16, watches=2, transactions=1)
    with served(tmp_path, quota) as xs, pyxs_client(xs.path) as dom0, pyxs_client(xs.path) as g:
        dom0.mkdir(b"/local/domain/4")
        dom0.set_perms(b"/local/domain/4", [b"n4"])
        restrict(g, 4)  # owns /local/domain/4 already: one node
        for i in range(4):
            g.write(f"k{i}".encode(), b"v")
        assert _errno(g.write, b"k4", b"v") == errno.ENOSPC
        assert _errno(g.write, b"k0", b"x" * 17) == errno.ENOSPC
        dom0.write(b"/tool/big", b"x" * 3000)  # dom0 has no quota
        g.delete(b"k0")
        g.write(b"k4", b"v")  # room again
        m = g.monitor()
        m.watch(b"k1", b"1")
        m.watch(b"k2", b"2")
        assert _errno(m.watch, b"k3", b"3") == errno.E2BIG
        g.transaction()
        g.rollback()


def test_special_watches(xs: Served) -> None:
    with pyxs_client(xs.path) as dom0, pyxs_client(xs.path) as watcher:
        ev = Events(watcher)
        ev.watch(b"@introduceDomain", b"in")
        ev.watch(b"@releaseDomain", b"out")
        assert set(ev.take(2)) == {
            (b"@introduceDomain", b"in"),
            (b"@releaseDomain", b"out"),
        }
        dom0.introduce_domain(12, 0, 0)
        assert ev.one() == (b"@introduceDomain", b"in")
        assert dom0.is_domain_introduced(12) is True
        dom0.ack(Op.RELEASE, b"12\x00")  # pyxs asks /proc/xen first: sent as is
        assert ev.one() == (b"@releaseDomain", b"out")
        assert dom0.is_domain_introduced(12) is False


def test_directory_part_pages_a_long_listing(xs: Served) -> None:
    from xenstack.xenstore.client import Client
    from xenstack.xenstore.wire import Op as XsOp

    names = [f"child-{i:04d}-" + "x" * 40 for i in range(200)]  # about 10 KiB of names
    with pyxs_client(xs.path) as c:
        for name in names:
            c.mkdir(b"/tool/big/" + name.encode())
        with pytest.raises(PyXSError) as info:
            c.list(b"/tool/big")  # one XS_DIRECTORY answer cannot hold it
        assert info.value.args[0] == errno.E2BIG
    got: list[bytes] = []
    offset = 0
    with Client(str(xs.path)) as raw:  # pyxs knows no XS_DIRECTORY_PART
        while True:
            part = raw.call(XsOp.DIRECTORY_PART, b"/tool/big\0" + str(offset).encode() + b"\0")
            assert len(part) <= 4096
            gen, _, rest = part.partition(b"\0")
            assert gen == b"0"
            chunk = [n for n in rest.split(b"\0") if n]
            got += chunk
            offset += sum(len(n) + 1 for n in chunk)
            if rest.endswith(b"\0\0") or rest == b"\0":
                break
    assert got == [n.encode() for n in names]
