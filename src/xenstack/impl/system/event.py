"""The event class: ``event.from`` and the legacy register/next/unregister."""

from __future__ import annotations

import asyncio
from typing import Any

from ...core.context import Context
from ...db.events import Subscription, collect, event_from, token_of
from ...errors import ApiError
from ..registry import implements

NEXT_WAIT = 30.0


@implements("event.from")
async def from_(ctx: Context, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    return await event_from(ctx.db, classes, token, timeout)


@implements("event.get_current_id")
def get_current_id(ctx: Context) -> int:
    return ctx.db.generation


@implements("event.inject")
def inject(ctx: Context, class_: str, ref: str) -> str:
    from ...idl.model import CLASS_BY_LOWER

    cls = CLASS_BY_LOWER.get(class_.lower())
    if cls is None:
        raise ApiError("HANDLE_INVALID", [class_, ref])
    with ctx.db.transaction() as db:
        db.touch(cls, ref)
    return token_of(ctx.db.generation)


@implements("event.register")
def register(ctx: Context, classes: list[str]) -> None:
    info = ctx.toolstack.auth.check(ctx.session)
    if info.events_token < 0:
        info.events_token = ctx.db.generation
    info.events_registered = sorted({*info.events_registered, *classes})


@implements("event.unregister")
def unregister(ctx: Context, classes: list[str]) -> None:
    info = ctx.toolstack.auth.check(ctx.session)
    info.events_registered = [c for c in info.events_registered if c not in classes]


@implements("event.next")
async def next_(ctx: Context) -> list[dict[str, Any]]:
    """Block until a registered class changes; EVENTS_LOST if the caller fell too far behind."""
    auth, db = ctx.toolstack.auth, ctx.db
    info = auth.check(ctx.session)
    if not info.events_registered:
        raise ApiError("SESSION_NOT_REGISTERED", [ctx.session])
    while True:
        if info.events_token < db.oldest_deletion_kept:
            info.events_token = db.generation
            raise ApiError("EVENTS_LOST")
        current = db.generation
        events = collect(db, Subscription(info.events_registered), info.events_token)
        info.events_token = current
        if events:
            return events
        await db.wait_change(NEXT_WAIT)
        auth.check(ctx.session)
        await asyncio.sleep(0)
