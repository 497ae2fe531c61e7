"""Run by xenstack's interpreter (its VHD library): ``make_vhd_chain.py DIR SIZE`` writes
``DIR/1.vhd`` (a dynamic base) and ``DIR/0.vhd`` (a differencing leaf over it) with data in
both, and ``DIR/expected.raw``, the disk they make together; ``make_vhd_chain.py --raw VHD
OUT`` writes a VHD's disk as raw bytes (to check what the handlers upload)."""

import itertools
import os
import sys
import tarfile
import tempfile

from xenstack.storage.vhd import DiskType, VhdImage, create_dynamic, export_raw_file, read_footer
from xenstack.storage.vhd.ops import set_parent

MiB = 1 << 20


def chain(directory: str, size: int) -> None:
    base, leaf = os.path.join(directory, "1.vhd"), os.path.join(directory, "0.vhd")
    create_dynamic(base, size)
    img = VhdImage.open(base)
    img.write(0, os.urandom(3 * MiB))  # the base: its first 3 MiB
    img.write(5 * MiB, os.urandom(MiB))
    img.close()
    create_dynamic(leaf, parent=base)
    img = VhdImage.open(leaf)
    img.write(MiB + 512, os.urandom(4096))  # the leaf: a few sectors over the base's data
    img.write(8 * MiB, os.urandom(2 * MiB))  # and blocks of its own
    img.close()
    to_raw(leaf, os.path.join(directory, "expected.raw"))


def to_raw(path: str, out: str) -> None:
    img = VhdImage.open(path, writable=False)
    try:
        export_raw_file(img, out)
    finally:
        img.close()


def tar_to_raw(tar_path: str, out: str) -> None:
    """An ovf image's disk: its N.vhd members linked leaf to base, read as one disk."""
    with tempfile.TemporaryDirectory() as d:
        with tarfile.open(tar_path, "r:gz") as tar:
            tar.extractall(d, filter="data")
        names = sorted((n for n in os.listdir(d) if n.endswith(".vhd")), key=lambda n: int(n[:-4]))
        last = read_footer(os.path.join(d, names[-1]))
        if last.disk_type is DiskType.DIFFERENCING:  # its parent is not in the image
            raise SystemExit(f"{names[-1]}, the chain's last member, is a differencing disk")
        for child, parent in itertools.pairwise(names):
            set_parent(os.path.join(d, child), os.path.join(d, parent))
        to_raw(os.path.join(d, names[0]), out)


if __name__ == "__main__":
    if sys.argv[1] == "--raw":
        to_raw(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--tar":
        tar_to_raw(sys.argv[2], sys.argv[3])
    else:
        chain(sys.argv[1], int(sys.argv[2]))
