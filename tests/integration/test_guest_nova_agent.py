"""The guest half of nova's agent protocol in the real test guest, through host.call_plugin.

``agent.py`` (os-xenapi's plug-in) writes a request into ``data/host/<id>`` of the guest's
domain; the toolstack forwards it down the guest's agent channel, the guest's agent answers in
``data/guest/<id>`` and the plug-in returns the answer: ``version``, ``resetnetwork`` and
``inject_file`` (the file lands in the guest), ``key_init`` (Diffie-Hellman in busybox's
``bc``: both ends share the secret) and ``password`` (decrypted with the guest's openssl; its
agent then reports the change in XenStore).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from typing import Any

import pytest
from integkit import WAIT, OvsQemuHost, guest_ip, install, network_on, until

from xenstack.testing.guests import Console, run_dir

pytestmark = [pytest.mark.guest, pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


PRIME, BASE = 162259276829213363391578010288127, 5  # nova's SimpleDH


def xenstore_read(host: OvsQemuHost, path: str) -> str:
    env = {**os.environ, "XENSTORED_PATH": str(host.state_dir / "run" / "xenstored" / "socket")}
    done = subprocess.run(
        [sys.executable, "-m", "xenstack.cli.dom0", "xenstore-read", path],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


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
        # password: encrypted as nova does with the shared secret; the guest decrypts it, and
        # what its agent reports changes (data/nova/password_changes in its XenStore)
        enc = subprocess.run(
            ["openssl", "enc", "-aes-128-cbc", "-a", "-A", "-nosalt", "-pass", f"pass:{shared}"],
            input="n3w-Passw0rd\n", capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        assert call("password", "6", enc_pass=enc)["returncode"] == "0"
        assert con.run_command("cat /run/nova.password").strip() == "n3w-Passw0rd"
        key = f"/local/domain/{args['dom_id']}/data/nova/password_changes"
        until(lambda: xenstore_read(host, key) == "1", WAIT, "the agent's report of the change")
        bad = call("password", "7", enc_pass=b64("not encrypted"))
        assert bad["returncode"] == "500"
        assert call("resetnetwork", "3")["returncode"] == "0"
        assert call("agentupdate", "4", url="http://x/a", md5sum="0")["returncode"] == "404"
    finally:
        x.VM.hard_shutdown(vm)
