"""The XenServer root helper neutron deleted (Wallaby): run an agent's privileged commands
in dom0 through the host's ``netwrap.py`` plug-in, for agents whose ``ip``/``ovs-*``
commands must act on the host rather than on the VM neutron runs in.

Two ways in:

- ``XenAPIClient(url, user, password).execute(cmd, stdin)`` -> ``(returncode, out, err)``,
  the removed ``neutron.agent.linux.xenapi_root_helper.XenAPIClient`` protocol:
  ``host.call_plugin(host, 'netwrap.py', 'run_command', {'cmd': json, 'cmd_input': json})``
  answering JSON ``{returncode, out, err}``; a refused command maps to 99, a missing
  executable to 96, any other plug-in failure to 80.
- ``xenstack-rootwrap-dom0 CONFIG CMD...``: a ``[agent] root_helper`` for today's neutron
  (``root_helper = xenstack-rootwrap-dom0 /etc/neutron/xenapi.ini``); CONFIG is an INI file
  with ``[xenapi] connection_url, connection_username, connection_password``. Standard input
  goes to the command, its output and status come back as the command's own.
"""

from __future__ import annotations

import configparser
import json
import sys
from typing import Any

import XenAPI

from ..session import XenAPISession

RC_UNAUTHORIZED = 99
RC_NOEXECFOUND = 96
RC_XENAPI_ERROR = 80
PLUGIN = "netwrap.py"


class XenAPIClient:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.session = XenAPISession(url, user, password, concurrent=1)
        with self.session.session() as sess:
            self.host = str(sess.xenapi.session.get_this_host(sess._session))

    def execute(self, cmd: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        args = {"cmd": json.dumps(list(cmd)), "cmd_input": json.dumps(stdin)}
        try:
            result = self.session.call_plugin(self.host, PLUGIN, "run_command", args)
        except XenAPI.Failure as exc:
            return _failure(exc)
        answer = json.loads(result)
        return int(answer["returncode"]), str(answer["out"]), str(answer["err"])

    def close(self) -> None:
        self.session.close()


def _failure(exc: Any) -> tuple[int, str, str]:
    details = [str(d) for d in exc.details]
    message = details[-1] if details else ""
    if "Unauthorized command" in message or "is not permitted" in message:
        return RC_UNAUTHORIZED, "", message
    if "Executable not found" in message:
        return RC_NOEXECFOUND, "", message
    return RC_XENAPI_ERROR, "", " ".join(details)


def client_from_config(path: str) -> XenAPIClient:
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise SystemExit(f"xenstack-rootwrap-dom0: cannot read {path}")
    section = parser["xenapi"]
    return XenAPIClient(
        section["connection_url"],
        section.get("connection_username", "root"),
        section.get("connection_password", ""),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: xenstack-rootwrap-dom0 CONFIG CMD [ARG...]", file=sys.stderr)
        return 2
    client = client_from_config(args[0])
    try:
        stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
        code, out, err = client.execute(args[1:], stdin or None)
    finally:
        client.close()
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
