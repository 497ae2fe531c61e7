"""A BIOS-bootable raw disk image of xenstack's test guest, as a Glance image would be: a
FAT file system holding the guest's kernel and initramfs, with SYSLINUX in its boot sector
(``mtools`` and ``syslinux``), so that an HVM VM whose boot order is the disk (how the driver
makes every VM) boots it. The guest stays in its initramfs: its agent reports the address
DHCP gives its first NIC."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("mformat", "mcopy", "syslinux")
SIZE = 40 << 20


def guest_dir() -> Path:
    """tools/test-guest/build.sh's directory of the guest (built if its cache lacks it)."""
    out = subprocess.run(
        ["sh", str(REPO / "tools" / "test-guest" / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def make(path: str) -> str:
    """Write the image to ``path``; return it."""
    guest = guest_dir()
    cmdline = (guest / "cmdline").read_text().strip()
    with open(path, "wb") as f:
        f.truncate(SIZE)
    cfg = path + ".cfg"
    with open(cfg, "w") as f:
        f.write(f"DEFAULT xsg\nPROMPT 0\nTIMEOUT 0\nLABEL xsg\n  KERNEL vmlinuz\n"
                f"  INITRD initrd.img\n  APPEND {cmdline}\n")  # fmt: skip
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    run = [
        ["mformat", "-i", path, "-v", "XSGBOOT", "::"],
        ["mcopy", "-i", path, str(guest / "vmlinuz"), "::vmlinuz"],
        ["mcopy", "-i", path, str(guest / "initrd.img"), "::initrd.img"],
        ["mcopy", "-i", path, cfg, "::syslinux.cfg"],
        ["syslinux", "--install", path],
    ]
    for argv in run:
        subprocess.run(argv, check=True, capture_output=True, timeout=120, env=env)
    os.unlink(cfg)
    return path
