"""Host power: reboot, shutdown and power_on, as XAPI checks them.

XAPI reboots or shuts a host down only when it is disabled (``HOST_NOT_DISABLED``) and runs
no guest (``HOST_IN_USE`` naming the first running one). A toolstack never powers off the
machine it runs on: here the host's domains stop (paused ones are destroyed, as a real power
cycle would), and its ``host_metrics.live`` records the outcome: false after ``shutdown``
until ``power_on``; a ``reboot`` comes back live and enabled, as XAPI's host does once its
toolstack starts again.
"""

from __future__ import annotations

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ..registry import implements
from ..vm.power import halt
from .host import user_vms


def assert_bacon_mode(db: Database, host: str) -> None:
    """Disabled and no running guest (xapi's ``assert_bacon_mode``)."""
    if db.get("host", host)["enabled"]:
        raise ApiError("HOST_NOT_DISABLED", [])
    vms = db.table("VM").rows
    running = [v for v in user_vms(db, host) if vms[v]["power_state"] == "Running"]
    if running:
        raise ApiError("HOST_IN_USE", [host, "vm", running[0]])


async def _power_down(ctx: Context, host: str) -> None:
    assert_bacon_mode(ctx.db, host)
    for vm in user_vms(ctx.db, host):  # paused domains do not survive a power cycle
        await halt(ctx, vm, clean=False)


def _set_live(db: Database, host: str, live: bool) -> None:
    metrics = db.get("host", host)["metrics"]
    if db.exists("host_metrics", metrics):
        db.set("host_metrics", metrics, "live", live)


@implements("host.shutdown")
async def shutdown(ctx: Context, host: str) -> None:
    await _power_down(ctx, host)
    with ctx.db.transaction() as db:
        _set_live(db, host, False)


@implements("host.reboot")
async def reboot(ctx: Context, host: str) -> None:
    await _power_down(ctx, host)
    with ctx.db.transaction() as db:
        _set_live(db, host, True)
        db.set("host", host, "enabled", True)


@implements("host.power_on")
def power_on(ctx: Context, host: str) -> None:
    """A host that is down comes back (``HOST_POWER_ON_MODE_DISABLED`` unless its
    ``power_on_mode`` names a way to reach it, as XAPI requires); a live host is left as is."""
    db = ctx.db
    row = db.get("host", host)
    metrics = db.table("host_metrics").rows.get(row["metrics"])
    if metrics is not None and metrics["live"]:
        return
    if not row["power_on_mode"]:
        raise ApiError("HOST_POWER_ON_MODE_DISABLED", [])
    with db.transaction() as tx:
        _set_live(tx, host, True)
        tx.set("host", host, "enabled", True)


@implements("host.set_power_on_mode")
def set_power_on_mode(
    ctx: Context, self_: str, power_on_mode: str, power_on_config: dict[str, str]
) -> None:
    """Keep the new mode and config; the secrets the old config named (its
    ``*password_secret`` keys, as XenCenter stores a BMC password) are destroyed, as XAPI's
    ``Xapi_secret.clean_out_passwds`` does. A secret the new config still names is kept."""
    with ctx.db.transaction() as db:
        old = db.get("host", self_)["power_on_config"]
        db.update("host", self_, power_on_mode=power_on_mode, power_on_config=power_on_config)
        kept = set(power_on_config.values())
        secrets = db.table("secret").by_uuid
        for key, uuid in old.items():
            if key.endswith("password_secret") and uuid not in kept and uuid in secrets:
                db.destroy("secret", secrets[uuid])
