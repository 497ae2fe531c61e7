"""``xenstack top``: a live terminal view of a host and its VMs, as ``xentop`` in dom0.

Every ``--interval`` seconds it reads ``/rrd_updates`` (the newest 5-second averages of the
host and the VMs running on it, JSON form) and redraws: the host's CPUs, load and memory,
then one line per VM with its CPU (percent of one CPU, all vCPUs added, as xentop), memory,
vCPUs, disk and network rates. It is a XenAPI client like any other: a JSON-RPC login (the
pool's credentials), then the HTTP handler with the session. ``--once`` prints one frame
without clearing the screen (for scripts); ``--iterations N`` stops after N frames.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KIB = 1024.0
MIB = 1024.0 * 1024.0
CLEAR = "\x1b[H\x1b[2J"
_LEGEND = re.compile(r"^AVERAGE:(host|vm):([^:]+):(.+)$")


@dataclass
class Figures:
    """One object's newest values, by source name."""

    values: dict[str, float] = field(default_factory=dict)

    def total(self, pattern: str) -> float:
        rx = re.compile(pattern)
        return sum(v for k, v in self.values.items() if rx.fullmatch(k) and v == v)

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for k in self.values if rx.fullmatch(k))


def newest(doc: Mapping[str, Any]) -> dict[tuple[str, str], Figures]:
    """The newest row of an ``/rrd_updates`` JSON answer, by (owner, uuid)."""
    out: dict[tuple[str, str], Figures] = {}
    rows = doc.get("data") or []
    if not rows:
        return out
    values = rows[0]["values"]
    for index, entry in enumerate(doc["meta"]["legend"]):
        match = _LEGEND.match(entry)
        if match is None:
            continue
        value = values[index]
        number = float("nan") if value is None else float(value)
        out.setdefault((match[1], match[2]), Figures()).values[match[3]] = number
    return out


def _row(cells: list[str], widths: list[int]) -> str:
    return " ".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


WIDTHS = [24, 8, 7, 10, 5, 11, 11, 11, 11]
HEADER = ["NAME", "STATE", "CPU(%)", "MEM(MiB)", "VCPU", "RD(KiB/s)", "WR(KiB/s)", "RX(KiB/s)"]
HEADER.append("TX(KiB/s)")


def render(
    doc: Mapping[str, Any], names: Mapping[str, tuple[str, str]], host_label: str, sort: str = "cpu"
) -> str:
    """One frame: ``names`` maps a VM uuid to (name, power state)."""
    figures = newest(doc)
    lines = []
    stamp = time.strftime("%H:%M:%S", time.gmtime(doc["meta"]["end"])) if doc.get("meta") else "-"
    for (owner, _uuid), f in figures.items():
        if owner != "host":
            continue
        cpus = f.count(r"cpu\d+")
        total, free = f.values.get("memory_total_kib", 0.0), f.values.get("memory_free_kib", 0.0)
        average, load = f.values.get("cpu_avg", 0.0) * 100, f.values.get("loadavg", 0.0)
        rx, tx = f.values.get("pif_aggr_rx", 0.0) / KIB, f.values.get("pif_aggr_tx", 0.0) / KIB
        lines.append(
            f"xenstack top - {host_label} - {stamp} UTC   CPUs {cpus} ({average:.1f}% avg)"
            f"   load {load:.2f}"
        )
        lines.append(
            f"Mem: {total / MIB:.1f} GiB total, {(total - free) / MIB:.1f} GiB used,"
            f" {free / MIB:.1f} GiB free   Net: {rx:.1f} KiB/s in, {tx:.1f} KiB/s out"
        )
    vms = []
    for (owner, uuid), f in figures.items():
        if owner != "vm":
            continue
        name, state = names.get(uuid, (uuid[:8], "?"))
        vms.append(
            (
                name,
                state,
                f.total(r"cpu\d+") * 100,
                f.values.get("memory", 0.0) / MIB,
                f.count(r"cpu\d+"),
                f.total(r"vbd_[^_]+_read") / KIB,
                f.total(r"vbd_[^_]+_write") / KIB,
                f.total(r"vif_\d+_rx") / KIB,
                f.total(r"vif_\d+_tx") / KIB,
            )
        )
    keys = {"cpu": lambda v: -v[2], "mem": lambda v: -v[3], "name": lambda v: v[0]}
    vms.sort(key=keys.get(sort, keys["cpu"]))
    lines.append(f"{len(vms)} VMs")
    lines.append(_row(HEADER, WIDTHS))
    for vm in vms:
        name, state, cpu, mem, vcpus, rd, wr, rx, tx = vm
        cells = [name[:24], state, f"{cpu:.1f}", f"{mem:.0f}", str(vcpus)]
        cells += [f"{rd:.1f}", f"{wr:.1f}", f"{rx:.1f}", f"{tx:.1f}"]
        lines.append(_row(cells, WIDTHS))
    return "\n".join(lines) + "\n"


