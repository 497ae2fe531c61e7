"""Admin shell snippets from real XenServer deployments, run unchanged with xe on PATH.

The snippets run under bash with the venv's bin directory first on PATH; xe finds the test
server through ``XE_EXTRA_ARGS`` (as it would on a XenServer host through its defaults).
Each asserts what the snippet does here; a step whose server function is not written yet
asserts xe's plain "not implemented" answer, so writing the function shows as a failure to update.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from xekit import vm_record

from xenstack.testing import RunningPool, simulated_pool

BIN = Path(sys.executable).parent
NOT_YET = "does not implement the requested function"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xe-snippets") / "state") as running:
        yield running


def bash(pool: RunningPool, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", **env)
    full_env["XE_EXTRA_ARGS"] = f"server=127.0.0.1,port={pool.port},password={pool.password}"
    return subprocess.run(["bash", "-c", script], env=full_env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def session(pool: RunningPool) -> Any:
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", pool.password, "1.0", "xe-snippets")
    return s


def test_network_create_and_bridge(pool: RunningPool) -> None:
    script = """
xe network-create name-label=openstack-int-network
xe network-list name-label=openstack-int-network params=bridge
"""
    res = bash(pool, script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines[0]) == 36  # the new network's uuid
    assert lines[1].startswith("bridge ( RO)    : ") and lines[1].split(": ")[1]


def test_local_sr(pool: RunningPool) -> None:
    res = bash(
        pool, 'LOCAL_SR=$(xe sr-list name-label="Local storage" --minimal)\necho "$LOCAL_SR"'
    )
    assert res.returncode == 0, res.stderr
    sr_uuid = res.stdout.strip()
    s = session(pool)
    try:
        sr = s.xenapi.SR.get_by_uuid(sr_uuid)
        assert s.xenapi.SR.get_name_label(sr) == "Local storage"
    finally:
        s.xenapi.session.logout()


def test_vm_vif_create_and_plug(pool: RunningPool) -> None:
    s = session(pool)
    try:
        vm = s.xenapi.VM.create(vm_record("CentOS_RDO"))
        with contextlib.suppress(XenAPI.Failure):  # the snippet's result tells
            s.xenapi.VM.start(vm, False, True)
    finally:
        s.xenapi.session.logout()
    script = """
vm_net_uuid=$(xe network-create name-label=rdo-net)
vm_uuid=$(xe vm-list name-label=CentOS_RDO minimal=true)
next_device=$(xe vm-param-get uuid=$vm_uuid param-name=allowed-VIF-devices | cut -d';' -f1)
vm_vif_uuid=$(xe vif-create device=$next_device network-uuid=$vm_net_uuid vm-uuid=$vm_uuid)
xe vif-plug uuid=$vm_vif_uuid
echo "device=$next_device vif=$vm_vif_uuid"
"""
    res = bash(pool, script)
    assert res.returncode == 0, res.stderr
    assert "device=0 " in res.stdout
    vif_uuid = res.stdout.split("vif=")[1].strip()
    s = session(pool)
    try:
        vif = s.xenapi.VIF.get_by_uuid(vif_uuid)
        assert s.xenapi.VIF.get_currently_attached(vif) is True
    finally:
        s.xenapi.session.logout()


def test_pool_maintenance_line(pool: RunningPool) -> None:
    res = bash(
        pool,
        "xe pool-ha-disable; echo ha=$?; xe pool-sync-database; echo sync=$?; "
        "xe pool-recover-slaves; echo recover=$?",
    )
    # HA is off: pool.disable_ha fails with HA_NOT_ENABLED, as XAPI's (ocaml/xapi/xapi_ha.ml);
    # xe says so and fails; the line goes on.
    assert res.stdout.splitlines() == ["ha=1", "sync=0", "recover=0"]
    assert res.stderr.splitlines() == ["High availability is not enabled on this pool."]


def test_vm_cd_eject_multiple(pool: RunningPool) -> None:
    s = session(pool)
    try:
        uuids = []
        for name in ("cd-vm-1", "cd-vm-2"):
            vm = s.xenapi.VM.create(vm_record(name))
            cd = {
                "VM": vm,
                "VDI": "OpaqueRef:NULL",
                "userdevice": "3",
                "bootable": False,
                "mode": "RO",
                "type": "CD",
                "unpluggable": True,
                "empty": True,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
            s.xenapi.VBD.create(cd)
            uuids.append(s.xenapi.VM.get_uuid(vm))
    finally:
        s.xenapi.session.logout()
    res = bash(
        pool,
        "xe vm-cd-eject --multiple vm-list-marker=ignored 2>&1 >/dev/null; "
        "xe vm-cd-eject --multiple name-label=cd-vm-1; echo one=$?; "
        "xe vm-cd-eject --multiple",
    )
    # the drives are empty, so each eject fails with VBD_IS_EMPTY, as XAPI's does; with
    # --multiple every selected VM is tried and each failure reported, and xe fails
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert "one=1" in out
    assert res.stderr.splitlines()[0] == "The drive holds no media."
    for uuid in uuids:
        assert f"operation failed on {uuid}: The drive holds no media." in out
