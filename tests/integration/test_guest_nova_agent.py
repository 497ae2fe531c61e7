"""The guest half of nova's agent protocol in the real test guest, through host.call_plugin.

``agent.py`` (os-xenapi's plug-in) writes a request into ``data/host/<id>`` of the guest's
domain; the toolstack forwards it down the guest's agent channel, the guest's agent answers in
``data/guest/<id>`` and the plug-in returns the answer: ``version``, ``resetnetwork`` and
``inject_file`` (the file lands in the guest), and ``key_init`` (Diffie-Hellman in busybox's
``bc``: both ends share the secret). ``password`` is not in the guest: busybox has no
AES-128-CBC to decrypt it with.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from integkit import WAIT, OvsQemuHost, guest_ip, install, network_on

from xenstack.testing.guests import Console, run_dir

pytestmark = [pytest.mark.guest, pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


PRIME, BASE = 162259276829213363391578010288127, 5  # nova's SimpleDH


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_nova_agent_requests_reach_the_real_guest(host: OvsQemuHost, x: Any) -> None:
    vm = install(x, "xi-nova", network_on(x, "xenbr0"))
    x.VM.start(vm, False, False)
    try:
        guest_ip(x, vm)  # the agent is up and talking
        me = x.VM.get_resident_on(vm)
        args = {"dom_id": x.VM.get_domid(vm), "timeout": str(int(WAIT))}

        def call(fn: str, request_id: str, **more: str) -> dict[str, str]:
            answer = x.host.call_plugin(me, "agent.py", fn, {**args, "id": request_id, **more})
            return dict(json.loads(answer))

        assert call("version", "1") == {"returncode": "0", "message": "xsg-agent 1.0"}
        body = "injected by nova\n"
        done = call("inject_file", "2", b64_path=b64("/root/nova.txt"), b64_contents=b64(body))
        assert done["returncode"] == "0"
        con = Console(run_dir(host.state_dir, x.VM.get_uuid(vm)))
        assert "injected by nova" in con.run_command("cat /root/nova.txt")
        # key_init: Diffie-Hellman as nova's SimpleDH; both ends end with one secret
        mine = secrets.randbelow(PRIME - 2) + 1
        answer = call("key_init", "5", pub=str(pow(BASE, mine, PRIME)))
        assert answer["returncode"] == "D0"
        shared = pow(int(answer["message"]), mine, PRIME)
        assert str(shared) == con.run_command("cat /run/nova.shared").strip()
        assert call("resetnetwork", "3")["returncode"] == "0"
        assert call("agentupdate", "4", url="http://x/a", md5sum="0")["returncode"] == "404"
    finally:
        x.VM.hard_shutdown(vm)
