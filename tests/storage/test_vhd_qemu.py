"""Interoperability with QEMU's VHD ("vpc") driver: each side reads what the other wrote."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from storage_helpers import MIB, fill_pattern, random_data, run

from xenstack.storage.vhd import (
    VhdImage,
    create_dynamic,
    create_fixed,
    export_raw_file,
    export_vhd_file,
    import_vhd,
    read_footer,
)
from xenstack.storage.vhd.format import geometry_for_size

pytestmark = pytest.mark.qemu


def our_read(path: Path) -> bytearray:
    with VhdImage.open(str(path), writable=False) as image:
        return image.read(0, image.virtual_size)


def qemu_raw(qemu_img: str, path: Path, fmt: str = "vpc") -> bytes:
    out = path.with_suffix(".qemu.raw")
    run(qemu_img, "convert", "-f", fmt, "-O", "raw", str(path), str(out))
    return out.read_bytes()


def qemu_info(qemu_img: str, path: Path, *fmt: str) -> dict[str, object]:
    info = json.loads(run(qemu_img, "info", *fmt, "--output=json", str(path)).stdout)
    assert isinstance(info, dict)
    return info


@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
def test_we_read_what_qemu_io_wrote(
    qemu_img: str, qemu_io: str, tmp_path: Path, subformat: str
) -> None:
    path = tmp_path / "q.vhd"
    run(qemu_img, "create", "-f", "vpc", "-o", f"subformat={subformat}", str(path), "24M")
    rng = random.Random(42)
    commands = []
    for _ in range(12):
        offset, length = rng.randrange(0, 20 * MIB), rng.randrange(1, 3 * MIB)
        commands += ["-c", f"write -P {rng.randrange(1, 256)} {offset} {length}"]
    run(qemu_io, "-f", "vpc", *commands, str(path))
    assert our_read(path) == qemu_raw(qemu_img, path)
    footer = read_footer(str(path))
    assert footer.geometry == geometry_for_size(footer.current_size)


@pytest.mark.parametrize("force_size", ["off", "on"])
def test_we_read_qemu_img_convert_output(qemu_img: str, tmp_path: Path, force_size: str) -> None:
    source = bytearray(random_data(1, 10 * MIB + 4096))
    source[2 * MIB : 6 * MIB] = bytes(4 * MIB)  # a hole for qemu to skip
    (tmp_path / "src.raw").write_bytes(source)
    options = f"subformat=dynamic,force_size={force_size}"
    run(qemu_img, "convert", "-f", "raw", "-O", "vpc", "-o", options,
        str(tmp_path / "src.raw"), str(tmp_path / "q.vhd"))  # fmt: skip
    ours = our_read(tmp_path / "q.vhd")
    assert ours[: len(source)] == source
    assert ours[len(source) :] == bytes(len(ours) - len(source))  # CHS rounding, if any
    create_dynamic(str(tmp_path / "dest.vhd"), len(ours))
    with VhdImage.open(str(tmp_path / "dest.vhd")) as image, open(tmp_path / "q.vhd", "rb") as f:
        import_vhd(f, image)  # QEMU's file as a stream
        assert image.read(0, len(ours)) == ours


@pytest.mark.parametrize("kind", ["dynamic", "fixed"])
def test_qemu_reads_what_we_wrote(qemu_img: str, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "ours.vhd"
    (create_dynamic if kind == "dynamic" else create_fixed)(str(path), 24 * MIB + 512)
    with VhdImage.open(str(path)) as image:
        model = fill_pattern(image, 8, 40, chunk=2 * MIB)
        image.resize(40 * MIB)  # also exercises a relocated BAT
        image.write(39 * MIB, b"end" * 1000)
        model.extend(bytes(40 * MIB - len(model)))
        model[39 * MIB : 39 * MIB + 3000] = b"end" * 1000
    (tmp_path / "model.raw").write_bytes(model)
    if kind == "dynamic":  # a fixed VHD has no magic at its start: QEMU cannot probe it
        assert qemu_info(qemu_img, path)["format"] == "vpc"
    assert qemu_info(qemu_img, path, "-f", "vpc")["virtual-size"] == 40 * MIB
    check = run_check(qemu_img, path)
    assert check in ("ok", "unsupported")
    run(qemu_img, "compare", "-f", "vpc", "-F", "raw", str(path), str(tmp_path / "model.raw"))


def run_check(qemu_img: str, path: Path) -> str:
    """``qemu-img check``: QEMU's vpc driver may not implement it."""
    result = subprocess.run(
        [qemu_img, "check", "-f", "vpc", str(path)], capture_output=True, text=True, check=False
    )
    if "does not support checks" in result.stderr:
        return "unsupported"
    assert result.returncode == 0, result.stderr
    return "ok"


def test_exports_compare_equal_in_qemu(
    qemu_img: str, chain3: tuple[str, bytearray], tmp_path: Path
) -> None:
    leaf, model = chain3
    (tmp_path / "model.raw").write_bytes(model)
    with VhdImage.open(leaf, writable=False) as image:
        export_raw_file(image, str(tmp_path / "export.raw"))
        export_vhd_file(image, str(tmp_path / "export.vhd"))
    model_raw = str(tmp_path / "model.raw")
    run(qemu_img, "compare", "-f", "raw", "-F", "raw", str(tmp_path / "export.raw"), model_raw)
    run(qemu_img, "compare", "-f", "vpc", "-F", "raw", str(tmp_path / "export.vhd"), model_raw)
    run(qemu_img, "compare", "-f", "vpc", "-F", "raw",
        str(tmp_path / "export.vhd"), str(tmp_path / "export.raw"))  # fmt: skip
    assert qemu_raw(qemu_img, tmp_path / "export.vhd") == model
