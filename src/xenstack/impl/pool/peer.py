"""Host-to-host calls inside a pool: JSON-RPC over TLS, authenticated by the pool secret.

A :class:`Peer` is another member's toolstack as seen from here: its address, its HTTPS port
and the certificate it presented when it joined (pinned: nothing else is trusted, so a
man in the middle on the pool's network cannot pose as the member). The caller proves it is
of the pool with the pool secret, the hidden methods' first argument. One keep-alive
connection pool per peer (aiohttp), so a forwarded operation costs one round trip.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ...errors import ApiError
from .remote import ServiceFailed, Unreachable

CALL_TIMEOUT = 30.0
# a member that does not take a TCP connection within this is unreachable (a cut link drops
# the SYN: without it a call to a partitioned host waits out its whole CALL_TIMEOUT)
CONNECT_TIMEOUT = 3.0


@dataclass(slots=True)
class Peer:
    """A member toolstack reached over TLS (or plain HTTP on loopback when it has no
    HTTPS port: tests of single processes only)."""

    address: str
    port: int
    tls_port: int = 0
    certificate: str = ""  # PEM, pinned
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.tls_port:
            return f"https://{self.address}:{self.tls_port}/jsonrpc"
        return f"http://{self.address}:{self.port}/jsonrpc"

    def _context(self) -> ssl.SSLContext | bool:
        if not self.tls_port:
            return False
        if self._ssl is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.certificate)
            ctx.check_hostname = False  # the pinned certificate is the identity
            self._ssl = ctx
        return self._ssl

    async def call(self, method: str, *params: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """``method(*params)`` on the peer; its XenAPI errors as :class:`ApiError`."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(json_serialize=lambda v: orjson.dumps(v).decode())
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
        try:
            async with self._session.post(
                self.url,
                json=body,
                ssl=self._context(),
                timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)
                ),
            ) as reply:
                if reply.status != 200:
                    raise ServiceFailed(f"HTTP {reply.status} from {self.url}")
                doc = orjson.loads(await reply.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{self.url}: {exc!r}") from exc
        except orjson.JSONDecodeError as exc:
            raise ServiceFailed(f"not JSON from {self.url}") from exc
        error = doc.get("error")
        if error:
            raise ApiError(str(error.get("message")), [str(a) for a in error.get("data", [])])
        return doc.get("result")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @classmethod
    def of(cls, where: dict[str, Any]) -> Peer:
        """A peer from what the master keeps of a member (:mod:`.membership`)."""
        return cls(
            str(where["address"]),
            int(where.get("port", 0)),
            int(where.get("tls_port", 0) or 0),
            str(where.get("certificate", "")),
        )
