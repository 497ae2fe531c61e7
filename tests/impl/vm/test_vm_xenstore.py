"""What XAPI does with XenStore, over the wire with the XenAPI SDK and pyxs on the host's
socket: a domain's nodes, ``VM.xenstore_data`` under ``vm-data/``, guest metrics derived
from the keys the guest writes, and clean shutdown through ``control/shutdown``."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyxs import PyXSError
from pyxs._internal import Op
from vmkit import wait_for

from xenstack.impl.vm import xenstore_nodes
from xenstack.testing import RunningPool, failure, halted_vm, login, simulated_pool
from xenstack.xenops.simulator import SimulatorBackend


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xs-vm") / "state"
    with simulated_pool(state, guest_agent_delay=0.05) as running:
        yield running


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = login(pool)
    yield session.xenapi
    session.xenapi.session.logout()


def xs_socket(pool: RunningPool) -> str:
    assert pool.state_dir is not None
    return str(pool.state_dir / "run" / "xenstored" / "socket")


def client(pool: RunningPool, domid: int | None = None) -> Any:
    import pyxs

    c = pyxs.Client(unix_socket_path=xs_socket(pool))
    c.connect()
    if domid is not None:
        c.ack(Op.RESTRICT, str(domid).encode() + b"\0")
    return c


def test_the_socket_is_dom0s_alone(pool: RunningPool) -> None:
    import os
    import stat

    path = xs_socket(pool)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_domain_nodes_and_vm_data(x: Any, pool: RunningPool) -> None:
    vm = halted_vm(x, "xs-data", xenstore_data={"vm-data/hostname": "web-1",
                                                  "vm-data/networking/aa": '{"ip": "1"}',
                                                  "other/key": "not written"})  # fmt: skip
    x.VM.start(vm, False, True)
    domid = int(x.VM.get_domid(vm))
    uuid = x.VM.get_uuid(vm)
    dom0 = client(pool)
    guest = client(pool, domid)
    try:
        home = f"/local/domain/{domid}".encode()
        assert dom0.read(home + b"/name") == b"xs-data"
        assert dom0.read(home + b"/vm") == f"/vm/{uuid}".encode()
        assert (
            int(dom0.read(home + b"/memory/target")) == int(x.VM.get_memory_dynamic_max(vm)) // 1024
        )
        assert dom0.read(f"/vm/{uuid}/uuid".encode()) == uuid.encode()
        # the guest sees its vm-data (only the vm-data keys were written) and may not change it
        assert guest.read(b"vm-data/hostname") == b"web-1"
        assert guest.read(b"vm-data/networking/aa") == b'{"ip": "1"}'
        assert not dom0.exists(home + b"/other")
        with pytest.raises(PyXSError) as info:
            guest.write(b"vm-data/hostname", b"evil")
        assert info.value.args[0] == errno.EACCES
        guest.write(b"data/mine", b"ok")  # its data/ is its own
        assert dom0.read(home + b"/data/mine") == b"ok"
    finally:
        guest.close()
    x.VM.hard_shutdown(vm)
    assert not dom0.exists(f"/local/domain/{domid}".encode())
    assert not dom0.exists(f"/vm/{uuid}".encode())
    dom0.close()


def test_guest_metrics_arrive_through_xenstore(x: Any, pool: RunningPool) -> None:
    vm = halted_vm(x, "xs-metrics", reference_label="debian-12")
    x.VM.start(vm, False, True)
    domid = int(x.VM.get_domid(vm))
    gm = wait_for(lambda: (g := x.VM.get_guest_metrics(vm)) != "OpaqueRef:NULL" and g, timeout=60)
    record = x.VM_guest_metrics.get_record(gm)
    assert record["os_version"]["distro"] == "debian"
    dom0 = client(pool)
    try:
        home = f"/local/domain/{domid}"
        assert dom0.read(f"{home}/data/os_distro".encode()) == b"debian"  # it came this way
        # a key the guest writes changes the metrics: the guest's own connection, as domid
        guest = client(pool, domid)
        guest.write(b"data/os_name", b"Renamed 12")
        guest.write(b"attr/vif/0/ipv4/0", b"192.0.2.7")
        guest.close()
        wait_for(lambda: x.VM_guest_metrics.get_os_version(gm).get("name") == "Renamed 12")
        assert x.VM_guest_metrics.get_networks(gm)["0/ip"] == "192.0.2.7"
    finally:
        dom0.close()
    x.VM.hard_shutdown(vm)


def guest_ends(pool: RunningPool, vm: str, why: str) -> None:
    """The simulated guest of ``vm`` ends its domain from inside (``why``)."""

    def end(ts: Any) -> None:
        ts.hypervisor.simulator.guest_ends(vm, why)

    pool.call(end)


def test_a_guest_that_ends_itself_moves_its_nodes(x: Any, pool: RunningPool) -> None:
    """A reboot from inside gives the new domain its nodes and its guest metrics again; a
    poweroff from inside removes them (as XAPI's xenopsd events do)."""
    vm = halted_vm(x, "xs-ends", reference_label="debian-12")
    x.VM.start(vm, False, True)
    old = int(x.VM.get_domid(vm))
    wait_for(lambda: x.VM.get_guest_metrics(vm) != "OpaqueRef:NULL", timeout=60)
    guest_ends(pool, vm, "reboot")
    new = wait_for(lambda: (d := int(x.VM.get_domid(vm))) not in (old, -1) and d, timeout=60)
    dom0 = client(pool)
    try:
        assert not dom0.exists(f"/local/domain/{old}".encode())
        assert dom0.read(f"/local/domain/{new}/vm".encode()) == f"/vm/{x.VM.get_uuid(vm)}".encode()
        gm = wait_for(lambda: (g := x.VM.get_guest_metrics(vm)) != "OpaqueRef:NULL" and g, 60)
        assert x.VM_guest_metrics.get_os_version(gm)["distro"] == "debian"
        guest_ends(pool, vm, "poweroff")
        wait_for(lambda: x.VM.get_power_state(vm) == "Halted", timeout=60)
        assert not dom0.exists(f"/local/domain/{new}".encode())
        assert not dom0.exists(f"/vm/{x.VM.get_uuid(vm)}".encode())
    finally:
        dom0.close()


def test_clean_shutdown_goes_through_control_shutdown(x: Any, pool: RunningPool) -> None:
    vm = halted_vm(x, "xs-shutdown")
    x.VM.start(vm, False, True)
    domid = int(x.VM.get_domid(vm))
    dom0 = client(pool)
    monitor = dom0.monitor()
    path = f"/local/domain/{domid}/control/shutdown".encode()
    monitor.watch(path, b"t")
    stream = monitor.wait()
    assert next(stream) == (path, b"t")  # at registration
    x.VM.clean_shutdown(vm)
    seen = [next(stream) for _ in range(3)]  # written, cleared by the guest, removed
    assert all(p == path for p, _ in seen)
    assert x.VM.get_power_state(vm) == "Halted"
    dom0.close()


class DeafGuests(SimulatorBackend):
    """Guests that never take a shutdown request (no PV drivers listening)."""

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        return None


def test_a_guest_that_does_not_take_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xenstore_nodes, "ACK_TIMEOUT", 0.5)
    with simulated_pool(tmp_path / "state", backend=DeafGuests()) as deaf:
        session = login(deaf)
        api: Any = session.xenapi
        vm = halted_vm(api, "xs-deaf")
        api.VM.start(vm, False, True)
        assert failure(api.VM.clean_shutdown, vm) == ["VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", vm]
        assert api.VM.get_power_state(vm) == "Running"  # nothing changed
        domid = int(api.VM.get_domid(vm))
        dom0 = client(deaf)
        assert dom0.read(f"/local/domain/{domid}/control/shutdown".encode()) == b"poweroff"
        dom0.close()
        api.VM.shutdown(vm)  # clean first, then hard, as XAPI falls back
        assert api.VM.get_power_state(vm) == "Halted"
        session.xenapi.session.logout()


