"""Model test: a VHD chain under random writes, snapshots, coalesces, resizes and compactions
always reads like a plain bytearray."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xenstack.storage.vhd import VhdImage, coalesce, compact, create_dynamic
from xenstack.storage.vhd.format import SECTOR

MIB = 1024 * 1024
SIZE = 8 * MIB


class VhdChainModel(RuleBasedStateMachine):
    """The image under test is always the chain of the newest file, ``paths[-1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vhd-model-")
        self.paths = [os.path.join(self.dir, "0.vhd")]
        self.counter = 0
        create_dynamic(self.paths[0], SIZE)
        self.model = bytearray(SIZE)
        self.image = VhdImage.open(self.paths[0])

    def teardown(self) -> None:
        self.image.close()
        shutil.rmtree(self.dir)

    def _reopen(self) -> None:
        self.image.close()
        self.image = VhdImage.open(self.paths[-1])

    @rule(data=st.data(), length=st.integers(1, 3 * MIB), seed=st.integers(0, 2**32))
    def write(self, data: st.DataObject, length: int, seed: int) -> None:
        size = len(self.model)
        length = min(length, size)
        offset = data.draw(st.integers(0, size - length), label="offset")
        payload = seed.to_bytes(5, "big") * (length // 5 + 1)
        self.image.write(offset, payload[:length])
        self.model[offset : offset + length] = payload[:length]

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        size = len(self.model)
        offset = data.draw(st.integers(0, size - 1), label="offset")
        length = data.draw(st.integers(0, size - offset), label="length")
        assert self.image.read(offset, length) == self.model[offset : offset + length]

    @precondition(lambda self: len(self.paths) < 6)
    @rule()
    def snapshot(self) -> None:
        self.counter += 1
        child = os.path.join(self.dir, f"{self.counter}.vhd")
        create_dynamic(child, parent=self.paths[-1])
        self.paths.append(child)
        self._reopen()

    @precondition(lambda self: len(self.paths) > 1)
    @rule()
    def coalesce_leaf(self) -> None:
        self.image.close()
        coalesce(self.paths.pop())
        self._reopen()

    @precondition(lambda self: len(self.paths) > 2)
    @rule(data=st.data())
    def coalesce_inner(self, data: st.DataObject) -> None:
        at = data.draw(st.integers(1, len(self.paths) - 2), label="layer")
        self.image.close()
        coalesce(self.paths[at], reparent=[self.paths[at + 1]])
        del self.paths[at]
        self._reopen()

    @rule(grow=st.integers(1, 4 * MIB // SECTOR))
    def resize(self, grow: int) -> None:
        if len(self.model) + grow * SECTOR <= 16 * MIB:
            self.image.resize(len(self.model) + grow * SECTOR)
            self.model.extend(bytes(grow * SECTOR))

    @rule()
    def compact_leaf(self) -> None:
        self.image.close()
        compact(self.paths[-1])
        self._reopen()

    @invariant()
    def sizes_agree(self) -> None:
        assert self.image.virtual_size == len(self.model)
        assert self.image.depth == len(self.paths)

    def check_whole_disk(self) -> None:
        assert self.image.read(0, len(self.model)) == self.model
        covered = bytearray(len(self.model))
        for offset, length in self.image.allocated_ranges():
            covered[offset : offset + length] = self.model[offset : offset + length]
        assert covered == self.model  # outside allocated ranges everything is zero


class _WithFinalCheck(VhdChainModel):
    def teardown(self) -> None:
        try:
            self.check_whole_disk()
        finally:
            super().teardown()


TestVhdChainModel = _WithFinalCheck.TestCase
TestVhdChainModel.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
