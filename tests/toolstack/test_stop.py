"""Stopping a toolstack whose pool database cannot take its last writes (etcd gone, or the
master key lost) still stops, and closes the database: acknowledged writes are safe already,
and a member elected or demoted restarts from here."""

from __future__ import annotations

import asyncio

from xenstack.db.persistence import MemoryPersistence
from xenstack.errors import ApiError
from xenstack.rpc.http import HttpConfig
from xenstack.testing import free_port
from xenstack.toolstack import Toolstack


class LostPersistence(MemoryPersistence):
    """A store whose writes stopped being acknowledged: every wait fails as etcd's does."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False
        self.closed = False

    async def durable(self, generation: int) -> None:
        if self.lost:
            raise ApiError("INTERNAL_ERROR", ["database: this host is no longer the pool master"])
        await super().durable(generation)

    def close(self) -> None:
        self.closed = True
        super().close()


def test_a_toolstack_stops_although_its_last_writes_cannot_be_made_durable() -> None:
    async def main() -> LostPersistence:
        store = LostPersistence()
        toolstack = Toolstack(None, persistence=store)
        toolstack.initialise("pw")
        await toolstack.start(HttpConfig(port=free_port()))
        with toolstack.db.transaction():  # a write still in flight when the key is lost
            toolstack.db.set("pool", toolstack.db.refs("pool")[0], "name_label", "late")
        store.lost = True
        await asyncio.wait_for(toolstack.stop(), 30)
        return store

    assert asyncio.run(main()).closed
