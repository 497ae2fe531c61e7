"""``event.from``: what changed since a token, coalesced per object, as XAPI reports it.

A token is ``"%020d,%020d"`` of the last database generation the caller has seen and of the
message generation (messages live in the database here, so the second part is always 0).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..errors import ApiError
from ..idl.model import CLASS_BY_LOWER
from .store import Database


def token_of(generation: int) -> str:
    return f"{generation:020d},{0:020d}"


def parse_token(token: str) -> int:
    if token == "":
        return 0
    try:
        return int(token.split(",")[0])
    except ValueError:
        raise ApiError("EVENT_FROM_TOKEN_PARSE_FAILURE", [token]) from None


class Subscription:
    """A set of classes (``vm``, ``*``) and single objects (``vm/OpaqueRef:...``)."""

    def __init__(self, specs: Iterable[str]) -> None:
        self.all = False
        self.classes: set[str] = set()
        self.objects: set[tuple[str, str]] = set()
        for spec in specs:
            if spec == "*":
                self.all = True
                continue
            name, _, ref = spec.partition("/")
            cls = CLASS_BY_LOWER.get(name.lower())
            if cls is None:
                continue  # XAPI ignores classes it does not know
            if ref:
                self.objects.add((cls, ref))
            else:
                self.classes.add(cls)

    def matches(self, cls: str, ref: str) -> bool:
        return self.all or cls in self.classes or (cls, ref) in self.objects


def _event(gen: int, cls: str, ref: str, op: str, row: dict[str, Any] | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": str(gen),
        "timestamp": f"{time.time():.6f}",
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
    }
    if row is not None:
        event["snapshot"] = dict(row)
        event["obj_uuid"] = row.get("uuid", "")
    return event


def collect(db: Database, sub: Subscription, since: int) -> list[dict[str, Any]]:
    """Events for every subscribed object changed after generation ``since``, oldest first."""
    found: list[tuple[int, dict[str, Any]]] = []
    for (cls, ref), gen in reversed(db.recent.items()):
        if gen <= since:
            break
        if sub.matches(cls, ref):
            row = db.tables[cls].rows.get(ref)
            op = "add" if db.created.get((cls, ref), 0) > since else "mod"
            found.append((gen, _event(gen, cls, ref, op, row)))
    for (cls, ref), (created, deleted) in reversed(db.deleted.items()):
        if deleted <= since:
            break
        if created <= since and sub.matches(cls, ref):
            found.append((deleted, _event(deleted, cls, ref, "del", None)))
    found.sort(key=lambda pair: pair[0])
    return [event for _, event in found]


def valid_ref_counts(db: Database) -> dict[str, int]:
    return {name.lower(): len(table.rows) for name, table in db.tables.items()}


async def event_from(
    db: Database, classes: list[str], token: str, timeout: float
) -> dict[str, Any]:
    """Block until a subscribed object changes after ``token``, or ``timeout`` passes."""
    since = parse_token(token)
    sub = Subscription(classes)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        current = db.generation
        events = collect(db, sub, since)
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            return {
                "events": events,
                "valid_ref_counts": valid_ref_counts(db),
                "token": token_of(current),
            }
        since = current  # nothing of ours up to here: look only at what comes next
        await db.wait_change(remaining)
