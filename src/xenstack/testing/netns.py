"""Hosts in network namespaces on one machine, so that partitions and delays are real.

    with Topology("xp", ["h0", "h1", "e0", "c"]) as net:
        net.exec("h0")                  # ["ip", "netns", "exec", "xp-h0"]: a command prefix
        net.ip("h0")                    # its address, 10.77.0.<n>
        net.cut("h1")                   # h1's link down: cut from everyone
        net.drop("h1", [net.ip("e0")])  # h1 can no longer reach e0 (a blackhole route in h1)
        net.heal("h1")
        net.client(fn, *args)           # fn run in a thread inside the namespace "c"

Every node is a namespace ``<prefix>-<node>`` with a veth pair to a bridge in the namespace
``<prefix>-br``; nothing is added to the machine's own namespace (no interface, route or
firewall rule), and everything is removed, by name, at the end. Needs root.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import subprocess
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=30)


def _enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` (a thread's own, in Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


class Topology:
    def __init__(self, prefix: str, nodes: list[str]) -> None:
        self.prefix = prefix
        self.nodes = nodes
        self.bridge_ns = f"{prefix}-br"
        self._client: concurrent.futures.ThreadPoolExecutor | None = None
        self._client_node = ""
        self._dropped: dict[str, set[str]] = {}

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def ip(self, node: str) -> str:
        return f"{SUBNET}.{10 + self.nodes.index(node)}"

    def exec(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node)]

    def _veth(self, node: str) -> tuple[str, str]:
        i = self.nodes.index(node)
        return f"{self.prefix}v{i}", f"{self.prefix}b{i}"  # in the node, in the bridge ns

    def __enter__(self) -> Topology:
        try:
            _run("ip", "netns", "add", self.bridge_ns)
            br = self.bridge_ns
            _run("ip", "-n", br, "link", "add", "xpbr0", "type", "bridge")
            _run("ip", "-n", br, "link", "set", "xpbr0", "up")
            _run("ip", "-n", br, "link", "set", "lo", "up")
            for node in self.nodes:
                inner, outer = self._veth(node)
                ns = self.ns(node)
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "add", inner, "type", "veth", "peer", outer)
                _run("ip", "-n", ns, "link", "set", outer, "netns", br)
                _run("ip", "-n", ns, "addr", "add", f"{self.ip(node)}/24", "dev", inner)
                _run("ip", "-n", ns, "link", "set", inner, "up")
                _run("ip", "-n", br, "link", "set", outer, "master", "xpbr0")
                _run("ip", "-n", br, "link", "set", outer, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.shutdown(wait=False, cancel_futures=True)
        for node in self.nodes:
            _run("ip", "netns", "del", self.ns(node), check=False)
        _run("ip", "netns", "del", self.bridge_ns, check=False)

    # ---- faults ----------------------------------------------------------------------

    def cut(self, node: str) -> None:
        """The node's link to the bridge goes down: it reaches nobody, nobody reaches it."""
        _run("ip", "-n", self.bridge_ns, "link", "set", self._veth(node)[1], "down")

    def heal(self, node: str) -> None:
        """Link up again, every drop removed (of this node, and towards it)."""
        _run("ip", "-n", self.bridge_ns, "link", "set", self._veth(node)[1], "up")
        for address in self._dropped.pop(node, set()):
            _run("ip", "-n", self.ns(node), "route", "del", "blackhole", f"{address}/32",
                 check=False)  # fmt: skip

    def drop(self, node: str, to: list[str]) -> None:
        """``node`` can no longer reach the addresses ``to``: blackhole routes inside its
        own namespace (its TCP connections there fail both ways)."""
        held = self._dropped.setdefault(node, set())
        for address in to:
            _run("ip", "-n", self.ns(node), "route", "add", "blackhole", f"{address}/32")
            held.add(address)

    def delay(self, node: str, ms: int) -> None:
        """Everything ``node`` sends waits ``ms`` milliseconds (netem, where the kernel has
        it: this machine's has not, and the chaos runner refuses delays)."""
        dev, ns = self._veth(node)[0], self.ns(node)
        _run("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem", "delay", f"{ms}ms")

    # ---- the test's own calls --------------------------------------------------------

    def client(self, fn: Callable[..., T], *args: Any, node: str = "c") -> T:
        """Run ``fn(*args)`` in a thread that lives in ``node``'s namespace."""
        if self._client is None or self._client_node != node:
            self._client = concurrent.futures.ThreadPoolExecutor(
                1, initializer=_enter, initargs=(self.ns(node),)
            )
            self._client_node = node
        return self._client.submit(fn, *args).result()
