"""Talking to another host's toolstack over the XenAPI, as pool members do.

A member reaches another one at a *pool address*: ``host``, ``host:port`` or a full
``http://host:port/`` URL (XAPI always uses port 443; xenstack hosts of one machine differ by
port, so the port travels with the address). Calls are plain XML-RPC, made off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import xmlrpc.client
from typing import Any

from ...errors import ApiError

TIMEOUT = 30.0


class Unreachable(Exception):
    """The other toolstack could not be reached (refused, reset, timed out, not XML-RPC)."""


def url_of(address: str) -> str:
    """The XML-RPC URL of a pool address."""
    address = address.strip()
    if address.startswith(("http://", "https://")):
        return address if address.endswith("/") else address + "/"
    return f"http://{address}/"


def address_with_port(address: str, port: int | None) -> str:
    """A pool address that reaches ``address`` on ``port`` (the address as is without one)."""
    return f"{address}:{port}" if port else address


class ServiceFailed(Unreachable):
    """Something answered, but not with XML-RPC (an HTTP error, a garbled reply)."""


class _Transport(xmlrpc.client.Transport):
    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = TIMEOUT
        return conn


def _call(url: str, method: str, params: tuple[Any, ...]) -> Any:
    proxy = xmlrpc.client.ServerProxy(url, transport=_Transport(), allow_none=True)
    try:
        with proxy:
            reply = getattr(proxy, method)(*params)
    except (http.client.HTTPException, xmlrpc.client.Error) as exc:
        raise ServiceFailed(str(exc)) from exc
    except OSError as exc:
        raise Unreachable(str(exc)) from exc
    if not isinstance(reply, dict) or "Status" not in reply:
        raise ServiceFailed(f"not a XenAPI answer from {url}")
    if reply["Status"] == "Success":
        return reply.get("Value")
    code, *args = reply.get("ErrorDescription") or ["INTERNAL_ERROR"]
    raise ApiError(str(code), [str(a) for a in args])


async def call(address: str, method: str, *params: Any) -> Any:
    """Call ``method`` on the toolstack at ``address``; its XenAPI errors come back as
    :class:`ApiError`, failures to reach it as :class:`Unreachable`."""
    return await asyncio.to_thread(_call, url_of(address), method, params)


class RemoteSession:
    """A logged-in session on another toolstack: ``await remote.call("pool.get_all")``."""

    def __init__(self, address: str, session: str) -> None:
        self.address = address
        self.session = session

    @classmethod
    async def login(cls, address: str, username: str, password: str) -> RemoteSession:
        ref = await call(
            address, "session.login_with_password", username, password, "2.21", "xenstack"
        )
        return cls(address, str(ref))

    async def call(self, method: str, *params: Any) -> Any:
        return await call(self.address, method, self.session, *params)

    async def logout(self) -> None:
        # A session that cannot be closed dies with the master's idle timeout anyway.
        with contextlib.suppress(ApiError, Unreachable):
            await self.call("session.logout")
