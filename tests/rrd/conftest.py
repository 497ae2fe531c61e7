"""The metric tests' pool: no background sampling (the tests drive the collector's ticks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rrdkit import Driver

from xenstack.core.config import ToolstackConfig
from xenstack.testing import RunningPool, login, simulated_pool


@pytest.fixture
def pool(tmp_path: Any) -> Iterator[RunningPool]:
    config = ToolstackConfig(rrd_step=0, guest_agent_delay=0.01)
    with simulated_pool(tmp_path / "state", toolstack_config=config) as running:
        yield running


@pytest.fixture
def driver(pool: RunningPool) -> Driver:
    return Driver(pool)


@pytest.fixture
def session(pool: RunningPool) -> Iterator[Any]:
    s = login(pool, label="rrd-tests")
    yield s
    s.xenapi.session.logout()
