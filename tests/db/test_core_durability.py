"""Acknowledged writes survive kill -9: clients write while the server dies at a random moment."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from xenstack.testing import ServerProcess, server_process, vm_record

CLIENTS = 8
ROUNDS = 5


def connect(server: ServerProcess) -> Any:
    s = XenAPI.Session(server.url)
    s.xenapi.login_with_password("root", server.password, "1.0", "durability")
    return s


def writer(
    server: ServerProcess, vm: str, tag: str, acked: list[int], stop: threading.Event
) -> None:
    """Write numbered values until the server goes away; record each one it acknowledged."""
    try:
        s = connect(server)
        i = 0
        while not stop.is_set():
            s.xenapi.VM.add_to_other_config(vm, f"{tag}-{i}", "acked")
            s.xenapi.VM.set_name_description(vm, f"{tag}-{i}")
            acked.append(i)  # only once both replies came back
            i += 1
    except Exception:
        return  # the server was killed under us


def check_round(session: Any, vm: str, tag: str, acked: list[int]) -> None:
    config = session.xenapi.VM.get_other_config(vm)
    lost = [i for i in acked if f"{tag}-{i}" not in config]
    assert lost == [], f"{tag}: acknowledged writes lost: {lost[:5]}"
    if acked:  # the last acknowledged description, or one written later but not yet answered
        description = session.xenapi.VM.get_name_description(vm)
        prefix, _, number = description.rpartition("-")
        assert prefix == tag and int(number) >= acked[-1], (description, acked[-1])


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    rng = random.Random(4711)
    total = 0
    with server_process(tmp_path / "state") as server:
        admin = connect(server)
        vms = [admin.xenapi.VM.create(vm_record(f"durable-{n}")) for n in range(CLIENTS)]
        history: list[tuple[str, str, list[int]]] = []
        for round_no in range(ROUNDS):
            stop = threading.Event()
            runs = [(vm, f"r{round_no}c{n}", []) for n, vm in enumerate(vms)]
            threads = [threading.Thread(target=writer, args=(server, *run, stop)) for run in runs]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.0))
            server.kill()
            stop.set()
            for t in threads:
                t.join(30)
            server.start()
            history += runs
            check = connect(server)
            for vm, tag, acked in runs:
                check_round(check, vm, tag, acked)
            config = check.xenapi.VM.get_other_config(vms[0])  # earlier rounds are still there
            assert all(f"{tag}-{i}" in config for vm, tag, a in history if vm == vms[0] for i in a)
            check.xenapi.session.logout()
            total += sum(len(a) for _, _, a in runs)
    assert total > 100
