"""``vdi_local_dev`` against the real standalone Glance and xenstack, bytes compared both ways.

How it is tested: nova-compute (this test process, nova's own ``glance.API`` and the
handler unchanged) runs in xenstack's control domain, as nova-compute could run in dom0 of
a XenServer host. It finds "the compute VM itself" as nova's XenAPI driver did: there is no
``/sys/hypervisor/uuid`` here, so it asks XenStore (``xenstore-read domid``, then
``/local/domain/0/vm``) with dom0's tools on its ``PATH`` as ``xenstack shell`` sets them,
and gets the control domain's uuid. ``VBD.plug`` of a VDI on the control domain makes a real
block device on this machine (a loop device over the VDI's NBD export), ``VBD.device`` names
it, and the handler writes the downloaded image onto ``/dev/<device>`` and reads it back from
there for the upload. The downloaded VDI is checked through ``/export_raw_vdi``, the uploaded
image byte for byte in Glance.

What differs from a domU: in a Xen guest the device is a ``/dev/xvdX`` made by blkfront from
blkback's ring, and the VM is found through ``/sys/hypervisor/uuid``; here it is a loop
device of the host itself and the VM is dom0. The XenAPI calls (VM.get_by_uuid,
VBD.create/plug/get_device/unplug/destroy) and the handler's code are the same.

Needs root, ``qemu-storage-daemon`` and ``/dev/fuse`` (skipped otherwise, failed under CI).
"""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.unit import fake_instance

# isort: split

import io
import os
import shutil
import subprocess
import types
import uuid

import fixtures
import glance_server
import xenstack_nova.driver  # noqa: F401 - registers the [xenserver] options
import xenstack_server
from nova import context as nova_context
from nova import test
from nova.image import glance as nova_glance
from xenstack_nova import image as image_mod
from xenstack_nova.image import local_dev
from xenstack_nova.session import XenAPISession

MiB = 1 << 20
XS: xenstack_server.XenstackServer | None = None
GLANCE: glance_server.GlanceServer | None = None


def missing() -> str:
    if os.geteuid() != 0:
        return "needs root (loop devices)"
    if shutil.which("qemu-storage-daemon") is None:
        return "qemu-storage-daemon is not installed"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no /dev/fuse"
    return ""


def setUpModule() -> None:
    global XS, GLANCE
    if missing():
        return
    GLANCE = glance_server.GlanceServer().start()
    XS = xenstack_server.XenstackServer().start()


def tearDownModule() -> None:
    for server in (XS, GLANCE):
        if server is not None:
            server.stop()


def dom0_env(server: xenstack_server.XenstackServer) -> dict[str, str]:
    """What ``xenstack shell`` gives a dom0 process: PATH with dom0's tools, XENSTORED_PATH."""
    env = dict(os.environ, PYTHONPATH=str(xenstack_server.REPO / "src"))
    cmd = [server.python, "-m", "xenstack.cli.main", "shell", "--state-dir", server.state]
    out = subprocess.run(
        [*cmd, "--port", str(server.port), "-c", "env -0"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    shell = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {key: shell[key] for key in ("PATH", "XENSTORED_PATH")}


class LocalDevTest(test.NoDBTestCase):
    def setUp(self) -> None:
        super().setUp()
        reason = missing()
        if reason:
            if os.environ.get("CI"):
                self.fail(reason + " and CI is set: this test must run")
            self.skipTest(reason)
        assert XS is not None and GLANCE is not None
        for key, value in XS.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        self.flags(api_servers=[GLANCE.url], group="glance")
        for key, value in dom0_env(XS).items():
            self.useFixture(fixtures.EnvironmentVariable(key, value))
        # this machine is no Xen guest (no /sys/hypervisor), and nova's SysFsPoisonFixture
        # forbids reading /sys in tests: the handler is shown the same absence elsewhere
        assert not os.path.exists(local_dev.SYS_UUID)
        absent = os.path.join(self.useFixture(fixtures.TempDir()).path, "no-hypervisor-uuid")
        self.useFixture(fixtures.MonkeyPatch("xenstack_nova.image.local_dev.SYS_UUID", absent))
        self.ctx = nova_context.RequestContext(
            "admin", "project", auth_token="unused", is_admin=True
        )
        self.session = XenAPISession(XS.url, "root", XS.password, 2)
        self.addCleanup(self.session.close)
        with self.session.session() as s:
            self.host = s.xenapi.session.get_this_host(s._session)
        pool = self.session.call("pool.get_all")[0]
        self.sr = self.session.call("pool.get_default_SR", pool)
        self.images = nova_glance.API()
        self.instance = types.SimpleNamespace(
            name="instance-d0", uuid=str(uuid.uuid4()), os_type="linux"
        )

    def new_image(self, data: bytes | None) -> str:
        meta = {
            "name": f"d0-{uuid.uuid4()}",
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "private",
        }
        image = self.images.create(self.ctx, meta, data=io.BytesIO(data) if data else None)
        return str(image["id"])

    def test_finds_the_control_domain_through_xenstore(self) -> None:
        dom0 = self.session.call("host.get_control_domain", self.host)
        self.assertEqual(self.session.call("VM.get_uuid", dom0), local_dev.this_vm_uuid())

    def test_local_dev_raw_both_ways(self) -> None:
        assert XS is not None
        data = os.urandom(5 * MiB + 4096)
        image_id = self.new_image(data)
        handler = image_mod.load("vdi_local_dev", self.session, self.host)
        dom0 = self.session.call("host.get_control_domain", self.host)
        vbds = self.session.call("VM.get_VBDs", dom0)

        vdi = handler.download(self.ctx, self.instance, image_id, self.sr, 8 * MiB)
        with self.session.session() as s:
            disk = xenstack_server.export_vdi(XS, s, vdi)
        self.assertEqual(8 * MiB, len(disk))
        self.assertEqual(data, disk[: len(data)])
        self.assertEqual(bytes(8 * MiB - len(data)), disk[len(data) :])
        self.assertEqual(vbds, self.session.call("VM.get_VBDs", dom0))  # plugged, then gone

        snap_id = self.new_image(None)
        handler.upload(self.ctx, self.instance, snap_id, vdi, {"disk_format": "raw"})
        self.assertEqual(disk, b"".join(self.images.download(self.ctx, snap_id)))
        self.assertEqual("active", self.images.get(self.ctx, snap_id)["status"])
        self.assertEqual(vbds, self.session.call("VM.get_VBDs", dom0))
        self.assertEqual([], loop_devices_of(XS.state))
        self.session.call("VDI.destroy", vdi)


def loop_devices_of(state: str) -> list[str]:
    """Loop devices whose backing file is under ``state`` (none may be left)."""
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if state in line]


_ = fake_instance
