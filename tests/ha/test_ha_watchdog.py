"""The HA daemon's watchdog (:mod:`xenstack.ha.watchdog`): fences on the daemon's end or
silence once armed by a first kick, never after a clean disarm or before the first kick.
A real forked watchdog, its fence a file it writes."""

from __future__ import annotations

import os
from pathlib import Path

from hakit import wait_until

from xenstack.ha import watchdog


def _start(tmp_path: Path, deadline: float = 30.0) -> tuple[watchdog.Watchdog, Path]:
    mark = tmp_path / "fenced"
    return watchdog.start(deadline, lambda: mark.write_text("fenced")), mark


def _exit_code(dog: watchdog.Watchdog) -> int:
    _, status = os.waitpid(dog.pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_daemons_end_after_a_kick_fences(tmp_path: Path) -> None:
    dog, mark = _start(tmp_path)
    dog.kick()
    os.close(dog.fd)  # the daemon killed: its end of the pipe closes
    assert _exit_code(dog) == 75
    assert mark.read_text() == "fenced"


def test_silence_after_a_kick_fences(tmp_path: Path) -> None:
    dog, mark = _start(tmp_path, deadline=0.3)
    dog.kick()
    wait_until("fenced for want of kicks", mark.exists, 10)  # the pipe still open
    assert _exit_code(dog) == 75
    os.close(dog.fd)


def test_a_clean_disarm_or_an_end_before_the_first_kick_does_not(tmp_path: Path) -> None:
    dog, mark = _start(tmp_path)
    dog.kick()
    dog.disarm()  # waits for it
    early, _ = _start(tmp_path)
    os.close(early.fd)  # the daemon failed before its first round
    assert _exit_code(early) == 0
    assert not mark.exists()
