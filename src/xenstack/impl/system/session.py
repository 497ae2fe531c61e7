"""The session class: login, logout, and what a session knows about itself."""

from __future__ import annotations

from ...core.access import LOCAL_SUPERUSER
from ...core.calls import Origin
from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...errors import ApiError
from ...idl.types import NULL_REF
from ..registry import implements

API_VERSION = ("2", "21")


async def _login(ctx: Context, uname: str, pwd: str, originator: str, origin: Origin) -> str:
    ts = ctx.toolstack
    user = await ts.auth.authenticate(uname, pwd, origin.peer)
    ref = new_ref()
    stamp = ts.clock.now()
    with ctx.db.transaction() as db:
        db.create(
            "session",
            ref,
            new_record(
                "session",
                uuid=new_uuid(),
                this_host=ctx.this_host,
                this_user=NULL_REF,
                last_active=stamp,
                pool=False,
                is_local_superuser=user.role == "pool-admin" and uname == LOCAL_SUPERUSER,
                validation_time=stamp,
                auth_user_name=uname,
                originator=originator,
                rbac_permissions=[],
            ),
        )
    ts.auth.open(ref, user)
    return ref


@implements("session.login_with_password")
async def login_with_password(
    ctx: Context, uname: str, pwd: str, version: str, originator: str, origin: Origin
) -> str:
    return await _login(ctx, uname, pwd, originator, origin)


@implements("session.slave_local_login_with_password")
async def slave_local_login_with_password(
    ctx: Context, uname: str, pwd: str, origin: Origin
) -> str:
    return await _login(ctx, uname, pwd, "", origin)


@implements("session.logout", "session.local_logout")
def logout(ctx: Context) -> None:
    _end(ctx, ctx.session)


def _end(ctx: Context, ref: str) -> None:
    ctx.toolstack.auth.close(ref)
    if ctx.db.exists("session", ref):
        with ctx.db.transaction() as db:
            db.destroy("session", ref)


@implements("session.get_all_subject_identifiers")
def get_all_subject_identifiers(ctx: Context) -> list[str]:
    rows = ctx.db.table("session").rows.values()
    return sorted({r["auth_user_sid"] for r in rows if r["auth_user_sid"]})


@implements("session.logout_subject_identifier")
def logout_subject_identifier(ctx: Context, subject_identifier: str) -> None:
    for ref, row in list(ctx.db.table("session").rows.items()):
        if row["auth_user_sid"] == subject_identifier and ref != ctx.session:
            _end(ctx, ref)


@implements("session.change_password")
def change_password(ctx: Context, old_pwd: str, new_pwd: str) -> None:
    info = ctx.toolstack.auth.check(ctx.session)
    user = ctx.toolstack.auth.users().get(info.user)
    if user is None or not ctx.toolstack.auth.password_matches(user, old_pwd):
        # xapi: ocaml/xapi/xapi_session.ml passes 2
        raise ApiError("SESSION_AUTHENTICATION_FAILED", [info.user, "old password is wrong"])
    ctx.toolstack.auth.set_user(info.user, new_pwd, user.role)


@implements("session.get_rbac_permissions")
def get_rbac_permissions(ctx: Context, self_: str) -> list[str]:
    return list(ctx.db.field("session", self_, "rbac_permissions"))
