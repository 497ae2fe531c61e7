"""Real guests: a qemu host (``xenstack init --backend qemu`` + ``serve --netns``) per module."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from systools import require_root, require_tool

from xenstack.testing.guests import Console, QemuHost, install, qemu_host, run_dir

__all__ = ["install"]

LABEL_OFFSET = 16 * 2048 + 40  # an ISO's volume identifier, in its primary descriptor
WAIT = 120.0  # this machine's load swings from 1 to 13: wait on events, generously


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("xq") as h:
        yield h


@pytest.fixture(scope="module")
def sdk(host: QemuHost) -> Iterator[Any]:
    """A logged-in PyPI XenAPI SDK session on the qemu host."""
    s = XenAPI.Session(host.url)
    s.xenapi.login_with_password("root", host.password, "1.0", "xq-tests")
    yield s
    s.xenapi.session.logout()


@pytest.fixture(scope="module")
def x(sdk: Any) -> Any:
    return sdk.xenapi


def until(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what or repr(check))


def guest_ip(x: Any, vm: str) -> str:
    """Wait for the guest agent to report interface 0's address; it."""

    def ip() -> str:
        gm = x.VM.get_guest_metrics(vm)
        if gm == "OpaqueRef:NULL":
            return ""
        try:
            return str(x.VM_guest_metrics.get_networks(gm).get("0/ip", ""))
        except XenAPI.Failure:
            return ""

    return str(until(ip, what=f"an IP for {vm}"))


def console(host: QemuHost, x: Any, vm: str) -> Console:
    return Console(run_dir(host.state_dir, x.VM.get_uuid(vm)))


def make_iso(directory: Path, name: str, label: str) -> None:
    require_tool("genisoimage")
    content = directory / f"{name}.d"
    content.mkdir()
    (content / "README").write_text(f"{label}\n")
    iso = directory / f"{name}.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-V", label, "-o", str(iso), str(content)],
        check=True,
        timeout=60,
    )


# a CD's first 5 label bytes, or the start of dd's error (short: serial output is slow under
# TCG); a first open only notices the medium change (Linux revalidates on the next); the
# last read's copy goes first (a dd that cannot open the drive leaves its output as it was)
LABEL_COMMAND = (
    "rm -f /tmp/pvd; dd if=/dev/sr0 of=/dev/null count=0 2>/dev/null;"
    " dd if=/dev/sr0 of=/tmp/pvd bs=2048 skip=16 count=1 2>/tmp/err;"
    f" (dd if=/tmp/pvd bs=1 skip={LABEL_OFFSET % 2048} count=5; head -c 12 /tmp/err)"
    " 2>/dev/null | tr -c A-Za-z0-9 _; echo"
)


def medium_label(con: Any) -> str:
    """What :data:`LABEL_COMMAND` prints in the guest."""
    out = con.run_command(LABEL_COMMAND)
    return out.strip().splitlines()[-1] if out.strip() else ""
