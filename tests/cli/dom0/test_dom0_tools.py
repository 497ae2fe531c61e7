"""Dom0's tools as an administrator runs them from ``xenstack shell``: ``xenstore-*`` on a
running domain, ``vhd-util`` on chains made by xenstack and by ``qemu-img``, and
``xenstack plugins install``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from systools import require_tool

from xenstack.storage.vhd import create_dynamic
from xenstack.testing import RunningPool, halted_vm, login, simulated_pool

MIB = 1 << 20


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xs-tools") / "state"
    with simulated_pool(state, guest_agent_delay=0) as running:
        yield running


def shell(pool: RunningPool, command: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "xenstack.cli.main", "shell", "--state-dir"]
    argv += [str(pool.state_dir), "--port", str(pool.port), "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_xenstore_tools_on_a_running_domain(pool: RunningPool) -> None:
    x: Any = login(pool).xenapi
    vm = halted_vm(x, "xs-ls")
    x.VM.start(vm, False, True)
    domid = int(x.VM.get_domid(vm))
    home = f"/local/domain/{domid}"
    out = shell(pool, f"xenstore-ls {home}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 'name = "xs-ls"' in lines and f'domid = "{domid}"' in lines
    assert 'memory = ""' in lines and any(ln.startswith(' target = "') for ln in lines)
    out = shell(pool, f"xenstore-ls -f -p {home}")
    assert f'{home}/name = "xs-ls"  (n0,r{domid})' in out.stdout.splitlines()
    script = (
        f"xenstore-write {home}/messages/t 'a\\tb' && xenstore-read {home}/messages/t && "
        f"xenstore-read -p {home}/name && xenstore-list {home}/memory && "
        f"xenstore-chmod {home}/messages/t n0 r{domid} && xenstore-ls -p {home}/messages && "
        f"xenstore-rm {home}/messages/t && xenstore-exists {home}/messages/t || echo gone && "
        "xenstore-read /nope; echo status=$? && "
        f"xenstore-watch -n 2 {home}/control & sleep 0.5; xenstore-write {home}/control/x 1; wait"
    )
    out = shell(pool, script)
    assert out.stdout.splitlines() == [
        "a\\tb",  # Xen's escaping
        f"{home}/name: xs-ls",
        "target",
        "static-max",
        f't = "a\\tb"  (n0,r{domid})',
        "gone",
        "status=1",
        f"{home}/control",
        f"{home}/control/x",
    ], out.stderr
    assert "xenstore-read: couldn't read path /nope" in out.stderr
    x.VM.hard_shutdown(vm)
    assert shell(pool, f"xenstore-exists {home}").returncode == 1


def vhd_util(pool: RunningPool, *args: str) -> str:
    out = shell(pool, "vhd-util " + " ".join(args))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_vhd_util_on_a_chain_made_by_xenstack(pool: RunningPool, tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 64 * MIB)
    vhd_util(pool, "snapshot", "-n", leaf, "-p", base)
    assert vhd_util(pool, "query", "-n", leaf, "-v", "-s", "-p") == (
        f"64\n{os.path.getsize(leaf)}\n{base}\n"
    )
    assert vhd_util(pool, "query", "-n", base, "-p", "-f", "-d") == (
        f"{base} has no parent\nhidden: 0\nchain depth: 1\n"
    )
    assert vhd_util(pool, "query", "-n", leaf, "-d") == "chain depth: 2\n"
    assert vhd_util(pool, "check", "-n", leaf) == f"{leaf} is valid\n"
    other = str(tmp_path / "other.vhd")
    vhd_util(pool, "create", "-n", other, "-s", "64")
    vhd_util(pool, "modify", "-n", leaf, "-p", other)
    assert vhd_util(pool, "query", "-n", leaf, "-p") == f"{other}\n"
    scan = vhd_util(pool, "scan", "-f", "-m", f"'{tmp_path}/*.vhd'").splitlines()
    assert (
        f"vhd={leaf} capacity={64 * MIB} size={os.path.getsize(leaf)} hidden=0 parent={other}"
        in scan
    )
    assert any(line.startswith(f"vhd={base} ") and line.endswith("parent=none") for line in scan)
    vhd_util(pool, "coalesce", "-n", leaf)
    assert not os.path.exists(leaf)
    (tmp_path / "bad.vhd").write_bytes(b"\0" * 4096)
    bad = shell(pool, f"vhd-util check -n {tmp_path}/bad.vhd")
    assert bad.returncode != 0 and "appears invalid" in bad.stdout


def test_vhd_util_on_a_disk_made_by_qemu_img(pool: RunningPool, tmp_path: Path) -> None:
    qemu_img = require_tool("qemu-img")
    path = str(tmp_path / "q.vhd")
    subprocess.run(
        [qemu_img, "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", path,
         "96M"], check=True, timeout=120,
    )  # fmt: skip
    info = json.loads(
        subprocess.run([qemu_img, "info", "--output=json", path], capture_output=True,
                       check=True, timeout=120).stdout
    )  # fmt: skip
    assert vhd_util(pool, "query", "-n", path, "-v", "-s", "-p") == (
        f"{info['virtual-size'] // MIB}\n{os.path.getsize(path)}\n{path} has no parent\n"
    )
    assert vhd_util(pool, "check", "-n", path) == f"{path} is valid\n"


def test_plugins_install(pool: RunningPool, tmp_path: Path) -> None:
    plugin = tmp_path / "hello"
    plugin.write_text(
        "#!/usr/bin/env python3\nimport XenAPIPlugin\n"
        "XenAPIPlugin.dispatch({'hi': lambda s, a: 'hello ' + a.get('who', '')})\n"
    )
    argv = [sys.executable, "-m", "xenstack.cli.main", "plugins", "install", "--state-dir"]
    out = subprocess.run([*argv, str(pool.state_dir), str(plugin)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    installed = Path(out.stdout.strip())
    assert installed == pool.state_dir / "plugins" / "hello" if pool.state_dir else False
    assert installed.stat().st_mode & 0o777 == 0o700
    x: Any = login(pool).xenapi
    host = x.host.get_all()[0]
    assert x.host.call_plugin(host, "hello", "hi", {"who": "dom0"}) == "hello dom0"
    bad = subprocess.run([*argv, str(pool.state_dir), "/nonexistent/x"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1


def test_extensions_install_and_call(pool: RunningPool, tmp_path: Path) -> None:
    ext = tmp_path / "xs-sum"
    ext.write_text(
        "#!/usr/bin/env python3\nimport sys, xmlrpc.client\n"
        "assert sys.argv[1:] == ['--xmlrpc']\n"
        "params, method = xmlrpc.client.loads(sys.stdin.read())\n"
        "value = {'Status': 'Success', 'Value': str(sum(params[1:])) + ' ' + method}\n"
        "print(xmlrpc.client.dumps((value,), methodresponse=True))\n"
    )
    argv = [sys.executable, "-m", "xenstack.cli.main", "plugins", "install", "--extension"]
    out = subprocess.run([*argv, "--state-dir", str(pool.state_dir), str(ext)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    x: Any = login(pool).xenapi
    host = x.host.get_all()[0]
    assert x.host.has_extension(host, "xs-sum") is True
    assert x.host.has_extension(host, "xs-nosuch") is False
    call = json.dumps({"method": "xs-sum", "params": ["session", 2, 40]})
    assert x.host.call_extension(host, call) == "42 xs-sum"
