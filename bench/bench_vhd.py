"""Benchmarks of the VHD library against qemu-img, measured in the same run.

(a) import and export of a disk half full of data (default 2 GiB), raw and VHD, against
    ``qemu-img convert`` between the same formats (neither side fsyncs its output: qemu-img
    does not; the page cache is synced before every timed run);
(b) snapshot (create a differencing child) of a 2040 GiB disk (the VHD maximum, "2 TiB")
    and of a 1 GiB disk, in milliseconds.

Run: ``python bench/bench_vhd.py [--size-gib N] [--dir DIR]``. Ratios are ours / qemu's:
below 1 means faster than qemu-img.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from xenstack.storage.vhd import (
    VhdImage,
    create_dynamic,
    export_raw_file,
    export_vhd_file,
    import_raw_file,
    import_vhd,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
STRIPE = 8 * MIB  # data and holes alternate in stripes of this size


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def make_half_full_raw(path: Path, size: int) -> None:
    """A sparse raw file: 8 MiB of random data, 8 MiB hole, and so on."""
    chunk = bytearray(os.urandom(STRIPE))
    with open(path, "wb") as f:
        f.truncate(size)
        for n, offset in enumerate(range(0, size, 2 * STRIPE)):
            chunk[:8] = n.to_bytes(8, "big")  # every stripe differs
            f.seek(offset)
            f.write(chunk)
        os.fsync(f.fileno())


def qemu_convert(src: Path, src_fmt: str, dest: Path, dest_fmt: str) -> None:
    options = ["-o", "subformat=dynamic,force_size=on"] if dest_fmt == "vpc" else []
    cmd = ["qemu-img", "convert", "-f", src_fmt, "-O", dest_fmt, *options, str(src), str(dest)]
    subprocess.run(cmd, check=True)


def ours_import_raw(src: Path, dest: Path, size: int) -> None:
    create_dynamic(str(dest), size)
    with VhdImage.open(str(dest)) as image:
        import_raw_file(image, str(src))


def ours_import_vhd(src: Path, dest: Path, size: int) -> None:
    create_dynamic(str(dest), size)
    with VhdImage.open(str(dest)) as image, open(src, "rb", buffering=0) as stream:
        import_vhd(stream, image)


def ours_export(src: Path, dest: Path, fmt: str) -> None:
    with VhdImage.open(str(src), writable=False) as image:
        (export_raw_file if fmt == "raw" else export_vhd_file)(image, str(dest))


def bench_convert(d: Path, size: int, runs: int) -> list[tuple[str, float, float]]:
    """Median seconds of ours and qemu-img per case, runs interleaved, ``sync`` before each."""
    raw, vhd = d / "src.raw", d / "src.vhd"
    make_half_full_raw(raw, size)
    qemu_convert(raw, "raw", vhd, "vpc")
    Case = tuple[str, Callable[[Path], None], tuple[Path, str, str]]
    cases: list[Case] = [
        ("import raw -> vhd", lambda out: ours_import_raw(raw, out, size), (raw, "raw", "vpc")),
        ("import vhd -> vhd", lambda out: ours_import_vhd(vhd, out, size), (vhd, "vpc", "vpc")),
        ("export vhd -> raw", lambda out: ours_export(vhd, out, "raw"), (vhd, "vpc", "raw")),
        ("export vhd -> vhd", lambda out: ours_export(vhd, out, "vhd"), (vhd, "vpc", "vpc")),
    ]
    results = []
    out = d / "out"
    for name, ours, (src, src_fmt, dest_fmt) in cases:
        times: dict[str, list[float]] = {"ours": [], "qemu": []}
        for _ in range(runs):
            jobs = {
                "ours": lambda: ours(out),  # noqa: B023 - called at once
                "qemu": lambda: qemu_convert(src, src_fmt, out, dest_fmt),  # noqa: B023
            }
            for who, job in jobs.items():
                os.sync()  # start each run without the previous one's dirty pages
                times[who].append(timed(job))
                out.unlink()
        results.append((name, statistics.median(times["ours"]), statistics.median(times["qemu"])))
    return results


def bench_snapshot(d: Path, size: int, runs: int = 15) -> float:
    """Median milliseconds to create a differencing child of a disk of ``size`` bytes."""
    parent = d / f"parent-{size}.vhd"
    create_dynamic(str(parent), size)
    times = []
    for n in range(runs):
        child = d / f"child-{size}-{n}.vhd"
        times.append(timed(lambda: create_dynamic(str(child), parent=str(parent))))  # noqa: B023
        child.unlink()
    parent.unlink()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="scratch directory (default: /tmp)")
    args = parser.parse_args()
    size = int(args.size_gib * GIB) // (2 * MIB) * (2 * MIB)
    with tempfile.TemporaryDirectory(prefix="bench-vhd-", dir=args.dir) as tmp:
        d = Path(tmp)
        print(f"(a) {size / GIB:g} GiB disk, half full: seconds, median of {args.runs}")
        for name, ours_s, qemu_s in bench_convert(d, size, args.runs):
            ratio = ours_s / qemu_s
            print(f"    {name:18} ours {ours_s:6.3f}  qemu {qemu_s:6.3f}  ratio {ratio:5.2f}")
        big = bench_snapshot(d, 2040 * GIB)
        small = bench_snapshot(d, GIB)
        print("(b) snapshot (differencing child), median of 15: milliseconds")
        ratio = big / small
        print(
            f"    2040 GiB parent {big:6.2f} ms  1 GiB parent {small:6.2f} ms  ratio {ratio:5.2f}"
        )


if __name__ == "__main__":
    main()
