"""nova's cold migration between two hosts through ``migration.py``, over a real ssh.

Host A's ``transfer_vhd`` sends each VHD of a chain with rsync over ssh to an ``sshd`` this
test starts on 127.0.0.1 (a throwaway host key and client key, the client's options in A's
``etc/ssh/ssh_config``, B's staging area named in A's ``etc/ssh/remote_images``); host B's
``move_vhds_into_sr`` then takes the chain into its SR, bytes identical.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from pluginkit import call_serialized
from systools import require_root, require_tool

from xenstack.testing import RunningPool, failure, free_port, simulated_pool

INSTANCE = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
LEAF, PARENT = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"
SIZE = 4 << 20


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text()


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sshd exited: {proc.stderr.read() if proc.stderr else ''!r}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"sshd did not answer on port {port} within {timeout}s")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An sshd on 127.0.0.1 that lets in only the client key; (port, key directory)."""
    require_root()
    binary = require_tool("sshd")
    for tool in ("ssh", "ssh-keygen", "rsync"):
        require_tool(tool)
    keys = tmp_path / "keys"
    keys.mkdir()
    host_pub = keygen(keys / "host_key")
    (keys / "authorized_keys").write_text(keygen(keys / "client_key"))
    port = free_port()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}")
    config = keys / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
        f"PidFile {keys / 'sshd.pid'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_banner(port, proc)
        yield port, keys
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def login(pool: RunningPool) -> Any:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "migration-tests")
    return session.xenapi


def file_sr(x: Any) -> tuple[str, Path]:
    """The host's SR of VHD files, and its directory."""
    srs = [(s, r) for s, r in x.SR.get_all_records().items() if r["sm_config"].get("xenstack_path")]
    return srs[0][0], Path(srs[0][1]["sm_config"]["xenstack_path"])


def make_chain(sr: Path) -> bytes:
    """PARENT.vhd with data, LEAF.vhd its child with more; the leaf's whole disk."""
    from xenstack.storage.vhd import VhdImage, create_dynamic

    create_dynamic(str(sr / f"{PARENT}.vhd"), SIZE)
    with VhdImage.open(str(sr / f"{PARENT}.vhd")) as img:
        img.write(0, os.urandom(SIZE // 2))
    create_dynamic(str(sr / f"{LEAF}.vhd"), parent=str(sr / f"{PARENT}.vhd"))
    with VhdImage.open(str(sr / f"{LEAF}.vhd")) as img:
        img.write(SIZE // 4, os.urandom(SIZE // 2))
        return bytes(img.read(0, SIZE))


def test_transfer_vhd_then_move_vhds_into_sr(tmp_path: Path, sshd: tuple[int, Path]) -> None:
    from xenstack.storage.vhd import VhdImage

    port, keys = sshd
    with simulated_pool(tmp_path / "a") as a, simulated_pool(tmp_path / "b") as b:
        xa, xb = login(a), login(b)
        assert a.state_dir is not None and b.state_dir is not None
        etc = a.state_dir / "etc" / "ssh"
        etc.mkdir(parents=True)
        (etc / "ssh_config").write_text(
            f"Host 127.0.0.1\n  Port {port}\n  IdentityFile {keys / 'client_key'}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {keys / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n"
        )
        (etc / "remote_images").write_text(f"# B's dom0\n127.0.0.1 {b.state_dir / 'images'}\n")
        _, source = file_sr(xa)
        disk = make_chain(source)
        (a_host,) = xa.host.get_all()

        def transfer(vdi: str, seq: int, host: str = "127.0.0.1") -> Any:
            return call_serialized(xa, a_host, "migration.py", "transfer_vhd",
                                   instance_uuid=INSTANCE, host=host, vdi_uuid=vdi,
                                   sr_path=str(source), seq_num=seq)  # fmt: skip

        # an ssh option for a host name is refused before anything runs
        err = failure(transfer, LEAF, 0, "-oProxyCommand=touch /tmp/x")
        assert "bad destination host" in err[-1]
        assert transfer(LEAF, 0) is None and transfer(PARENT, 1) is None
        staged = b.state_dir / "images" / f"instance{INSTANCE}"
        assert sorted(os.listdir(staged)) == ["0.vhd", "1.vhd"]
        assert not [n for n in os.listdir(source) if n.startswith(".migration-")]
        assert (source / f"{LEAF}.vhd").stat().st_nlink == 1  # the staging link is gone

        sr, dest = file_sr(xb)
        stack = ["bbbbbbbb-0000-4000-8000-000000000002", "bbbbbbbb-0000-4000-8000-000000000001"]
        (b_host,) = xb.host.get_all()
        imported = call_serialized(xb, b_host, "migration.py", "move_vhds_into_sr",
                                   instance_uuid=INSTANCE, sr_path=str(dest),
                                   uuid_stack=list(stack))  # fmt: skip
        leaf = stack[-1]
        assert imported == {"root": {"uuid": leaf}}
        with VhdImage.open(str(dest / f"{leaf}.vhd"), writable=False) as img:
            assert img.depth == 2 and bytes(img.read(0, SIZE)) == disk
        xb.SR.scan(sr)
        vdi = xb.VDI.get_by_uuid(leaf)
        assert xb.VDI.get_SR(vdi) == sr and int(xb.VDI.get_virtual_size(vdi)) == SIZE
        assert not staged.exists()
