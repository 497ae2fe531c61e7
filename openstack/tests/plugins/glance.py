#!/usr/bin/env python3
"""A small dom0 ``glance.py`` plug-in for the direct_vhd tests: ``download_vhd2`` and
``upload_vhd2`` with os-xenapi's argument encoding (``{'params': pickle}`` of
``{'args', 'kwargs'}``, protocol 0 text), moving a VHD chain between Glance v2 and the SR
directory ``sr_path`` as gzip tars of ``0.vhd`` (the leaf), ``1.vhd``... It re-links the
chain's parents with the toolstack's VHD library, where XenServer's used ``vhd-util``.
"""

import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request

import XenAPIPlugin

from xenstack.storage.vhd import read_footer
from xenstack.storage.vhd.ops import set_parent

CHUNK = 1 << 20


def _params(args):
    return pickle.loads(args["params"].encode("latin-1"))["kwargs"]


def _answer(value):
    return pickle.dumps(value, 0).decode("latin-1")


def _request(method, url, headers, data=None, ctype=None):
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if ctype:
        req.add_header("Content-Type", ctype)
    return urllib.request.urlopen(req, timeout=600)


def download_vhd2(session, args):
    kw = _params(args)
    url = f"{kw['endpoint']}/v2/images/{kw['image_id']}/file"
    stack = list(kw["uuid_stack"])
    staging = tempfile.mkdtemp(dir=kw["sr_path"], prefix=".glance-")
    try:
        with (
            _request("GET", url, kw["extra_headers"]) as resp,
            tarfile.open(fileobj=resp, mode="r|gz") as tar,
        ):
            for member in tar:
                if member.isfile() and member.name.lstrip("./").endswith(".vhd"):
                    src = tar.extractfile(member)
                    with open(os.path.join(staging, os.path.basename(member.name)), "wb") as f:
                        shutil.copyfileobj(src, f, CHUNK)
        count = len([n for n in os.listdir(staging) if n.endswith(".vhd")])
        names = [stack.pop() for _ in range(count)]  # names[i] for i.vhd
        for i in reversed(range(count)):  # the base first: a child links to a moved parent
            dest = os.path.join(kw["sr_path"], names[i] + ".vhd")
            os.rename(os.path.join(staging, f"{i}.vhd"), dest)
            if i + 1 < count:
                set_parent(dest, os.path.join(kw["sr_path"], names[i + 1] + ".vhd"))
        return _answer({"root": {"uuid": names[0]}})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _chain(sr_path, uuids):
    """The files of the chain nova names, leaf first (os-xenapi's plug-in follows no
    parent links of its own)."""
    return [os.path.join(sr_path, u + ".vhd") for u in uuids]


def upload_vhd2(session, args):
    kw = _params(args)
    paths = _chain(kw["sr_path"], kw["vdi_uuids"])
    read_footer(paths[0])  # a VHD, or this fails before Glance is touched
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w|gz") as tar:
            for i, path in enumerate(paths):
                tar.add(path, arcname=f"{i}.vhd")
        spool.seek(0)
        body = spool.read()
    base = f"{kw['endpoint']}/v2/images/{kw['image_id']}"
    patch = [
        {"op": "add", "path": "/disk_format", "value": "vhd"},
        {"op": "add", "path": "/container_format", "value": "ovf"},
    ]
    patch += [
        {"op": "add", "path": "/" + k, "value": v} for k, v in (kw.get("properties") or {}).items()
    ]

    _request(
        "PATCH",
        base,
        kw["extra_headers"],
        json.dumps(patch).encode(),
        "application/openstack-images-v2.1-json-patch",
    ).read()
    _request("PUT", base + "/file", kw["extra_headers"], body, "application/octet-stream").read()
    return _answer(None)


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"download_vhd2": download_vhd2, "upload_vhd2": upload_vhd2})
