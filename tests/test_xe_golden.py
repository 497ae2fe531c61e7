"""Golden-output tests for ``xe``: every command family against a simulated pool.

uuids, references and timestamps are normalised. Regenerate the files with
``XE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_xe_golden.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from xenstack.cli.xe import main
from xenstack.testing import RunningPool, simulated_pool

GOLDEN = Path(__file__).parent / "golden" / "xe"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REF = re.compile(r"OpaqueRef:[0-9a-zA-Z-]+")
DATE = re.compile(r"\d{8}T\d\d:\d\d:\d\dZ")


def normalise(text: str) -> str:
    return DATE.sub("<date>", REF.sub("<ref>", UUID.sub("<uuid>", text)))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xe") / "state") as running:
        yield running


def xe(pool: RunningPool, *args: str) -> tuple[int, str, str]:
    """Run xe in-process against ``pool``; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    extra = f"server=127.0.0.1,port={pool.port},username=root,password={pool.password}"
    old = os.environ.get("XE_EXTRA_ARGS")
    os.environ["XE_EXTRA_ARGS"] = extra
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        if old is None:
            del os.environ["XE_EXTRA_ARGS"]
        else:
            os.environ["XE_EXTRA_ARGS"] = old
    return rc, out.getvalue(), err.getvalue()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = normalise(text)
    if os.environ.get("XE_UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"golden {path.name} differs"


def transcript(pool: RunningPool, *commands: list[str]) -> str:
    """Each command, its exit status, stdout and stderr, as one text."""
    parts = []
    for cmd in commands:
        rc, out, err = xe(pool, *cmd)
        parts.append(
            f"$ xe {' '.join(cmd)}\n[exit {rc}]\n{out}" + (f"[stderr]\n{err}" if err else "")
        )
    return "\n".join(parts)


def vm_record(name: str) -> dict[str, Any]:
    """A complete VM.create record (the constructor wants every field)."""
    gib = str(1 << 30)
    return {"name_label": name, "name_description": "", "user_version": "1",
            "is_a_template": False, "memory_static_max": gib, "memory_dynamic_max": gib,
            "memory_dynamic_min": gib, "memory_static_min": gib, "VCPUs_max": "1",
            "VCPUs_at_startup": "1", "VCPUs_params": {}, "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart", "actions_after_crash": "restart",
            "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "", "PV_args": "",
            "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "",
            "HVM_boot_params": {}, "platform": {}, "PCI_bus": "", "other_config": {},
            "recommendations": "", "affinity": "OpaqueRef:NULL"}  # fmt: skip


def api(pool: RunningPool) -> Any:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xe-tests")
    return session


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
