"""A test kit for projects that talk to XenServer: a simulated pool on a free port.

    from xenstack.testing import simulated_pool

    with simulated_pool() as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "my-tests")

With pytest, ``pytest_plugins = ["xenstack.testing.fixtures"]`` gives the ``xenstack_pool``
fixture. ``server_process`` runs ``xenstack serve`` as a child process instead, for tests that
kill it. :class:`FakeClock` is a clock a test moves by hand (``simulated_pool(clock=...)``);
:mod:`.factories` makes the records, VMs and sessions tests need (``vm_record``,
``halted_vm``, ``vm_from_template``, ``login``, ``user``, ``failure``...).
"""

from .clock import FakeClock
from .factories import (
    add_users,
    failure,
    halted_vm,
    logged_in,
    login,
    login_as,
    raw_call,
    raw_failure,
    raw_login,
    user,
    user_password,
    vm_from_template,
    vm_record,
)
from .pool import RunningPool, ServerProcess, free_port, server_process, simulated_pool

__all__ = [
    "FakeClock",
    "RunningPool",
    "ServerProcess",
    "add_users",
    "failure",
    "free_port",
    "halted_vm",
    "logged_in",
    "login",
    "login_as",
    "raw_call",
    "raw_failure",
    "raw_login",
    "server_process",
    "simulated_pool",
    "user",
    "user_password",
    "vm_from_template",
    "vm_record",
]
