"""Ansible's XenServer modules (community.general, from the ``ansible`` package), unmodified.

The playbook ``clients/ansible/guest.yml`` takes a VM through its life with
``xenserver_guest`` (from a template, with a disk, a NIC and hardware settings, waiting for
the guest agent's IP), ``xenserver_guest_info`` and ``xenserver_guest_powerstate``; this test
checks what each task reported and what the pool holds afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from xenstack.testing import simulated_pool

PLAYBOOK = Path(__file__).resolve().parent / "ansible" / "guest.yml"
GIB = 1 << 30


def run_playbook(url: str, password: str, tmp_path: Path) -> dict[str, Any]:
    playbook = Path(sys.executable).parent / "ansible-playbook"
    if not playbook.exists():
        pytest.fail("ansible-playbook is missing: the [test] extra installs the ansible package")
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,  # the modules need the XenAPI SDK
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    host = url.removeprefix("http://").rstrip("/")
    extra = f"xs_host={host} xs_password={password} report_path={report}"
    done = subprocess.run(
        [str(playbook), str(PLAYBOOK), "-e", extra],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return dict(json.loads(report.read_text()))


def test_a_vms_life_through_ansible(tmp_path: Path) -> None:
    with simulated_pool() as pool:
        report = run_playbook(pool.url, pool.password, tmp_path)
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "tests")
        try:
            left = session.xenapi.VM.get_by_name_label("ansible-vm")
        finally:
            session.xenapi.session.logout()

    created = report["created"]
    assert created["changed"] is True
    vm = created["instance"]
    assert vm["state"] == "poweredon"
    assert vm["folder"] == "/ansible"
    assert vm["hardware"] == {"num_cpus": 2, "num_cpu_cores_per_socket": 1, "memory_mb": 1024}
    (nic,) = vm["networks"]
    assert nic["mac"] == "aa:00:00:00:00:01"
    assert nic["name"] == "Pool-wide network associated with eth0"
    assert nic["ip"], "wait_for_ip_address returned without the guest agent's address"
    (disk,) = vm["disks"]
    assert (disk["name"], disk["sr"], disk["size"]) == ("ansible-disk", "Local storage", 8 * GIB)
    assert vm["is_template"] is False

    assert report["again"]["changed"] is False  # idempotent: nothing to do the second time
    assert report["info"]["instance"]["uuid"] == vm["uuid"]
    assert report["stopped"]["instance"]["state"] == "poweredoff"

    grown = report["grown"]
    assert grown["changed"] is True
    assert {"hardware": ["memory_mb"]} in grown["changes"]
    assert grown["instance"]["hardware"]["memory_mb"] == 2048
    assert grown["instance"]["disks"][0]["size"] == 10 * GIB

    assert report["removed"]["changed"] is True
    assert left == []
