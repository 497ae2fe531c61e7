#!/usr/bin/env python3
"""xenstack's ``partition_utils.py``: partitions and file systems on dom0 block devices.

Pickled calls (os-xenapi's ``call_plugin_serialized``), with the arguments nova sends; ``dev``
is a VBD's ``device`` (``loop3``: the VDI plugged into dom0, see ``VBD.plug``):

- ``wait_for_dev(dev_path, max_seconds)``: ``dev_path`` once it exists (polled each second
  for up to ``max_seconds``), else ``""``.
- ``make_partition(dev, partition_start, partition_end)``: one Linux partition from sector
  ``partition_start`` to the end of the disk (``partition_end`` must be ``"-"``), written by
  ``sfdisk`` as an MBR table.
- ``mkfs(dev, partnum, fs_type, fs_label)``: a file system (``ext3``, ``ext4``) or swap
  (``swap``) on partition ``partnum`` of ``dev``. XenServer maps the partitions with
  ``kpartx``; here the partition (its extent read from the table with ``sfdisk --json``) is
  put on a loop device of its own for the time of ``mkfs``, and always removed after, so the
  VBD can be unplugged.
"""

import json
import os
import time

import dom0_utils

FILESYSTEMS = {
    "ext3": ["mkfs", "-t", "ext3", "-F"],
    "ext4": ["mkfs", "-t", "ext4", "-F"],
    "swap": ["mkswap"],
}


def wait_for_dev(session, dev_path, max_seconds):
    for _ in range(int(max_seconds)):
        if os.path.exists(dev_path):
            return dev_path
        time.sleep(1)
    return dev_path if os.path.exists(dev_path) else ""


def make_partition(session, dev, partition_start, partition_end):
    dev_path = dom0_utils.make_dev_path(dev)
    if partition_end != "-":
        raise dom0_utils.PluginError("Can only create unbounded partitions")
    start = int(partition_start)
    if start < 1:
        raise dom0_utils.PluginError(f"bad partition start: {partition_start!r}")
    dom0_utils.run_command(["sfdisk", "--quiet", "--no-reread", dev_path], f"{start},;\n")


def _extent(dev_path, partnum):
    """(offset, length) in bytes of partition ``partnum`` of ``dev_path``."""
    table = json.loads(dom0_utils.run_command(["sfdisk", "--json", dev_path]))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for number, part in enumerate(table.get("partitions", []), 1):
        if number == int(partnum):
            return int(part["start"]) * sector, int(part["size"]) * sector
    raise dom0_utils.PluginError(f"{dev_path} has no partition {partnum}")


def mkfs(session, dev, partnum, fs_type, fs_label):
    dev_path = dom0_utils.make_dev_path(dev)
    if fs_type not in FILESYSTEMS:
        raise dom0_utils.PluginError(f"Partition type {fs_type} not supported")
    offset, length = _extent(dev_path, partnum)
    part = dom0_utils.run_command(
        ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(length),
         dev_path]
    ).strip()  # fmt: skip
    try:
        label = ["-L", fs_label] if fs_label and fs_type != "swap" else []
        dom0_utils.run_command([*FILESYSTEMS[fs_type], *label, part])
    finally:  # always removed: the VBD must unplug
        dom0_utils.run_command(["losetup", "--detach", part])


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(wait_for_dev, make_partition, mkfs)
