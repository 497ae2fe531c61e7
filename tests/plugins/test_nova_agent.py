"""nova's agent protocol end to end on a simulated host: the ``agent.py`` dom0 plug-in called
as nova calls it, the request through XenStore and the guest channel, the simulated guest's
agent answering (Diffie-Hellman as nova's SimpleDH, the password encrypted with the
``openssl`` command as nova runs it), and ``resetnetwork`` applying ``vm-data/networking``
so that the guest metrics show the new address."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from systools import require_tool
from vmkit import wait_for

from xenstack.testing import RunningPool, halted_vm, simulated_pool

PRIME = 162259276829213363391578010288127  # nova's SimpleDH
BASE = 5


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xs-nova-agent") / "state"
    with simulated_pool(state, guest_agent_delay=0) as running:
        yield running


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xs-tests")
    yield session.xenapi
    session.xenapi.session.logout()


def agent(x: Any, fn: str, domid: int, **args: str) -> dict[str, str]:
    """nova's ``_call_agent``: a fresh request id, the dom_id, a timeout, JSON back."""
    params = {"id": str(uuid.uuid4()), "dom_id": str(domid), "timeout": "60", **args}
    return dict(json.loads(x.host.call_plugin(x.host.get_all()[0], "agent.py", fn, params)))


def running_vm_with_vif(x: Any, name: str) -> tuple[str, str, int]:
    vm = halted_vm(x, name)
    network = next(n for n, r in x.network.get_all_records().items() if r["bridge"] == "xenbr0")
    vif = x.VIF.create({"device": "0", "network": network, "VM": vm, "MAC": "02:16:3e:00:00:07",
                        "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}})  # fmt: skip
    x.VM.start(vm, False, True)
    return vm, x.VIF.get_MAC(vif), int(x.VM.get_domid(vm))


def test_password_injection(x: Any, pool: RunningPool) -> None:
    openssl = require_tool("openssl")
    vm, _, domid = running_vm_with_vif(x, "xs-nova-pw")
    assert agent(x, "version", domid)["returncode"] == "0"
    private = secrets.randbits(80)
    answer = agent(x, "key_init", domid, pub=str(pow(BASE, private, PRIME)))
    assert answer["returncode"] == "D0"
    shared = pow(int(answer["message"]), private, PRIME)
    new_password = "s3cret pässword"
    enc = subprocess.run(
        [openssl, "enc", "-aes-128-cbc", "-A", "-a", "-pass", f"pass:{shared}", "-nosalt"],
        input=new_password + "\n", capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert agent(x, "password", domid, enc_pass=enc) == {"returncode": "0", "message": ""}
    assert pool.toolstack is not None
    agents = pool.toolstack.hypervisor.backend.agents  # the simulated guest's own view
    assert agents.states[vm].password == new_password
    assert agent(x, "agentupdate", domid, url="http://x/a", md5sum="0")["returncode"] == "404"
    x.VM.hard_shutdown(vm)


def test_resetnetwork_applies_vm_data_networking(x: Any) -> None:
    vm, mac, domid = running_vm_with_vif(x, "xs-nova-net")
    host = x.host.get_all()[0]
    ips = [{"ip": "192.0.2.44", "netmask": "255.255.255.0", "enabled": "1"}]
    config = {"label": "public", "mac": mac, "ips": ips, "gateway": "192.0.2.1"}
    # nova writes vm-data/networking/<mac without colons> through xenstore.py
    x.host.call_plugin(host, "xenstore.py", "write_record", {
        "dom_id": str(domid), "path": f"vm-data/networking/{mac.replace(':', '')}",
        "value": json.dumps(config)})  # fmt: skip
    assert agent(x, "resetnetwork", domid) == {"returncode": "0", "message": ""}
    wait_for(lambda: x.VM_guest_metrics.get_networks(x.VM.get_guest_metrics(vm)).get("0/ip")
             == "192.0.2.44", timeout=60)  # fmt: skip
    x.VM.hard_shutdown(vm)
