"""The first contact a client makes: log in over XML-RPC and read the pool."""

from __future__ import annotations

from typing import Any

import pytest
import XenAPI


def test_login_and_read_pool(session: Any) -> None:
    pools = session.xenapi.pool.get_all_records()
    assert len(pools) == 1
    (pool,) = pools.values()
    host = pool["master"]
    assert session.xenapi.host.get_record(host)["enabled"] is True
    dom0 = session.xenapi.host.get_control_domain(host)
    assert session.xenapi.VM.get_is_control_domain(dom0) is True


def test_wrong_password_is_refused(xenstack_pool: Any) -> None:
    s = XenAPI.Session(xenstack_pool.url)
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("root", "wrong", "1.0", "t")
    assert err.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
