"""RBAC over every message of the declaration, and who may touch a task.

Generated from the declaration: a read-only session is refused every message whose roles
leave out read-only (and its ``Async.`` form) before its arguments are looked at; a message
whose roles are empty (XAPI's local-root-only) is refused to read-only and to a pool-admin
who is not root, and passes the role check for root. Every message is called in-process on
the server's loop (one server, fast); a sample and every local-root-only message also go over
the wire with the XenAPI SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from xenstack.api.dispatch import NO_SESSION, Entry
from xenstack.core.calls import Origin
from xenstack.errors import ApiError
from xenstack.testing import RunningPool, add_users, login_as, simulated_pool

ORIGIN = Origin("127.0.0.1", "tcp", "xmlrpc")
USERS = {"reader": "read-only", "reader2": "read-only", "admin2": "pool-admin"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state: Path = tmp_path_factory.mktemp("rbac") / "state"
    with simulated_pool(state) as running:
        add_users(running, USERS)
        yield running


@pytest.fixture(scope="module")
def sessions(pool: RunningPool) -> Iterator[dict[str, Any]]:
    made = {user: login_as(pool, user) for user in ["root", *USERS]}
    yield made
    for s in made.values():
        s.xenapi.session.logout()


def _checked(entry: Entry) -> bool:
    return entry.msg.takes_session and entry.msg.wire_name not in NO_SESSION


def _outcomes(pool: RunningPool, session: str, names: list[str]) -> dict[str, list[str]]:
    """Call each wire method in-process with the session and dummy (empty string) arguments;
    the error each answers, or ["OK"]."""

    def run(ts: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for method in names:
            entry = ts.dispatcher.table[method.removeprefix("Async.")]
            params = [session, *([""] * (len(entry.msg.params) - 1))]
            try:
                result = ts.dispatcher.call(method, params, ORIGIN)
            except ApiError as err:
                out[method] = err.description
                continue
            close = getattr(getattr(result, "wait", None), "close", None)
            if close is not None:
                close()  # never run: only the checks before it mattered
            out[method] = ["OK"]
        return out

    return dict(pool.call(run))


def _table(pool: RunningPool) -> dict[str, Entry]:
    return dict(pool.call(lambda ts: ts.dispatcher.table))


def test_read_only_is_refused_every_write(pool: RunningPool, sessions: dict[str, Any]) -> None:
    table = _table(pool)
    writes = [n for n, e in table.items() if _checked(e) and "read-only" not in e.msg.roles]
    writes += [f"Async.{n}" for n in writes if table[n].msg.has_async]
    assert len(writes) > 500  # the whole declaration, not a hand-picked few
    got = _outcomes(pool, sessions["reader"]._session, writes)
    wrong = {m: d for m, d in got.items() if d[:2] != ["RBAC_PERMISSION_DENIED", _perm(m)]}
    assert wrong == {}
    assert got["VM.destroy"][2].startswith("No permission in user session. (Roles with")


def _perm(method: str) -> str:
    return method.removeprefix("Async.").lower()


def test_empty_roles_mean_local_root_only(pool: RunningPool, sessions: dict[str, Any]) -> None:
    table = _table(pool)
    root_only = sorted(n for n, e in table.items() if _checked(e) and not e.msg.roles)
    assert "host.set_sched_gran" in root_only and "VMSS.set_last_run_time" in root_only
    for user in ("reader", "admin2"):
        got = _outcomes(pool, sessions[user]._session, root_only)
        assert {m: d[0] for m, d in got.items()} == dict.fromkeys(
            root_only, "RBAC_PERMISSION_DENIED"
        )
    for method in root_only:  # over the wire too
        with pytest.raises(XenAPI.Failure) as err:
            _sdk_call(sessions["admin2"], method, len(table[method].msg.params) - 1)
        assert err.value.details[:2] == ["RBAC_PERMISSION_DENIED", method.lower()], method
    got = _outcomes(pool, sessions["root"]._session, root_only)
    assert [m for m, d in got.items() if d[0] == "RBAC_PERMISSION_DENIED"] == []


def test_a_sample_over_the_wire(pool: RunningPool, sessions: dict[str, Any]) -> None:
    table = _table(pool)
    writes = sorted(n for n, e in table.items() if _checked(e) and "read-only" not in e.msg.roles)
    reader = sessions["reader"]
    for method in writes[::15]:
        with pytest.raises(XenAPI.Failure) as err:
            _sdk_call(reader, method, len(table[method].msg.params) - 1)
        assert err.value.details[:2] == ["RBAC_PERMISSION_DENIED", method.lower()], method


def _sdk_call(session: Any, method: str, nargs: int) -> Any:
    fn = session.xenapi
    for part in method.split("."):
        fn = getattr(fn, part)
    return fn(*([""] * nargs))


# ---- tasks: only their owner, or a pool-admin/pool-operator ---------------------------


def _task_writes(x: Any, task: str) -> dict[str, Any]:
    return {
        "set_status": lambda: x.task.set_status(task, "success"),
        "set_progress": lambda: x.task.set_progress(task, 0.5),
        "set_result": lambda: x.task.set_result(task, "<value>forged</value>"),
        "set_error_info": lambda: x.task.set_error_info(task, ["FORGED"]),
        "cancel": lambda: x.task.cancel(task),
        "destroy": lambda: x.task.destroy(task),
    }


def test_tasks_of_others_are_refused(pool: RunningPool, sessions: dict[str, Any]) -> None:
    root = sessions["root"].xenapi
    task = root.task.create("root's", "")
    before = root.task.get_record(task)
    for user in ("reader", "reader2"):
        for name, write in _task_writes(sessions[user].xenapi, task).items():
            with pytest.raises(XenAPI.Failure) as err:
                write()
            assert err.value.details == [
                "RBAC_PERMISSION_DENIED",
                "task.destroy/any",
                "No permission in user session. (Roles with this permission: "
                "pool-admin, pool-operator)",
            ], (user, name)
    assert root.task.get_record(task) == before  # nothing was forged
    reader_task = sessions["reader"].xenapi.task.create("reader's", "")
    with pytest.raises(XenAPI.Failure) as err:
        sessions["reader2"].xenapi.task.set_status(reader_task, "success")
    assert err.value.details[:2] == ["RBAC_PERMISSION_DENIED", "task.destroy/any"]
    root.task.destroy(task)
    _owners_and_task_admins_may(pool, sessions)


def _owners_and_task_admins_may(pool: RunningPool, sessions: dict[str, Any]) -> None:
    reader = sessions["reader"].xenapi
    task = reader.task.create("mine", "")
    reader.task.set_progress(task, 0.5)
    again = login_as(pool, "reader")  # another session of the same user owns it too
    try:
        again.xenapi.task.set_result(task, "<value>done</value>")
    finally:
        again.xenapi.session.logout()
    sessions["admin2"].xenapi.task.set_error_info(task, ["X"])  # task.destroy/any
    record = sessions["root"].xenapi.task.get_record(task)
    assert (record["progress"], record["result"], record["error_info"]) == (
        0.5,
        "<value>done</value>",
        ["X"],
    )
    reader.task.set_status(task, "success")
    reader.task.destroy(task)
    assert task not in sessions["root"].xenapi.task.get_all()
