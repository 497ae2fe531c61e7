"""Flows written over OpenFlow 1.3 on a bridge's management socket, not by a process each.

``ovs-ofctl add-flows`` costs a process start (tens of milliseconds on a loaded host) per
call, which was most of a VIF plug. ``ovs-vswitchd`` serves every bridge's OpenFlow on
``RUNDIR/BRIDGE.mgmt`` (what ``ovs-ofctl BRIDGE`` talks to): a :class:`Channel` keeps that
connection open, sends the flows as ``FLOW_MOD`` messages followed by a ``BARRIER``, and
returns when the switch has answered the barrier, i.e. when the flows are in place, or raises
with the switch's error. The messages are packed here with :mod:`struct` (OpenFlow 1.3's
fixed layout: the ``python-openflow`` library packs one in ~2 ms, more than the process it
replaces would take for a VIF's fourteen).

Flows are given in the ``ovs-ofctl`` text :mod:`..flows` writes; :func:`flow_mod` turns the
fields it uses into OXM match fields, in prerequisite order as Open vSwitch requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import flows as flowlib
from ..model import SwitchError

VERSION = 0x04  # OpenFlow 1.3
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY = 0, 1, 2, 3
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
HEADER = struct.Struct("!BBHI")
TABLE_ALL = 0xFF
ALL_ONES = 0xFFFFFFFFFFFFFFFF
FLOW_MOD, OFPFC_ADD, OFPFC_DELETE = 14, 0, 3
NO_BUFFER, PORT_ANY, GROUP_ANY, PORT_NORMAL = 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFA
# header, cookie, cookie_mask, table, command, idle and hard timeouts, priority, buffer_id,
# out_port, out_group, flags, pad
FLOW_MOD_BODY = struct.Struct("!QQBBHHHIIIH2x")
APPLY_ACTIONS, OUTPUT = 4, 0
OXM_BASIC = 0x8000


class F:
    """OpenFlow 1.3's basic OXM field numbers (the ones written here)."""

    IN_PORT, ETH_DST, ETH_SRC, ETH_TYPE, IP_PROTO = 0, 3, 4, 5, 10
    IPV4_SRC, IPV4_DST, TCP_SRC, TCP_DST, UDP_SRC, UDP_DST = 11, 12, 13, 14, 15, 16
    ICMPV4_TYPE, ARP_OP, ARP_SPA, ARP_TPA, ARP_SHA = 19, 21, 22, 23, 24
    IPV6_SRC, IPV6_DST, ICMPV6_TYPE, IPV6_ND_TARGET, IPV6_ND_SLL = 26, 27, 29, 31, 32


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _ip6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def _u(size: int) -> Callable[[str], bytes]:
    return lambda text: int(text, 0).to_bytes(size, "big")


# OXM fields by ovs-ofctl name, in the order Open vSwitch checks their prerequisites
_L4 = {6: (F.TCP_SRC, F.TCP_DST), 17: (F.UDP_SRC, F.UDP_DST)}
_ORDER = (
    "in_port",
    "dl_dst",
    "dl_src",
    "dl_type",
    "nw_proto",
    "nw_src",
    "nw_dst",
    "arp_op",
    "arp_sha",
    "ipv6_src",
    "ipv6_dst",
    "tp_src",
    "tp_dst",
    "icmp_type",
    "nd_target",
    "nd_sll",
)


