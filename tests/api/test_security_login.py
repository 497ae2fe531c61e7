"""Login throttling: an exact number of password checks, and no lockout of the right password."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from xenstack.api import auth
from xenstack.testing import RunningPool
from xenstack.testing import raw_call as raw

REFILL = 1.5  # seconds per check once the bucket is empty (12 s in production)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords PBKDF2 was run on, in order."""
    seen: list[str] = []
    real = auth.check_password

    def counting(password: str, stored: str) -> bool:
        seen.append(password)
        return real(password, stored)

    monkeypatch.setattr(auth, "check_password", counting)
    return seen


def _parallel_logins(url: str, passwords: list[str]) -> list[Any]:
    answers: list[Any] = [None] * len(passwords)
    gate = threading.Barrier(len(passwords))

    def one(i: int) -> None:
        gate.wait()
        answers[i] = raw(url, "session.login_with_password", "root", passwords[i], "1.0", "t")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(passwords))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_parallel_guesses_get_exactly_the_allowed_checks(
    xenstack_pool: RunningPool, checks: list[str]
) -> None:
    xenstack_pool.call(lambda ts: setattr(ts.auth, "refill_interval", REFILL))
    guesses = [f"guess-{i}" for i in range(10)]
    answers = _parallel_logins(xenstack_pool.url, guesses)
    assert all(
        a["ErrorDescription"][:2] == ["SESSION_AUTHENTICATION_FAILED", "root"] for a in answers
    )
    # five at once, one more that waited for the bucket to refill, the rest refused unchecked
    assert len(checks) == auth.FAILURES_ALLOWED + 1
    refused = [a for a in answers if a["ErrorDescription"][2] == "too many failed logins"]
    assert len(refused) == len(guesses) - len(checks)
    # the right password is not locked out: it is accepted within one refill interval
    start = time.monotonic()
    answer = raw(xenstack_pool.url, "session.login_with_password", "root", xenstack_pool.password)
    assert answer["Status"] == "Success", answer
    assert time.monotonic() - start < REFILL + 1.0
    assert checks[-1] == xenstack_pool.password
