"""A fresh simulated XenServer install, read over the wire as clients read it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from xml.dom import minidom

import XenAPI

from xenstack.testing import simulated_pool


def test_pool_hosts_and_control_domains(session: Any) -> None:
    (pool,) = session.xenapi.pool.get_all_records().values()
    assert pool["name_label"] == ""
    master = session.xenapi.host.get_record(pool["master"])
    assert master["name_label"] == "host1"
    version = master["software_version"]
    assert all(part.isdigit() for part in version["product_version"].split("."))
    assert master["API_version_major"] == "2"
    assert len(master["host_CPUs"]) == 8
    assert session.xenapi.host_metrics.get_live(master["metrics"]) is True
    dom0 = session.xenapi.VM.get_record(master["control_domain"])
    assert dom0["is_control_domain"] and dom0["power_state"] == "Running"
    assert dom0["consoles"] and session.xenapi.VM_metrics.get_record(dom0["metrics"])
    assert session.xenapi.SR.get_name_label(pool["default_SR"]) == "Local storage"


def test_networks_and_pifs(session: Any) -> None:
    nets = {r["bridge"]: r for r in session.xenapi.network.get_all_records().values()}
    assert nets["xenbr0"]["name_label"] == "Pool-wide network associated with eth0"
    assert nets["xenbr1"]["name_label"] == "Pool-wide network associated with eth1"
    himn = nets["xenapi"]
    assert himn["other_config"]["is_host_internal_management_network"] == "true"
    pifs = session.xenapi.PIF.get_all_records().values()
    eth0 = next(p for p in pifs if p["device"] == "eth0")
    assert eth0["management"] and eth0["physical"] and eth0["currently_attached"]
    assert eth0["ip_configuration_mode"] == "Static" and eth0["IP"].startswith("10.0.0.")
    assert session.xenapi.network.get_bridge(eth0["network"]) == "xenbr0"
    assert session.xenapi.PIF_metrics.get_carrier(eth0["metrics"]) is True


def test_storage(session: Any) -> None:
    srs = list(session.xenapi.SR.get_all_records().values())
    by_label = {r["name_label"]: r for r in srs}
    local = by_label["Local storage"]
    assert (local["type"], local["content_type"], local["shared"]) == ("ext", "user", False)
    assert int(local["physical_size"]) > 0  # a file SR: the size of the filesystem under it
    assert session.xenapi.PBD.get_currently_attached(local["PBDs"][0]) is True
    tools = by_label["XenServer Tools"]
    assert (tools["type"], tools["content_type"], tools["shared"]) == ("iso", "iso", True)
    assert [session.xenapi.VDI.get_name_label(v) for v in tools["VDIs"]] == ["guest-tools.iso"]
    assert by_label["DVD drives"]["type"] == "udev"
    sm_types = {r["type"] for r in session.xenapi.SM.get_all_records().values()}
    assert {"ext", "nfs", "iso", "udev", "lvm", "file", "dummy"} <= sm_types
    assert set(session.xenapi.SR.get_supported_types()) == sm_types


def test_templates(session: Any) -> None:
    templates = {
        r["name_label"]: r
        for r in session.xenapi.VM.get_all_records().values()
        if r["is_a_template"] and r["is_default_template"]
    }
    for name in ("Debian Bookworm 12", "Windows 10 (64-bit)", "Other install media"):
        assert name in templates
    debian = templates["Debian Bookworm 12"]
    disk = minidom.parseString(debian["other_config"]["disks"]).getElementsByTagName("disk")[0]
    assert disk.getAttribute("size") == "10737418240" and disk.getAttribute("sr") == ""
    assert "cdrom" in debian["other_config"]["install-methods"].split(",")
    assert debian["HVM_boot_policy"] == "BIOS order" and debian["reference_label"]
    assert minidom.parseString(debian["recommendations"]).documentElement.tagName == "restrictions"


def test_three_host_pool_with_shared_storage(tmp_path: Path) -> None:
    with simulated_pool(tmp_path / "state", hosts=3, sim_storage=True) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "t")
        hosts = s.xenapi.host.get_all_records()
        assert sorted(h["name_label"] for h in hosts.values()) == ["host1", "host2", "host3"]
        (nfs,) = s.xenapi.SR.get_by_name_label("NFS storage")
        record = s.xenapi.SR.get_record(nfs)
        assert record["shared"] and len(record["PBDs"]) == 3
        assert len(s.xenapi.SR.get_by_name_label("Local storage")) == 3
        (xenbr0,) = [
            r for r in s.xenapi.network.get_all_records().values() if r["bridge"] == "xenbr0"
        ]
        assert len(xenbr0["PIFs"]) == 3
        s.xenapi.session.logout()


def test_jsonrpc_reads_the_install(xenstack_pool: Any) -> None:
    def rpc(method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        req = urllib.request.Request(
            xenstack_pool.jsonrpc_url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req) as resp:
            return json.load(resp)["result"]

    session = rpc("session.login_with_password", ["root", xenstack_pool.password, "1.0", "t"])
    types = rpc("SR.get_supported_types", [session])
    assert "ext" in types
    pifs = rpc("PIF.get_all_records", [session])
    assert {p["device"] for p in pifs.values()} == {"eth0", "eth1"}


def test_init_options_shared_sr_and_storage_kind(tmp_path: Path) -> None:
    """``--shared-sr`` adds a shared SR every host sees; files unless ``--sim-storage``."""
    for extra, files in (([], True), (["--sim-storage"], False)):
        state = tmp_path / ("sim" if extra else "files")
        cmd = [sys.executable, "-m", "xenstack.cli.main", "init", "--state-dir", str(state)]
        subprocess.run([*cmd, "--hosts", "2", "--shared-sr", *extra], check=True)
        with simulated_pool(state) as pool:
            s = XenAPI.Session(pool.url)
            s.xenapi.login_with_password(
                "root", (state / "root-password").read_text().strip(), "1.0", "t"
            )
            (nfs,) = s.xenapi.SR.get_by_name_label("NFS storage")
            rec = s.xenapi.SR.get_record(nfs)
            assert rec["shared"] is True and len(rec["PBDs"]) == 2
            assert ("xenstack_path" in rec["sm_config"]) is files
            vdi = s.xenapi.VDI.create(
                {
                    "SR": nfs,
                    "virtual_size": str(1 << 20),
                    "type": "user",
                    "name_label": "d",
                    "sharable": False,
                    "read_only": False,
                    "other_config": {},
                }
            )
            on_disk = list(state.rglob(s.xenapi.VDI.get_uuid(vdi) + ".vhd"))
            assert bool(on_disk) is files
            s.xenapi.session.logout()
