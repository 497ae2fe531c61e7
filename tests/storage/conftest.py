"""Shared fixtures for the storage tests.

Tests that need QEMU's tools are marked ``qemu`` and take the ``qemu_img`` fixture: when a
tool is missing they are skipped, except under CI (``CI`` set) where they fail, so that a
CI machine without qemu-utils cannot pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from storage_helpers import MIB, fill_pattern, require_tool

from xenstack.storage.vhd import VhdImage, create_dynamic


@pytest.fixture
def qemu_img() -> str:
    return require_tool("qemu-img")


@pytest.fixture
def qemu_io() -> str:
    return require_tool("qemu-io")


@pytest.fixture
def chain3(tmp_path: os.PathLike[str]) -> Iterator[tuple[str, bytearray]]:
    """A 3-deep chain base <- mid <- leaf of 16 MiB with data in each; (leaf path, content)."""
    base, mid, leaf = (os.path.join(str(tmp_path), f"{n}.vhd") for n in ("base", "mid", "leaf"))
    create_dynamic(base, 16 * MIB)
    with VhdImage.open(base) as image:
        fill_pattern(image, 1, 20)
    create_dynamic(mid, parent=base)
    with VhdImage.open(mid) as image:
        fill_pattern(image, 2, 20)
    create_dynamic(leaf, parent=mid)
    with VhdImage.open(leaf) as image:
        model = fill_pattern(image, 3, 20)
    yield leaf, model
