"""``xenstack chaos run FILE``: a scenario against a pool of hosts of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from systools import require_tool

pytestmark = [pytest.mark.etcd, pytest.mark.slow]
HERE = Path(__file__).parent


def chaos(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "xenstack.cli.main", "chaos", "run", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_a_member_powered_off_and_restored(tmp_path: Path) -> None:
    require_tool("etcd")
    done = chaos(HERE / "member_loss.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "recovery: web running" in out
    assert "ran on two hosts at once: never" in out
    web = out.split("  web:\n")[1].split("  ran on two hosts")[0]
    assert web.count("    on ") == 2  # where it ran, then where it was restarted: once


def test_a_scenario_that_needs_namespaces_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "cut.toml"
    scenario.write_text('hosts = 2\n[[step]]\ndo = "partition"\nhost = 1\n')
    done = chaos(scenario)
    assert done.returncode == 2
    assert "network namespaces" in done.stdout
