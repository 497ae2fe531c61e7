"""Xen Orchestra's connector (the npm package ``xen-api``), unmodified, against xenstack.

It logs in as XO does (a name and a password, nothing more), discovers the classes through
``system.listMethods``, fills its object cache with every class's ``get_all_records`` and keeps
it current with ``event.from`` from a token made by ``event.inject``, runs ``Async`` calls by
watching their task objects (parsing the XML-RPC ``result``), wraps XAPI errors, and moves
disks and VMs as its backups do (a probe before each streamed upload, answers before the body,
streams of unknown length). The script ``clients/xen-api/session.mjs`` checks each of these;
see its findings in the output.

Needs node and npm (the package is installed from the npm registry, pinned by the lock file);
without them the test is skipped, except under CI where it fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from systools import XO_CLIENT, xo_connector

from xenstack.testing import simulated_pool

CLIENT = XO_CLIENT


@pytest.fixture(scope="module")
def node() -> str:
    return xo_connector()


def test_xen_orchestra_connector_session(node: str, tmp_path: Path) -> None:
    with simulated_pool(tmp_path / "state") as pool:  # a state dir: real VHD storage
        done = subprocess.run(
            [node, "session.mjs", pool.url, pool.password],
            cwd=CLIENT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, f"no findings; stderr:\n{done.stderr}"
    findings = json.loads(lines[-1])
    failed = {name: result for name, result in findings.items() if result is not True}
    assert done.returncode == 0 and not failed, f"{failed}\n{done.stderr}"
    assert len(findings) == 23  # every check ran
