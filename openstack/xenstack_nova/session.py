"""nova-compute's connection to its XenAPI host: a small pool of SDK sessions.

Everything goes through the PyPI ``XenAPI`` SDK. One ``XenAPI.Session`` is one HTTP
connection and is not safe to share between threads (or greenthreads), so calls borrow a
session from a queue for their duration; an expired session is logged in again once.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import XenAPI

ORIGINATOR = "nova-compute (xenstack-nova)"
API_VERSION = "1.0"


class XenAPISession:
    """``concurrent`` sessions to ``url``, opened on demand, as ``user``."""

    def __init__(self, url: str, user: str, password: str, concurrent: int = 5) -> None:
        if not url:
            raise ValueError("[xenserver] connection_url is not set")
        self.url = url.rstrip("/") + "/"
        self._user = user
        self._password = password
        self._limit = concurrent
        self._made = 0
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        with self.session() as first:  # fail at start-up on a bad URL or password
            self.pool_ref = first.xenapi.pool.get_all()[0]

    def _login(self) -> Any:
        sess = XenAPI.Session(self.url)
        sess.xenapi.login_with_password(self._user, self._password, API_VERSION, ORIGINATOR)
        return sess

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """Borrow a logged-in SDK session."""
        try:
            sess = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self._limit
                if make:
                    self._made += 1
            if make:
                try:
                    sess = self._login()
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise
            else:
                sess = self._idle.get()
        ok = True
        try:
            yield sess
        except XenAPI.Failure as exc:
            if exc.details and exc.details[0] == "SESSION_INVALID":
                ok = False
            raise
        except OSError:
            ok = False  # the connection is broken: make a new one next time
            raise
        finally:
            if ok:
                self._idle.put(sess)
            else:
                with self._lock:
                    self._made -= 1

    def call(self, method: str, *args: Any) -> Any:
        """``call("VM.start", vm, False, False)``; one retry on an expired session."""
        for attempt in (0, 1):
            try:
                with self.session() as sess:
                    fn: Any = sess.xenapi
                    for part in method.split("."):
                        fn = getattr(fn, part)
                    return fn(*args)
            except XenAPI.Failure as exc:
                if attempt or not exc.details or exc.details[0] != "SESSION_INVALID":
                    raise
        raise AssertionError("unreachable")

    def call_plugin(self, host: str, plugin: str, fn: str, args: dict[str, str]) -> str:
        return str(self.call("host.call_plugin", host, plugin, fn, args))

    @contextlib.contextmanager
    def http_url(self, path: str, **query: str) -> Iterator[str]:
        """A URL of the host's HTTP handlers (``/import_raw_vdi``...) with a session of
        this pool in its query, held for the duration of the block."""
        with self.session() as sess:
            params = {"session_id": sess._session, **query}
            yield self.url.rstrip("/") + path + "?" + urllib.parse.urlencode(params)

    def close(self) -> None:
        while True:
            try:
                sess = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                sess.xenapi.session.logout()


def failure_code(exc: BaseException) -> str:
    """The XenAPI error code of a ``XenAPI.Failure`` ('' for anything else)."""
    if isinstance(exc, XenAPI.Failure) and exc.details:
        return str(exc.details[0])
    return ""
