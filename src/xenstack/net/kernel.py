"""Links made with the kernel's own calls, from a thread living in the switch's namespace.

A tap is created persistent through ``/dev/net/tun`` and prepared with ``ioctl``s (flags, MAC,
MTU) and a ``/proc/sys`` write, with no process started: a VIF plug's kernel part costs well
under a millisecond. The calls run on one worker thread that entered the namespace with
``setns`` when it started (a thread's namespace is its own), so sockets, taps and ``/proc/sys``
paths it opens are the namespace's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFMTU, SIOCSIFHWADDR = 0x8922, 0x8924
IFF_UP, IFF_NOARP, IFF_MULTICAST = 0x1, 0x80, 0x1000
ARPHRD_ETHER = 1


def enter_netns(netns: str) -> None:
    """Move the calling thread into ``netns`` ("" leaves it where it is)."""
    if not netns:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
    finally:
        os.close(fd)


class NetnsWorker:
    """One thread in ``netns`` that runs the calls given to :meth:`call`, in order."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1,
                thread_name_prefix="xenstack-netns",
                initializer=enter_netns,
                initargs=(self.netns,),
            )
        return self._pool

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _ifreq(name: str, data: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + data.ljust(24, b"\0")


def tap_create(name: str) -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(
            fd, TUNSETIFF, _ifreq(name, struct.pack("H", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        )
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def tap_delete(name: str) -> bool:
    """Remove the persistent tap ``name``; False when there is none."""
    try:
        socket.if_nametoindex(name)  # this thread's namespace (sysfs may show another)
    except OSError:
        return False
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(
            fd, TUNSETIFF, _ifreq(name, struct.pack("H", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        )
        fcntl.ioctl(fd, TUNSETPERSIST, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def prepare_vif(name: str, mac: str, mtu: int, ipv6_off: bool) -> None:
    """XenServer's vif-script treatment: arp off, multicast off, MAC, MTU, no IPv6, up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        hw = struct.pack("H", ARPHRD_ETHER) + bytes.fromhex(mac.replace(":", ""))
        fcntl.ioctl(sock, SIOCSIFHWADDR, _ifreq(name, hw))
        fcntl.ioctl(sock, SIOCSIFMTU, _ifreq(name, struct.pack("i", mtu)))
        if ipv6_off:
            try:
                with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                    f.write("1")
            except FileNotFoundError:
                pass  # no IPv6 in this kernel
        flags = struct.unpack("H", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name))[16:18])[0]
        flags = (flags | IFF_UP | IFF_NOARP) & ~IFF_MULTICAST
        fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags)))


def set_mtu(name: str, mtu: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFMTU, _ifreq(name, struct.pack("i", mtu)))


def set_noarp(name: str) -> bool:
    """``arp off`` on ``name``; False when there is no such link here."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("H", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name))[16:18])[0]
        if not flags & IFF_NOARP:
            fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_NOARP)))
    return True
