"""The real Glance (the PyPI ``glance`` package) standalone for the tests: sqlite, the file
store, no Keystone, under gunicorn on a free port of 127.0.0.1 (``glance-api`` as a console
server is gone: Glance runs as the WSGI application ``glance.wsgi.api:application``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from xenstack_server import free_port

START_TIMEOUT = 120.0

CONF = """\
[DEFAULT]
enabled_backends = fs:file
worker_self_reference_url = {url}
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


class GlanceServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="xo-glance-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.dir, "glance.log")

    def start(self) -> GlanceServer:
        etc = os.path.join(self.dir, "etc")
        os.makedirs(etc)
        for sub in ("images", "staging", "tasks"):
            os.makedirs(os.path.join(self.dir, sub))
        shutil.copy(
            os.path.join(sys.prefix, "etc", "glance", "glance-api-paste.ini"),
            os.path.join(etc, "glance-api-paste.ini"),
        )
        with open(os.path.join(etc, "glance-api.conf"), "w") as f:
            f.write(CONF.format(url=self.url, dir=self.dir))
        bindir = os.path.dirname(sys.executable)
        with open(self.log_path, "wb") as log:
            subprocess.run(
                [os.path.join(bindir, "glance-manage"), "--config-dir", etc, "db_sync"],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
            env = dict(os.environ, OS_GLANCE_CONFIG_DIR=etc)
            self.proc = subprocess.Popen(
                [
                    os.path.join(bindir, "gunicorn"),
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "-w",
                    "1",
                    "--threads",
                    "4",
                    "glance.wsgi.api:application",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"glance exited: {self.log()}")
            try:
                urllib.request.urlopen(self.url + "/versions", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"glance did not answer: {self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
