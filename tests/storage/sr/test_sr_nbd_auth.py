"""NBD exports need a session, as XAPI's do: ``VDI.get_nbd_info`` hands out the export name
``/<vdi-uuid>?session_id=<ref>``; the server checks the session is live, the VDI is the one it
exports, and the role (a read-only session reads only). Listing exports is refused."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from typing import Any

import pytest
import XenAPI
from sr_helpers import MIB, new_vdi, require_qemu_img

from xenstack.storage import nbd_protocol as p
from xenstack.storage.nbd_client import NbdClient, NbdClientError
from xenstack.testing import RunningPool


def _export(session: Any, vdi: str) -> tuple[int, str, str]:
    """(port, export name, VDI uuid) that get_nbd_info hands out for ``vdi``."""
    (info,) = session.xenapi.VDI.get_nbd_info(vdi)
    return int(info["port"]), info["exportname"], session.xenapi.VDI.get_uuid(vdi)


def _refusal(name: str, **where: Any) -> int:
    """The option reply refusing ``name`` with OPT_GO; EXPORT_NAME just closes."""
    with pytest.raises(NbdClientError) as refused:
        NbdClient.connect(name, **where)
    with pytest.raises(NbdClientError, match="closed"):
        NbdClient.connect(name, use_export_name=True, **where)
    return refused.value.reply


def _login(pool: RunningPool, user: str, password: str) -> Any:
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password(user, password, "1.0", "nbd-tests")
    return s


def _reader(pool: RunningPool) -> Any:
    """A session of a read-only user."""
    pool.call(lambda ts: ts.auth.set_user("reader", "reader-pw", "read-only"))
    return _login(pool, "reader", "reader-pw")


def test_listing_is_refused(session: Any, xenstack_pool: RunningPool) -> None:
    vdi = new_vdi(session, 4 * MIB)
    port, _, uuid = _export(session, vdi)
    assert xenstack_pool.toolstack is not None
    sock = xenstack_pool.toolstack.storage.nbd_socket(uuid)
    for where in ({"port": port}, {"unix_path": sock}):
        with pytest.raises(NbdClientError) as refused:
            NbdClient.list_exports(**where)
        assert refused.value.reply == p.REP_ERR_POLICY


def test_a_bare_uuid_or_no_name_is_refused(session: Any) -> None:
    port, name, uuid = _export(session, new_vdi(session, 4 * MIB))
    assert _refusal(uuid, port=port) == p.REP_ERR_POLICY  # the right VDI, no session
    assert _refusal("/" + uuid, port=port) == p.REP_ERR_POLICY
    assert _refusal("", port=port) == p.REP_ERR_UNKNOWN  # no default export
    with NbdClient.connect(name, port=port) as client:  # what get_nbd_info gave works
        assert client.size == 4 * MIB


def test_forged_expired_and_logged_out_sessions_are_refused(
    session: Any, xenstack_pool: RunningPool
) -> None:
    port, name, uuid = _export(session, new_vdi(session, 4 * MIB))
    gone = _login(xenstack_pool, "root", xenstack_pool.password)
    gone_ref = gone._session
    gone.xenapi.session.logout()
    idle = _login(xenstack_pool, "root", xenstack_pool.password)._session

    def age(ts: Any) -> None:
        ts.auth.sessions[idle].last_active -= ts.auth.idle_timeout + 1

    xenstack_pool.call(age)
    for ref in ("OpaqueRef:forged", gone_ref, idle, ""):
        assert _refusal(f"/{uuid}?session_id={ref}", port=port) == p.REP_ERR_POLICY, ref
    both = f"/{uuid}?session_id={session._session}&session_id=OpaqueRef:forged"
    assert _refusal(both, port=port) == p.REP_ERR_POLICY
    with NbdClient.connect(name, port=port):
        pass


def test_a_session_reaches_only_the_vdi_it_names(session: Any) -> None:
    port_a, name_a, _ = _export(session, new_vdi(session, 4 * MIB))
    port_b, _, uuid_b = _export(session, new_vdi(session, 8 * MIB))
    hidden = session.xenapi.VDI.get_uuid(new_vdi(session, 2 * MIB))  # never handed out
    ref = session._session
    for other in (uuid_b, hidden, "00000000-0000-0000-0000-000000000000"):
        assert _refusal(f"/{other}?session_id={ref}", port=port_a) == p.REP_ERR_UNKNOWN
    assert _refusal(name_a, port=port_b) == p.REP_ERR_UNKNOWN
    with NbdClient.connect(f"/{uuid_b}?session_id={ref}", port=port_b) as client:
        assert client.size == 8 * MIB


def test_a_read_only_session_gets_a_read_only_export(
    session: Any, xenstack_pool: RunningPool
) -> None:
    vdi = new_vdi(session, 4 * MIB)
    port, name, uuid = _export(session, vdi)
    reader = _reader(xenstack_pool)
    with pytest.raises(XenAPI.Failure) as denied:  # as in XAPI, it cannot ask for the export
        reader.xenapi.VDI.get_nbd_info(vdi)
    assert denied.value.details[0] == "RBAC_PERMISSION_DENIED"
    with NbdClient.connect(name, port=port) as admin:
        assert not admin.flags & p.TFLAG_READ_ONLY
        admin.write(MIB, b"written by root" * 100, fua=True)
    ro_name = f"/{uuid}?session_id={reader._session}"
    for use_export_name in (False, True):
        with NbdClient.connect(ro_name, port=port, use_export_name=use_export_name) as client:
            assert client.flags & p.TFLAG_READ_ONLY
            for write in (
                lambda: client.write(0, b"x" * 512),
                lambda: client.write_zeroes(MIB, 4096),
            ):
                with pytest.raises(NbdClientError) as refused:
                    write()
                assert refused.value.errno == p.EPERM
            assert bytes(client.read(MIB, 1500)) == b"written by root" * 100
    with NbdClient.connect(name, port=port) as admin:  # the reader changed nothing
        assert bytes(admin.read(0, 512)) == bytes(512)
        assert bytes(admin.read(MIB, 1500)) == b"written by root" * 100


def test_qemu_sees_the_read_only_export(session: Any, xenstack_pool: RunningPool) -> None:
    qemu_img = require_qemu_img()
    qemu_io = shutil.which("qemu-io")
    if qemu_io is None:
        pytest.skip("qemu-io is not installed")
    port, _, uuid = _export(session, new_vdi(session, 4 * MIB))
    reader = _reader(xenstack_pool)
    url = f"nbd://127.0.0.1:{port}/" + urllib.parse.quote(
        f"/{uuid}?session_id={reader._session}", safe=""
    )
    info = subprocess.run(
        [qemu_img, "info", "--output=json", url], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    assert '"virtual-size": 4194304' in info.stdout
    write = subprocess.run(
        [qemu_io, "-f", "raw", "-c", "write -P 0x5a 0 64k", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "wrote" not in write.stdout  # qemu sees the read-only flag: it won't open to write
    assert "permission denied" in write.stderr.lower(), write.stdout + write.stderr
    read = subprocess.run(
        [qemu_io, "-r", "-f", "raw", "-c", "read -P 0 0 64k", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert read.returncode == 0 and "read 65536/65536" in read.stdout, read.stderr
    forged = f"nbd://127.0.0.1:{port}/" + urllib.parse.quote(
        f"/{uuid}?session_id=OpaqueRef:forged", safe=""
    )
    refused = subprocess.run([qemu_img, "info", forged], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