def _field(name: str, value: str, match: dict[str, str]) -> tuple[int, bytes]:
    """The OXM field and value of the ovs-ofctl field ``name`` in ``match``."""
    dl_type = int(match.get("dl_type", "0"), 0)
    proto = int(match.get("nw_proto", "0"), 0)
    arp = dl_type == flowlib.ETH_ARP
    simple: dict[str, tuple[int, Callable[[str], bytes]]] = {
        "in_port": (F.IN_PORT, _u(4)),
        "dl_dst": (F.ETH_DST, _mac),
        "dl_src": (F.ETH_SRC, _mac),
        "dl_type": (F.ETH_TYPE, _u(2)),
        "nw_proto": (F.IP_PROTO, _u(1)),
        "nw_src": (F.ARP_SPA if arp else F.IPV4_SRC, _ip4),
        "nw_dst": (F.ARP_TPA if arp else F.IPV4_DST, _ip4),
        "arp_op": (F.ARP_OP, _u(2)),
        "arp_sha": (F.ARP_SHA, _mac),
        "ipv6_src": (F.IPV6_SRC, _ip6),
        "ipv6_dst": (F.IPV6_DST, _ip6),
        "nd_target": (F.IPV6_ND_TARGET, _ip6),
        "nd_sll": (F.IPV6_ND_SLL, _mac),
    }
    if name in simple:
        oxm, encode = simple[name]
        return oxm, encode(value)
    if name in ("tp_src", "tp_dst") and proto in _L4:
        return _L4[proto][0 if name == "tp_src" else 1], _u(2)(value)
    if name == "icmp_type" and proto == flowlib.ICMPV6:
        return F.ICMPV6_TYPE, _u(1)(value)
    if name == "icmp_type" and proto == 1:
        return F.ICMPV4_TYPE, _u(1)(value)
    raise SwitchError(f"no OpenFlow 1.3 field for {name}={value}")


def _oxm(field: int, value: bytes) -> bytes:
    return struct.pack("!I", (OXM_BASIC << 16) | (field << 9) | len(value)) + value


def _match(fields: dict[str, str]) -> bytes:
    """An OXM ``ofp_match``, padded to 8 bytes."""
    unknown = set(fields) - set(_ORDER)
    if unknown:
        raise SwitchError(f"no OpenFlow 1.3 field for {', '.join(sorted(unknown))}")
    oxms = b"".join(_oxm(*_field(n, fields[n], fields)) for n in _ORDER if n in fields)
    body = struct.pack("!HH", 1, 4 + len(oxms)) + oxms
    return body + b"\0" * (-len(body) % 8)


def _flow_mod(xid: int, body: tuple[int, ...], match: bytes, instructions: bytes) -> bytes:
    rest = FLOW_MOD_BODY.pack(*body) + match + instructions
    return HEADER.pack(VERSION, FLOW_MOD, HEADER.size + len(rest), xid) + rest


def flow_mod(flow: str, xid: int) -> bytes:
    """An ``add-flow`` text (cookie, priority, match, ``normal`` or ``drop``) as a FLOW_MOD."""
    priority, fields, actions = flowlib.parse(flow)
    cookie = 0
    for item in flow.replace(" ", ",").split(","):
        if item.startswith("cookie="):
            cookie = int(item.split("=", 1)[1], 0)
    if actions in ("", "drop"):
        instructions = b""
    elif actions == "normal":
        output = struct.pack("!HHIH6x", OUTPUT, 16, PORT_NORMAL, 0)
        instructions = struct.pack("!HH4x", APPLY_ACTIONS, 8 + len(output)) + output
    else:
        raise SwitchError(f"actions {actions!r} are not written over OpenFlow here")
    body = (cookie, 0, 0, OFPFC_ADD, 0, 0, priority, NO_BUFFER, PORT_ANY, GROUP_ANY, 0)
    return _flow_mod(xid, body, _match(fields), instructions)


def delete_mod(xid: int, in_port: int, cookie: int) -> bytes:
    """A FLOW_MOD deleting every flow of ``in_port`` with exactly ``cookie``
    (``del-flows BR in_port=N,cookie=C/-1``)."""
    body = (cookie, ALL_ONES, TABLE_ALL, OFPFC_DELETE, 0, 0, 0, NO_BUFFER, PORT_ANY, GROUP_ANY, 0)
    return _flow_mod(xid, body, _match({"in_port": str(in_port)}), b"")


def _flow_mod_of(flow: str, xid: int) -> bytes:
    return flow_mod(flow, xid)


