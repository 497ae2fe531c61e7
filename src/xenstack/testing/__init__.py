"""A test kit for projects that talk to XenServer: a simulated pool on a free port.

    from xenstack.testing import simulated_pool

    with simulated_pool() as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "my-tests")

With pytest, ``pytest_plugins = ["xenstack.testing.fixtures"]`` gives the ``xenstack_pool``
fixture. ``server_process`` runs ``xenstack serve`` as a child process instead, for tests that
kill it.
"""

from .pool import RunningPool, ServerProcess, free_port, server_process, simulated_pool

__all__ = ["RunningPool", "ServerProcess", "free_port", "server_process", "simulated_pool"]
