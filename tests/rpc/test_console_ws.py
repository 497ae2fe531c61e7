"""``GET /console`` with ``Upgrade: websocket`` over the wire: the same check as ``CONNECT``.

The refusals are answered before any upgrade (a simulated domain has no RFB to relay; a real
guest's console is read through a WebSocket in tests/xenops/qemu/test_guest_console_ws.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from xenstack.testing import RunningPool, vm_from_template


def _ws_status(pool: RunningPool, query: str, cookie: str = "") -> tuple[int, str]:
    async def attempt() -> tuple[int, str]:
        headers = {"Cookie": f"session_id={cookie}"} if cookie else {}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{pool.port}/console?{query}"
            try:
                async with http.ws_connect(url, headers=headers, protocols=("binary",)):
                    return 101, ""
            except aiohttp.WSServerHandshakeError as err:
                return err.status, ""
            except aiohttp.ClientResponseError as err:
                return err.status, err.message

    return asyncio.run(asyncio.wait_for(attempt(), 60))


def test_websocket_console_needs_a_session(session: Any, xenstack_pool: RunningPool) -> None:
    x = session.xenapi
    vm = vm_from_template(session, "ws console")
    x.VM.start(vm, False, False)
    [console] = x.VM.get_consoles(vm)
    uuid = x.console.get_uuid(console)
    assert _ws_status(xenstack_pool, f"uuid={uuid}")[0] == 403
    assert _ws_status(xenstack_pool, f"uuid={uuid}&session_id=OpaqueRef:nope")[0] == 403
    # with a session, the check passes and the opener runs: no such console is 404
    assert _ws_status(xenstack_pool, f"uuid=nope&session_id={session._session}")[0] == 404
    assert _ws_status(xenstack_pool, "uuid=nope", cookie=session._session)[0] == 404


@pytest.mark.parametrize("header", ["Upgrade: h2c", ""])
def test_a_plain_get_of_console_is_not_a_relay(xenstack_pool: RunningPool, header: str) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=60)
    conn.request("GET", "/console?uuid=x", headers=dict([header.split(": ")]) if header else {})
    assert conn.getresponse().status in (404, 405)
