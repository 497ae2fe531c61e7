"""``xenstack top`` as a process against a simulated pool: the figures it shows are the load
the test made; and live, redrawing in a terminal (tmux)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rrdkit import Driver, busy_vm

from xenstack.core.config import ToolstackConfig
from xenstack.testing import RunningPool, login, simulated_pool

XENSTACK = [sys.executable, "-m", "xenstack.cli.main"]


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[RunningPool]:
    config = ToolstackConfig(rrd_step=0, guest_agent_delay=0.01)
    with simulated_pool(tmp_path / "state", toolstack_config=config) as running:
        yield running


@pytest.fixture
def session(pool: RunningPool) -> Iterator[Any]:
    s = login(pool, label="top-tests")
    yield s
    s.xenapi.session.logout()


def _columns(output: str, name: str) -> list[str]:
    (line,) = [ln for ln in output.splitlines() if ln.startswith(name + " ")]
    return line.split()


def test_one_frame_shows_what_the_guests_do(
    pool: RunningPool, session: Any, tmp_path: Path
) -> None:
    driver = Driver(pool)
    busy, idle = busy_vm(session, "busy-vm"), busy_vm(session, "idle-vm")
    for vm, share in ((busy, 0.9), (idle, 0.0)):
        dom = driver.domain(vm)
        driver.sim(lambda sim, dom=dom: sim.load.set_quiet(dom))
        driver.sim(lambda sim, dom=dom, share=share: sim.load.set_cpu(dom, share))
    driver.now = (int(time.time()) // 5) * 5 - 30
    driver.tick(3)
    dom = driver.domain(busy)
    driver.sim(lambda sim: sim.load.transfer(dom, "vif_rx", "0", 5 * 2048))
    driver.sim(lambda sim: sim.load.transfer(dom, "vbd_read", "0", 5 * 4096))
    driver.tick()
    password = tmp_path / "pw"
    password.write_text(pool.password)
    done = subprocess.run(
        [*XENSTACK, "top", "--server", pool.url, "--password-file", str(password), "--once"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("xenstack top - ") and "2 VMs" in out
    _, state, cpu, _, vcpus, rd, _, rx, _ = _columns(out, "busy-vm")
    assert (state, cpu, vcpus, rd, rx) == ("Running", "90.0", "1", "4.0", "2.0")
    assert _columns(out, "idle-vm")[2] == "0.0"
    lines = out.splitlines()
    assert lines.index(next(ln for ln in lines if ln.startswith("busy-vm"))) < lines.index(
        next(ln for ln in lines if ln.startswith("idle-vm"))
    )  # busiest first


def test_bad_credentials(pool: RunningPool, tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("wrong")
    done = subprocess.run(
        [*XENSTACK, "top", "--server", pool.url, "--password-file", str(password), "--once"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "cannot log in" in done.stderr


def test_live_in_a_terminal(pool: RunningPool, session: Any, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    driver = Driver(pool)
    vm = busy_vm(session, "live-vm")
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.5))
    driver.now = (int(time.time()) // 5) * 5 - 30
    driver.tick(3)
    password = tmp_path / "pw"
    password.write_text(pool.password)
    name = f"xr-top-{time.monotonic_ns()}"
    command = [*XENSTACK, "top", "--server", pool.url, "--password-file", str(password)]
    command += ["--interval", "0.2"]
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "30", " ".join(command)],
        check=True, timeout=60,
    )  # fmt: skip
    try:
        screen = _wait_screen(name, "live-vm")
        assert "50.0" in _line(screen, "live-vm")
        driver.sim(lambda sim: sim.load.set_cpu(dom, 0.25))
        driver.tick(2)
        screen = _wait_screen(name, "25.0")  # redrawn with the new figures
        assert screen.count("xenstack top - ") == 1  # the screen is cleared between frames
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], timeout=60, check=False)


def _line(screen: str, start: str) -> str:
    return next(ln for ln in screen.splitlines() if ln.startswith(start))


def _wait_screen(session: str, text: str) -> str:
    deadline = time.monotonic() + 60
    screen = ""
    while time.monotonic() < deadline:
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
            timeout=60,
        ).stdout  # fmt: skip
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never showed:\n{screen}")


def test_disk_rates_are_the_byte_rates_alone() -> None:
    """RD and WR sum ``vbd_<dev>_read``/``_write``, not the iostat sources named after them
    (``vbd_xvda_iops_read``, ``vbd_xvda_io_throughput_write``...)."""
    from xenstack.cli.top import render

    legend = ["vbd_xvda_read", "vbd_xvda_iops_read", "vbd_xvda_io_throughput_read"]
    legend += ["vbd_xvdb_write", "vbd_xvdb_iops_write", "cpu0", "memory"]
    values = [2048.0, 1e6, 1e6, 3072.0, 1e6, 0.5, 1024.0 * 1024]
    doc = {
        "meta": {"end": 0, "legend": [f"AVERAGE:vm:u1:{n}" for n in legend]},
        "data": [{"t": 0, "values": values}],
    }
    out = render(doc, {"u1": ("disk-vm", "Running")}, "h")
    _, _, _, _, _, rd, wr, _, _ = _columns(out, "disk-vm")
    assert (rd, wr) == ("2.0", "3.0")
