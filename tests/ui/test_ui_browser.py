"""The web UI in Debian's headless Chromium, driven by Playwright with the system browser.

Log in, start a VM and watch its state change without a reload, take and revert a snapshot,
see a graph with points; an invalid session goes back to the login page; a read-only user
sees no action buttons and the API refuses the actions anyway. Screenshots are kept in
``build/artifacts/ui/`` (``XENSTACK_ARTIFACTS`` overrides it).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from rrdkit import Driver, busy_vm, get
from systools import require_tool

from xenstack.core.config import ToolstackConfig
from xenstack.testing import RunningPool, login, simulated_pool, vm_from_template

pytestmark = pytest.mark.browser
ARTIFACTS = (
    Path(
        os.environ.get("XENSTACK_ARTIFACTS")
        or Path(__file__).resolve().parents[2] / "build" / "artifacts"
    )
    / "ui"
)
TIMEOUT = 60_000  # ms: this machine's load swings


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[RunningPool]:
    config = ToolstackConfig(rrd_step=0, guest_agent_delay=0.01)
    state = tmp_path / "state"
    with simulated_pool(state, password="pw-Ui-7391", toolstack_config=config) as running:
        yield running


@pytest.fixture
def session(pool: RunningPool) -> Iterator[Any]:
    s = login(pool, label="ui-tests")
    yield s
    s.xenapi.session.logout()


@pytest.fixture
def page(browser: Any, pool: RunningPool) -> Iterator[Any]:
    """A page closed before its pool stops (its watchers would fail their fetches)."""
    # Playwright's polling evaluates strings, which the page's policy forbids: let it (the
    # policy itself is checked in test_the_page_keeps_its_content_security_policy)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def _jsonrpc(pool: RunningPool, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        pool.jsonrpc_url, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, pool: RunningPool, user: str = "root", password: str | None = None) -> None:
    page.goto(pool.url)
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password or pool.password)
    page.click("form#login button")
    page.wait_for_selector("#vms")


def test_the_page_and_api_clients_share_slash(pool: RunningPool) -> None:
    status, body = get(pool, "/", {"Accept": "text/html"})
    assert status == 200 and b'<script type="module" src="/ui/app.js">' in body
    assert get(pool, "/")[0] == 405  # not a page request, and no call either
    assert get(pool, "/ui/../toolstack.py")[0] == 404
    from xenstack.ui import has_vendor

    if has_vendor("novnc") or os.environ.get("CI"):  # .ci/run installs it with npm ci
        assert get(pool, "/ui/vendor/novnc/core/rfb.js")[0] == 200  # from npm, not the tree
    s = XenAPI.Session(pool.url)  # XML-RPC on / is unaffected
    s.xenapi.login_with_password("root", pool.password)
    s.xenapi.session.logout()


def test_the_page_keeps_its_content_security_policy(browser: Any, pool: RunningPool) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    try:
        log_in(page, pool)
        page.wait_for_selector("#hosts tr .bar > span")
        width = page.eval_on_selector("#hosts tr .bar > span", "e => e.style.width")
        assert width.endswith("%")  # set through the CSSOM, as the policy allows
    finally:
        context.close()
    assert not [m for m in messages if "Content Security Policy" in m], messages


def test_log_in_start_a_vm_snapshots_and_graphs(page: Any, pool: RunningPool, session: Any) -> None:
    x = session.xenapi
    driver = Driver(pool)
    vm = vm_from_template(session, "ui-vm")
    log_in(page, pool)
    assert page.evaluate("sessionStorage.getItem('xenstack-session')").startswith("OpaqueRef:")
    assert pool.password not in page.evaluate("JSON.stringify(sessionStorage)")  # never stored
    row = page.locator(f"tr[data-vm-row='{vm}']")
    assert row.locator("[data-state]").inner_text() == "Halted"
    shot(page, "pool")
    row.locator("button[data-op=start]").click()
    page.wait_for_function(  # the row changes through event.from, without a reload
        f"document.querySelector(\"tr[data-vm-row='{vm}'] [data-state]\").textContent === 'Running'"
    )
    assert x.VM.get_power_state(vm) == "Running"
    assert row.locator("button[data-op=hard_shutdown]").count() == 1  # allowed_operations
    assert row.locator("button[data-op=start]").count() == 0
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.5))
    driver.now = (int(time.time()) // 5) * 5 - 60
    driver.tick(12)
    page.click(f"tr[data-vm-row='{vm}'] a")
    page.wait_for_function("+document.querySelector('#graph-cpu')?.dataset.points >= 5")
    points = int(page.get_attribute("#graph-cpu", "data-points"))
    assert points >= 5
    page.fill("#snapshot-form input[name=name]", "before-change")
    page.click("#snapshot-form button")
    page.wait_for_selector("#snapshots tr[data-snapshot]")
    (snapshot,) = x.VM.get_snapshots(vm)
    assert x.VM.get_name_label(snapshot) == "before-change"
    shot(page, "vm")
    page.click(f"button[data-snap-op=revert][data-ref='{snapshot}']")
    # a disk snapshot of a running VM: reverting to it leaves the VM halted, as XAPI does
    page.wait_for_function(
        "document.querySelector('[data-field=power_state]').textContent === 'Halted'"
    )
    assert x.VM.get_power_state(vm) == "Halted"
    page.click(f"button[data-snap-op=delete][data-ref='{snapshot}']")
    page.wait_for_function("!document.querySelector('#snapshots tr[data-snapshot]')")
    assert x.VM.get_snapshots(vm) == []


def test_an_invalid_session_goes_back_to_the_login(
    page: Any, pool: RunningPool, session: Any
) -> None:
    log_in(page, pool)
    ref = page.evaluate("sessionStorage.getItem('xenstack-session')")
    other = XenAPI.Session(pool.url)
    other.xenapi.login_with_password("root", pool.password)
    other.xenapi.session.logout()
    _jsonrpc(pool, "session.logout", [ref])  # the page's session ends elsewhere
    page.reload()
    page.wait_for_selector("form#login")
    assert page.evaluate("sessionStorage.getItem('xenstack-session')") is None
    page.evaluate("sessionStorage.setItem('xenstack-session', 'OpaqueRef:forged')")
    page.reload()
    page.wait_for_selector("form#login")
    shot(page, "login")


def test_a_read_only_user_sees_no_actions_and_the_api_refuses_them(
    page: Any, pool: RunningPool, session: Any
) -> None:
    vm = busy_vm(session, "ro-vm")
    pool.call(lambda ts: ts.auth.set_user("watcher", "secret-pw", "read-only"))
    log_in(page, pool, "watcher", "secret-pw")
    row = page.locator(f"tr[data-vm-row='{vm}']")
    assert row.locator("[data-state]").inner_text() == "Running"
    assert page.locator("button[data-op]").count() == 0
    assert page.locator("a[href='#/create']").is_hidden()
    page.click(f"tr[data-vm-row='{vm}'] a")
    page.wait_for_selector("#vm-name")
    assert page.locator("#snapshot-form").count() == 0
    shot(page, "read-only")
    refused = page.evaluate(
        """async vm => {
            const body = {jsonrpc: '2.0', id: 1, method: 'VM.clean_shutdown',
                          params: [sessionStorage.getItem('xenstack-session'), vm]}
            const r = await fetch('/jsonrpc', {method: 'POST', body: JSON.stringify(body),
                                  headers: {'Content-Type': 'application/json'}})
            return (await r.json()).error.message
        }""",
        vm,
    )
    assert refused == "RBAC_PERMISSION_DENIED"
    assert session.xenapi.VM.get_power_state(vm) == "Running"


def test_create_from_a_template_and_export_with_its_task(
    page: Any, pool: RunningPool, session: Any
) -> None:
    x = session.xenapi
    log_in(page, pool)
    page.click("a[href='#/create']")
    page.wait_for_selector("#create-form")
    template = x.VM.get_by_name_label("Other install media")[0]
    page.select_option("#create-form select[name=template]", template)
    page.fill("#create-form input[name=name]", "made-in-the-browser")
    page.click("#create-form button")
    page.wait_for_selector("#vm-name")
    (vm,) = x.VM.get_by_name_label("made-in-the-browser")
    assert page.inner_text("#vm-name") == "made-in-the-browser"
    assert not x.VM.get_is_a_template(vm)
    with page.expect_download(timeout=TIMEOUT) as download:
        page.click("#export")
    path = download.value.path()
    assert Path(path).stat().st_size > 0
    label = "Export of made-in-the-browser"
    page.wait_for_function(  # the task list follows the export's task through event.from
        """label => [...document.querySelectorAll('#task-list li')].some(li =>
             li.textContent.includes(label) &&
             li.querySelector('[data-status]').textContent === 'success')""",
        arg=label,
    )
    (task,) = x.task.get_by_name_label(label)
    assert x.task.get_status(task) == "success"
    shot(page, "tasks")


def test_import_from_the_browser(
    page: Any, pool: RunningPool, session: Any, tmp_path: Path
) -> None:
    """The page's PUT /import reaches the upload path, on whatever connection Chromium reuses
    (one that served the page's files was handed to aiohttp, which answered 404)."""
    x = session.xenapi
    vm = vm_from_template(session, "carried-in")
    status, xva = get(pool, f"/export?session_id={session._session}&ref={vm}")
    assert status == 200
    (tmp_path / "carried-in.xva").write_bytes(xva)
    before = len(x.VM.get_by_name_label("carried-in"))
    log_in(page, pool)
    page.evaluate("location.hash = '#/import'")
    page.set_input_files("#import-form input[name=file]", str(tmp_path / "carried-in.xva"))
    page.click("#import-form button")
    page.wait_for_function(
        "document.querySelector('#import-status').textContent.startsWith('Sent')"
        " || document.querySelector('#import-status').textContent.startsWith('Refused')"
    )
    assert page.inner_text("#import-status").startswith("Sent"), page.inner_text("#import-status")
    deadline = time.monotonic() + 60
    while len(x.VM.get_by_name_label("carried-in")) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(x.VM.get_by_name_label("carried-in")) == before + 1
    shot(page, "import")
