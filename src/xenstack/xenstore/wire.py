"""Xen's XenStore wire protocol (``xen/include/public/io/xs_wire.h``).

A message is a 16-byte header ``type, req_id, tx_id, len`` (native 32-bit integers, little
endian on x86) and ``len`` bytes of payload, at most 4096. Strings in a payload end in NUL;
errors are answered as ``XS_ERROR`` with the error's name; acknowledgements are ``OK``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class Op(IntEnum):
    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESTRICT = 20  # removed from Xen's header; oxenstored's, still sent by some clients
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    RESTRICT_OLD = 128  # oxenstored's first number for XS_RESTRICT (pyxs sends it)


HEADER = struct.Struct("<IIII")
PAYLOAD_MAX = 4096
NUL = b"\x00"


@dataclass(frozen=True, slots=True)
class Message:
    op: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.op, self.req_id, self.tx_id, len(self.payload)) + self.payload


def split(payload: bytes) -> list[bytes]:
    """The NUL-terminated strings of a payload (a trailing part without NUL counts too)."""
    parts = payload.split(NUL)
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def strings(*items: str) -> bytes:
    return b"".join(item.encode() + NUL for item in items)
