"""A real guest's console in the browser: RFB over a WebSocket on ``/console``.

The test guest boots on the QEMU backend; a WebSocket client (aiohttp's) reads the VNC
server's ``RFB 003.00x`` greeting through ``/console`` with a session and is refused without
one; then the UI in headless Chromium opens the VM's page and noVNC draws its screen on the
canvas (a screenshot is kept in ``build/artifacts/ui/console.png``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import WAIT, console, install
from systools import require_tool

from xenstack.testing.guests import QemuHost

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]
pytestmark.append(pytest.mark.browser)
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("XENSTACK_ARTIFACTS") or ROOT / "build" / "artifacts") / "ui"


class Stream:
    """RFB read from WebSocket messages, however the relay cuts them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.buffer = ws, b""

    async def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            message = await self.ws.receive(timeout=WAIT)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            self.buffer += message.data
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def greeting(host: QemuHost, location: str, session: str) -> tuple[int, bytes, tuple[int, int]]:
    """The handshake's status; once upgraded, the server's version and its screen's size
    (RFB 3.8 without authentication, as QEMU serves a domain's console)."""
    query = location.split("?", 1)[1] + (f"&session_id={session}" if session else "")

    async def read() -> tuple[int, bytes, tuple[int, int]]:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{host.server.port}/console?{query}"
            try:
                async with http.ws_connect(url, protocols=("binary",)) as ws:
                    rfb = Stream(ws)
                    version = await rfb.read(12)
                    await ws.send_bytes(b"RFB 003.008\n")
                    types = await rfb.read((await rfb.read(1))[0])
                    assert 1 in types, types  # None
                    await ws.send_bytes(b"\x01")
                    assert await rfb.read(4) == b"\0\0\0\0"  # SecurityResult: OK
                    await ws.send_bytes(b"\x01")  # ClientInit: shared
                    init = await rfb.read(4)
                    return 101, version, (init[0] << 8 | init[1], init[2] << 8 | init[3])
            except aiohttp.WSServerHandshakeError as err:
                return err.status, b"", (0, 0)

    return asyncio.run(asyncio.wait_for(read(), WAIT))


def test_a_guest_console_over_websocket_and_in_the_browser(
    host: QemuHost, sdk: Any, x: Any
) -> None:
    vm = install(x, "xr-console")
    x.VM.start(vm, False, False)
    console(host, x, vm).wait_for("XSG-READY")
    [rfb] = [c for c in x.VM.get_consoles(vm) if x.console.get_protocol(c) == "rfb"]
    location = x.console.get_location(rfb)
    status, version, size = greeting(host, location, sdk._session)
    assert status == 101 and version.startswith(b"RFB 003.00"), (status, version)
    assert size[0] >= 320 and size[1] >= 200, size
    assert greeting(host, location, "")[0] == 403

    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(bypass_csp=True).new_page()
            page.set_default_timeout(WAIT * 1000)
            page.goto(host.url)
            page.fill("input[name=user]", "root")
            page.fill("input[name=password]", host.password)
            page.click("form#login button")
            page.wait_for_selector("#vms")
            page.evaluate(f"location.hash = '#/vm/{vm}'")
            page.wait_for_selector("#console-status[data-state=connected]")
            # noVNC sizes its canvas to the guest's screen and paints each update into it:
            # painted pixels are opaque (the guest's text screen is black: its console is
            # the serial line), an untouched canvas is transparent
            page.wait_for_function(
                """([w, h]) => { const c = document.querySelector('#console-screen canvas')
                  if (!c || c.width !== w || c.height !== h) return false
                  const d = c.getContext('2d').getImageData(0, 0, w, h).data
                  for (let i = 3; i < d.length; i += 4 * 61) if (d[i] !== 255) return false
                  return true }""",
                arg=list(size),
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.locator("#console-screen").screenshot(path=str(ARTIFACTS / "console.png"))
        finally:
            browser.close()
    x.VM.hard_shutdown(vm)
