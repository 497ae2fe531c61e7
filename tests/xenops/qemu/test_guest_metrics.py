"""A real guest's disk in the metrics: QEMU's ``query-blockstats`` behind XAPI's iostat sources.

The guest reads its disk (page cache dropped) and writes to it with fsync, until a 5-second
row has both;
``/rrd_updates`` (JSON, as Xen Orchestra reads it) then shows nonzero read and write rates,
request rates and latencies for ``vbd_xvda``, each consistent with the others as counters
over the same interval make them: throughput in MiB/s is the byte rate, the total request
rate the sum of reads and writes, the time waited per second the latency times the request
rate. The module's qemu host (conftest's), one guest.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from conftest import console, guest_ip, install, until

from xenstack.testing.guests import QemuHost

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

# short lines: the serial console takes them whole (the guest's root is its initramfs, so
# the disk is free to read and write; the lifecycle test's markers live at sector 4096)
LOAD = (
    "echo 3 > /proc/sys/vm/drop_caches",
    "dd if=/dev/vda of=/dev/null bs=64k count=128 skip=64",
    "dd if=/dev/zero of=/dev/vda bs=64k count=16 seek=128 conv=fsync",
)
MIB = 1024 * 1024


def newest_rows(
    host: QemuHost, session: str, uuid: str, extra: str = "&start=-60"
) -> list[dict[str, float]]:
    """The VM's (``extra``: and more) AVERAGE rows, newest first, by source name."""
    query = f"session_id={session}&cf=AVERAGE&json=true&vm_uuid={uuid}{extra}"
    url = f"{host.url}rrd_updates?{query}"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # no archive yet: the VM has not been sampled
            return []
        raise
    names = [entry.split(":", 3)[3] for entry in doc["meta"]["legend"]]
    rows = []
    for row in doc["data"]:
        values = {n: v for n, v in zip(names, row["values"], strict=True) if v is not None}
        rows.append(values)
    return rows


def _answers(con: Any) -> bool:
    try:
        con.run_command("true", timeout=10)
    except TimeoutError:
        return False
    return True


def busy_row(host: QemuHost, session: str, uuid: str) -> dict[str, float] | None:
    for row in newest_rows(host, session, uuid):
        keys = ("read", "write", "read_latency", "write_latency", "iops_read", "iops_write")
        if all(row.get(f"vbd_xvda_{k}", 0.0) > 0 for k in keys):
            return row
    return None


def test_a_guest_doing_io_shows_rates_and_latencies(host: QemuHost, sdk: Any) -> None:
    x = sdk.xenapi
    vm = install(x, "r3-io")
    x.VM.start(vm, False, False)
    try:
        guest_ip(x, vm)  # its agent runs: so does its shell
        con = console(host, x, vm)
        until(lambda: _answers(con), 180, "the guest's shell")
        uuid = x.VM.get_uuid(vm)

        def io_seen() -> dict[str, float] | None:
            for command in LOAD:
                con.run_command(command)
            try:
                return until(lambda: busy_row(host, sdk._session, uuid), 12, "a busy row")
            except TimeoutError:  # the reads and the writes fell in two rows: again
                return None

        row = until(io_seen, 240, "a row with disk reads and writes")
        d = {k.removeprefix("vbd_xvda_"): v for k, v in row.items() if k.startswith("vbd_xvda_")}
        # the same counters over the same interval (values carry 5 significant digits)
        assert d["io_throughput_read"] * MIB == pytest.approx(d["read"], rel=1e-3)
        assert d["io_throughput_write"] * MIB == pytest.approx(d["write"], rel=1e-3)
        assert d["io_throughput_total"] == pytest.approx(
            d["io_throughput_read"] + d["io_throughput_write"], rel=1e-3
        )
        assert d["iops_total"] == pytest.approx(d["iops_read"] + d["iops_write"], rel=1e-3)
        # a row is the interval's figures, but a sample a little past the row's boundary
        # lends it some of the next interval's: products of two sources agree to a few %
        waited = (d["read_latency"] * d["iops_read"] + d["write_latency"] * d["iops_write"]) / 1e6
        assert d["iowait"] == pytest.approx(waited, rel=3e-2)
        assert d["latency"] * d["iops_total"] / 1e6 == pytest.approx(d["iowait"], rel=3e-2)
        assert d["avgqu_sz"] == pytest.approx(d["iowait"], rel=3e-2)
        # plausible requests: between a sector and QEMU's largest, latencies under a second
        assert 512 <= d["read"] / d["iops_read"] <= 4 * MIB
        assert 0 < d["read_latency"] < 1e6 and 0 < d["write_latency"] < 1e6
        # the host's view of the disk's SR, from the same counters
        vbd = next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_userdevice(v) == "0")
        sr8 = x.SR.get_uuid(x.VDI.get_SR(x.VBD.get_VDI(vbd)))[:8]
        host_rows = newest_rows(host, sdk._session, "none", extra="&host=true&start=-300")
        assert any(r.get(f"read_{sr8}", 0.0) > 0 for r in host_rows)
        assert any(r.get(f"write_latency_{sr8}", 0.0) > 0 for r in host_rows)
        assert row.get("cpu0", 0.0) > 0  # the vCPU thread's own CPU time
    finally:
        x.VM.hard_shutdown(vm)
        x.VM.destroy(vm)
