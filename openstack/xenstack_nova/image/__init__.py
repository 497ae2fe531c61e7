"""The image handlers of ``[xenserver] image_handler``: how an image moves between Glance
and the host's SR."""

from __future__ import annotations

from typing import Any

from .base import ImageHandler


def load(name: str, session: Any, host: Any) -> ImageHandler:
    if name == "vdi_remote_stream":
        from .remote_stream import RemoteStreamHandler

        return RemoteStreamHandler(session, host)
    if name == "direct_vhd":
        from .direct_vhd import DirectVhdHandler

        return DirectVhdHandler(session, host)
    if name == "vdi_local_dev":
        from .local_dev import LocalDevHandler

        return LocalDevHandler(session, host)
    raise ValueError(f"unknown image handler {name!r}")


__all__ = ["ImageHandler", "load"]
