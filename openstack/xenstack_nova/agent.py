"""The guest agent, as nova's XenServer driver spoke to it: requests through the ``agent.py``
dom0 plug-in (``host.call_plugin``), which writes them into the guest's XenStore
(``data/host/<id>``) and waits for the answer in ``data/guest/<id>``.

The admin password goes as the old driver sent it: a Diffie-Hellman exchange (``key_init``;
nova's SimpleDH prime and base), then the password, newline-terminated, encrypted as
``openssl enc -aes-128-cbc -a -A -nosalt -pass pass:<shared secret>`` does with OpenSSL 3
(key and IV from the secret by EVP_BytesToKey over one round of SHA-256), here with the
``cryptography`` package instead of the ``openssl`` command.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nova import exception

from .session import XenAPISession

PRIME = 162259276829213363391578010288127  # nova's SimpleDH
BASE = 5


def encrypt(shared: str, text: str) -> str:
    """``openssl enc -aes-128-cbc -a -A -nosalt -pass pass:SHARED`` of ``text``."""
    digest = hashlib.sha256(shared.encode()).digest()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(digest[:16]), modes.CBC(digest[16:32])).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode()


class GuestAgent:
    """One guest's agent, reached through its host's ``agent.py`` plug-in."""

    def __init__(self, session: XenAPISession, vm: str, timeout: float) -> None:
        self.session = session
        self.vm = vm
        self.timeout = timeout

    def call(self, fn: str, **args: str) -> dict[str, Any]:
        rec = self.session.call("VM.get_record", self.vm)
        params = {
            "id": str(uuid.uuid4()),
            "dom_id": str(rec["domid"]),
            "timeout": str(self.timeout),
            **args,
        }
        answer = self.session.call("host.call_plugin", rec["resident_on"], "agent.py", fn, params)
        return dict(json.loads(answer))

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Key exchange, then the encrypted password; the guest must answer D0 then 0."""

        def failed(reason: str) -> exception.InstancePasswordSetFailed:
            return exception.InstancePasswordSetFailed(instance=instance.uuid, reason=reason)

        private = secrets.randbits(80)
        try:
            keyinit = self.call("key_init", pub=str(pow(BASE, private, PRIME)))
            if keyinit.get("returncode") != "D0":
                raise failed(f"key_init: {keyinit.get('returncode')} {keyinit.get('message')}")
            shared = str(pow(int(keyinit["message"]), private, PRIME))
            done = self.call("password", enc_pass=encrypt(shared, new_pass + "\n"))
        except (ValueError, KeyError) as exc:
            raise failed(f"bad answer from the guest agent: {exc}") from exc
        except exception.InstancePasswordSetFailed:
            raise
        except Exception as exc:  # the plug-in's TIMEOUT, a XenAPI failure
            raise failed(str(exc)) from exc
        if done.get("returncode") != "0":
            raise failed(f"password: {done.get('returncode')} {done.get('message')}")
