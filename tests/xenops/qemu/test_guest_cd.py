"""``VBD.insert``/``VBD.eject`` live on a real guest's CD drive, over the wire with the SDK:
the guest reads each ISO's volume label off ``/dev/sr0``, and finds no medium once ejected."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from conftest import console, install, make_iso, medium_label, until
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("q3") as h:
        yield h


def failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


@pytest.mark.xfail(
    reason="the guest reads the inserted ISO's label; but then, or at its first read of the"
    " empty drive, its serial console stops mid-line for good, typed input unechoed too (the"
    " UART's interrupt lost after an IDE CD command, under this QEMU's TCG; noapic does not"
    " help), so the eject and second insert are not always seen through it: open",
    strict=False,
)
def test_cd_insert_and_eject_live(host: QemuHost, x: Any, tmp_path: Path) -> None:
    library = tmp_path / "isos"
    library.mkdir()
    make_iso(library, "q3-one", "Q3ONE")
    make_iso(library, "q3-two", "Q3TWO")
    [me] = x.host.get_all()
    sr = x.SR.create(me, {"location": str(library)}, "0", "q3 ISOs", "", "iso", "iso", False, {})
    x.SR.scan(sr)
    iso = {x.VDI.get_name_label(v): v for v in x.SR.get_VDIs(sr)}
    assert set(iso) >= {"q3-one.iso", "q3-two.iso"}

    vm = install(x, "q3-cd")
    cd = x.VBD.create({"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "3", "bootable": False,
                       "mode": "RO", "type": "CD", "empty": True, "other_config": {},
                       "qos_algorithm_type": "", "qos_algorithm_params": {}})  # fmt: skip
    x.VM.start(vm, False, False)
    try:
        _media_changes(host, x, vm, cd, iso)
    finally:
        with contextlib.suppress(XenAPI.Failure):
            x.VM.hard_shutdown(vm)


def _media_changes(host: QemuHost, x: Any, vm: str, cd: str, iso: dict[str, str]) -> None:
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    until(lambda: "sr0" in con.run_command("ls /sys/block"), what="the CD drive in the guest")
    assert medium_label(con).startswith("dd_")  # an empty drive: no medium
    assert failure(x.VBD.eject, cd)[0] == "VBD_IS_EMPTY"

    x.VBD.insert(cd, iso["q3-one.iso"])
    assert x.VBD.get_VDI(cd) == iso["q3-one.iso"] and not x.VBD.get_empty(cd)
    until(lambda: medium_label(con).startswith("Q3ONE"), what="the first ISO in the guest")
    assert failure(x.VBD.insert, cd, iso["q3-two.iso"])[0] == "VBD_NOT_EMPTY"

    x.VBD.eject(cd)
    assert x.VBD.get_empty(cd) and x.VBD.get_VDI(cd) == "OpaqueRef:NULL"
    until(lambda: "Q3" not in medium_label(con), what="no medium once ejected")

    x.VBD.insert(cd, iso["q3-two.iso"])
    until(lambda: medium_label(con).startswith("Q3TWO"), what="the second ISO in the guest")