class Connection:
    """A JSON-RPC session and the metric handler, on one toolstack."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = ""

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.url + "/jsonrpc", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            doc = json.loads(response.read())
        if "error" in doc:
            raise RuntimeError(" ".join(str(p) for p in doc["error"].get("data") or []))
        return doc["result"]

    def login(self, user: str, password: str) -> None:
        self.session = str(self.call("session.login_with_password", user, password, "2.21", "top"))

    def updates(self, seconds: int) -> Any:
        query = f"session_id={self.session}&start=-{seconds}&cf=AVERAGE&host=true&json=true"
        with urllib.request.urlopen(f"{self.url}/rrd_updates?{query}", timeout=60) as response:
            return json.loads(response.read())

    def names(self) -> tuple[dict[str, tuple[str, str]], str]:
        """VM uuid -> (name, power state) of the VMs, and the label of this host."""
        records = self.call("VM.get_all_records", self.session)
        names = {r["uuid"]: (r["name_label"], r["power_state"]) for r in records.values()}
        host = self.call("session.get_this_host", self.session, self.session)
        return names, str(self.call("host.get_name_label", self.session, host))


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        return Path(args.password_file).read_text().strip()
    if args.state_dir:
        return (Path(args.state_dir) / "root-password").read_text().strip()
    raise SystemExit("xenstack top: give --password-file or --state-dir")


def cmd_top(args: argparse.Namespace) -> int:
    conn = Connection(args.server)
    try:
        conn.login(args.user, _password(args))
    except (OSError, RuntimeError) as exc:
        print(f"xenstack top: cannot log in to {args.server}: {exc}", file=sys.stderr)
        return 1
    frames = 1 if args.once else args.iterations
    shown = 0
    try:
        while frames == 0 or shown < frames:
            if shown:
                time.sleep(args.interval)
            names, label = conn.names()
            try:
                doc = conn.updates(int(args.interval) + 10)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # 404: nothing sampled yet
                    raise
                doc = {"meta": {"legend": [], "end": time.time()}, "data": []}
            frame = render(doc, names, label, args.sort)
            sys.stdout.write(frame if args.once else CLEAR + frame)
            sys.stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            conn.call("session.logout", conn.session)
    return 0


def add_parser(sub: Any) -> None:
    top = sub.add_parser("top", help="a live view of the host and its VMs (as xentop)")
    top.add_argument("--server", default="http://127.0.0.1:8080/")
    top.add_argument("--user", default="root")
    top.add_argument("--password-file")
    top.add_argument("--state-dir", help="read root's password from this host's state")
    top.add_argument("--interval", type=float, default=5.0)
    top.add_argument("--iterations", type=int, default=0, help="stop after N frames (0: never)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--sort", choices=("cpu", "mem", "name"), default="cpu")
    top.set_defaults(func=cmd_top)
