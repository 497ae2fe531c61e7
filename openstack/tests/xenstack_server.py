"""A xenstack toolstack for the OpenStack tests: ``xenstack serve`` as a child process on a
free port of 127.0.0.1, in a fresh state directory, run by the project's own interpreter.

The OpenStack virtualenv does not hold xenstack: the server runs from ``XENSTACK_PYTHON``
(default: the repository's ``.venv/bin/python``) with the repository's ``src`` on its path,
and the driver reaches it over the wire only, through the XenAPI SDK.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import XenAPI

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
PLUGIN_DIR = str(Path(__file__).resolve().parent / "plugins")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class XenstackServer:
    def __init__(
        self,
        hosts: int = 1,
        plugin_dir: str | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.hosts = hosts
        self.plugin_dir = plugin_dir
        self.extra_env = extra_env or {}
        self.extra_args = extra_args or []
        self.tmp = tempfile.mkdtemp(prefix="xo-xenstack-")
        self.state = os.path.join(self.tmp, "state")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.tmp, "server.log")
        # where the host's console.py plug-in reads a domain's log: STATE/console/console.<domid>
        self.console_dir = os.path.join(self.state, "console")

    @property
    def python(self) -> str:
        return os.environ.get("XENSTACK_PYTHON") or str(REPO / ".venv" / "bin" / "python")

    @property
    def password(self) -> str:
        return (Path(self.state) / "root-password").read_text().strip()

    @property
    def sr_base_path(self) -> str:
        return os.path.join(self.state, "sr")

    def start(self) -> XenstackServer:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.environ.get("XENSTACK_SRC") or str(REPO / "src")
        env["XENSTACK_GUEST_AGENT_DELAY"] = env.get("XENSTACK_GUEST_AGENT_DELAY", "0")
        if self.plugin_dir:
            env["XENSTACK_PLUGIN_DIR"] = self.plugin_dir
        env.update(self.extra_env)
        for key in ("OS_NOVA_DISABLE_EVENTLET_PATCHING",):
            env.pop(key, None)
        cmd = [
            self.python,
            "-m",
            "xenstack.cli.main",
            "serve",
            "--state-dir",
            self.state,
            "--port",
            str(self.port),
            "--hosts",
            str(self.hosts),
            *self.extra_args,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xenstack serve exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                if os.path.exists(os.path.join(self.state, "root-password")):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"xenstack serve did not listen: {self.log()}")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()[-4000:]
        except OSError:
            return ""

    def session(self) -> XenAPI.Session:
        s = XenAPI.Session(self.url)
        s.xenapi.login_with_password("root", self.password, "1.0", "xenstack-nova tests")
        return s

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def flags(self) -> dict[str, str]:
        """The [xenserver] options that point a driver at this server."""
        return {
            "connection_url": self.url,
            "connection_username": "root",
            "connection_password": self.password,
            "sr_base_path": self.sr_base_path,
        }


def restore_hosts(session: XenAPI.Session) -> None:
    """Bring back, enabled, the hosts a test shut down (host_power_action): a simulated
    host powers on once its power_on_mode names a way (as XAPI requires)."""
    x = session.xenapi
    for host in x.host.get_all():
        if not x.host_metrics.get_live(x.host.get_metrics(host)):
            if not x.host.get_power_on_mode(host):
                x.host.set_power_on_mode(host, "wake-on-lan", {})
            x.host.power_on(host)
        if not x.host.get_enabled(host):
            x.host.enable(host)


def destroy_nova_vms(session: XenAPI.Session) -> None:
    """Remove every VM the driver made (tagged nova_uuid) with its disks."""
    x = session.xenapi
    for host in x.host.get_all():
        x.host.enable(host)
    for ref, rec in x.VM.get_all_records().items():
        if rec["is_control_domain"] or "nova_uuid" not in rec["other_config"]:
            continue
        if rec["power_state"] != "Halted":
            with contextlib.suppress(XenAPI.Failure):
                x.VM.hard_shutdown(ref)
        vdis = []
        for vbd in rec["VBDs"]:
            try:
                vdi = x.VBD.get_VDI(vbd)
                if vdi != "OpaqueRef:NULL":
                    vdis.append(vdi)
            except XenAPI.Failure:
                pass
        try:
            x.VM.destroy(ref)
        except XenAPI.Failure:
            continue
        for vdi in vdis:
            with contextlib.suppress(XenAPI.Failure):
                x.VDI.destroy(vdi)


def export_vdi(server: XenstackServer, session: XenAPI.Session, vdi: str) -> bytes:
    """A VDI's bytes, raw, through the host's GET /export_raw_vdi."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"session_id": session._session, "vdi": vdi, "format": "raw"})
    with urllib.request.urlopen(f"{server.url}export_raw_vdi?{query}", timeout=120) as resp:
        return bytes(resp.read())
