"""pytest fixtures: ``pytest_plugins = ["xenstack.testing.fixtures"]``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .pool import RunningPool, simulated_pool


@pytest.fixture
def xenstack_pool(tmp_path: Path) -> Iterator[RunningPool]:
    """A fresh simulated pool with durable state under the test's tmp_path."""
    with simulated_pool(tmp_path / "state") as pool:
        yield pool
