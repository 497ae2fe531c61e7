"""The image handlers move real images between the real Glance (standalone: sqlite, file
store, no Keystone) and a xenstack SR, both ways, bytes compared: raw images and
``disk_format=vhd``, ``container_format=ovf`` gzip tars of a two-file VHD chain, through
``vdi_remote_stream`` and ``direct_vhd`` (xenstack's own ``glance.py`` dom0 plug-in, called
with os-xenapi's argument encoding; the chain goes both ways as a chain, through the VDIs'
``sm_config:vhd-parent``, a snapshot's through its base copy).

``vdi_local_dev`` has its own module, ``test_local_dev``: it attaches the VDI to the compute
VM itself, here the control domain, whose VBDs are real dom0 block devices."""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.unit import fake_instance

# isort: split

import io
import os
import subprocess
import tarfile
import types
import uuid

import glance_server
import xenstack_nova.driver  # noqa: F401 - registers the [xenserver] options
import xenstack_server
from nova import context as nova_context
from nova import test
from nova.image import glance as nova_glance
from xenstack_nova import image as image_mod
from xenstack_nova.session import XenAPISession

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
XS: xenstack_server.XenstackServer | None = None
GLANCE: glance_server.GlanceServer | None = None


def setUpModule() -> None:
    global XS, GLANCE
    GLANCE = glance_server.GlanceServer().start()
    XS = xenstack_server.XenstackServer(plugin_dir=xenstack_server.PLUGIN_DIR).start()


def tearDownModule() -> None:
    for server in (XS, GLANCE):
        if server is not None:
            server.stop()


def xenstack_tool(*args: str) -> None:
    """make_vhd_chain.py under xenstack's interpreter (its VHD library)."""
    assert XS is not None
    env = dict(os.environ, PYTHONPATH=str(xenstack_server.REPO / "src"))
    subprocess.run(
        [XS.python, os.path.join(HERE, "make_vhd_chain.py"), *args],
        check=True,
        env=env,
        timeout=120,
    )