class Unavailable(SwitchError):
    """No OpenFlow 1.3 here: no socket, or a bridge that allows only older versions (the
    caller falls back to ``ovs-ofctl``)."""


class Closed(Unavailable):
    """The connection closed before the switch answered."""


class Channel:
    """One bridge's OpenFlow connection (opened at first use, again after a failure)."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._xid = 1
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _next(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF or 1
        return self._xid

    async def _open(self) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection of another (finished) event loop: drop it
            self._writer, self._reader_task, self._waiting = None, None, {}
            self._loop, self._lock = loop, asyncio.Lock()
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            raise Unavailable(f"no OpenFlow at {self.path}: {exc}") from None
        writer.write(HEADER.pack(VERSION, HELLO, HEADER.size, self._next()))
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader, writer))
        return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        failure: BaseException = Closed(f"OpenFlow connection {self.path} closed")
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                version, kind, length, xid = HEADER.unpack(head)
                body = await reader.readexactly(length - HEADER.size)
                if kind == HELLO and version < VERSION:
                    raise Unavailable(f"{self.path} speaks OpenFlow only up to 0x{version:02x}")
                if kind == ECHO_REQUEST:
                    writer.write(HEADER.pack(VERSION, ECHO_REPLY, length, xid) + body)
                elif kind == ERROR:
                    self._settle(xid, self._error(body))
                elif kind == BARRIER_REPLY:
                    self._settle(xid, None)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except SwitchError as exc:
            failure = exc
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(failure)
            self._waiting.clear()

    def _error(self, body: bytes) -> SwitchError:
        kind, code = struct.unpack("!HH", body[:4]) if len(body) >= 4 else (0, 0)
        return SwitchError(f"OpenFlow error type {kind} code {code} on {self.path.stem}")

    def _settle(self, xid: int, error: SwitchError | None) -> None:
        """The answer to ``xid``: an error fails the barrier that follows it."""
        if error is not None:
            # errors carry the failed message's xid; its batch's barrier is the next one
            later = sorted(x for x in self._waiting if x > xid)
            future = self._waiting.get(later[0]) if later else None
        else:
            future = self._waiting.get(xid)
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def send(self, make: Sequence[Callable[[int], bytes]], timeout: float = 60.0) -> None:
        """Send the messages ``make`` builds (each given its xid), then a barrier; return
        once the switch has applied them all. A connection that closed meanwhile (the
        bridge was made again, vswitchd restarted) is opened again and the messages sent
        once more: adding a flow twice and deleting twice leave the same table."""
        try:
            await self._send(make, timeout)
        except Closed:
            await self._send(make, timeout)

    async def _send(self, make: Sequence[Callable[[int], bytes]], timeout: float) -> None:
        if self._loop is not asyncio.get_running_loop():
            await self._open()
        async with self._lock:
            writer = await self._open()
            data = b"".join(build(self._next()) for build in make)
            barrier = self._next()
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[barrier] = future
            if writer.is_closing():
                self._waiting.pop(barrier, None)
                self._writer = None
                raise Closed(f"OpenFlow connection {self.path} closed")
            writer.write(data + HEADER.pack(VERSION, BARRIER_REQUEST, HEADER.size, barrier))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SwitchError(
                f"{self.path.stem} did not answer OpenFlow in {timeout:.0f} s"
            ) from None
        finally:
            self._waiting.pop(barrier, None)

    async def add_flows(self, flows: Sequence[str]) -> None:
        await self.send([functools.partial(_flow_mod_of, flow) for flow in flows])

    async def del_port_flows(self, in_port: int, cookie: int = 1) -> None:
        await self.send([functools.partial(delete_mod, in_port=in_port, cookie=cookie)])

    async def close(self) -> None:
        task, self._reader_task = self._reader_task, None
        if self._loop is not asyncio.get_running_loop():  # its loop is gone, and it with it
            self._writer = None
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
