"""Async calls become tasks: status, progress, result and error_info as XAPI encodes them."""

from __future__ import annotations

import asyncio
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import vmkit
import XenAPI

from xenstack.core.context import Context
from xenstack.errors import ApiError
from xenstack.impl.registry import HANDLERS
from xenstack.testing import simulated_pool

SLOW = "host.get_system_status_capabilities"  # borrowed for a test-only server function
FAILING = "host.get_server_localtime"


async def slow_work(ctx: Context, host: str) -> str:
    """Twenty steps of 50 ms with progress, then a result."""
    ctx.db.get("host", host)
    for step in range(20):
        ctx.toolstack.tasks.progress(ctx.task, step / 20)
        await asyncio.sleep(0.05)
    return "done <&>"


def failing_work(ctx: Context, host: str) -> str:
    raise ApiError("HOST_OFFLINE", [host])


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A pool whose dispatcher knows the test-only functions (installed before it starts)."""
    monkeypatch.setitem(HANDLERS, SLOW, slow_work)
    monkeypatch.setitem(HANDLERS, FAILING, failing_work)
    with simulated_pool(None) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "test_core_tasks")
        yield s
        s.xenapi.session.logout()


def wait_for(session: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = session.xenapi.task.get_record(task)
        if record["status"] not in ("pending", "cancelling"):
            return record
        time.sleep(0.02)
    pytest.fail(f"task {task} did not finish")


def test_async_result_is_the_encoded_value(session: Any) -> None:
    x = session.xenapi
    task = x.Async.task.create("inner", "made asynchronously")
    assert task.startswith("OpaqueRef:")
    record = wait_for(session, task)
    assert record["status"] == "success"
    assert record["name_label"] == "Async.task.create"
    assert record["progress"] == 1.0
    assert record["error_info"] == []
    inner = record["result"][len("<value>") : -len("</value>")]
    assert record["result"] == f"<value>{inner}</value>"
    assert x.task.get_name_label(inner) == "inner"
    assert isinstance(record["created"], xmlrpc.client.DateTime)
    assert isinstance(record["finished"], xmlrpc.client.DateTime)
    assert record["finished"].value >= record["created"].value
    assert record["resident_on"] == x.host.get_all()[0]
    assert record["session"] == session.handle
    assert task in x.task.get_all()


def test_async_string_result_is_escaped(session: Any) -> None:
    x = session.xenapi
    record = wait_for(session, getattr(x.Async.host, SLOW.split(".")[1])(x.host.get_all()[0]))
    assert record["status"] == "success"
    assert record["result"] == "<value>done &lt;&amp;&gt;</value>"


def test_async_failure_sets_error_info(session: Any) -> None:
    x = session.xenapi
    host = x.host.get_all()[0]
    record = wait_for(session, getattr(x.Async.host, FAILING.split(".")[1])(host))
    assert record["status"] == "failure"
    assert record["error_info"] == ["HOST_OFFLINE", host]
    assert record["result"] == ""
    bogus = "OpaqueRef:12345678-1234-1234-1234-123456789abc"
    record = wait_for(session, x.Async.task.cancel(bogus))
    assert record["error_info"] == ["HANDLE_INVALID", "task", bogus]


def test_async_checks_arguments_before_making_a_task(session: Any) -> None:
    x = session.xenapi
    before = set(x.task.get_all())
    with pytest.raises(XenAPI.Failure) as err:
        x.Async.task.create("only one argument")
    assert err.value.details == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "Async.task.create", "2", "1"
    ]  # fmt: skip
    with pytest.raises(XenAPI.Failure) as err:
        x.Async.task.create(["not", "a", "string"], "")
    assert err.value.details[0] == "FIELD_TYPE_ERROR"
    assert set(x.task.get_all()) == before


def test_cancel_a_long_task(session: Any) -> None:
    x = session.xenapi
    task = getattr(x.Async.host, SLOW.split(".")[1])(x.host.get_all()[0])
    vmkit.wait_for(lambda: x.task.get_progress(task) >= 0.2)
    progress = x.task.get_progress(task)
    assert 0.2 <= progress < 1.0
    assert x.task.get_status(task) == "pending"
    assert x.task.get_allowed_operations(task) == ["cancel"]
    start = time.monotonic()
    x.task.cancel(task)
    record = wait_for(session, task)
    assert time.monotonic() - start < 0.5
    assert record["status"] == "cancelled"
    assert record["error_info"] == ["TASK_CANCELLED", task]
    with pytest.raises(XenAPI.Failure) as err:
        x.task.cancel(task)
    assert err.value.details[0] == "OPERATION_NOT_ALLOWED"
