"""neutron's XenServer root helper runs commands in "dom0" through the host's netwrap.py
plug-in (the tests' own, in their plug-in directory), as a client and as the
``xenstack-rootwrap-dom0`` command an agent's ``root_helper`` names."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

import xenstack_server
from xenstack_nova.neutron import xenapi_root_helper as helper

SERVER: xenstack_server.XenstackServer | None = None


def setUpModule() -> None:
    global SERVER
    SERVER = xenstack_server.XenstackServer(plugin_dir=xenstack_server.PLUGIN_DIR).start()


def tearDownModule() -> None:
    if SERVER is not None:
        SERVER.stop()


class RootHelperTest(unittest.TestCase):
    def setUp(self) -> None:
        assert SERVER is not None
        self.client = helper.XenAPIClient(SERVER.url, "root", SERVER.password)
        self.addCleanup(self.client.close)

    def test_allowed_command_runs_with_its_input(self) -> None:
        code, out, err = self.client.execute(["ip", "-o", "link", "show", "lo"])
        self.assertEqual((0, ""), (code, err))
        self.assertIn("lo:", out)
        code, out, _ = self.client.execute(["sysctl", "-n", "kernel.ostype"])
        self.assertEqual((0, "Linux\n"), (code, out))
        code, out, _ = self.client.execute(["ip", "-o", "-batch", "-"], "link show lo\n")
        self.assertEqual(0, code)
        self.assertIn("lo:", out)

    def test_refused_and_missing_commands(self) -> None:
        code, out, err = self.client.execute(["rm", "-rf", "/"])
        self.assertEqual((helper.RC_UNAUTHORIZED, ""), (code, out))
        self.assertIn("not permitted", err)
        code, _, err = self.client.execute([])
        self.assertEqual(helper.RC_UNAUTHORIZED, code)

    def test_as_an_agents_root_helper(self) -> None:
        assert SERVER is not None
        conf = os.path.join(SERVER.tmp, "xenapi.ini")
        with open(conf, "w") as f:
            f.write(
                f"[xenapi]\nconnection_url = {SERVER.url}\nconnection_username = root\n"
                f"connection_password = {SERVER.password}\n"
            )
        os.chmod(conf, 0o600)
        run = [sys.executable, "-m", "xenstack_nova.neutron.xenapi_root_helper", conf]
        done = subprocess.run(
            [*run, "ip", "-o", "link", "show", "lo"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn("lo:", done.stdout)
        denied = subprocess.run(
            [*run, "cat", "/etc/shadow"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(helper.RC_UNAUTHORIZED, denied.returncode)
        self.assertEqual("", denied.stdout)
