"""Users, password checks, login rate limits and session bookkeeping.

Passwords are stored as salted PBKDF2-SHA256 hashes in the persistence layer's metadata. Each
session's role and last activity live in memory: sessions, as in XAPI, do not survive a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field

import orjson

from ..core.access import LOCAL_SUPERUSER
from ..core.clock import Clock, SystemClock
from ..db.persistence import Persistence
from ..errors import ApiError

ITERATIONS = 200_000
# Login throttling, per (user, peer): a bucket of FAILURES_ALLOWED password checks that fills
# again at one check per REFILL_INTERVAL, so at most 5 checks at once and 5 a minute after.
FAILURES_ALLOWED = 5
REFILL_INTERVAL = 12.0
MAX_THROTTLED = 10_000  # (user, peer) buckets kept before full ones are forgotten


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    return f"pbkdf2-sha256${ITERATIONS}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    scheme, iterations, salt, digest = stored.split("$")
    if scheme != "pbkdf2-sha256":
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(got.hex(), digest)


@dataclass
class User:
    name: str
    password_hash: str
    role: str = "pool-admin"


@dataclass
class SessionInfo:
    user: str
    role: str
    last_active: float  # a monotonic reading of the authenticator's clock
    events_registered: list[str] = field(default_factory=list)
    events_token: int = -1  # legacy event.next position
    # The host's own root (XAPI's local superuser): may do everything, including what is
    # declared for the local root only (empty roles).
    local_superuser: bool = False


@dataclass
class _Bucket:
    """The password checks left to one (user, peer): ``tokens`` as of time ``stamp``."""

    tokens: float
    stamp: float
    waiting: bool = False

    def level(self, now: float, interval: float) -> float:
        return min(FAILURES_ALLOWED, self.tokens + (now - self.stamp) / interval)

    def take(self, now: float, interval: float, force: bool = False) -> bool:
        """Take one check if there is one (or, ``force``, after waiting for it)."""
        level = self.level(now, interval)
        if level < 1 and not force:
            return False
        self.tokens, self.stamp = max(level - 1, 0.0), now
        return True

    def wait(self, now: float, interval: float) -> float:
        """Seconds until the bucket holds one check."""
        return max(0.0, (1 - self.level(now, interval)) * interval)


class Authenticator:
    """Knows the users, checks logins, throttles failures, tracks live sessions.

    Idle expiry and the login throttle read ``clock``'s monotonic time (the toolstack's clock,
    so a test's fake clock moves them); a throttled login's wait is still slept for real.
    """

    def __init__(
        self, persistence: Persistence, idle_timeout: float, clock: Clock | None = None
    ) -> None:
        self.persistence = persistence
        self.idle_timeout = idle_timeout
        self.clock: Clock = clock or SystemClock()
        self.sessions: dict[str, SessionInfo] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.refill_interval = REFILL_INTERVAL
        self._verified: dict[str, bytes] = {}  # user -> keyed digest of a checked password
        self._key = secrets.token_bytes(32)

    # ---- users -----------------------------------------------------------------------

    def users(self) -> dict[str, User]:
        raw = self.persistence.get_meta("users")
        return {k: User(**v) for k, v in (orjson.loads(raw) if raw else {}).items()}

    def set_user(self, name: str, password: str, role: str = "pool-admin") -> None:
        users = self.users()
        users[name] = User(name, hash_password(password), role)
        doc = {
            k: {"name": u.name, "password_hash": u.password_hash, "role": u.role}
            for k, u in users.items()
        }
        self.persistence.set_meta("users", orjson.dumps(doc).decode())
        self._verified.pop(name, None)

    # ---- login -----------------------------------------------------------------------

    async def authenticate(self, username: str, password: str, peer: str) -> User:
        """Return the user, or raise SESSION_AUTHENTICATION_FAILED.

        Each attempt takes a check from its (user, peer) bucket before anything is awaited,
        so parallel guesses cannot exceed the limit; a right password gives its check back.
        With the bucket empty, one attempt waits for the next check (at most
        ``refill_interval``) and any other is refused unchecked ("too many failed logins"):
        failed guesses slow a right password down, they never lock it out for longer.
        """
        key = (username, peer)
        bucket = self._bucket(key)
        if bucket.waiting:  # the next check is promised to the attempt already waiting
            # xapi: ocaml/xapi/xapi_session.ml passes 2
            raise ApiError("SESSION_AUTHENTICATION_FAILED", [username, "too many failed logins"])
        if not bucket.take(self.clock.monotonic(), self.refill_interval):
            bucket.waiting = True
            try:
                await asyncio.sleep(bucket.wait(self.clock.monotonic(), self.refill_interval))
            finally:
                bucket.waiting = False
            bucket.take(self.clock.monotonic(), self.refill_interval, force=True)
        user = self.users().get(username)
        if user is not None and await self._password_ok(user, password):
            bucket.tokens = min(FAILURES_ALLOWED, bucket.tokens + 1)
            return user
        # xapi: ocaml/xapi/xapi_session.ml passes 2
        raise ApiError("SESSION_AUTHENTICATION_FAILED", [username, "Authentication failure"])

    def _bucket(self, key: tuple[str, str]) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_THROTTLED:  # many users or peers: forget the idle
                now = self.clock.monotonic()
                for k, b in list(self._buckets.items()):
                    if not b.waiting and b.level(now, self.refill_interval) >= FAILURES_ALLOWED:
                        del self._buckets[k]
            bucket = self._buckets[key] = _Bucket(FAILURES_ALLOWED, self.clock.monotonic())
        return bucket

    def password_matches(self, user: User, password: str) -> bool:
        """Whether ``password`` is ``user``'s (no throttling: the caller has a session)."""
        return check_password(password, user.password_hash)

    async def _password_ok(self, user: User, password: str) -> bool:
        mac = hmac.digest(self._key, password.encode(), "sha256")
        cached = self._verified.get(user.name)
        if cached is not None and hmac.compare_digest(cached, mac):
            return True
        ok = await asyncio.to_thread(check_password, password, user.password_hash)
        if ok:
            self._verified[user.name] = mac
        return ok

    # ---- sessions --------------------------------------------------------------------

    def open(self, ref: str, user: User) -> None:
        root = user.name == LOCAL_SUPERUSER and user.role == "pool-admin"
        info = SessionInfo(user.name, user.role, self.clock.monotonic(), local_superuser=root)
        self.sessions[ref] = info

    def close(self, ref: str) -> None:
        self.sessions.pop(ref, None)

    def check(self, ref: str) -> SessionInfo:
        """The live session behind ``ref``; raise SESSION_INVALID if it is unknown or idle."""
        info = self.sessions.get(ref) if type(ref) is str else None
        now = self.clock.monotonic()
        if info is None or now - info.last_active > self.idle_timeout:
            raise ApiError("SESSION_INVALID", [str(ref)])
        info.last_active = now
        return info

    def expired(self) -> list[str]:
        now = self.clock.monotonic()
        return [r for r, s in self.sessions.items() if now - s.last_active > self.idle_timeout]