def test_nodes_come_back_after_a_toolstack_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with simulated_pool(state) as first:
        api: Any = login(first).xenapi
        vm = halted_vm(api, "xs-restart")
        api.VM.start(vm, False, True)
        domid = int(api.VM.get_domid(vm))
    with simulated_pool(state) as second:
        dom0 = client(second)
        assert dom0.read(f"/local/domain/{domid}/name".encode()) == b"xs-restart"
        dom0.close()


def test_a_guest_writes_only_what_its_permissions_allow(x: Any, pool: RunningPool) -> None:
    """Keys from a backend's agent channel land as the domain's writes: outside its own
    writable directories they are dropped, as xenstored refuses them."""
    assert pool.toolstack is not None
    vm = halted_vm(x, "xs-perms", xenstore_data={"vm-data/k": "dom0's"})
    x.VM.start(vm, False, True)
    domid = int(x.VM.get_domid(vm))
    other = halted_vm(x, "xs-perms-other")
    x.VM.start(other, False, True)
    other_domid = int(x.VM.get_domid(other))
    backend = pool.toolstack.hypervisor.backend

    def report() -> None:
        for key, value in (
            ("data/ok", "1"),
            ("vm-data/k", "guest's"),
            ("name", "renamed"),
            (f"/local/domain/{other_domid}/data/evil", "1"),
            ("/vm/evil", "1"),
        ):
            backend.report_guest_key(vm, domid, key, value)  # fmt: skip

    pool.call(lambda ts: report())
    dom0 = client(pool)
    try:
        home = f"/local/domain/{domid}"
        assert dom0.read(f"{home}/data/ok".encode()) == b"1"
        assert dom0.read(f"{home}/vm-data/k".encode()) == b"dom0's"
        assert dom0.read(f"{home}/name".encode()) == b"xs-perms"
        assert not dom0.exists(f"/local/domain/{other_domid}/data/evil".encode())
        assert not dom0.exists(b"/vm/evil")
    finally:
        dom0.close()
    x.VM.hard_shutdown(vm)
    x.VM.hard_shutdown(other)
