"""Taking a handed-over connection back from the web application for an upload or CONNECT.

Once :mod:`.protocol` hands a connection to aiohttp (a UI page, a download), aiohttp parses
everything that follows on it; but uploads (``PUT /import``...) and ``CONNECT /console`` are
served only by the protocol, straight off the socket. A browser reuses its keep-alive
connections: after a ``GET`` of a UI page, its ``PUT /import`` arrives on the same connection
and aiohttp, which has no such route, answered 404. :class:`HandBack` sits between the
transport and aiohttp's protocol and follows the request boundaries with its own parser;
a request that begins a read, for a path served by the protocol, with its head complete in
that read, is given to a fresh protocol connection instead (aiohttp is told the connection
is gone, and releases it without closing the transport). A request pipelined into the middle
of a read, or after an upgrade, stays with aiohttp. A client that pipelines (browsers do
not) could have its upload taken back while aiohttp still answers the request before it; that
answer is then lost, and the upload served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container

import httptools

from .limits import Counted

MAX_URL = 1 << 16  # past this the parser stops following (aiohttp's own limit is lower)


class HandBack(Counted):
    """A handed-over connection's protocol, watching for requests the protocol must serve."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        release: Callable[[], None] | None,
        served: Container[tuple[bytes, bytes]],
        fresh: Callable[[], asyncio.Protocol],
    ) -> None:
        super().__init__(inner, release or (lambda: None))
        self.served = served  # (method, path) pairs the protocol serves itself
        self.fresh = fresh  # a new protocol connection
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.between = False  # the last request seen is complete (the first is aiohttp's)
        self.url = b""
        self.take = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            at_start, self.take = self.between, False
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:  # an upgrade, or left to aiohttp to refuse
                self.parser = None
            if self.take and at_start:
                self._take_back(data)
                return
        self.inner.data_received(data)

    def _take_back(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.parser = None
        # aiohttp's handler closes the transport it holds when told the connection is lost:
        # it holds none once it is idle and let go of, and it then just lets go
        if hasattr(self.inner, "transport"):
            self.inner.transport = None
        self.connection_lost(None)  # frees the place under the caps
        protocol = self.fresh()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    # ---- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.between = False
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:  # aiohttp refuses such a line; nothing to follow then
            raise ValueError("request line too long to follow")

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        path = self.url.split(b"?", 1)[0].rstrip(b"/")
        self.take = (self.parser.get_method(), path) in self.served

    def on_message_complete(self) -> None:
        self.between = True
