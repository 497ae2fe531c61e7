"""pool.recover_slaves and pool.emergency_reset_master between toolstacks of their own.

A master A and members B and C, each a ``xenstack serve``. B is pointed elsewhere with the
emergency call (a local session, as in XAPI); A's ``pool.recover_slaves`` tells every member
to follow it again and answers those that did: B, not C, whose toolstack is down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from poolkit import connect, uuid_of

from xenstack.testing import ServerProcess, failure, raw_failure, server_process

pytestmark = pytest.mark.slow


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[list[ServerProcess], dict[str, str]]]:
    https = ["--https-port", "0"]
    with (
        server_process(tmp_path / "a", https) as a,
        server_process(tmp_path / "b", https) as b,
        server_process(tmp_path / "c", https) as c,
    ):
        uuids = {}
        for name, member in (("b", b), ("c", c)):
            uuids[name] = uuid_of(member)
            connect(member).pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        yield [a, b, c], uuids


def local_session(server: ServerProcess) -> Any:
    """A member's own session for its emergency calls."""
    s = XenAPI.Session(server.url)
    s.slave_local_login_with_password("root", server.password)
    return s


def followed(server: ServerProcess) -> str:
    """The master a member names in its HOST_IS_SLAVE answers."""
    code, address = failure(XenAPI.Session(server.url).xenapi.session.login_with_password,
                            "root", "x", "1.0", "t")  # fmt: skip
    assert code == "HOST_IS_SLAVE"
    return str(address)


def test_recover_slaves_points_every_answering_member_at_the_master(pool: Any) -> None:
    (a, b, c), uuids = pool
    master = f"127.0.0.1:{a.port}"
    assert followed(b) == master
    s = local_session(b)
    s.xenapi.pool.emergency_reset_master("127.0.0.1:1")  # a master that is not there
    assert followed(b) == "127.0.0.1:1"
    c.kill()
    x = connect(a)
    recovered = x.pool.recover_slaves()
    assert recovered == [x.host.get_by_uuid(uuids["b"])]  # C does not answer
    assert followed(b) == master
    # and B keeps following A after a restart of its own (it was written down)
    b.stop()
    b.start()
    assert followed(b) == master


def test_the_recovery_call_wants_the_pool_secret(pool: Any) -> None:
    (a, b, _c), _ = pool
    code, *_ = raw_failure(b.url, "host.xenstack_recover", "wrong", "127.0.0.1:1")
    assert code == "SESSION_AUTHENTICATION_FAILED"
    assert followed(b) == f"127.0.0.1:{a.port}"
