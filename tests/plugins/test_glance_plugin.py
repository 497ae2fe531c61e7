"""``glance.py`` moving an image between a real Glance (standalone, sqlite, file store) and a
file SR of xenstack, through host.call_plugin with os-xenapi's pickled keyword arguments:
the chain reassembled in the SR reads back the image's bytes, and an upload puts exactly the
SR's VHD files into Glance."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from glancekit import Glance, glance_server
from pluginkit import call_serialized

from xenstack.storage.vhd import VhdImage, create_dynamic
from xenstack.testing import RunningPool, simulated_pool

pytestmark = [pytest.mark.openstack, pytest.mark.slow]
MIB = 1 << 20


@pytest.fixture(scope="module")
def glance() -> Iterator[Glance]:
    with glance_server() as server:
        yield server


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xs-glance") / "state") as running:
        yield running


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xs-tests")
    yield session.xenapi
    session.xenapi.session.logout()


def serialized(x: Any, fn: str, **kwargs: Any) -> Any:
    return call_serialized(x, x.host.get_all()[0], "glance.py", fn, **kwargs)


def local_sr(x: Any) -> tuple[str, Path]:
    for sr, rec in x.SR.get_all_records().items():
        if rec["name_label"] == "Local storage" and rec["sm_config"].get("xenstack_path"):
            return sr, Path(rec["sm_config"]["xenstack_path"])
    raise AssertionError("no Local storage file SR")


def chain_tarball(tmp: Path) -> tuple[bytes, bytes]:
    """A gzip tar of 0.vhd (leaf) over 1.vhd (base), and the disk's bytes read through it."""
    base, leaf = tmp / "base.vhd", tmp / "leaf.vhd"
    create_dynamic(str(base), 8 * MIB)
    with VhdImage.open(str(base)) as img:
        img.write(0, b"base" * 1024 * 256)  # the first MiB
    create_dynamic(str(leaf), parent=str(base))
    with VhdImage.open(str(leaf)) as img:
        img.write(3 * MIB, os.urandom(MIB))
        disk = bytes(img.read(0, 8 * MIB))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(leaf, arcname="./0.vhd")
        tar.add(base, arcname="./1.vhd")
    return out.getvalue(), disk


def test_download_then_upload(x: Any, glance: Glance, tmp_path: Path) -> None:
    sr, sr_path = local_sr(x)
    bundle, disk = chain_tarball(tmp_path)
    image = glance.create("xs-chain")
    glance.upload(image, bundle)
    stack = [str(uuid.uuid4()) for _ in range(5)]
    imported = serialized(
        x, "download_vhd2", image_id=image, endpoint=glance.endpoint, uuid_stack=stack,
        sr_path=str(sr_path), extra_headers={}, api_version=2,
    )  # fmt: skip
    root = imported["root"]["uuid"]
    assert root == stack[-1] and set(imported) == {"root"}
    with VhdImage.open(str(sr_path / f"{root}.vhd"), writable=False) as img:
        assert img.depth == 2
        assert bytes(img.read(0, 8 * MIB)) == disk  # the chain reassembled in the SR
    assert not [n for n in os.listdir(sr_path) if n.startswith(".staging")]
    x.SR.scan(sr)
    vdi = x.VDI.get_by_uuid(root)
    assert int(x.VDI.get_virtual_size(vdi)) == 8 * MIB

    target = glance.create("xs-snapshot")
    parent = stack[-2]
    serialized(
        x, "upload_vhd2", vdi_uuids=[root, parent], image_id=target, endpoint=glance.endpoint,
        sr_path=str(sr_path), extra_headers={}, properties={"os_type": "linux"}, api_version=2,
    )  # fmt: skip
    record = glance.call("GET", f"/v2/images/{target}")
    assert (record["status"], record["disk_format"], record["os_type"]) == (
        "active",
        "vhd",
        "linux",
    )
    with tarfile.open(fileobj=io.BytesIO(glance.download(target)), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert members == {
        "./0.vhd": (sr_path / f"{root}.vhd").read_bytes(),
        "./1.vhd": (sr_path / f"{parent}.vhd").read_bytes(),
    }  # bytes identical


def test_a_bad_image_changes_nothing(x: Any, glance: Glance) -> None:
    _, sr_path = local_sr(x)
    before = sorted(os.listdir(sr_path))
    image = glance.create("xs-bad")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    glance.upload(image, out.getvalue())
    with pytest.raises(XenAPI.Failure) as err:
        serialized(
            x, "download_vhd2", image_id=image, endpoint=glance.endpoint, uuid_stack=["a"],
            sr_path=str(sr_path), extra_headers={}, api_version=2,
        )  # fmt: skip
    assert "unexpected member" in err.value.details[-1]
    assert sorted(os.listdir(sr_path)) == before
