"""The guest half of nova's agent protocol, as the simulator's guests answer it.

nova (through the ``agent.py`` dom0 plug-in) writes a request, JSON ``{"name", "value"}``,
to ``data/host/<id>``; the guest's agent takes it away and answers ``{"returncode",
"message"}`` in ``data/guest/<id>``:

- ``version``: ``0`` and the agent's version.
- ``keyinit``: Diffie-Hellman as nova's ``SimpleDH`` (prime 162259276829213363391578010288127,
  base 5): ``D0`` and the guest's public number; both sides then share a secret.
- ``password``: the value is ``openssl enc -aes-128-cbc -a -nosalt -pass pass:<secret>`` of
  the new password (a newline after it), as nova makes it with OpenSSL 3 (key and IV from the
  secret by EVP_BytesToKey with SHA-256); the guest keeps the password it decrypted. ``0``.
- ``resetnetwork``: the guest reads ``vm-data/networking/<mac>`` (JSON with ``mac`` and
  ``ips``, as nova writes it), applies each to the interface with that MAC (its
  ``device/vif/<n>/mac``) and reports the address (``attr/vif/<n>/ipv4/0``). ``0``.
- ``file_inject`` (and the older ``injectfile``): the guest keeps the file. ``0``.
- anything else (``agentupdate`` too): ``404``, as an agent that does not know it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PRIME = 162259276829213363391578010288127
BASE = 5
AGENT_VERSION = "1.0.9-xenstack"

Reply = Callable[[str, str | None], None]  # (key relative to the guest's home, value)


def openssl_key_iv(secret: str) -> tuple[bytes, bytes]:
    """``openssl enc -aes-128-cbc -nosalt -pass pass:SECRET``'s key and IV (OpenSSL 3:
    EVP_BytesToKey, one round of SHA-256)."""
    digest = hashlib.sha256(secret.encode()).digest()
    return digest[:16], digest[16:32]


def decrypt(secret: str, text: str) -> str:
    key, iv = openssl_key_iv(secret)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(base64.b64decode(text)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


@dataclass
class AgentState:
    """What one guest's agent knows: what dom0 wrote for it, its secret, what it was told."""

    seen: dict[str, str] = field(default_factory=dict)  # vm-data/..., device/vif/...
    shared: str = ""
    password: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)


def answer(state: AgentState, request_id: str, text: str, reply: Reply) -> None:
    """Take request ``data/host/<request_id>`` (JSON ``text``) and answer it."""
    try:
        request = json.loads(text)
        name, value = request["name"], request.get("value", "")
    except (ValueError, KeyError, TypeError):
        return  # not a request: an agent ignores it
    reply(f"data/host/{request_id}", None)
    code, message = _handle(state, name, value, reply)
    reply(f"data/guest/{request_id}", json.dumps({"returncode": code, "message": message}))


def _handle(state: AgentState, name: str, value: object, reply: Reply) -> tuple[str, str]:
    if name == "version":
        return "0", AGENT_VERSION
    if name == "keyinit":
        private = secrets.randbits(80)
        state.shared = str(pow(int(str(value)), private, PRIME))
        return "D0", str(pow(BASE, private, PRIME))
    if name == "password":
        if not state.shared:
            return "500", "key_init first"
        try:
            state.password = decrypt(state.shared, str(value)).rstrip("\n")
        except ValueError:
            return "500", "cannot decrypt the password"
        return "0", ""
    if name == "resetnetwork":
        return _reset_network(state, reply)
    if name in ("file_inject", "injectfile"):
        return _inject(state, value)
    return "404", f"unknown command: {name}"


def _reset_network(state: AgentState, reply: Reply) -> tuple[str, str]:
    by_mac = {
        v.lower(): k.split("/")[2]
        for k, v in state.seen.items()
        if k.startswith("device/vif/") and k.endswith("/mac")
    }
    for key, text in state.seen.items():
        if not key.startswith("vm-data/networking/"):
            continue
        try:
            config = json.loads(text)
            device = by_mac[str(config["mac"]).lower()]
            ip = config["ips"][0]["ip"]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        reply(f"attr/vif/{device}/ipv4/0", str(ip))
    reply("data/updated", "1")
    return "0", ""


def _inject(state: AgentState, value: object) -> tuple[str, str]:
    try:
        if isinstance(value, dict):
            path = base64.b64decode(value["b64_path"]).decode()
            contents = base64.b64decode(value["b64_file"])
        else:
            path_bytes, _, contents = base64.b64decode(str(value)).partition(b",")
            path = path_bytes.decode()
    except (ValueError, KeyError):
        return "500", "bad file_inject value"
    state.files[path] = contents
    return "0", ""
