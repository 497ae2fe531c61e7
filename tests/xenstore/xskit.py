"""A XenStore served on a Unix socket from a thread of its own, for the tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from xenstack.xenstore import XenStore
from xenstack.xenstore.server import SocketServer
from xenstack.xenstore.store import Quota

T = TypeVar("T")


class Served:
    def __init__(self, store: XenStore, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.path = path
        self.loop = loop

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's loop (the store is not thread-safe) and return its result."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(60)


@contextmanager
def served(tmp: Path, quota: Quota | None = None) -> Iterator[Served]:
    store = XenStore(quota)
    path = tmp / "run" / "xenstored" / "socket"
    server = SocketServer(store, path)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(60)
    try:
        yield Served(store, path, loop)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


def pyxs_client(path: Path) -> Any:
    import pyxs

    return pyxs.Client(unix_socket_path=str(path))
