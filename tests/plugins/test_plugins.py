"""host.call_plugin: XAPI's plug-in protocol, errors and timeouts, over the wire."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sim_helpers import pool_master
from vmkit import wait_for

from xenstack.errors import ApiError
from xenstack.plugins import runner
from xenstack.testing import failure, simulated_pool


def _write_plugin(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_echo_round_trip(session: Any) -> None:
    host = pool_master(session)
    text = 'héllo <xml> & "quotes"'
    assert session.xenapi.host.call_plugin(host, "echo", "echo", {"text": text}) == text
    answer = session.xenapi.host.call_plugin(host, "echo", "args", {"b": "2", "a": "1"})
    assert answer == "a=1\nb=2"


def test_plugin_failures(session: Any) -> None:
    host = pool_master(session)
    call = session.xenapi.host.call_plugin
    assert failure(call, host, "nosuch", "echo", {}) == ["XENAPI_MISSING_PLUGIN", "nosuch"]
    err = failure(call, host, "echo", "fail", {"code": "MY_ERROR", "param1": "x"})
    assert err == ["MY_ERROR", "x"]
    err = failure(call, host, "echo", "crash", {"message": "boom"})
    assert err == ["XENAPI_PLUGIN_FAILURE", "crash", "PluginError", "boom"]
    err = failure(call, host, "echo", "nosuchfn", {})
    assert err == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nosuchfn"]
    err = failure(call, host, "echo", "exit", {"status": "3"})
    assert err == ["XENAPI_PLUGIN_FAILURE", "non-zero exit", "", "exiting on request\n"]


@pytest.mark.parametrize(
    "name", ["../echo", "bundled/echo", "..", "/bin/true", ".hidden", "x" * 5000, "é" * 128]
)
def test_path_names_refused(session: Any, name: str) -> None:
    err = failure(session.xenapi.host.call_plugin, pool_master(session), name, "echo", {})
    assert err == ["XENAPI_MISSING_PLUGIN", name]
    assert session.xenapi.host.has_extension(pool_master(session), name) is False


def test_function_names_and_arguments_are_checked_first(session: Any) -> None:
    host = pool_master(session)
    err = failure(session.xenapi.host.call_plugin, host, "echo", "f" * 5000, {})
    assert err == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "f" * 5000]
    # what no argv can carry is refused before anything runs, even past the wire's own check
    dirs = runner.plugin_dirs(None)
    for fn, args, where in [("a\0b", {}, "fn"), ("echo", {"text": "a\0b"}, "args")]:
        with pytest.raises(ApiError) as exc:
            asyncio.run(runner.call_plugin(dirs, "echo", fn, "OpaqueRef:x", args))
        assert exc.value.description == ["INVALID_VALUE", where, "a\\x00b"]


def test_state_dir_plugins_and_bad_output(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("XENSTACK_PLUGIN_TIMEOUT", "1")
    state = tmp_path / "state"
    _write_plugin(state / "plugins", "garbage", "#!/bin/sh\necho not xml\n")
    _write_plugin(state / "plugins", "slow", "#!/bin/sh\nsleep 30\n")
    _write_plugin(
        state / "plugins",
        "raw",
        "#!/bin/sh\necho '<methodResponse><params><param>"
        "<value><string>raw</string></value></param></params></methodResponse>'\n",
    )
    with simulated_pool(state) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "t")
        host = pool_master(s)
        assert s.xenapi.host.call_plugin(host, "raw", "f", {}) == "raw"
        err = failure(s.xenapi.host.call_plugin, host, "garbage", "f", {})
        assert err[:3] == ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", "not xml\n"]
        err = failure(s.xenapi.host.call_plugin, host, "slow", "f", {})
        assert err[:2] == ["XENAPI_PLUGIN_FAILURE", "timeout"]
        assert s.xenapi.session.get_uuid(s._session)  # the server loop kept serving
        s.xenapi.session.logout()


def test_plugin_dir_from_environment(tmp_path: Path, monkeypatch: Any) -> None:
    plugin_dir = tmp_path / "extra"
    script = (
        "#!/usr/bin/env python3\n"
        "import XenAPIPlugin\n"
        "def whoami(session, args):\n"
        "    return session._session\n"
        "XenAPIPlugin.dispatch({'whoami': whoami})\n"
    )
    _write_plugin(plugin_dir, "who", script)
    monkeypatch.setenv("XENSTACK_PLUGIN_DIR", os.fspath(plugin_dir))  # read as the kit starts
    with simulated_pool() as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "t")
        host = pool_master(session)
        assert session.xenapi.host.call_plugin(host, "who", "whoami", {}) == session._session
        session.xenapi.session.logout()


def test_async_call_plugin(session: Any) -> None:
    host = pool_master(session)
    task = session.xenapi.Async.host.call_plugin(host, "echo", "echo", {"text": "later"})
    wait_for(lambda: session.xenapi.task.get_status(task) != "pending", timeout=10)
    assert session.xenapi.task.get_status(task) == "success"
    assert "later" in session.xenapi.task.get_result(task)
