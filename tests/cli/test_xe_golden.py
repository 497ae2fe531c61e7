"""Golden-output tests for ``xe``: every command family against a simulated pool.

uuids, references and timestamps are normalised. Regenerate the files with
``XE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/cli/test_xe_golden.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xekit import api, check_golden, transcript, vm_record, xe

from xenstack.testing import RunningPool, simulated_pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xe") / "state") as running:
        yield running


def test_vm_family(pool: RunningPool) -> None:
    text = transcript(
        pool,
        ["vm-list"],
        ["vm-list", "--minimal"],
        ["vm-list", "params=name-label,power-state", "is-control-domain=true"],
        ["vm-list", "power-state=halted"],
        ["vm-list", "no-such-field=1"],
    )
    check_golden("vm_list", text)


def test_vm_param_family(pool: RunningPool) -> None:
    dom0 = xe(pool, "vm-list", "is-control-domain=true", "--minimal")[1].strip()
    text = transcript(
        pool,
        ["vm-param-get", f"uuid={dom0}", "param-name=power-state"],
        ["vm-param-get", f"uuid={dom0}", "param-name=is-control-domain"],
        ["vm-param-set", f"uuid={dom0}", "other-config:xe-test=yes"],
        ["vm-param-get", f"uuid={dom0}", "param-name=other-config", "param-key=xe-test"],
        ["vm-param-remove", f"uuid={dom0}", "param-name=other-config", "param-key=xe-test"],
        ["vm-param-get", f"uuid={dom0}", "param-name=other-config", "param-key=xe-test"],
        ["vm-param-set", f"uuid={dom0}", "power-state=halted"],
        ["vm-param-get", f"uuid={dom0}", "param-name=no-such"],
        ["vm-param-get", "uuid=not-a-uuid", "param-name=uuid"],
    )
    check_golden("vm_param", text)


def test_vm_param_list_layout(pool: RunningPool) -> None:
    dom0 = xe(pool, "vm-list", "is-control-domain=true", "--minimal")[1].strip()
    rc, out, _ = xe(pool, "vm-param-list", f"uuid={dom0}")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("uuid ( RO)") and lines[-1] == ""
    width = lines[0].index(":")
    assert all(line.index(":") == width for line in lines[1:-1])
    assert any(line.strip().startswith("name-label ( RW): Control domain") for line in lines)
    assert any(line.strip().startswith("platform (MRW):") for line in lines)
    assert any(line.strip().startswith("tags (SRW):") for line in lines)


def test_host_pool_family(pool: RunningPool) -> None:
    text = transcript(
        pool,
        ["host-list"],
        ["host-list", "params=name-label,enabled", "--minimal"],
        ["pool-list"],
        ["pool-list", "params=master"],
        ["pool-ha-enable"],
        ["pool-ha-disable"],
        ["pool-sync-database"],
        ["pool-designate-new-master", "host-uuid=00000000-0000-0000-0000-000000000000"],
        ["host-disable", "host=no-such-host"],
        ["task-list"],
    )
    check_golden("host_pool", text)


def test_network_family(pool: RunningPool) -> None:
    rc, uuid, _ = xe(pool, "network-create", "name-label=golden-net", "MTU=9000")
    assert rc == 0
    uuid = uuid.strip()
    text = transcript(
        pool,
        ["network-list", "name-label=golden-net"],
        ["network-list", "name-label=golden-net", "params=bridge,MTU"],
        ["network-param-set", f"uuid={uuid}", "name-description=for tests", "other-config:a=b"],
        ["network-param-get", f"uuid={uuid}", "param-name=other-config"],
        ["network-param-add", f"uuid={uuid}", "param-name=tags", "param-key=blue"],
        ["network-list", "tags:contains=blue", "params=name-label,tags"],
        ["network-param-clear", f"uuid={uuid}", "param-name=other-config"],
        ["network-param-get", f"uuid={uuid}", "param-name=other-config"],
        ["network-param-set", f"uuid={uuid}", "bridge=xyz"],
        ["network-destroy", f"uuid={uuid}"],
        ["network-list", "name-label=golden-net", "--minimal"],
        ["pif-list", "params=device,VLAN,currently-attached"],
    )
    check_golden("network", text)


def test_vif_family(pool: RunningPool) -> None:
    session = api(pool)
    try:
        vm = session.xenapi.VM.create(vm_record("vif-golden"))
        vm_uuid = session.xenapi.VM.get_uuid(vm)
    finally:
        session.xenapi.session.logout()
    net = xe(pool, "network-create", "name-label=vif-golden-net")[1].strip()
    rc, vif, err = xe(
        pool,
        "vif-create",
        "device=0",
        f"network-uuid={net}",
        f"vm-uuid={vm_uuid}",
        "mac=00:16:3e:00:00:01",
    )
    assert rc == 0, err
    vif = vif.strip()
    text = transcript(
        pool,
        ["vif-list", f"vm-uuid={vm_uuid}"],
        ["vm-vif-list", "vm=vif-golden"],
        ["vif-param-get", f"uuid={vif}", "param-name=MAC"],
        ["vif-list", "MAC=00:16:3E:00:00:01", "--minimal"],
        ["vif-destroy", f"uuid={vif}"],
        ["vif-list", f"vm-uuid={vm_uuid}", "--minimal"],
        ["vm-destroy", f"uuid={vm_uuid}"],
    )
    check_golden("vif", text)


def test_storage_family(pool: RunningPool) -> None:
    text = transcript(
        pool,
        ["sr-list", "params=name-label,type,content-type,host"],
        ["sr-list", "name-label=Local storage", "params=type"],
        ["pbd-list", "params=device-config,currently-attached"],
        [
            "vdi-create",
            "sr-uuid=00000000-0000-0000-0000-000000000000",
            "name-label=x",
            "virtual-size=1GiB",
        ],
        ["vbd-list", "--minimal"],
    )
    check_golden("storage", text)


def test_usage_errors(pool: RunningPool) -> None:
    text = transcript(
        pool,
        ["no-such-command"],
        ["vm-param-get", "uuid=x"],
        ["vif-create", "device=0"],
        ["vm-start", "vm=nothing-like-this"],
        ["vm-cd-eject", "--multiple"],
        ["vm-list", "-zz"],
    )
    check_golden("errors", text)


def test_help(pool: RunningPool) -> None:
    text = transcript(pool, ["help", "vm-start"], ["help", "network-list"], ["help", "nope"])
    check_golden("help", text)
    rc, out, _ = xe(pool, "help")
    assert rc == 0 and "vm-list" in out and "vm-start" in out
    rc, out, _ = xe(pool, "help", "--all", "--minimal")
    names = out.strip().split(",")
    for name in (
        "vm-install",
        "vif-create",
        "pool-ha-disable",
        "event-wait",
        "vdi-copy",
        "bond-create",
        "vlan-create",
        "host-call-plugin",
        "template-list",
        "snapshot-list",
        "message-list",
        "task-cancel",
        "vm-param-set",
    ):
        assert name in names, name
