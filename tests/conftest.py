"""Shared fixtures: the shipped test kit, used as an outside project would use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from xenstack.testing import RunningPool

pytest_plugins = ["xenstack.testing.fixtures"]


@pytest.fixture
def session(xenstack_pool: RunningPool) -> Iterator[Any]:
    """A logged-in XenAPI SDK session (XML-RPC) on a fresh pool."""
    s = XenAPI.Session(xenstack_pool.url)
    s.xenapi.login_with_password("root", xenstack_pool.password, "1.0", "xenstack-tests")
    yield s
    try:
        s.xenapi.session.logout()
    finally:
        s.close() if hasattr(s, "close") else None
