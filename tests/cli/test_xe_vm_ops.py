"""``xe`` VM operation commands on a two-host simulated pool with a shared SR.

install (template=, sr-uuid=), disks and CDs, snapshots, migration between hosts, uninstall,
``--multiple`` selectors and event-wait. Goldens where the output matters (see
``test_xe_golden`` for the layout and how to regenerate them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmkit import wait_for
from xekit import api, check_golden, one, transcript, two_host_pool, vm_record, xe

from xenstack.testing import RunningPool
from xenstack.toolstack import Toolstack

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xe-vm") / "state"
    with two_host_pool(state, instant_agent=True) as running:  # for live migration
        yield running


def shared_sr(pool: RunningPool) -> str:
    return one(pool, "sr-list", "shared=true", "content-type=user", "--minimal")


def install(pool: RunningPool, name: str) -> str:
    return one(
        pool,
        "vm-install",
        "template=Debian Bookworm 12",
        f"new-name-label={name}",
        f"sr-uuid={shared_sr(pool)}",
    )


def test_install_from_template_on_an_sr(pool: RunningPool) -> None:
    sr = shared_sr(pool)
    vm = install(pool, "inst-1")
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=is-a-template") == "false"
    vdis = one(pool, "vbd-list", f"vm-uuid={vm}", "type=Disk", "params=vdi-uuid", "--minimal")
    assert vdis and all(
        one(pool, "vdi-param-get", f"uuid={v}", "param-name=sr-uuid") == sr for v in vdis.split(",")
    )
    text = transcript(
        pool,
        ["vm-install", "template=No such template", "new-name-label=x"],
        ["vm-install", "new-name-label=x"],
        ["vm-install", "template=Debian Bookworm 12"],
        ["vm-install", f"template-uuid={vm}", "new-name-label=x"],
        ["vm-list", "name-label=inst-1", "params=name-label,name-description,power-state"],
    )
    check_golden("vm_install", text)


def test_template_and_snapshot_lists(pool: RunningPool) -> None:
    vm = install(pool, "snap-src")
    snap = one(pool, "vm-snapshot", "vm=snap-src", "new-name-label=snap-1")
    names = one(pool, "template-list", "params=name-label", "--minimal").split(",")
    assert "Debian Bookworm 12" in names and "snap-1" not in names
    rows = one(pool, "snapshot-list", f"snapshot-of={vm}", "params=uuid", "--minimal")
    assert rows == snap
    assert "snap-src" not in one(pool, "snapshot-list", "params=name-label", "--minimal")


def test_disk_add_and_remove(pool: RunningPool) -> None:
    vm = install(pool, "disks")
    sr = shared_sr(pool)
    one(pool, "vm-disk-add", "vm=disks", "disk-size=2GiB", "device=4", f"sr-uuid={sr}")
    vbd = one(pool, "vbd-list", f"vm-uuid={vm}", "userdevice=4", "--minimal")
    vdi = one(pool, "vbd-param-get", f"uuid={vbd}", "param-name=vdi-uuid")
    assert one(pool, "vdi-param-get", f"uuid={vdi}", "param-name=virtual-size") == str(2 << 30)
    assert one(pool, "vdi-param-get", f"uuid={vdi}", "param-name=name-label") == "Created by xe"
    assert one(pool, "vbd-param-get", f"uuid={vbd}", "param-name=other-config") == "owner:"
    text = transcript(
        pool,
        ["vm-disk-remove", "vm=disks", "device=4"],
        ["vdi-list", f"uuid={vdi}", "--minimal"],
        ["vm-disk-remove", "vm=disks", "device=9"],
        ["vm-disk-add", "vm=disks", "disk-size=lots", "device=5"],
        ["vm-disk-add", "vm=disks", "device=5"],
    )
    check_golden("vm_disk", text)


def test_cd_insert_and_eject(pool: RunningPool) -> None:
    vm = install(pool, "cds")
    text = transcript(
        pool,
        ["vm-cd-insert", "vm=cds", "cd-name=guest-tools.iso"],
        ["vm-cd-eject", "vm=cds"],
        ["vbd-create", f"vm-uuid={vm}", "device=3", "type=CD", "mode=ro", "--minimal"],
        ["vm-cd-insert", "vm=cds", "cd-name=no-such.iso"],
        ["vm-cd-insert", "vm=cds", "cd-name=guest-tools.iso"],
        ["vbd-list", f"vm-uuid={vm}", "type=CD", "params=empty,vdi-name-label"],
        ["vm-cd-insert", "vm=cds", "cd-name=guest-tools.iso"],
        ["vm-cd-eject", "vm=cds"],
        ["vbd-list", f"vm-uuid={vm}", "type=CD", "params=empty,vdi-name-label"],
    )
    check_golden("vm_cd", text)


def test_snapshot_and_revert(pool: RunningPool) -> None:
    vm = install(pool, "revert-me")
    one(pool, "vm-param-set", f"uuid={vm}", "other-config:generation=1")
    snap = one(pool, "vm-snapshot", "vm=revert-me", "new-name-label=before")
    one(pool, "vm-param-set", f"uuid={vm}", "other-config:generation=2")
    assert one(pool, "vm-param-get", f"uuid={snap}", "param-name=is-a-snapshot") == "true"
    one(pool, "snapshot-revert", f"snapshot-uuid={snap}")
    got = one(pool, "vm-param-get", f"uuid={vm}", "param-name=other-config", "param-key=generation")
    assert got == "1"
    text = transcript(pool, ["snapshot-revert", f"snapshot-uuid={vm}"], ["snapshot-revert"])
    check_golden("snapshot_revert", text)


def test_migrate_between_hosts(pool: RunningPool) -> None:
    vm = install(pool, "mover")
    host1, host2 = (
        one(pool, "host-list", f"name-label={n}", "--minimal") for n in ("host1", "host2")
    )
    one(pool, "vm-start", "vm=mover", "on=host1")
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=resident-on") == host1
    one(pool, "event-wait", "class=vm", "name-label=mover", "PV-drivers-up-to-date=true")
    one(pool, "vm-migrate", "vm=mover", "host=host2", "--live")
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=resident-on") == host2
    one(pool, "vm-migrate", "vm=mover", f"host-uuid={host1}", "--live")
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=resident-on") == host1
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=power-state") == "running"
    text = transcript(
        pool,
        ["vm-migrate", "vm=mover"],
        ["vm-migrate", "vm=mover", "host=host9"],
        ["vm-migrate", "vm=mover", "remote-master=10.0.0.1"],
    )
    check_golden("vm_migrate", text)
    one(pool, "vm-shutdown", "vm=mover", "--force")


def test_uninstall_force_destroys_owned_disks_and_snapshots(pool: RunningPool) -> None:
    vm = install(pool, "goner")
    one(pool, "vm-start", "vm=goner")
    one(pool, "vm-snapshot", "vm=goner", "new-name-label=goner-snap")
    owned = one(pool, "vbd-list", f"vm-uuid={vm}", "type=Disk", "params=vdi-uuid", "--minimal")
    spare = one(pool, "vdi-create", f"sr-uuid={shared_sr(pool)}", "name-label=spare",
                "virtual-size=1MiB")  # fmt: skip
    one(pool, "vbd-create", f"vm-uuid={vm}", f"vdi-uuid={spare}", "device=7")
    rc, out, err = xe(pool, "vm-uninstall", "vm=goner", "--force")
    assert rc == 0, err
    check_golden("vm_uninstall", out)
    assert one(pool, "vm-list", "name-label=goner", "--minimal") == ""
    assert one(pool, "snapshot-list", "name-label=goner-snap", "--minimal") == ""
    assert one(pool, "vdi-list", f"uuid={owned}", "--minimal") == ""
    assert one(pool, "vdi-list", f"uuid={spare}", "--minimal") == spare  # not owned: kept


def test_uninstall_without_force_asks(pool: RunningPool, monkeypatch: pytest.MonkeyPatch) -> None:
    install(pool, "keeper")
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("no\n"))
    rc, out, _ = xe(pool, "vm-uninstall", "vm=keeper")
    assert rc == 0
    assert out.splitlines()[-2:] == ["Type 'yes' to continue", "Aborted (you typed: 'no')"]
    assert one(pool, "vm-list", "name-label=keeper", "--minimal") != ""
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("yes\n"))
    rc, out, _ = xe(pool, "vm-uninstall", "vm=keeper")
    assert rc == 0 and out.splitlines()[-1] == "All objects destroyed"
    assert one(pool, "vm-list", "name-label=keeper", "--minimal") == ""


def test_multiple_selectors(pool: RunningPool) -> None:
    session = api(pool)
    try:
        for _ in range(2):
            session.xenapi.VM.create(vm_record("twin"))
    finally:
        session.xenapi.session.logout()
    text = transcript(
        pool,
        ["vm-start", "name-label=twin"],
        ["vm-start", "name-label=twin", "--multiple"],
        ["vm-list", "name-label=twin", "params=power-state"],
        ["vm-start", "name-label=twin", "--multiple"],
        ["vm-shutdown", "name-label=twin", "--multiple", "--force"],
        ["vm-migrate", "name-label=twin", "host=host1"],
        ["vm-start", "name-label=twin", "is-a-snapshot=maybe", "--multiple"],
        ["vm-start", "name-label=twin", "colour=blue"],
    )
    check_golden("vm_multiple", text)


def xe_process(pool: RunningPool, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, XE_EXTRA_ARGS=f"server=127.0.0.1,port={pool.port},"
               f"password={pool.password}")  # fmt: skip
    return subprocess.Popen([str(BIN / "xe"), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def blocked_watchers(toolstack: Toolstack) -> int:
    """How many event.from calls are blocked waiting for the next commit."""
    return sum(not fut.done() for fut in toolstack.db._waiters)


def test_event_wait_returns_when_the_condition_holds(pool: RunningPool) -> None:
    vm = install(pool, "waited-for")
    proc = xe_process(pool, "event-wait", "class=vm", "name-label=waited-for",
                      "power-state=running")  # fmt: skip
    try:
        # xe has read the VM's state and blocks in event.from until something changes
        wait_for(lambda: proc.poll() is not None or pool.call(blocked_watchers), timeout=30)
        assert proc.poll() is None, proc.communicate()  # still waiting: the VM is halted
        one(pool, "vm-start", f"uuid={vm}")
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == "" and err == ""
    # already true: returns at once; "/=" waits for a difference
    one(pool, "event-wait", "class=vm", "name-label=waited-for", "power-state=running")
    one(pool, "event-wait", "class=vm", f"uuid={vm}", "power-state=/=halted")
    one(pool, "vm-shutdown", f"uuid={vm}", "--force")
    text = transcript(
        pool,
        ["event-wait"],
        ["event-wait", "class=nope", "name-label=x"],
        ["event-wait", "class=vm", "no-such-field=1"],
        ["event-wait", "class=vm", "name-label=waited-for", "power-state=running", "timeout=0.2"],
    )
    check_golden("event_wait", text)
