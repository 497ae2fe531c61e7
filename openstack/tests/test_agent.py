"""The driver's half of the guest agent's password exchange, checked against the ``openssl``
command nova's old driver ran (``openssl enc -d`` must read what the driver sends), and
the driver's ``set_admin_password`` against a guest that refuses, over the wire."""

from __future__ import annotations

import json
import shutil
import subprocess
import unittest
from typing import Any
from unittest import mock

from nova import exception
from xenstack_nova import agent


class EncryptTestCase(unittest.TestCase):
    def test_openssl_decrypts_what_the_driver_sends(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("openssl is not installed")
        secret = str(pow(agent.BASE, 123456789, agent.PRIME))
        for text in ("p4ssw0rd\n", "s3cret pässword with more than one AES block\n"):
            out = subprocess.run(
                [openssl, "enc", "-d", "-aes-128-cbc", "-a", "-A", "-nosalt",
                 "-pass", f"pass:{secret}"],
                input=agent.encrypt(secret, text), capture_output=True, text=True,
                check=True, timeout=60,
            ).stdout  # fmt: skip
            self.assertEqual(text, out)


class _Session:
    """Answers the plug-in calls as a guest would: ``answers`` by plug-in function."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, str]]] = []

    def call(self, method: str, *args: Any) -> Any:
        if method == "VM.get_record":
            return {"domid": "7", "resident_on": "OpaqueRef:host"}
        _host, plugin, fn, params = args
        assert (method, plugin) == ("host.call_plugin", "agent.py")
        self.calls.append((fn, params))
        return self.answers[fn]


class SetPasswordTestCase(unittest.TestCase):
    instance = mock.Mock(uuid="3f2a")

    def test_the_exchange(self) -> None:
        guest_private = 987654321
        session = _Session(
            {
                "key_init": json.dumps(
                    {
                        "returncode": "D0",
                        "message": str(pow(agent.BASE, guest_private, agent.PRIME)),
                    }
                ),
                "password": '{"returncode": "0", "message": ""}',
            }
        )
        agent.GuestAgent(session, "OpaqueRef:vm", 30).set_admin_password(self.instance, "pw")
        (fn1, keyinit), (fn2, password) = session.calls
        self.assertEqual(("key_init", "password"), (fn1, fn2))
        self.assertEqual(("7", "30"), (keyinit["dom_id"], keyinit["timeout"]))
        shared = str(pow(int(keyinit["pub"]), guest_private, agent.PRIME))
        self.assertEqual(agent.encrypt(shared, "pw\n"), password["enc_pass"])

    def test_a_refusing_guest_fails_the_call(self) -> None:
        for answers in (
            {"key_init": '{"returncode": "404", "message": "unknown"}'},
            {
                "key_init": '{"returncode": "D0", "message": "5"}',
                "password": '{"returncode": "500", "message": "cannot decrypt"}',
            },
            {"key_init": "not json"},
        ):
            guest = agent.GuestAgent(_Session(answers), "OpaqueRef:vm", 30)
            with self.assertRaises(exception.InstancePasswordSetFailed):
                guest.set_admin_password(self.instance, "pw")
