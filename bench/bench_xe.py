"""Benchmark: wall time of ``xe vm-list`` (process start-up included) on a pool of 1,000 VMs.

    .venv/bin/python bench/bench_xe.py [--vms 1000] [--runs 5]

The VMs are created over the API with ``VM.create``; the figure printed is the best and the
median wall time of ``xe vm-list`` run as a child process. Target: <= 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import XenAPI

from xenstack.testing import simulated_pool


def vm_record(i: int) -> dict[str, object]:
    return {"name_label": f"bench-vm-{i}", "name_description": "", "user_version": "1",
            "is_a_template": False, "memory_static_max": str(1 << 30),
            "memory_dynamic_max": str(1 << 30), "memory_dynamic_min": str(1 << 30),
            "memory_static_min": str(1 << 30), "VCPUs_max": "1", "VCPUs_at_startup": "1",
            "VCPUs_params": {}, "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart", "actions_after_crash": "restart",
            "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "", "PV_args": "",
            "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "",
            "HVM_boot_params": {}, "platform": {}, "PCI_bus": "", "other_config": {},
            "recommendations": "", "affinity": "OpaqueRef:NULL"}  # fmt: skip


def xe_binary() -> str:
    here = Path(sys.executable).parent / "xe"
    return str(here) if here.exists() else (shutil.which("xe") or "xe")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with simulated_pool() as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "bench")
        for i in range(args.vms):
            session.xenapi.VM.create(vm_record(i))
        session.xenapi.session.logout()
        env = dict(
            os.environ,
            XE_EXTRA_ARGS=f"server=127.0.0.1,port={pool.port},"
            f"username=root,password={pool.password}",
        )
        cmd = [xe_binary(), "vm-list"]
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - start)
        shown = out.stdout.count("name-label ( RW)")
    best, median = min(times), statistics.median(times)
    print(
        f"xe vm-list on {args.vms} VMs ({shown} shown): best {best:.3f} s, "
        f"median {median:.3f} s (target <= 0.300 s)"
    )
    return 0 if median <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
