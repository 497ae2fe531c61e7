#!/usr/bin/env python3
"""xenstack's ``glance.py``: VHD chains between Glance v2 and an SR (os-xenapi's protocol).

Both are pickled calls, with nova's keyword arguments:

- ``download_vhd2(image_id, endpoint, uuid_stack, sr_path, extra_headers, api_version)``:
  ``GET {endpoint}/v2/images/{image_id}/file``, a gzip tar of ``0.vhd`` (the leaf),
  ``1.vhd`` (its parent) ... and optionally ``swap.vhd``, checked against the image's
  ``Content-MD5`` (or MD5 ``ETag``); each VHD is renamed to a uuid popped from
  ``uuid_stack``, re-pointed at its renamed parent (``vhd-util modify -p``), the chain
  checked (``vhd-util check -p``) and moved into ``sr_path``. Answers
  ``{"root": {"uuid": ...}}`` (and ``"swap"`` when there was one); an SR scan then shows
  the VDI.
- ``upload_vhd2(vdi_uuids, image_id, endpoint, sr_path, extra_headers, properties,
  api_version)``: the VHDs ``<uuid>.vhd`` of ``vdi_uuids`` (leaf first) as ``0.vhd``,
  ``1.vhd`` ... in a gzip tar, after ``PATCH /v2/images/{id}`` (container ``ovf``, disk
  ``vhd``, ``properties``) on an image still ``queued``, by ``PUT /v2/images/{id}/file``.

Only Glance's v2 API exists now; ``api_version=1`` is refused. Tar members other than those
names are refused, and nothing is extracted outside the staging directory.
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse

import dom0_utils

MEMBER = re.compile(r"(?:\./)?(\d+|swap)\.vhd")
CHUNK = 1 << 20


class RetryableError(dom0_utils.PluginError):
    pass


def _connection(endpoint):
    url = urllib.parse.urlsplit(endpoint)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    return kind(url.hostname, url.port, timeout=600), url.path.rstrip("/")


def _check_version(api_version):
    if int(api_version) != 2:
        raise dom0_utils.PluginError(f"Glance API v{api_version} is not supported (v2 only)")


class _Hashing:
    def __init__(self, raw):
        self.raw, self.md5 = raw, hashlib.md5()

    def read(self, n=-1):
        data = self.raw.read(n)
        self.md5.update(data)
        return data


def _extract(response, staging):
    stream = _Hashing(response)
    with tarfile.open(fileobj=stream, mode="r|gz") as tar:
        for member in tar:
            match = MEMBER.fullmatch(member.name)
            if match is None or not member.isfile():
                raise dom0_utils.PluginError(f"unexpected member in the image: {member.name!r}")
            source = tar.extractfile(member)
            with open(os.path.join(staging, f"{match.group(1)}.vhd"), "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
    while stream.read(CHUNK):  # the rest of the body (gzip padding) counts in the checksum
        pass
    return stream.md5.hexdigest()


def _expected_md5(headers):
    etag = (headers.get("ETag") or "").strip('"')
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        return etag
    return headers.get("Content-MD5") or headers.get("x-image-meta-checksum")


def download_vhd2(session, image_id, endpoint, uuid_stack, sr_path, extra_headers,
                  api_version=1):  # fmt: skip
    _check_version(api_version)
    staging = tempfile.mkdtemp(dir=sr_path, prefix=".staging-")
    try:
        conn, base = _connection(endpoint)
        conn.request("GET", f"{base}/v2/images/{image_id}/file", headers=dict(extra_headers))
        response = conn.getresponse()
        if response.status != 200:
            raise RetryableError(f"download of {image_id}: HTTP {response.status}")
        expected = _expected_md5(response.headers)
        got = _extract(response, staging)
        conn.close()
        if expected and expected != got:
            raise RetryableError(f"checksum of {image_id}: expected {expected}, got {got}")
        return dom0_utils.import_vhds(sr_path, staging, list(uuid_stack))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _call(endpoint, method, path, headers, body=None):
    conn, base = _connection(endpoint)
    conn.request(method, f"{base}{path}", body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def upload_vhd2(session, vdi_uuids, image_id, endpoint, sr_path, extra_headers, properties,
                api_version=1):  # fmt: skip
    _check_version(api_version)
    headers = dict(extra_headers)
    patch = [{"op": "add", "path": "/container_format", "value": "ovf"},
             {"op": "add", "path": "/disk_format", "value": "vhd"}]  # fmt: skip
    patch += [{"op": "add", "path": f"/{k}", "value": str(v)} for k, v in properties.items()]
    status, data = _call(endpoint, "GET", f"/v2/images/{image_id}", headers)
    if status != 200 or json.loads(data).get("status") != "queued":
        raise dom0_utils.PluginError(f"image {image_id} is not queued for upload ({status})")
    patch_headers = {**headers, "Content-Type": "application/openstack-images-v2.1-json-patch"}
    status, data = _call(endpoint, "PATCH", f"/v2/images/{image_id}", patch_headers,
                         json.dumps(patch))  # fmt: skip
    if status != 200:
        raise dom0_utils.PluginError(f"PATCH of {image_id}: HTTP {status}: {data[:200]!r}")
    staging = tempfile.mkdtemp(dir=sr_path, prefix=".staging-")
    try:
        bundle = os.path.join(staging, "image.tgz")
        with tarfile.open(bundle, "w:gz") as tar:
            for i, uuid in enumerate(vdi_uuids):
                tar.add(os.path.join(sr_path, f"{uuid}.vhd"), arcname=f"./{i}.vhd")
        with open(bundle, "rb") as body:
            put_headers = {**headers, "Content-Type": "application/octet-stream",
                           "Content-Length": str(os.path.getsize(bundle))}  # fmt: skip
            status, data = _call(endpoint, "PUT", f"/v2/images/{image_id}/file", put_headers,
                                 body)  # fmt: skip
        if status != 204:
            raise RetryableError(f"upload of {image_id}: HTTP {status}: {data[:200]!r}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(download_vhd2, upload_vhd2)
