"""The shared api-coverage tool measures the published XenAPI surface a running server answers.

Skipped where the tool is not installed beside the checkout (/work/shared/tools/api-coverage).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xenstack.testing import RunningPool

TOOL = Path("/work/shared/tools/api-coverage")
SUMMARY = re.compile(r"^api-coverage: (.*)$", re.MULTILINE)
FIGURE = re.compile(r"(\w+) (\d+)/(\d+)")


@pytest.mark.skipif(not TOOL.exists(), reason=f"{TOOL} is not installed")
def test_api_coverage(xenstack_pool: RunningPool) -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), xenstack_pool.url, "--password", xenstack_pool.password],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    summary = SUMMARY.findall(done.stdout + done.stderr)
    assert summary, done.stdout[-2000:]
    figures = {name: (int(a), int(b)) for name, a, b in FIGURE.findall(summary[-1])}
    for name in ("methods", "arity", "async"):
        got, total = figures[name]
        assert total > 0 and got / total >= 0.99, (name, got, total, summary[-1])
