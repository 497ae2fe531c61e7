"""Shared-directory SRs (``nfs``): a directory every host sees, one subdirectory per SR.

``device_config`` names the directory either as ``path`` (a local directory) or as
``server`` + ``serverpath``, mapped under the toolstack's ``nfs`` directory as if mounted
there. The SR keeps its VDIs in ``<directory>/<sr-uuid>/``, as XenServer's NFS SR does.
"""

from __future__ import annotations

import os

from xenstack.storage.sr.driver import SrDriverError
from xenstack.storage.sr.filesr import FileSr

ERR_NO_PATH = 73  # SM: "NFS mount error" (the export cannot be reached)


def shared_directory(device_config: dict[str, str], mount_root: str) -> str | None:
    """The local directory behind ``device_config``, or None if it names none."""
    if device_config.get("path"):
        return os.path.abspath(device_config["path"])
    server, serverpath = device_config.get("server"), device_config.get("serverpath")
    if server and serverpath:
        return os.path.join(mount_root, server, serverpath.strip("/"))
    return None


class SharedSr(FileSr):
    """A :class:`FileSr` in ``<export>/<sr-uuid>``; the export itself must exist."""

    def __init__(self, export: str, sr_uuid: str) -> None:
        super().__init__(os.path.join(export, sr_uuid))
        self.export = export

    def attach(self) -> None:
        if not os.path.isdir(self.export):
            raise SrDriverError(ERR_NO_PATH, f"the shared directory {self.export} is missing")
        super().attach()
