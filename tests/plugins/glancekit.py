"""A real Glance for the tests: the PyPI ``glance`` package of the shared OpenStack venv
(``$XENSTACK_OPENSTACK_VENV``, else ``/work/venvs/openstack`` if it exists, else the
repository's ``.venv-openstack`` that ``.ci/run`` builds) standalone: sqlite, the file
store, no Keystone, as the WSGI application under gunicorn on a free port of 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def _venv() -> Path:
    """Where openstack/tests/run.sh puts the OpenStack virtualenv, found the same way."""
    named = os.environ.get("XENSTACK_OPENSTACK_VENV")
    if named:
        return Path(named)
    shared = Path("/work/venvs/openstack")
    return shared if shared.is_dir() else Path(__file__).resolve().parents[2] / ".venv-openstack"


VENV = _venv()

CONF = """[DEFAULT]
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:{port}
[database]
connection = sqlite:///{dir}/glance.sqlite
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {dir}/images
[os_glance_staging_store]
filesystem_store_datadir = {dir}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {dir}/tasks
[paste_deploy]
flavor =
config_file = {dir}/etc/glance-api-paste.ini
[oslo_policy]
enforce_new_defaults = False
enforce_scope = False
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Glance:
    def __init__(self, directory: Path, port: int) -> None:
        self.dir, self.port = directory, port
        self.endpoint = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, ctype: str = "") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": ctype or "application/json"} if data else {}
        req = urllib.request.Request(self.endpoint + path, data, headers, method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def create(self, name: str) -> str:
        image = self.call("POST", "/v2/images", {"name": name, "container_format": "ovf",
                                                  "disk_format": "vhd"})  # fmt: skip
        return str(image["id"])

    def upload(self, image_id: str, data: bytes) -> None:
        url = f"{self.endpoint}/v2/images/{image_id}/file"
        headers = {"Content-Type": "application/octet-stream"}
        req = urllib.request.Request(url, data, headers, method="PUT")
        urllib.request.urlopen(req, timeout=60).close()

    def download(self, image_id: str) -> bytes:
        with urllib.request.urlopen(f"{self.endpoint}/v2/images/{image_id}/file", timeout=60) as r:
            return bytes(r.read())


@contextmanager
def glance_server() -> Iterator[Glance]:
    bindir = VENV / "bin"
    if not (bindir / "gunicorn").exists() or not (bindir / "glance-manage").exists():
        if os.environ.get("CI"):  # .ci/run builds the OpenStack venv before the tests
            pytest.fail(f"no glance venv at {VENV}")
        pytest.skip(f"no glance venv at {VENV} (pip install glance==33.0.0 gunicorn)")
    directory = Path(tempfile.mkdtemp(prefix="xs-glance-"))
    port = _free_port()
    (directory / "etc").mkdir()
    paste = next(VENV.glob("etc/glance/glance-api-paste.ini"))
    shutil.copy(paste, directory / "etc" / "glance-api-paste.ini")
    (directory / "etc" / "glance-api.conf").write_text(CONF.format(port=port, dir=directory))
    etc = str(directory / "etc")
    subprocess.run([str(bindir / "glance-manage"), "--config-dir", etc, "db_sync"], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    log = open(directory / "glance.log", "wb")  # noqa: SIM115 - open for the server's life
    proc = subprocess.Popen(
        [str(bindir / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4",
         "glance.wsgi.api:application"],
        env={**os.environ, "OS_GLANCE_CONFIG_DIR": etc}, stdout=log, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    glance = Glance(directory, port)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                glance.call("GET", "/v2/images")
                break
            except (urllib.error.URLError, ConnectionError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((directory / "glance.log").read_text()) from exc
                time.sleep(0.2)
        yield glance
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
