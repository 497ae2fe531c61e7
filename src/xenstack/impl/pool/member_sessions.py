"""Sessions are pool-wide: a member takes a session its master made (as XAPI's members do for
their HTTP handlers: Xen Orchestra logs in to the master and reads each host's
``/rrd_updates`` from that host with the same session).

The member asks its master who a session it does not know is, through the hidden
``session.xenstack_whoami``: the master checks the session as any call's (alive, its idle
time renewed) and answers its user, role and whether it is the pool's superuser; the member
then checks the handler's declared permission itself (``api/rbac.py``). A positive answer
is kept for :data:`KEEP` seconds, so a client polling every few seconds costs the master a
call per poll at most, and a session logged out on the master is refused again within them.
A refusal, or a master that cannot be reached, is SESSION_INVALID and is not kept.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ...core.context import Context
from ...errors import ApiError
from ...idl.model import ROLES
from ..registry import internal
from . import remote

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)

WHOAMI = "session.xenstack_whoami"
KEEP = 2.0  # seconds a master's answer is kept
MAX_KEPT = 4096
# (master address, session) -> (monotonic expiry, (user, role, superuser))
_kept: dict[tuple[str, str], tuple[float, tuple[str, str, bool]]] = {}


@internal(WHOAMI, "session ref session_id", "(string -> string) map", roles=" ".join(ROLES))
def whoami(ctx: Context) -> dict[str, str]:
    """On the master: the caller's session, as a member needs it to check a permission."""
    info = ctx.toolstack.auth.check(ctx.session)
    superuser = "true" if info.local_superuser else "false"
    return {"user": info.user, "role": info.role, "local_superuser": superuser}


async def master_session(ts: Services, session: str) -> tuple[str, str, bool]:
    """On a member: the user, role and superuser flag of ``session`` as its master knows it;
    SESSION_INVALID if the master refuses it or cannot be asked."""
    key = (ts.master_address, session)
    now = time.monotonic()
    kept = _kept.get(key)
    if kept is not None and kept[0] > now:
        return kept[1]
    try:
        answer = await remote.call(ts.master_address, WHOAMI, session)
    except remote.Unreachable as exc:
        log.warning("could not ask the master about a session: %s", exc)
        raise ApiError("SESSION_INVALID", [session]) from None
    except ApiError:
        _kept.pop(key, None)
        raise ApiError("SESSION_INVALID", [session]) from None
    who = (str(answer["user"]), str(answer["role"]), answer.get("local_superuser") == "true")
    if len(_kept) >= MAX_KEPT:
        for k in [k for k, (expiry, _) in _kept.items() if expiry <= now] or list(_kept):
            del _kept[k]
    _kept[key] = (now + KEEP, who)
    return who
