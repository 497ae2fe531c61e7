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
import time
from dataclasses import dataclass, field

import orjson

from ..db.persistence import Persistence
from ..errors import ApiError

ITERATIONS = 200_000
FAILURES_ALLOWED = 5  # per user and peer, within FAILURE_WINDOW
FAILURE_WINDOW = 60.0


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


LOCAL_SUPERUSER = "root"  # the user ``xenstack init`` makes, with the host's own password


@dataclass
class SessionInfo:
    user: str
    role: str
    last_active: float = field(default_factory=time.monotonic)
    events_registered: list[str] = field(default_factory=list)
    events_token: int = -1  # legacy event.next position
    # The host's own root (XAPI's local superuser): may do everything, including what is
    # declared for the local root only (empty roles).
    local_superuser: bool = False


class Authenticator:
    """Knows the users, checks logins, throttles failures, tracks live sessions."""

    def __init__(self, persistence: Persistence, idle_timeout: float) -> None:
        self.persistence = persistence
        self.idle_timeout = idle_timeout
        self.sessions: dict[str, SessionInfo] = {}
        self._failures: dict[tuple[str, str], list[float]] = {}
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
        """Return the user, or raise SESSION_AUTHENTICATION_FAILED (slowly, when repeated)."""
        key = (username, peer)
        now = time.monotonic()
        recent = [t for t in self._failures.get(key, []) if now - t < FAILURE_WINDOW]
        if len(recent) >= FAILURES_ALLOWED:
            await asyncio.sleep(0.5)
            # xapi: ocaml/xapi/xapi_session.ml passes 2
            raise ApiError("SESSION_AUTHENTICATION_FAILED", [username, "too many failed logins"])
        user = self.users().get(username)
        if user is not None and await self._password_ok(user, password):
            self._failures.pop(key, None)
            return user
        recent.append(now)
        self._failures[key] = recent
        await asyncio.sleep(0.05 * len(recent))
        # xapi: ocaml/xapi/xapi_session.ml passes 2
        raise ApiError("SESSION_AUTHENTICATION_FAILED", [username, "Authentication failure"])

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
        self.sessions[ref] = SessionInfo(user.name, user.role, local_superuser=root)

    def close(self, ref: str) -> None:
        self.sessions.pop(ref, None)

    def check(self, ref: str) -> SessionInfo:
        """The live session behind ``ref``; raise SESSION_INVALID if it is unknown or idle."""
        info = self.sessions.get(ref) if type(ref) is str else None
        now = time.monotonic()
        if info is None or now - info.last_active > self.idle_timeout:
            raise ApiError("SESSION_INVALID", [str(ref)])
        info.last_active = now
        return info

    def expired(self) -> list[str]:
        now = time.monotonic()
        return [r for r, s in self.sessions.items() if now - s.last_active > self.idle_timeout]
