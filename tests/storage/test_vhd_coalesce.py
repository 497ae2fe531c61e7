"""Coalesce: merging, re-parenting, the journal, and recovery after kill -9."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storage_helpers import MIB, fill_pattern

from xenstack.storage.errors import VhdChainError
from xenstack.storage.vhd import VhdImage, coalesce, create_dynamic, recover
from xenstack.storage.vhd.coalesce import journal_path

BLOCK = 64 * 1024  # small blocks: many of them, so a coalesce takes a while to kill


def make_chain(d: Path, size: int = 8 * MIB, block_size: int = 2 * MIB) -> bytearray:
    """base <- mid <- leaf in ``d``, each with data; return what leaf reads."""
    create_dynamic(str(d / "base.vhd"), size, block_size=block_size)
    with VhdImage.open(str(d / "base.vhd")) as image:
        fill_pattern(image, 1, 40)
    create_dynamic(str(d / "mid.vhd"), parent=str(d / "base.vhd"), block_size=block_size)
    with VhdImage.open(str(d / "mid.vhd")) as image:
        fill_pattern(image, 2, 400, chunk=8192)  # fragmented bitmaps
        fill_pattern(image, 3, 10, chunk=MIB)
    create_dynamic(str(d / "leaf.vhd"), parent=str(d / "mid.vhd"), block_size=block_size)
    with VhdImage.open(str(d / "leaf.vhd")) as image:
        return fill_pattern(image, 4, 30)


def read_all(path: Path) -> bytearray:
    with VhdImage.open(str(path), writable=False) as image:
        return image.read(0, image.virtual_size)


def test_coalesce_leaf_into_parent(tmp_path: Path) -> None:
    model = make_chain(tmp_path)
    parent = coalesce(str(tmp_path / "leaf.vhd"))
    assert parent == str(tmp_path / "mid.vhd")
    assert read_all(tmp_path / "mid.vhd") == model
    assert sorted(os.listdir(tmp_path)) == ["base.vhd", "mid.vhd"]


def test_coalesce_inner_layer_reparents_its_child(tmp_path: Path) -> None:
    model = make_chain(tmp_path)
    base_before = read_all(tmp_path / "base.vhd")
    coalesce(str(tmp_path / "mid.vhd"), reparent=[str(tmp_path / "leaf.vhd")])
    assert not (tmp_path / "mid.vhd").exists()
    with VhdImage.open(str(tmp_path / "leaf.vhd")) as image:
        assert image.depth == 2
        assert image.read(0, image.virtual_size) == model
    assert read_all(tmp_path / "base.vhd") != base_before


def test_coalesce_grows_a_smaller_parent(tmp_path: Path) -> None:
    create_dynamic(str(tmp_path / "base.vhd"), 2 * MIB)
    create_dynamic(str(tmp_path / "leaf.vhd"), 6 * MIB, parent=str(tmp_path / "base.vhd"))
    with VhdImage.open(str(tmp_path / "leaf.vhd")) as image:
        model = fill_pattern(image, 5, 20)
    coalesce(str(tmp_path / "leaf.vhd"))
    assert read_all(tmp_path / "base.vhd") == model


def test_coalesce_refuses_bad_requests_before_changing_anything(tmp_path: Path) -> None:
    make_chain(tmp_path)
    with pytest.raises(VhdChainError, match="no parent"):
        coalesce(str(tmp_path / "base.vhd"))
    with pytest.raises(VhdChainError, match="not a child"):
        coalesce(str(tmp_path / "leaf.vhd"), reparent=[str(tmp_path / "mid.vhd")])
    assert sorted(os.listdir(tmp_path)) == ["base.vhd", "leaf.vhd", "mid.vhd"]


@pytest.mark.parametrize("step", ["copy", "relink", "delete"])
def test_recover_finishes_from_any_recorded_step(tmp_path: Path, step: str) -> None:
    model = make_chain(tmp_path)
    mid, leaf = str(tmp_path / "mid.vhd"), str(tmp_path / "leaf.vhd")
    if step != "copy":  # what a crash after that step's predecessor leaves behind
        from xenstack.storage.vhd.coalesce import _copy_into_parent
        from xenstack.storage.vhd.ops import set_parent

        _copy_into_parent(mid, str(tmp_path / "base.vhd"))
        if step == "delete":
            set_parent(leaf, str(tmp_path / "base.vhd"))
            os.unlink(mid)
    record = {"child": mid, "parent": str(tmp_path / "base.vhd"), "reparent": [leaf], "step": step}
    Path(journal_path(mid)).write_text(json.dumps(record))
    Path(journal_path(mid) + ".tmp").write_text("half-written")
    assert recover(str(tmp_path)) == [mid]
    assert sorted(os.listdir(tmp_path)) == ["base.vhd", "leaf.vhd"]
    assert read_all(tmp_path / "leaf.vhd") == model


_COALESCE = """
import sys
from xenstack.storage.vhd import coalesce
print("go", flush=True)
coalesce(sys.argv[1], reparent=[sys.argv[2]])
print("done", flush=True)
"""
_RECOVER = """
import sys
from xenstack.storage.vhd import recover
print("go", flush=True)
recover(sys.argv[1])
print("done", flush=True)
"""


def run_and_kill(script: str, args: list[str], delay: float) -> bool:
    """Run ``script`` in a fresh interpreter, SIGKILL it ``delay`` s after it starts work.

    Returns True if it was killed before finishing.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"go\n"
    time.sleep(delay)
    proc.kill()
    out, err = proc.communicate()
    if proc.returncode not in (0, -9):
        pytest.fail(f"worker failed: {err.decode()}")
    return b"done" not in out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_coalesce_survives_kill_9_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(1234)
    calibrate = tmp_path / "calibrate"
    calibrate.mkdir()
    make_chain(calibrate, 16 * MIB, BLOCK)
    started = time.perf_counter()
    coalesce(str(calibrate / "mid.vhd"), reparent=[str(calibrate / "leaf.vhd")])
    duration = time.perf_counter() - started
    interrupted = 0
    for trial in range(8):
        d = tmp_path / f"trial{trial}"
        d.mkdir()
        model = make_chain(d, 16 * MIB, BLOCK)
        args = [str(d / "mid.vhd"), str(d / "leaf.vhd")]
        interrupted += run_and_kill(_COALESCE, args, rng.uniform(0, duration * 1.2))
        for _ in range(rng.randrange(3)):  # crash during recovery too
            run_and_kill(_RECOVER, [str(d)], rng.uniform(0, duration))
        recover(str(d))
        if (d / "mid.vhd").exists():  # killed before the journal existed: nothing happened
            assert read_all(d / "mid.vhd") is not None
            coalesce(*args[:1], reparent=args[1:])
        assert sorted(os.listdir(d)) == ["base.vhd", "leaf.vhd"]
        assert read_all(d / "leaf.vhd") == model
    assert interrupted >= 3, "kills should mostly land while the coalesce runs"
