"""RBAC on every HTTP handler, enumerated from the running server (so a new one is covered).

Every route and upload path has a declared permission; a read-only session is refused every
data path with 403 and changes nothing (no VDI made or overwritten, no task left pending); a
bad session is answered 401 as XAPI does; and a refused transfer fails the task it names.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xenstack.testing import RunningPool, add_users, halted_vm, login_as, simulated_pool

MIB = 1 << 20
USERS = {"reader": "read-only", "vmadmin": "vm-admin"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state: Path = tmp_path_factory.mktemp("http-rbac") / "state"
    with simulated_pool(state) as running:
        add_users(running, USERS)
        yield running


@pytest.fixture(scope="module")
def sessions(pool: RunningPool) -> Iterator[dict[str, Any]]:
    made = {user: login_as(pool, user) for user in ["root", *USERS]}
    yield made
    for s in made.values():
        s.xenapi.session.logout()


@pytest.fixture(scope="module")
def objects(pool: RunningPool, sessions: dict[str, Any]) -> dict[str, Any]:
    """A halted VM with one disk of known contents (written by root), its SR."""
    root = sessions["root"]
    x = root.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create(
        {"name_label": "d", "name_description": "", "SR": sr, "virtual_size": str(MIB),
         "type": "user", "sharable": False, "read_only": False, "other_config": {}}
    )  # fmt: skip
    vm = halted_vm(x, "halted")
    data = bytes(range(256)) * 4096
    query = {"session_id": root._session, "vdi": vdi, "format": "raw"}
    assert request(pool, "PUT", "/import_raw_vdi", query, data)[0] == 200
    return {"vm": vm, "vdi": vdi, "sr": sr, "data": data}


def request(
    pool: RunningPool, method: str, path: str, query: dict[str, str], body: bytes | None = None
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=60)
    try:
        headers = {} if body is None else {"Content-Length": str(len(body))}
        conn.request(method, f"{path}?{urllib.parse.urlencode(query)}", body, headers)
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def handlers(pool: RunningPool) -> list[tuple[str, str]]:
    """Every (method, path) the server serves: its aiohttp routes and its upload paths."""
    assert pool.toolstack is not None and pool.toolstack.server is not None
    server = pool.toolstack.server
    routes = {(r.method, r.resource.canonical) for r in server.app.router.routes()}  # type: ignore[union-attr]
    uploads = {("PUT", path.decode()) for path in server.config.uploads}
    return sorted(routes | uploads)


def declared(method: str, path: str) -> Any:
    """The handler's declared permission (api/rbac.py), or the base's (none) for a data path."""
    try:
        from xenstack.api import rbac
    except ImportError:  # before RBAC was declared: every data path is taken as vm-admin's
        from types import SimpleNamespace

        name = f"{method.lower()}_{path.strip('/') or 'root'}"
        roles = {"read-only"} if method == "POST" else {"vm-admin"}
        return SimpleNamespace(name=name, roles=roles)
    return rbac.http_action(method, path)


def disk(pool: RunningPool, sessions: dict[str, Any], vdi: str) -> bytes:
    query = {"session_id": sessions["root"]._session, "vdi": vdi, "format": "raw"}
    status, _, body = request(pool, "GET", "/export_raw_vdi", query)
    assert status == 200
    return body[:MIB]


def pending(sessions: dict[str, Any]) -> list[str]:
    records = sessions["root"].xenapi.task.get_all_records()
    return [ref for ref, task in records.items() if task["status"] == "pending"]


def test_every_handler_has_a_declared_permission(pool: RunningPool) -> None:
    from xenstack.rpc.disk_http import guard_routes
    from xenstack.rpc.upload import guard_uploads

    served = handlers(pool)
    names = {declared(method, path).name for method, path in served}
    data = {"put_import", "put_import_raw_vdi", "get_export", "get_export_raw_vdi"}
    assert data <= names
    from xenstack.api.rbac import http_checker

    checker = http_checker(pool.toolstack)  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        guard_routes([("GET", "/undeclared", _never)], checker)
    with pytest.raises(LookupError):
        guard_uploads({b"/undeclared": _never}, checker)


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


def test_read_only_is_refused_every_data_path(
    pool: RunningPool, sessions: dict[str, Any], objects: dict[str, Any]
) -> None:
    reader = sessions["reader"]
    x = sessions["root"].xenapi
    vdis = set(x.VDI.get_all())
    refused = []
    for method, path in handlers(pool):
        action = declared(method, path)
        if "read-only" in action.roles:
            continue  # the API itself: each call is checked by its message's roles
        task = reader.xenapi.task.create(f"ro {method} {path}", "")
        query = {"session_id": reader._session, "vdi": objects["vdi"], "ref": objects["vm"],
                 "sr_id": objects["sr"], "format": "raw", "task_id": task}  # fmt: skip
        body = b"\xee" * MIB if method == "PUT" else None
        status, _, text = request(pool, method, path, query, body)
        assert status == 403, (method, path, status, text)
        assert text.startswith(f"RBAC_PERMISSION_DENIED http/{action.name} ".encode())
        record = x.task.get_record(task)
        assert record["status"] == "failure", (method, path)
        assert record["error_info"][:2] == ["RBAC_PERMISSION_DENIED", f"http/{action.name}"]
        refused.append(action.name)
    assert len(refused) >= 4  # /export and /export_raw_vdi with and without the final "/"
    assert set(x.VDI.get_all()) == vdis  # no VDI made
    assert disk(pool, sessions, objects["vdi"]) == objects["data"]  # nor overwritten
    assert pending(sessions) == []


def test_vm_admin_may_transfer_disks(
    pool: RunningPool, sessions: dict[str, Any], objects: dict[str, Any]
) -> None:
    admin = sessions["vmadmin"]
    query = {"session_id": admin._session, "vdi": objects["vdi"], "format": "raw"}
    status, _, body = request(pool, "GET", "/export_raw_vdi", query)
    assert (status, body[:MIB]) == (200, objects["data"])
    assert request(pool, "PUT", "/import_raw_vdi", query, objects["data"])[0] == 200
    root = sessions["root"]
    query = {"session_id": root._session, "ref": objects["vm"]}
    status, _, xva = request(pool, "GET", "/export", query)
    assert status == 200
    vms = set(root.xenapi.VM.get_all())
    task = admin.xenapi.task.create("import", "")
    query = {"session_id": admin._session, "sr_id": objects["sr"], "task_id": task}
    assert request(pool, "PUT", "/import", query, xva)[0] == 200  # vm-admin, as XAPI declares
    assert root.xenapi.task.get_status(task) == "success"
    assert len(set(root.xenapi.VM.get_all()) - vms) == 1


def test_bad_session_is_unauthorised(
    pool: RunningPool, sessions: dict[str, Any], objects: dict[str, Any]
) -> None:
    root_task = sessions["root"].xenapi.task.create("root's", "")
    gone = login_as(pool, "reader")
    own_task = gone.xenapi.task.create("before logout", "")
    dead = gone._session
    gone.xenapi.session.logout()
    for method, path in [("GET", "/export_raw_vdi"), ("PUT", "/import_raw_vdi")]:
        for task in (root_task, own_task):
            query = {"session_id": dead, "vdi": objects["vdi"], "task_id": task}
            body = b"\xee" * 4096 if method == "PUT" else None
            status, response, _ = request(pool, method, path, query, body)
            assert status == 401, (method, path)
            assert response.reason == "Unauthorised"
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    x = sessions["root"].xenapi
    assert x.task.get_status(root_task) == "pending"  # not the bad session's to fail
    assert x.task.get_error_info(own_task) == ["SESSION_INVALID", dead]
    x.task.destroy(root_task)


def test_refused_transfers_fail_their_task(
    pool: RunningPool, sessions: dict[str, Any], objects: dict[str, Any]
) -> None:
    root = sessions["root"]
    x = root.xenapi
    base = {"session_id": root._session, "format": "raw"}
    cases = [
        ("PUT", "/import_raw_vdi", {"vdi": "OpaqueRef:nothing"}, "HANDLE_INVALID"),
        ("PUT", "/import_raw_vdi", {"vdi": objects["vdi"], "format": "qcow2"}, "FIELD_TYPE_ERROR"),
        ("GET", "/export_raw_vdi", {"vdi": "OpaqueRef:nothing"}, "HANDLE_INVALID"),
        ("GET", "/export_raw_vdi", {"vdi": objects["vdi"], "base": "nope"}, "HANDLE_INVALID"),
        ("GET", "/export", {"uuid": "no-such-uuid"}, "UUID_INVALID"),
        ("GET", "/export", {"ref": "OpaqueRef:nothing"}, "HANDLE_INVALID"),
        ("PUT", "/import", {"sr_id": "OpaqueRef:nothing"}, "HANDLE_INVALID"),
    ]
    for method, path, extra, code in cases:
        task = x.task.create("refused", "")
        body = b"\xee" * 4096 if method == "PUT" else None
        status, _, _ = request(pool, method, path, base | extra | {"task_id": task}, body)
        assert status in (400, 404), (method, path, extra, status)
        record = x.task.get_record(task)
        assert (record["status"], record["error_info"][0]) == ("failure", code), (path, extra)
    assert pending(sessions) == []


def test_a_transfer_may_not_name_another_users_task(
    pool: RunningPool, sessions: dict[str, Any], objects: dict[str, Any]
) -> None:
    x = sessions["root"].xenapi
    task = x.task.create("root's", "")
    admin = sessions["vmadmin"]
    query = {"session_id": admin._session, "vdi": objects["vdi"], "task_id": task}
    status, _, text = request(pool, "GET", "/export_raw_vdi", query)
    assert status == 403
    assert text.startswith(b"RBAC_PERMISSION_DENIED task.destroy/any ")
    assert x.task.get_status(task) == "pending"  # neither forged nor failed by another
    x.task.destroy(task)