class ImageHandlerTest(test.NoDBTestCase):
    def setUp(self) -> None:
        super().setUp()
        assert XS is not None and GLANCE is not None
        for key, value in XS.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        self.flags(api_servers=[GLANCE.url], group="glance")
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
            name="instance-xo", uuid=str(uuid.uuid4()), os_type="linux"
        )
        self.tmp = self.useFixture(__import__("fixtures").TempDir()).path

    def handler(self, name: str) -> image_mod.ImageHandler:
        return image_mod.load(name, self.session, self.host)

    def new_image(self, data: bytes | None, disk_format: str, container: str) -> str:
        meta = {
            "name": f"xo-{uuid.uuid4()}",
            "disk_format": disk_format,
            "container_format": container,
            "visibility": "private",
        }
        image = self.images.create(self.ctx, meta, data=io.BytesIO(data) if data else None)
        return str(image["id"])

    def glance_bytes(self, image_id: str) -> bytes:
        return b"".join(self.images.download(self.ctx, image_id))

    def vdi_bytes(self, vdi: str) -> bytes:
        with self.handler("vdi_remote_stream").get_vdi(vdi, "raw") as (_length, chunks):
            return b"".join(chunks)

    def vhd_chain_tar(self) -> tuple[bytes, bytes]:
        """(an ovf image of a two-file chain, the disk it holds as raw bytes)."""
        xenstack_tool(self.tmp, str(16 * MiB))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name in ("0.vhd", "1.vhd"):
                tar.add(os.path.join(self.tmp, name), arcname=name)
        with open(os.path.join(self.tmp, "expected.raw"), "rb") as f:
            return buf.getvalue(), f.read()

    def uploaded_disk(self, image_id: str) -> bytes:
        """The disk of an ovf image in Glance, read by xenstack's VHD library."""
        tar = os.path.join(self.tmp, "uploaded.tgz")
        with open(tar, "wb") as f:
            f.write(self.glance_bytes(image_id))
        out = os.path.join(self.tmp, "uploaded.raw")
        xenstack_tool("--tar", tar, out)
        with open(out, "rb") as f:
            return f.read()

    # --- vdi_remote_stream

    def test_remote_stream_raw_both_ways(self) -> None:
        data = os.urandom(5 * MiB + 4096)
        image_id = self.new_image(data, "raw", "bare")
        handler = self.handler("vdi_remote_stream")
        vdi = handler.download(self.ctx, self.instance, image_id, self.sr, 8 * MiB)
        disk = self.vdi_bytes(vdi)
        self.assertEqual(8 * MiB, len(disk))
        self.assertEqual(data, disk[: len(data)])
        self.assertEqual(bytes(8 * MiB - len(data)), disk[len(data) :])

        snap_id = self.new_image(None, "raw", "bare")
        handler.upload(self.ctx, self.instance, snap_id, vdi, {"disk_format": "raw"})
        self.assertEqual(disk, self.glance_bytes(snap_id))
        self.assertEqual("active", self.images.get(self.ctx, snap_id)["status"])
        self.session.call("VDI.destroy", vdi)

    def test_remote_stream_vhd_chain_both_ways(self) -> None:
        tar, expected = self.vhd_chain_tar()
        image_id = self.new_image(tar, "vhd", "ovf")
        handler = self.handler("vdi_remote_stream")
        vdi = handler.download(self.ctx, self.instance, image_id, self.sr, 0)
        self.assertEqual(expected, self.vdi_bytes(vdi))

        snap_id = self.new_image(None, "vhd", "ovf")
        handler.upload(self.ctx, self.instance, snap_id, vdi, {"disk_format": "vhd"})
        meta = self.images.get(self.ctx, snap_id)
        self.assertEqual(("vhd", "ovf"), (meta["disk_format"], meta["container_format"]))
        self.assertEqual(expected, self.uploaded_disk(snap_id))
        self.session.call("VDI.destroy", vdi)

    def test_remote_stream_refuses_qcow2(self) -> None:
        path = os.path.join(self.tmp, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "16M"], check=True)
        with open(path, "rb") as f:
            image_id = self.new_image(f.read(), "qcow2", "bare")
        before = set(self.session.call("SR.get_VDIs", self.sr))
        from nova import exception

        self.assertRaises(
            exception.ImageUnacceptable,
            self.handler("vdi_remote_stream").download,
            self.ctx,
            self.instance,
            image_id,
            self.sr,
            MiB,
        )
        self.assertEqual(before, set(self.session.call("SR.get_VDIs", self.sr)))

    # --- direct_vhd

    def test_direct_vhd_chain_both_ways(self) -> None:
        tar, expected = self.vhd_chain_tar()
        image_id = self.new_image(tar, "vhd", "ovf")
        handler = self.handler("direct_vhd")
        vdi = handler.download(self.ctx, self.instance, image_id, self.sr, 0)
        self.assertEqual(expected, self.vdi_bytes(vdi))
        self.assertEqual("root", self.session.call("VDI.get_other_config", vdi)["nova_disk_type"])

        parent = self.session.call("VDI.get_sm_config", vdi)["vhd-parent"]
        parent_vdi = self.session.call("VDI.get_by_uuid", parent)
        self.assertNotIn("vhd-parent", self.session.call("VDI.get_sm_config", parent_vdi))

        snap_id = self.new_image(None, "vhd", "ovf")
        handler.upload(self.ctx, self.instance, snap_id, vdi, {"properties": {"os_type": "linux"}})
        meta = self.images.get(self.ctx, snap_id)
        self.assertEqual(("vhd", "ovf"), (meta["disk_format"], meta["container_format"]))
        self.assertEqual(["0.vhd", "1.vhd"], self.uploaded_members(snap_id))  # the chain
        self.assertEqual(expected, self.uploaded_disk(snap_id))

        # a snapshot's parent is its base copy, a VDI too: the chain goes, leaf first
        snapshot = self.session.call("VDI.snapshot", vdi, {})
        base = self.session.call("VDI.get_by_uuid", self.vhd_parent(snapshot))
        self.assertFalse(self.session.call("VDI.get_managed", base))
        self.assertEqual(parent, self.vhd_parent(base))
        snap_chain_id = self.new_image(None, "vhd", "ovf")
        before = set(self.session.call("SR.get_VDIs", self.sr))
        handler.upload(self.ctx, self.instance, snap_chain_id, snapshot, {})
        self.assertEqual(["0.vhd", "1.vhd", "2.vhd"], self.uploaded_members(snap_chain_id))
        self.assertEqual(expected, self.uploaded_disk(snap_chain_id))
        self.assertEqual(before, set(self.session.call("SR.get_VDIs", self.sr)))  # no copy
        again = handler.download(self.ctx, self.instance, snap_chain_id, self.sr, 0)
        self.assertEqual(expected, self.vdi_bytes(again))  # reassembled, three files deep
        chain = [self.session.call("VDI.get_uuid", again)]
        while self.vhd_parent(self.session.call("VDI.get_by_uuid", chain[-1])):
            chain.append(self.vhd_parent(self.session.call("VDI.get_by_uuid", chain[-1])))
        self.assertEqual(3, len(chain))

        # a parent that is no VDI (its record forgotten): a standalone copy goes instead
        self.session.call("VDI.forget", base)
        copy_id = self.new_image(None, "vhd", "ovf")
        before = set(self.session.call("SR.get_VDIs", self.sr))
        handler.upload(self.ctx, self.instance, copy_id, snapshot, {})
        self.assertEqual(["0.vhd"], self.uploaded_members(copy_id))
        self.assertEqual(expected, self.uploaded_disk(copy_id))
        self.assertEqual(before, set(self.session.call("SR.get_VDIs", self.sr)))
        self.session.call("SR.scan", self.sr)  # the base copy's record is found again
        self.assertEqual(self.vhd_parent(snapshot), self.vhd_parent(vdi))
        self.session.call("VDI.get_by_uuid", self.vhd_parent(snapshot))
        for ref in [snapshot, vdi, parent_vdi]:
            self.session.call("VDI.destroy", ref)
        for vdi_uuid in chain:
            self.session.call("VDI.destroy", self.session.call("VDI.get_by_uuid", vdi_uuid))

    def vhd_parent(self, vdi: str) -> str:
        return str(self.session.call("VDI.get_sm_config", vdi).get("vhd-parent", ""))

    def uploaded_members(self, image_id: str) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.glance_bytes(image_id)), mode="r:gz") as tar:
            return sorted(os.path.basename(name) for name in tar.getnames())


_ = fake_instance
