"""``xenhost.py``'s host functions through host.call_plugin, called as os-xenapi's client
calls them: the power actions (host disabled, its VMs shut down, then the action, all through
dom0's ``xe``), ``query_gc`` against the SR GC's own ``gc_active`` lock, the PCI calls, and
``iptables_config`` in the toolstack's network namespace (never the machine's firewall)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from pluginkit import call_serialized
from systools import require_root, require_tool
from vmkit import GIB, add_hosts, master

from xenstack.core.config import ToolstackConfig
from xenstack.impl.storage import service
from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool
from xenstack.testing.network import namespaces


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xh") / "state") as running:
        add_hosts(running, 1, memory=8 * GIB)
        yield running


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xh-tests")
    yield session.xenapi
    session.xenapi.session.logout()


def serialized(x: Any, fn: str, *args: Any) -> Any:
    return call_serialized(x, master(x), "xenhost.py", fn, *args)


def plain(x: Any, fn: str, args: dict[str, str]) -> Any:
    return json.loads(x.host.call_plugin(master(x), "xenhost.py", fn, args))


def live(x: Any, host: str) -> bool:
    return bool(x.host_metrics.get_live(x.host.get_metrics(host)))


def test_power_actions_disable_the_host_and_stop_its_vms(x: Any) -> None:
    member = next(h for h in x.host.get_all() if h != master(x))
    uuid = x.host.get_uuid(member)
    vm = halted_vm(x, "xh-on-member", memory=GIB)
    x.VM.start_on(vm, member, False, False)
    assert plain(x, "host_shutdown", {"host_uuid": uuid}) == {"power_action": "shutdown"}
    assert x.VM.get_power_state(vm) == "Halted"  # shut down first
    assert not x.host.get_enabled(member) and not live(x, member)
    assert failure(plain, x, "host_start", {"host_uuid": uuid})[-1].endswith(
        "host power on mode disabled."
    )  # XAPI's HOST_POWER_ON_MODE_DISABLED, through xe
    x.host.set_power_on_mode(member, "wake-on-lan", {})
    assert plain(x, "host_start", {"host_uuid": uuid}) == {"power_action": "startup"}
    assert live(x, member)
    x.host.disable(member)
    assert plain(x, "host_reboot", {"host_uuid": uuid}) == {"power_action": "reboot"}
    assert live(x, member)
    x.host.enable(member)
    err = failure(x.host.call_plugin, master(x), "xenhost.py", "host_reboot",
                  {"host_uuid": "no-such-host"})  # fmt: skip
    assert err[0] == "XENAPI_PLUGIN_FAILURE"


def test_query_gc_sees_the_gc_running(x: Any, pool: RunningPool) -> None:
    assert pool.toolstack is not None and pool.loop is not None
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    sr_uuid = x.SR.get_uuid(sr)
    assert serialized(x, "query_gc", sr_uuid, "") is False
    inside, release = threading.Event(), threading.Event()
    real = service.collect

    def slow_collect(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        release.wait(60)
        return real(*args, **kwargs)

    service.collect = slow_collect  # type: ignore[assignment]
    try:
        gc = asyncio.run_coroutine_threadsafe(pool.toolstack.storage.run_gc(), pool.loop)
        assert inside.wait(60)
        assert serialized(x, "query_gc", sr_uuid, "") is True  # the GC's own lock, held
        release.set()
        gc.result(60)
    finally:
        release.set()
        service.collect = real  # type: ignore[assignment]
    assert serialized(x, "query_gc", sr_uuid, "") is False


def test_pci_calls_answer_as_os_xenapis(x: Any) -> None:
    require_tool("lspci")
    details = serialized(x, "get_pci_device_details")
    assert "Slot:" in details
    slot = details.split("Slot:", 1)[1].split()[0]  # e.g. 00:01.0, without its domain
    assert serialized(x, "get_pci_type", slot) in ("type-PCI", "type-PF", "type-VF")
    err = failure(serialized, x, "get_pci_type", "not-an-address")
    assert err[0] == "XENAPI_PLUGIN_FAILURE"


def test_iptables_config_runs_in_the_toolstacks_namespace(tmp_path: Path) -> None:
    for tool in ("iptables-save", "iptables-restore", "ip"):
        require_tool(tool)
    require_root()
    with namespaces("xh") as spaces:
        ns = spaces.add("dom0")
        config = ToolstackConfig(netns=ns)
        with simulated_pool(tmp_path / "state", toolstack_config=config) as running:
            session = XenAPI.Session(running.url)
            session.xenapi.login_with_password("root", running.password, "1.0", "xh")
            x = session.xenapi
            rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 9 -j DROP\nCOMMIT\n"
            answer = plain(x, "iptables_config", {"cmd_args": json.dumps(["iptables-restore"]),
                                                  "process_input": rules})  # fmt: skip
            assert answer == {"out": "", "err": ""}
            saved = plain(x, "iptables_config", {"cmd_args": json.dumps(["iptables-save"])})
            assert "--dport 9 -j DROP" in saved["out"]
            # the rule is the namespace's: the machine's own firewall never saw it
            inside = ["ip", "netns", "exec", ns, "iptables-save"]
            assert "--dport 9" in subprocess.run(inside, capture_output=True, text=True).stdout
            machine = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            assert "--dport 9 " not in machine  # read only: the machine's rules are not ours
            bad = {"cmd_args": json.dumps(["rm", "-rf", "/"])}
            err = failure(x.host.call_plugin, x.host.get_all()[0], "xenhost.py",
                          "iptables_config", bad)  # fmt: skip
            assert "Invalid iptables command" in err[-1]
            session.xenapi.session.logout()
