"""Records, VMs and sessions a test makes over and over, made one way.

``api`` arguments take either an SDK session (``XenAPI.Session``) or its ``xenapi`` proxy.
Users the kit adds have the password ``<name>-pw`` (:func:`add_users`, :func:`user`).
The SDK (the ``XenAPI`` package) and pytest are imported when a function needs them, so the
kit imports without them.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .pool import RunningPool

MIB = 1 << 20
GIB = 1 << 30
DEFAULT_TEMPLATE = "Other install media"


def _xenapi(api: Any) -> Any:
    """The ``xenapi`` proxy of a session, or ``api`` itself when it is one."""
    # The SDK's Session is a ServerProxy; its xenapi proxy answers every attribute, so
    # getattr(api, "xenapi", ...) cannot tell them apart.
    return api.xenapi if isinstance(api, xmlrpc.client.ServerProxy) else api


def vm_record(name: str = "vm", memory: int = 256 * MIB, **extra: Any) -> dict[str, Any]:
    """The smallest VM.create record a client sends (a halted PV guest with ``memory`` bytes
    as its static and dynamic maximum, half of it as static minimum); ``extra`` replaces or
    adds fields."""
    record: dict[str, Any] = {
        "name_label": name,
        "name_description": "",
        "user_version": "1",
        "is_a_template": False,
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(memory),
        "memory_dynamic_max": str(memory),
        "memory_dynamic_min": str(memory),
        "memory_static_min": str(memory // 2),
        "VCPUs_params": {},
        "VCPUs_max": "2",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": {},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }
    record.update(extra)
    return record


def halted_vm(api: Any, name: str = "vm", **extra: Any) -> str:
    """A new halted VM made by VM.create from :func:`vm_record` (no disks, no VIFs)."""
    return str(_xenapi(api).VM.create(vm_record(name, **extra)))


def vm_from_template(api: Any, label: str = "vm", template: str = DEFAULT_TEMPLATE) -> str:
    """A new halted VM cloned from ``template`` (by name) and made a plain VM."""
    xenapi = _xenapi(api)
    (source,) = xenapi.VM.get_by_name_label(template)
    vm = xenapi.VM.clone(source, label)
    xenapi.VM.set_is_a_template(vm, False)
    return str(vm)


def login(
    pool: RunningPool, user: str = "root", password: str | None = None, label: str = "tests"
) -> Any:
    """A new SDK session (``XenAPI.Session``) logged in as ``user``; the pool's root password
    unless ``password`` is given. The caller logs out."""
    import XenAPI

    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password(user, password or pool.password, "1.0", label)
    return session


def user_password(name: str) -> str:
    """The password the kit gives a user it adds (``<name>-pw``)."""
    return f"{name}-pw"


def add_users(pool: RunningPool, users: Mapping[str, str]) -> None:
    """Add each user of ``users`` (name -> role) with :func:`user_password` as password."""

    def add(toolstack: Any) -> None:
        for name, role in users.items():
            toolstack.auth.set_user(name, user_password(name), role)

    pool.call(add)


def login_as(pool: RunningPool, name: str, label: str = "tests") -> Any:
    """A new SDK session of ``name``: root with the pool's password, any other user with the
    kit's (:func:`add_users`). The caller logs out."""
    return login(pool, name, None if name == "root" else user_password(name), label)


def user(pool: RunningPool, name: str, role: str = "read-only", label: str = "tests") -> Any:
    """Add the user ``name`` with ``role`` and return a new SDK session of it."""
    add_users(pool, {name: role})
    return login_as(pool, name, label)


def logged_in(pool: RunningPool, label: str) -> Iterator[Any]:
    """A root session's ``xenapi`` proxy for a fixture to yield; logs out afterwards."""
    session = login(pool, label=label)
    yield session.xenapi
    session.xenapi.session.logout()


def failure(fn: Callable[..., Any], *args: Any) -> list[str]:
    """Call an SDK method that must fail; return its error description (code first)."""
    import pytest
    import XenAPI

    with pytest.raises(XenAPI.Failure) as err:
        fn(*args)
    return list(err.value.details)


def raw_call(url: str, method: str, *params: Any) -> Any:
    """One XML-RPC call without the SDK (which logs in again on SESSION_INVALID); the
    answer's struct as it came (``Status``, ``Value`` or ``ErrorDescription``)."""
    proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
    try:
        return getattr(proxy, method)(*params)
    finally:
        proxy("close")()


def raw_failure(url: str, method: str, *params: Any) -> list[str]:
    """A raw XML-RPC call that must fail; its error description."""
    answer = raw_call(url, method, *params)
    assert answer["Status"] == "Failure", answer
    return list(answer["ErrorDescription"])


def raw_login(pool: RunningPool, user: str = "root", password: str | None = None) -> str:
    """A session ref, logged in over raw XML-RPC."""
    answer = raw_call(
        pool.url, "session.login_with_password", user, password or pool.password, "1", "t"
    )
    assert answer["Status"] == "Success", answer
    return str(answer["Value"])
