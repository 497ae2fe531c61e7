"""Which system tools a test needs: skipped when one is missing, failed under CI.

A test that needs QEMU, Open vSwitch, dnsmasq, etcd or a browser asks for it here. Outside CI
a missing tool skips the test with the package to install; with ``CI`` set (as ``.ci/run`` is
run in CI) it fails, so that a CI machine without the tool cannot pass silently.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# the Debian package each tool comes from (what .ci/run installs)
PACKAGES = {
    "openssl": "openssl",
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "ovs-vsctl": "openvswitch-switch",
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "ovs-ofctl": "openvswitch-switch",
    "ovsdb-tool": "openvswitch-switch",
    "dnsmasq": "dnsmasq-base",
    "etcd": "etcd-server",
    "chromium": "chromium",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",
}


def require_tool(name: str) -> str:
    """The path of ``name``; skip the test if it is missing, or fail it under CI."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{name} is not installed (apt-get install {PACKAGES.get(name, name)})"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set: this test must run")
        pytest.skip(message)
    return path


def require_root() -> None:
    """Skip unless root (network namespaces, taps, tmpfs); fail under CI, which runs as root."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the tests do not run as root")
        pytest.skip("needs root")


XO_CLIENT = Path(__file__).resolve().parent / "clients" / "xen-api"


def xo_connector() -> str:
    """node, with Xen Orchestra's connector installed in ``clients/xen-api`` (``npm ci``,
    pinned by its lock file; once, under a lock: test workers share the directory)."""
    node, npm = require_tool("node"), require_tool("npm")
    lock = XO_CLIENT / "package-lock.json"
    stamp = XO_CLIENT / "node_modules" / ".xenstack-installed"
    with open(XO_CLIENT / ".install.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != lock.read_text():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=XO_CLIENT, check=True, timeout=600,
            )  # fmt: skip
            stamp.write_text(lock.read_text())
    return node
