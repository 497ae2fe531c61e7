"""``direct_vhd``: the host's ``glance.py`` dom0 plug-in moves the VHD chain between Glance and
the SR directory itself; nova-compute only tells it what to move, with os-xenapi's argument
encoding (``host.call_plugin(host, 'glance.py', fn, {'params': pickle})`` of
``{'args': [], 'kwargs': {...}}``, answered with a pickle). Pickles are protocol 0, text, so
that they stay valid XenAPI strings on Python 3 at both ends.

Download passes a stack of fresh UUIDs the plug-in names the chain's files after
(``<uuid>.vhd`` in ``sr_path``); the driver then scans the SR and takes the root VDI the
plug-in reports. Upload passes the VDI's chain of UUIDs, leaf first.
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

from nova import exception
from nova.image import glance
from oslo_config import cfg

from .. import vm_utils
from ..session import failure_code
from .base import ImageHandler, identity_headers, round_mib

CONF = cfg.CONF
PLUGIN = "glance.py"
CHAIN_MAX = 64


def serialize(**kwargs: Any) -> dict[str, str]:
    return {"params": pickle.dumps({"args": [], "kwargs": kwargs}, 0).decode("latin-1")}


def deserialize(text: str) -> Any:
    return pickle.loads(text.encode("latin-1"))


class DirectVhdHandler(ImageHandler):
    name = "direct_vhd"

    def _endpoint(self) -> str:
        override = CONF.glance.api_servers
        if override:
            return str(override[0]).rstrip("/")
        client = glance.get_api_servers(None)
        return str(next(client)).rstrip("/")

    def _sr_path(self, sr: str) -> str:
        for pbd in self.session.call("SR.get_PBDs", sr):
            rec = self.session.call("PBD.get_record", pbd)
            if rec["host"] == self.host and rec["device_config"].get("path"):
                return str(rec["device_config"]["path"])
        sr_uuid = self.session.call("SR.get_uuid", sr)
        return f"{CONF.xenserver.sr_base_path.rstrip('/')}/{sr_uuid}"

    def _headers(self, context: Any) -> dict[str, str]:
        return identity_headers(context)

    def download(self, context: Any, instance: Any, image_id: str, sr: str, min_size: int) -> str:
        stack = [str(uuid.uuid4()) for _ in range(CHAIN_MAX)]
        args = serialize(
            image_id=image_id,
            endpoint=self._endpoint(),
            uuid_stack=stack,
            sr_path=self._sr_path(sr),
            extra_headers=self._headers(context),
            api_version=2,
        )
        result = deserialize(self.session.call_plugin(self.host, PLUGIN, "download_vhd2", args))
        self.session.call("SR.scan", sr)
        root_uuid = result["root"]["uuid"]
        vdi = str(self.session.call("VDI.get_by_uuid", root_uuid))
        self.session.call("VDI.set_name_label", vdi, f"{instance.name} root")
        self.session.call("VDI.add_to_other_config", vdi, vm_utils.NOVA_DISK, "root")
        size = int(self.session.call("VDI.get_virtual_size", vdi))
        want = round_mib(min_size)
        if want > size:
            self.session.call("VDI.resize", vdi, str(want))
        return vdi

    def upload(
        self, context: Any, instance: Any, image_id: str, vdi: str, meta: dict[str, Any]
    ) -> None:
        """The VDI's chain, leaf first, as XAPI names it (``sm_config:vhd-parent``): a
        snapshot's goes through its base copies, which are VDIs. A chain the XenAPI cannot
        follow to its end (a parent that is no VDI: a base copy's record forgotten, or a
        host made before xenstack recorded base copies, until its SR is scanned) is uploaded
        as a standalone copy (``VDI.copy``) instead, so that the plug-in never sends a
        differencing disk without its parents."""
        chain = self._chain(vdi)
        if chain is not None:
            self._upload_chain(context, instance, image_id, vdi, chain, meta)
            return
        copy = str(self.session.call("VDI.copy", vdi, self.session.call("VDI.get_SR", vdi)))
        try:
            whole = self._chain(copy) or [str(self.session.call("VDI.get_uuid", copy))]
            self._upload_chain(context, instance, image_id, copy, whole, meta)
        finally:
            vm_utils.destroy_vdis(self.session, [copy])

    def _chain(self, vdi: str) -> list[str] | None:
        """The uuids of the VDI's VHD chain, leaf first; None if a parent is not a VDI."""
        rec = self.session.call("VDI.get_record", vdi)
        chain = [rec["uuid"]]
        parent = rec["sm_config"].get("vhd-parent")
        while parent:
            if len(chain) >= CHAIN_MAX:
                return None
            try:
                ref = self.session.call("VDI.get_by_uuid", parent)
            except Exception as exc:
                if failure_code(exc) == "UUID_INVALID":
                    return None
                raise
            chain.append(parent)
            parent = self.session.call("VDI.get_sm_config", ref).get("vhd-parent")
        return chain

    def _upload_chain(
        self,
        context: Any,
        instance: Any,
        image_id: str,
        vdi: str,
        chain: list[str],
        meta: dict[str, Any],
    ) -> None:
        props = {k: str(v) for k, v in (meta.get("properties") or {}).items()}
        props.setdefault("os_type", instance.os_type or "linux")
        args = serialize(
            image_id=image_id,
            endpoint=self._endpoint(),
            vdi_uuids=chain,
            sr_path=self._sr_path(str(self.session.call("VDI.get_SR", vdi))),
            extra_headers=self._headers(context),
            properties=props,
            api_version=2,
        )
        try:
            self.session.call_plugin(self.host, PLUGIN, "upload_vhd2", args)
        except Exception as exc:
            details = getattr(exc, "details", [])
            if len(details) == 4 and details[3] == "ImageNotFound":
                raise exception.ImageNotFound(image_id=image_id) from exc
            raise
