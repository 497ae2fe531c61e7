"""Plug-ins as XAPI runs them: the four defects of issue 13, each shown over the wire with
the XenAPI SDK, and the dom0 environment (clean, with the dom0 tools and the inventory)."""

from __future__ import annotations

import base64
import json
import os
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sim_helpers import pool_master

from xenstack.testing import RunningPool, failure, simulated_pool


def _plugin(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


PY = "#!/usr/bin/env python3\nimport os, subprocess, sys\nimport XenAPIPlugin\n"

SHELL_PLUGIN = (
    PY
    + """
def run(session, args):
    out = subprocess.run(args["cmd"], shell=True, capture_output=True, text=True)
    return f"{out.returncode}\\n{out.stdout}{out.stderr}"

def env(session, args):
    return "\\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))

if __name__ == "__main__":
    XenAPIPlugin.dispatch({"run": run, "env": env})
"""
)

TWICE = (
    "#!/bin/sh\n"
    "for v in first second; do\n"
    'printf \'<?xml version="1.0"?><methodResponse><params><param><value><struct>'
    "<member><name>Status</name><value>Success</value></member>"
    "<member><name>Value</name><value>%s</value></member>"
    "</struct></value></param></params></methodResponse>\\n' $v\n"
    "done\n"
)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xs-dom0") / "state"
    _plugin(state / "plugins", "shell", SHELL_PLUGIN)
    _plugin(state / "plugins", "twice", TWICE)
    os.environ["XS_TEST_SECRET"] = "must-not-leak"
    try:
        with simulated_pool(state) as running:
            yield running
    finally:
        os.environ.pop("XS_TEST_SECRET", None)


@pytest.fixture
def x(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "xs-tests")
    yield session.xenapi
    session.xenapi.session.logout()


def _run(x: Any, cmd: str) -> tuple[int, str]:
    out = x.host.call_plugin(pool_master_of(x), "shell", "run", {"cmd": cmd})
    status, _, text = out.partition("\n")
    return int(status), text


def pool_master_of(x: Any) -> str:
    return str(x.pool.get_master(x.pool.get_all()[0]))


def test_the_first_of_two_responses_is_the_answer(x: Any) -> None:
    # Before: "failed to parse plugin output" (XENAPI_PLUGIN_FAILURE)
    assert x.host.call_plugin(pool_master_of(x), "twice", "any", {}) == "first"


@pytest.mark.parametrize(
    "text",
    [
        base64.encodebytes(os.urandom(200)).decode().replace("\n", "\r\n"),  # MIME lines
        base64.b64encode(b"\x00\xff" * 50).decode(),
        "quotes \" and ' and <tags> & ampersands",
        "non-ASCII: héllo ünïcode ☃ 日本",
        "tab\tnewline\ncarriage\rreturn",
    ],
)
def test_every_string_argument_reaches_the_plugin_exactly(
    x: Any, pool: RunningPool, text: str
) -> None:
    # Before: a CR (so base64 in MIME lines) arrived as LF: the XML was not what was sent.
    # JSON-RPC carries the argument to the toolstack untouched; the rest is the plug-in's way.
    host = pool_master_of(x)
    session = _login_json(pool)
    assert _json(pool, "host.call_plugin", session, host, "echo", "echo", {"text": text}) == text
    got = _json(pool, "host.call_plugin", session, host, "echo", "args", {"k": text})
    assert got == f"k={text}"
    if "\r" not in text:  # the XML-RPC SDK itself sends a CR raw (read back as LF)
        assert x.host.call_plugin(host, "echo", "echo", {"text": text}) == text


def _json(pool: RunningPool, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    request = urllib.request.Request(
        pool.jsonrpc_url, body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "error" not in answer or answer["error"] is None, answer
    return answer["result"]


def _login_json(pool: RunningPool) -> str:
    return str(_json(pool, "session.login_with_password", "root", pool.password, "1.0", "xs"))


def test_xe_in_a_plugin_reaches_the_calling_toolstack(x: Any) -> None:
    # Before: xe found no server (it looked for ./state) and could not log in
    status, out = _run(x, "xe host-list params=uuid --minimal")
    assert status == 0, out
    assert set(out.strip().split(",")) == {x.host.get_uuid(h) for h in x.host.get_all()}
    status, out = _run(x, "xe vm-list is-control-domain=true params=uuid --minimal")
    assert status == 0 and out.strip()


def test_dom0_tools_are_on_the_path(x: Any) -> None:
    # Before: "xenstore-write: not found", "vhd-util: not found"
    status, out = _run(x, "xenstore-write /tool/xs-test 'a b' && xenstore-read /tool/xs-test")
    assert (status, out) == (0, "a b\n")
    status, out = _run(x, "xenstore-exists /tool/nope; echo $?")
    assert out == "1\n"
    vhd = "$XENSTACK_STATE_DIR/xs-test.vhd"
    status, out = _run(
        x, f"rm -f {vhd}; vhd-util create -n {vhd} -s 8 && vhd-util query -n {vhd} -v"
    )
    assert (status, out) == (0, "8\n")


def test_the_environment_is_clean_and_carries_the_inventory(x: Any, pool: RunningPool) -> None:
    host = pool_master_of(x)
    env = dict(
        line.split("=", 1) for line in x.host.call_plugin(host, "shell", "env", {}).splitlines()
    )
    assert "XS_TEST_SECRET" not in env  # nothing of the toolstack's own environment
    assert env["INSTALLATION_UUID"] == x.host.get_uuid(host)
    dom0 = [v for v in x.host.get_resident_VMs(host) if x.VM.get_is_control_domain(v)]
    assert env["CONTROL_DOMAIN_UUID"] == x.VM.get_uuid(dom0[0])
    assert env["MANAGEMENT_INTERFACE"] == "xenbr0"
    inventory = Path(env["XENSTACK_INVENTORY"]).read_text()
    assert f"INSTALLATION_UUID='{env['INSTALLATION_UUID']}'\n" in inventory
    assert stat.S_IMODE(os.stat(env["XENSTACK_INVENTORY"]).st_mode) == 0o600
    assert env["PATH"].split(":")[0].endswith("plugins/dom0bin")


def test_a_plugin_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    from xenstack.core.config import ToolstackConfig

    _plugin(tmp_path / "state" / "plugins", "hang", "#!/bin/sh\nsleep 60\n")
    with simulated_pool(
        tmp_path / "state", toolstack_config=ToolstackConfig(plugin_timeout=1)
    ) as p:
        session = XenAPI.Session(p.url)
        session.xenapi.login_with_password("root", p.password, "1.0", "xs-tests")
        err = failure(session.xenapi.host.call_plugin, pool_master(session), "hang", "f", {})
        assert err[:2] == ["XENAPI_PLUGIN_FAILURE", "timeout"]
        session.xenapi.session.logout()
