"""``xenstack pool handover --to HOST``: the safe master handover, in one command.

XenServer's checklist before electing a new pool master, automated; each step printed as it
goes, and what was done undone, in reverse, if a later step fails:

1. disable HA (remembering its configuration, statefile SRs and failures to tolerate);
2. eject every mounted ISO (``vm-cd-eject --multiple``);
3. ``pool.sync_database``;
4. ``pool.designate_new_master``;
5. wait until the new master answers and every member is live (``pool.recover_slaves``);
6. enable HA again with the same configuration, on the new master.

It speaks the XenAPI over XML-RPC to the master (``--url``), as any client. ``xe
pool-designate-new-master host-uuid=... --safe`` runs the same steps (:func:`run`) over xe's
JSON-RPC connection.
"""

from __future__ import annotations

import argparse
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT = 120.0

Call = Callable[..., Any]  # x(method, *args) with the session; XenAPI errors as Failure
Connect = Callable[[str | None], Call]  # a new session: None, the first URL; or "host:port"


class Failure(Exception):
    def __init__(self, details: list[str]) -> None:
        super().__init__(details)
        self.details = details


class Client:
    """A logged-in XenAPI session over XML-RPC."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        self.proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
        self.session = self._answer(
            self.proxy.session.login_with_password(user, password, "2.21", "xenstack-handover")
        )

    @staticmethod
    def _answer(reply: Any) -> Any:
        if reply.get("Status") == "Success":
            return reply.get("Value")
        raise Failure([str(d) for d in reply.get("ErrorDescription", ["INTERNAL_ERROR"])])

    def __call__(self, method: str, *args: Any) -> Any:
        fn = self.proxy
        for part in method.split("."):
            fn = getattr(fn, part)
        return self._answer(fn(self.session, *args))


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def _find_host(x: Call, name: str) -> str:
    for ref, row in x("host.get_all_records").items():
        if name in (ref, row["uuid"], row["name_label"], row["hostname"], row["address"]):
            return str(ref)
    raise SystemExit(f"xenstack: no host {name!r} in the pool")


def _wait_new_master(connect: Connect, target: str) -> Call:
    """Follow HOST_IS_SLAVE from the old master to the new one, until it answers."""
    deadline = time.monotonic() + WAIT
    address: str | None = None
    while time.monotonic() < deadline:
        try:
            x = connect(address)
            if x("pool.get_master", x("pool.get_all")[0]) == target:
                return x
        except Failure as exc:
            if exc.details[0] == "HOST_IS_SLAVE" and len(exc.details) > 1:
                address = exc.details[1]
        except OSError:
            address = None
        time.sleep(0.2)
    raise Failure(["INTERNAL_ERROR", "the new master did not answer in time"])


def _wait_members_live(x: Call) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        x("pool.recover_slaves")
        hosts = x("host.get_all_records")
        if all(x("host_metrics.get_live", r["metrics"]) for r in hosts.values()):
            return
        time.sleep(0.2)
    raise Failure(["INTERNAL_ERROR", "not every member is live under the new master"])


def handover(url: str, user: str, password: str, to: str) -> int:
    def connect(address: str | None) -> Call:
        return Client(url if address is None else f"http://{address}/", user, password)

    return run(connect(None), connect, to)


def run(x: Call, connect: Connect, to: str) -> int:
    """The handover to ``to`` (name, uuid, address or ref) through session ``x``; 0 when
    done, 1 when it failed (and what was done is undone)."""
    pool = x("pool.get_all")[0]
    target = _find_host(x, to)
    if x("pool.get_master", pool) == target:
        _say("done", "that host is the master already")
        return 0
    undo: list[tuple[str, Callable[[], Any]]] = []
    record = x("pool.get_record", pool)
    ha = bool(record["ha_enabled"])
    config = dict(record["ha_configuration"])
    tolerate = record["ha_host_failures_to_tolerate"]
    srs = _statefile_srs(x, record["ha_statefiles"])
    current: dict[str, Call] = {"client": x}

    def enable_ha_again() -> None:
        c = current["client"]
        c("pool.enable_ha", srs, config)
        c("pool.set_ha_host_failures_to_tolerate", c("pool.get_all")[0], tolerate)

    try:
        if ha:
            _say("1/6", "disabling HA")
            x("pool.disable_ha")
            undo.append(("enable HA again", enable_ha_again))
        else:
            _say("1/6", "HA is off")
        ejected = _eject_isos(x)
        _say("2/6", f"ejected {len(ejected)} ISO(s)")
        undo.append(("insert the ISOs again", lambda: _insert(current["client"], ejected)))
        _say("3/6", "syncing the database")
        x("pool.sync_database")
        _say("4/6", f"designating {to} the new master")
        x("pool.designate_new_master", target)
        _say("5/6", "waiting for the new master and every member")
        current["client"] = _wait_new_master(connect, target)
        _wait_members_live(current["client"])
        if ha:
            _say("6/6", "enabling HA again with the same configuration")
            undo = [u for u in undo if u[0] != "enable HA again"]
            enable_ha_again()
        else:
            _say("6/6", "HA stays off")
    except (Failure, OSError) as exc:
        print(f"xenstack: handover failed: {exc}; undoing", file=sys.stderr, flush=True)
        for what, step in reversed(undo):
            _say("undo", what)
            try:
                step()
            except (Failure, OSError) as again:
                print(f"xenstack: could not {what}: {again}", file=sys.stderr)
        return 1
    _say("done", f"{to} is the pool's master")
    return 0


def _statefile_srs(x: Call, statefiles: list[str]) -> list[str]:
    found = []
    for name in statefiles:
        if name.startswith("sr:"):
            found.append(x("SR.get_by_uuid", name[3:]))
    return found


def _eject_isos(x: Call) -> list[tuple[str, str]]:
    ejected = []
    for ref, vbd in x("VBD.get_all_records").items():
        if vbd["type"] == "CD" and not vbd["empty"]:
            x("VBD.eject", ref)
            ejected.append((ref, vbd["VDI"]))
    return ejected


def _insert(x: Call, ejected: list[tuple[str, str]]) -> None:
    for vbd, vdi in ejected:
        x("VBD.insert", vbd, vdi)


def cmd_handover(args: argparse.Namespace) -> int:
    password = Path(args.password_file).read_text().strip()
    return handover(args.url, args.user, password, args.to)


def add_parser(sub: Any) -> None:
    pool = sub.add_parser("pool", help="pool-wide operations")
    verbs = pool.add_subparsers(dest="verb", required=True)
    hand = verbs.add_parser("handover", help="move the master safely to another host")
    hand.add_argument("--to", required=True, help="the new master: name, uuid or address")
    hand.add_argument("--url", default="http://127.0.0.1:8080/", help="the master's XenAPI")
    hand.add_argument("--user", default="root")
    hand.add_argument("--password-file", required=True)
    hand.set_defaults(func=cmd_handover)
