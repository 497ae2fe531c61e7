"""NBD over TLS, as XAPI serves it: ``VDI.get_nbd_info`` gives the certificate and its
subject; clients upgrade with STARTTLS; a pool with an ``nbd``-purpose network (and no
``insecure_nbd`` one) refuses to name an export before TLS. Checked with our client and with
qemu-img, the reference NBD client."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sr_helpers import MIB, get_file, new_vdi, require_qemu_img, vdi_file

from xenstack.storage.nbd_client import NbdClient, NbdClientError
from xenstack.storage.vhd import VhdImage
from xenstack.testing import RunningPool


def _disk_with_data(pool: RunningPool, session: Any, tmp_path: Path) -> tuple[str, bytes]:
    vdi = new_vdi(session, 8 * MIB)
    with VhdImage.open(str(vdi_file(pool, session, vdi))) as image:
        image.write(MIB + 512, b"xenstack" * 4096)
    flat = tmp_path / "flat.raw"
    assert get_file(pool, session, vdi, flat, "raw") == 200
    return vdi, flat.read_bytes()


def _context(info: dict[str, Any]) -> ssl.SSLContext:
    """A client that trusts exactly the certificate get_nbd_info gave."""
    return ssl.create_default_context(cadata=info["cert"])


def test_starttls_with_the_certificate_from_get_nbd_info(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    vdi, data = _disk_with_data(xenstack_pool, session, tmp_path)
    (info,) = session.xenapi.VDI.get_nbd_info(vdi)
    assert info["cert"].startswith("-----BEGIN CERTIFICATE-----") and info["subject"]
    port = int(info["port"])
    with NbdClient.connect(
        info["exportname"], port=port, tls=_context(info), server_hostname=info["subject"]
    ) as client:
        assert client.size == len(data)
        assert bytes(client.read(0, len(data))) == data
    with NbdClient.connect(info["exportname"], port=port) as plain:  # no nbd network: allowed
        assert bytes(plain.read(MIB, 4096)) == data[MIB : MIB + 4096]
    wrong = ssl.create_default_context()  # the system's CAs do not know this certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        NbdClient.connect(info["exportname"], port=port, tls=wrong, server_hostname="x")


def test_an_nbd_network_requires_tls(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    network = x.network.get_by_name_label("Pool-wide network associated with eth0")[0]
    x.network.add_purpose(network, "nbd")
    vdi, data = _disk_with_data(xenstack_pool, session, tmp_path)
    (info,) = x.VDI.get_nbd_info(vdi)
    port = int(info["port"])
    with pytest.raises(NbdClientError, match="0x80000005"):  # NBD_REP_ERR_TLS_REQD
        NbdClient.connect(info["exportname"], port=port)
    with NbdClient.connect(
        info["exportname"], port=port, tls=_context(info), server_hostname=info["subject"]
    ) as client:
        assert bytes(client.read(0, len(data))) == data
    # qemu-img, the reference client, with the certificate as its CA
    qemu_img = require_qemu_img()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ca-cert.pem").write_text(info["cert"])
    out = tmp_path / "out.raw"
    opts = (
        f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},"
        f"export={info['exportname']},tls-creds=tls0,tls-hostname={info['subject']}"
    )
    done = subprocess.run(
        [qemu_img, "convert", "--object",
         f"tls-creds-x509,id=tls0,dir={creds},endpoint=client", "--image-opts", opts,
         "-O", "raw", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data
