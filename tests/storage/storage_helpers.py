"""Helpers shared by the storage tests (a module of its own so that tests can import it)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from xenstack.storage.vhd import VhdImage

MIB = 1024 * 1024


def require_tool(name: str) -> str:
    """The path of ``name``; skip the test if missing, or fail it under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (install qemu-utils)"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set: this test must run")
        pytest.skip(message)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool, failing the test with its output if it fails."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}: {result.stderr}{result.stdout}")
    return result


def random_data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def fill_pattern(image: VhdImage, seed: int, chunks: int, chunk: int = 256 * 1024) -> bytearray:
    """Write ``chunks`` random chunks at random places; return the expected disk content."""
    rng = random.Random(seed)
    model = bytearray(image.read(0, image.virtual_size))
    for _ in range(chunks):
        length = rng.randrange(1, chunk)
        offset = rng.randrange(0, image.virtual_size - length)
        data = rng.randbytes(length)
        image.write(offset, data)
        model[offset : offset + length] = data
    return model
