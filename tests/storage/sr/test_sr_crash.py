"""kill -9 during snapshots and GC of a file SR: after a restart every VDI reads its data."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xenstack.storage.sr import FileSr
from xenstack.storage.sr.gc import collect
from xenstack.storage.vhd import VhdImage

MIB = 1 << 20
VDI = "00000000-0000-4000-8000-000000000001"

WORKER = """
import os, random, sys, uuid
from xenstack.storage.sr import FileSr
from xenstack.storage.sr.gc import collect
sr = FileSr(sys.argv[1])
snaps = [n for n in sr.nodes() if n != sys.argv[2] and not sr.is_hidden(n)]
print("go", flush=True)
while True:
    new = str(uuid.uuid4())
    sr.snapshot(sys.argv[2], new)
    snaps.append(new)
    if len(snaps) > 2:
        sr.delete(snaps.pop(random.randrange(len(snaps))))
    collect(sr)
"""


def _pattern() -> bytes:
    return bytes(range(256)) * (4 * MIB // 256)


def _check(sr: FileSr, expected: bytes) -> None:
    sr.repair()
    collect(sr)
    for node in sr.nodes():
        with VhdImage.open(sr.path(node), writable=False) as image:
            data = image.read(0, len(expected))
        if not sr.is_hidden(node):
            assert data == expected, node


@pytest.mark.slow
def test_kill_during_snapshot_and_gc_keeps_every_vdi_intact(tmp_path: Path) -> None:
    sr = FileSr(str(tmp_path / "sr"))
    sr.attach()
    sr.create(VDI, 16 * MIB)
    expected = _pattern()
    with VhdImage.open(sr.path(VDI)) as image:
        image.write(3 * MIB, expected[3 * MIB :])
        image.write(0, expected[: 3 * MIB])
    rng = random.Random(1)
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, sr.directory, VDI],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        _check(sr, expected)
    assert not [n for n in sr.nodes() if sr.is_hidden(n) and n not in _parents_in_use(sr)]


def _parents_in_use(sr: FileSr) -> set[str]:
    from xenstack.storage.sr.gc import _parents

    return {p for p in _parents(sr).values() if p is not None}
