"""``xe`` storage, device, network, pool, task, message and plug-in commands; error layout.

Run on a two-host simulated pool with a shared SR; goldens where the output matters (see
``test_xe_golden`` for the normalisation and how to regenerate them).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from vmkit import wait_for
from xekit import api, check_golden, one, transcript, two_host_pool, vm_record, xe

from xenstack.testing import RunningPool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with two_host_pool(tmp_path_factory.mktemp("xe-infra") / "state") as running:
        yield running


def uuid_of(pool: RunningPool, cls: str, *filters: str) -> str:
    found = one(pool, f"{cls}-list", *filters, "--minimal")
    assert found and "," not in found, (cls, filters, found)
    return found


def test_vdi_family(pool: RunningPool) -> None:
    sr = uuid_of(pool, "sr", "name-label=NFS storage")
    local = uuid_of(pool, "sr", "name-label=Local storage", "host=host1")
    vdi = one(pool, "vdi-create", f"sr-uuid={sr}", "name-label=d1", "virtual-size=1GiB")
    clone = one(pool, "vdi-clone", f"uuid={vdi}", "new-name-label=d1-clone")
    snap = one(pool, "vdi-snapshot", f"uuid={vdi}")
    one(pool, "vdi-resize", f"uuid={vdi}", "disk-size=2GiB")
    copy = one(pool, "vdi-copy", f"uuid={vdi}", f"sr-uuid={local}")
    cols = "params=name-label,virtual-size,sr-name-label,is-a-snapshot"
    text = transcript(
        pool,
        ["vdi-list", f"uuid={vdi}", cols],
        ["vdi-list", f"uuid={clone}", cols],
        ["vdi-list", f"uuid={snap}", "params=is-a-snapshot,snapshot-of"],
        ["vdi-list", f"uuid={copy}", cols],
        ["vdi-resize", f"uuid={vdi}", "disk-size=1GiB"],
        ["vdi-copy", f"uuid={vdi}"],
        ["vdi-create", f"sr-uuid={sr}", "name-label=x", "virtual-size=1GiB", "type=odd"],
        ["vdi-create", f"sr-uuid={sr}", "name-label=x"],
        ["vdi-destroy", f"uuid={clone}"],
        ["vdi-list", "name-label=d1-clone", "--minimal"],
        ["vdi-destroy", f"uuid={clone}"],
    )
    check_golden("vdi_ops", text)


def test_vbd_family(pool: RunningPool) -> None:
    sr = uuid_of(pool, "sr", "name-label=NFS storage")
    vm = one(pool, "vm-install", "template=Debian Bookworm 12", "new-name-label=vbd-vm")
    vdi = one(pool, "vdi-create", f"sr-uuid={sr}", "name-label=extra", "virtual-size=64MiB")
    vbd = one(pool, "vbd-create", f"vm-uuid={vm}", f"vdi-uuid={vdi}", "device=1")
    halted = transcript(pool, ["vbd-plug", f"uuid={vbd}"])
    one(pool, "vm-start", f"uuid={vm}")
    # unplugging needs the guest's PV drivers: wait for the (simulated) agent to report them
    one(pool, "event-wait", "class=vm", f"uuid={vm}", "PV-drivers-up-to-date=true")
    text = transcript(
        pool,
        ["vbd-param-get", f"uuid={vbd}", "param-name=currently-attached"],
        ["vbd-plug", f"uuid={vbd}"],
        ["vbd-unplug", f"uuid={vbd}"],
        ["vbd-param-get", f"uuid={vbd}", "param-name=currently-attached"],
        ["vbd-plug", f"uuid={vbd}"],
        ["vbd-unplug", f"uuid={vbd}", "--force"],
        ["vbd-destroy", f"uuid={vbd}"],
        ["vbd-list", f"uuid={vbd}", "--minimal"],
        ["vbd-create", f"vm-uuid={vm}", "device=5"],
        ["vbd-create", f"vm-uuid={vm}", "device=5", "type=tape"],
        ["vbd-create", f"vm-uuid={vm}", "device=5", "type=CD", "mode=rx"],
    )
    one(pool, "vm-shutdown", f"uuid={vm}", "--force")
    check_golden("vbd_ops", halted + "\n" + text)


def test_sr_and_pbd_family(pool: RunningPool) -> None:
    host1 = uuid_of(pool, "host", "name-label=host1")
    sr = one(pool, "sr-create", "name-label=extra-sr", "type=ext",
             "device-config:device=/dev/sdz", f"host-uuid={host1}")  # fmt: skip
    pbd = uuid_of(pool, "pbd", f"sr-uuid={sr}")
    text = transcript(
        pool,
        ["sr-list", f"uuid={sr}", "params=name-label,type,host,shared"],
        ["sr-scan", f"uuid={sr}"],
        ["pbd-list", f"uuid={pbd}", "params=device-config,currently-attached"],
        ["sr-forget", f"uuid={sr}"],
        ["pbd-unplug", f"uuid={pbd}"],
        ["pbd-param-get", f"uuid={pbd}", "param-name=currently-attached"],
        ["pbd-plug", f"uuid={pbd}"],
        ["pbd-param-get", f"uuid={pbd}", "param-name=currently-attached"],
        ["pbd-unplug", f"uuid={pbd}"],
        ["sr-forget", f"uuid={sr}"],
        ["sr-list", "name-label=extra-sr", "--minimal"],
        ["pbd-plug", f"uuid={pbd}"],
        ["sr-create", "name-label=x"],
    )
    check_golden("sr_pbd_ops", text)


def test_pif_vlan_bond_family(pool: RunningPool) -> None:
    eth0 = uuid_of(pool, "pif", "device=eth0", "host-name-label=host2")
    eth1 = uuid_of(pool, "pif", "device=eth1", "host-name-label=host2")
    vlan_net = one(pool, "network-create", "name-label=vlan-net")
    bond_net = one(pool, "network-create", "name-label=bond-net")
    other_net = one(pool, "network-create", "name-label=other-net")
    rc, out, _ = xe(pool, "pif-param-list", f"uuid={eth1}")
    assert rc == 0 and "speed ( RO): 1000 Mbit/s" in out and "duplex ( RO): full" in out
    assert "io_read_kbs ( RO): <unknown>" in out
    text = transcript(
        pool,
        ["pif-list", "host-name-label=host2", "params=device,VLAN,management"],
        ["pif-param-get", f"uuid={eth1}", "param-name=device"],
        ["pif-param-set", f"uuid={eth1}", "other-config:role=storage"],
        ["pif-param-get", f"uuid={eth1}", "param-name=other-config", "param-key=role"],
        ["pif-param-remove", f"uuid={eth1}", "param-name=other-config", "param-key=role"],
        ["pif-param-get", f"uuid={eth1}", "param-name=other-config"],
        ["pif-param-set", f"uuid={eth1}", "device=eth9"],
        ["vlan-create", f"pif-uuid={eth1}", "vlan=42", f"network-uuid={vlan_net}", "--minimal"],
        ["pif-list", "VLAN=42", "params=device,VLAN,network-name-label,host-name-label"],
        ["vlan-create", f"pif-uuid={eth1}", "vlan=43", f"network-uuid={vlan_net}"],
        ["vlan-create", f"pif-uuid={eth1}", "vlan=5000", f"network-uuid={other_net}"],
        ["vlan-create", f"pif-uuid={eth1}", "vlan=x", f"network-uuid={other_net}"],
        ["bond-create", f"network-uuid={bond_net}", f"pif-uuids={eth1}"],
        ["bond-create", f"network-uuid={bond_net}", f"pif-uuids={eth0},{eth1}", "--minimal"],
        ["bond-list", "params=mode,slaves"],
        ["pif-list", f"network-uuid={bond_net}", "params=device,bond-master-of"],
    )
    check_golden("pif_vlan_bond", text)


def test_pool_join_and_eject_errors(pool: RunningPool, monkeypatch: pytest.MonkeyPatch) -> None:
    host2 = uuid_of(pool, "host", "name-label=host2")
    monkeypatch.setattr("sys.stdin", io.StringIO("no\n"))  # pool-eject asks first
    text = transcript(
        pool,
        ["pool-join", "master-address=127.0.0.1", "master-username=root"],
        ["pool-join", "master-address=127.0.0.1:1", "master-username=root",
         "master-password=wrong"],
        ["pool-eject", f"host-uuid={host2}"],
        ["pool-eject", "host-uuid=not-a-host"],
    )  # fmt: skip
    check_golden("pool_join_eject", text)


def test_task_list_and_cancel(pool: RunningPool) -> None:
    host1 = uuid_of(pool, "host", "name-label=host1")
    session = api(pool)
    try:
        host = session.xenapi.host.get_by_uuid(host1)
        task = session.xenapi.Async.host.call_plugin(host, "echo", "sleep", {"seconds": "1"})
        task_uuid = session.xenapi.task.get_uuid(task)
        rows = one(pool, "task-list", "params=uuid,status", "status=pending")
        assert task_uuid in rows and "pending" in rows
        one(pool, "task-cancel", f"uuid={task_uuid}")
        # a running plug-in is not interrupted: the task is cancelling until it returns
        status = one(pool, "task-list", f"uuid={task_uuid}", "params=status", "--minimal")
        assert status in ("cancelling", "cancelled")
        running = ("pending", "cancelling")
        wait_for(lambda: session.xenapi.task.get_status(task) not in running, timeout=20)
    finally:
        session.xenapi.session.logout()
    text = transcript(pool, ["task-cancel", "uuid=nope"], ["task-cancel"])
    check_golden("task_cancel", text)


def test_message_list(pool: RunningPool) -> None:
    session = api(pool)
    try:
        vm = session.xenapi.VM.get_uuid(session.xenapi.VM.create(vm_record("msg-vm")))
    finally:
        session.xenapi.session.logout()
    text = transcript(
        pool,
        ["message-create", "name=XE_TEST", "priority=3", "body=hello", f"vm-uuid={vm}"],
        ["message-list", "name=XE_TEST", "params=name,priority,class,obj-uuid,body"],
        ["message-create", "name=XE_TEST", "priority=high", "body=x", f"vm-uuid={vm}"],
        ["message-create", "name=XE_TEST", "priority=3", "body=x"],
    )
    check_golden("message", text)


def test_host_call_plugin(pool: RunningPool) -> None:
    host1 = uuid_of(pool, "host", "name-label=host1")
    call = ["host-call-plugin", f"host-uuid={host1}", "plugin=echo"]
    text = transcript(
        pool,
        [*call, "fn=echo", "args:text=hello world"],
        [*call, "fn=args", "args:foo=bar", "args:a=b"],
        [*call, "fn=fail", "args:code=MY_ERROR", "args:param1=x"],
        [*call, "fn=nope"],
        ["host-call-plugin", f"host-uuid={host1}", "plugin=nope", "fn=main"],
        ["host-call-plugin", f"host-uuid={host1}", "plugin=echo"],
    )
    check_golden("host_call_plugin", text)
