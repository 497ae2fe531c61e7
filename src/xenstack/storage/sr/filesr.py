"""Local file SRs (``ext``, ``file``): one dynamic ``<vdi-uuid>.vhd`` per VDI in one directory.

Snapshots and clones are differencing children, as XenServer makes them: the VDI's current
file becomes a hidden, read-only base (a new uuid, marked by an empty ``.<uuid>.hidden``
file), the VDI gets a new empty leaf over it and the new VDI another one. Both steps are a
link, renames and two small file creations, whatever the disk's size, and a crash at any
point leaves every VDI readable with its data (:meth:`FileSr.repair` tidies up).

Every file name derived from a record goes through :func:`~.driver.inside`: a location is
one plain name of a file in the SR's directory. A chain is at most MAX_CHAIN files deep, as
XenServer's SM keeps it: a snapshot or clone of a deeper one is refused (SM's error 109)
until the GC has coalesced it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid as uuidlib

from xenstack.storage.errors import VhdError
from xenstack.storage.sr.driver import SrDriverError, VdiInfo, inside
from xenstack.storage.vhd import (
    DiskType,
    VhdImage,
    VhdLayer,
    coalesce,
    create_dynamic,
    export_raw_chunks,
    recover,
)
from xenstack.storage.vhd import resize as vhd_resize
from xenstack.storage.vhd.coalesce import JOURNAL_SUFFIX, journal_path
from xenstack.storage.vhd.layer import read_metadata
from xenstack.storage.vhd.ops import fsync_dir

SUFFIX = ".vhd"
TMP_SUFFIX = ".new"  # a child being made: not a node until renamed
FOLD_SUFFIX = ".fold"  # the record of a leaf being folded into its base (see fold_into_base)
ERR_NO_VDI = 46  # SM: "The VDI is not available"
ERR_SIZE = 79  # SM: "VDI Invalid size"
ERR_READ_ONLY = 116  # SM: "The SR is read-only"
ERR_CHAIN = 109  # SM: "The snapshot chain is too long"
MAX_CHAIN = 30  # SM's MAX_CHAIN_SIZE: files in a chain, the leaf included
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: the names a file SR gives its own files (what SR.destroy may remove)
OWN_NAME = re.compile(
    rf"^(?:{_UUID}\.vhd(?:\.new|{re.escape(JOURNAL_SUFFIX)}(?:\.tmp)?|\.compact)?"
    rf"|\.{_UUID}\.(?:hidden|fold|fold\.new))$"
)


def hidden_marker(directory: str, node_uuid: str) -> str:
    return os.path.join(directory, f".{node_uuid}.hidden")


def fold_record(directory: str, vdi_uuid: str) -> str:
    return os.path.join(directory, f".{vdi_uuid}{FOLD_SUFFIX}")


class FileSr:
    """A directory of VHD files (see the module docstring)."""

    read_only = False
    holds_data = True

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def attach(self) -> None:
        os.makedirs(self.directory, exist_ok=True)

    def detach_and_destroy(self, sr_uuid: str, locations: list[str]) -> None:
        """As SM's FileSR: remove the SR's own files, never other files or directories."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        doomed = {n for n in names if OWN_NAME.match(n)}
        for location in locations:
            with contextlib.suppress(SrDriverError):
                doomed.add(os.path.basename(self.path(location)))
        for name in sorted(doomed):
            path = os.path.join(self.directory, name)
            if os.path.islink(path) or os.path.isfile(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        if os.path.basename(self.directory) == sr_uuid:
            with contextlib.suppress(OSError):  # not empty: what is left is not ours
                os.rmdir(self.directory)

    def path(self, vdi_uuid: str) -> str:
        return inside(self.directory, vdi_uuid + SUFFIX)

    def is_hidden(self, node_uuid: str) -> bool:
        return os.path.exists(hidden_marker(self.directory, node_uuid))

    def nodes(self) -> list[str]:
        """Every VHD node's uuid in the SR, hidden ones included."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and self._node(n))

    def _node(self, name: str) -> bool:
        try:
            inside(self.directory, name)
        except SrDriverError:
            return False  # a hidden file, or a symlink out of the SR: not one of our VDIs
        return True

    def depth(self, vdi_uuid: str) -> int:
        """The files in the VDI's chain within this SR, its leaf included (headers only:
        constant time whatever the disks' sizes); counting stops past MAX_CHAIN."""
        path, depth = self.path(vdi_uuid), 1
        while depth <= MAX_CHAIN:
            footer, header = read_metadata(path)
            if footer.disk_type is not DiskType.DIFFERENCING or header is None:
                break
            parent = os.path.join(self.directory, os.path.basename(header.parent_name))
            if not os.path.isfile(parent):
                break
            path, depth = parent, depth + 1
        return depth

    def scan(self) -> list[VdiInfo]:
        """Every node, hidden ones (base copies) included, except a hidden node sharing its
        file with another name: a snapshot's base before its swap, or a fold's alias."""
        found = []
        for node in self.nodes():
            try:
                info = self.info(node)
                if info.hidden and os.stat(self.path(node)).st_nlink > 1:
                    continue
            except (SrDriverError, VhdError, FileNotFoundError):
                continue  # not a VHD we can read (XenServer skips it too), or gone since
            found.append(info)
        return found

    def block_bitmap(self, node_uuid: str) -> bytes:
        """The blocks the node's own file holds, one bit each, the first block in the top
        bit of the first byte (VHD's bitmap order): what ``vhd-util read -B`` prints and SM
        keeps, compressed, as a base copy's ``vhd-blocks``."""
        with VhdLayer.open(self.path(node_uuid)) as layer:
            bits = bytearray((layer.block_count + 7) // 8)
            for block in layer.allocated_blocks():
                bits[block // 8] |= 0x80 >> (block % 8)
        return bytes(bits)

    def usage(self) -> tuple[int, int]:
        used = 0
        for node in self.nodes():
            try:
                used += os.stat(self.path(node)).st_size
            except FileNotFoundError:
                continue
        st = os.statvfs(self.directory)
        return used, st.f_blocks * st.f_frsize

    def info(self, vdi_uuid: str) -> VdiInfo:
        path = self.path(vdi_uuid)
        try:
            footer, header = read_metadata(path)
            physical = os.stat(path).st_size
        except FileNotFoundError:
            raise SrDriverError(ERR_NO_VDI, f"VDI {vdi_uuid} has no file") from None
        parent = ""
        if footer.disk_type is DiskType.DIFFERENCING and header is not None:
            name = os.path.basename(header.parent_name)
            if name.endswith(SUFFIX) and os.path.isfile(os.path.join(self.directory, name)):
                parent = name[: -len(SUFFIX)]
        hidden = self.is_hidden(vdi_uuid)
        return VdiInfo(
            vdi_uuid, vdi_uuid, footer.current_size, physical, parent=parent, hidden=hidden
        )

    def create(self, vdi_uuid: str, size: int) -> VdiInfo:
        if size <= 0:
            raise SrDriverError(ERR_SIZE, "VDI Invalid size")
        path = self.path(vdi_uuid)
        try:
            create_dynamic(path, size)
        except ValueError as exc:
            raise SrDriverError(ERR_SIZE, f"VDI Invalid size: {exc}") from None
        except BaseException:  # a full disk: leave no partial file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return self.info(vdi_uuid)

    def delete(self, vdi_uuid: str) -> None:
        """Remove the VDI's file, unless other nodes still read through it (a VDI that is a
        parent, as a scan or an imported chain may make): that one is only hidden, as SM's
        VHD SRs do, and the GC coalesces it away once it is no longer needed."""
        if self.children(vdi_uuid):
            open(hidden_marker(self.directory, vdi_uuid), "wb").close()
            fsync_dir(self.directory)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(vdi_uuid))

    def children(self, node_uuid: str) -> list[str]:
        """The nodes whose parent is ``node_uuid``."""
        found = []
        for node in self.nodes():
            with contextlib.suppress(SrDriverError, VhdError, OSError):
                if node != node_uuid and self.info(node).parent == node_uuid:
                    found.append(node)
        return found

    def snapshot(self, vdi_uuid: str, new_uuid: str) -> VdiInfo:
        """Crash-safe at every step (see :meth:`repair`): the VDI's file gains a second
        name as the hidden base (a hard link), a child over it is made under a temporary
        name, and one rename swaps it in as the VDI's leaf; then the new VDI's leaf."""
        leaf = self.path(vdi_uuid)
        if not os.path.exists(leaf):
            raise SrDriverError(ERR_NO_VDI, f"VDI {vdi_uuid} has no file")
        if self.depth(vdi_uuid) >= MAX_CHAIN:  # one more level would pass SM's limit
            raise SrDriverError(ERR_CHAIN, "The snapshot chain is too long")
        base_uuid = str(uuidlib.uuid4())
        base, marker = self.path(base_uuid), hidden_marker(self.directory, base_uuid)
        open(marker, "wb").close()
        try:
            os.link(leaf, base)
            self._create_child(leaf, base)
        except BaseException:
            for leftover in (base, marker):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            raise
        self._create_child(self.path(new_uuid), base)
        fsync_dir(self.directory)
        return self.info(new_uuid)

    def _create_child(self, path: str, parent: str) -> None:
        """A differencing child of ``parent`` at ``path`` (replacing it), made whole first."""
        tmp = path + TMP_SUFFIX
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            create_dynamic(tmp, parent=parent)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def fold_into_base(self, vdi_uuid: str, base_uuid: str) -> None:
        """Merge the VDI's leaf into its hidden base, which then becomes the VDI's file.

        Contract: the base's only child is the leaf, the leaf has none, nothing else uses
        either. The VDI's file stays readable with its data at every step: the leaf gains a
        hidden second name (the alias), the alias is coalesced into the base with the VHD
        library's journaled coalesce (which drops only that name), and one rename puts the
        base in place of the leaf. A record of the fold is written once the alias exists;
        :meth:`repair` finishes or undoes a fold a crash interrupted.
        """
        alias = str(uuidlib.uuid4())
        open(hidden_marker(self.directory, alias), "wb").close()
        os.link(self.path(vdi_uuid), self.path(alias))
        fsync_dir(self.directory)
        record = fold_record(self.directory, vdi_uuid)
        with open(record + TMP_SUFFIX, "w", encoding="utf-8") as f:
            json.dump({"alias": alias, "base": base_uuid}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(record + TMP_SUFFIX, record)
        fsync_dir(self.directory)
        coalesce(self.path(alias))
        self._finish_fold(vdi_uuid)

    def _finish_fold(self, vdi_uuid: str) -> None:
        """Complete the recorded fold of ``vdi_uuid`` (idempotent), or undo one not begun."""
        record = fold_record(self.directory, vdi_uuid)
        with open(record, encoding="utf-8") as f:
            fold = json.load(f)
        alias, base = str(fold["alias"]), str(fold["base"])
        if os.path.exists(journal_path(self.path(alias))):
            recover(self.directory)  # the coalesce was under way: the library finishes it
        if os.path.exists(self.path(alias)):
            os.unlink(self.path(alias))  # the coalesce never began: the leaf is untouched
        elif os.path.exists(self.path(base)):
            os.replace(self.path(base), self.path(vdi_uuid))  # the base now holds it all
        for node in (alias, base):
            if not os.path.exists(self.path(node)):  # an undone fold keeps its base hidden
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(hidden_marker(self.directory, node))
        fsync_dir(self.directory)
        os.unlink(record)
        fsync_dir(self.directory)

    def repair(self) -> list[str]:
        """Undo what an interrupted snapshot left; return the hidden nodes removed.

        Interrupted folds are finished first (see :meth:`fold_into_base`). Temporary files
        are deleted; a hidden base still sharing its file with a VDI (the swap never
        happened) loses that second name; markers without file go.
        """
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(FOLD_SUFFIX) and name.startswith("."):
                self._finish_fold(name[1 : -len(FOLD_SUFFIX)])
        names = os.listdir(self.directory)
        for name in names:
            if name.endswith((SUFFIX + TMP_SUFFIX, FOLD_SUFFIX + TMP_SUFFIX)):
                os.unlink(os.path.join(self.directory, name))
        inodes: dict[tuple[int, int], list[str]] = {}
        for node in self.nodes():
            st = os.stat(self.path(node))
            inodes.setdefault((st.st_dev, st.st_ino), []).append(node)
        removed = []
        for name in names:
            if not (name.startswith(".") and name.endswith(".hidden")):
                continue
            node = name[1 : -len(".hidden")]
            try:
                st = os.stat(self.path(node))
            except FileNotFoundError:
                os.unlink(os.path.join(self.directory, name))
                continue
            if len(inodes.get((st.st_dev, st.st_ino), [])) > 1:
                os.unlink(self.path(node))
                os.unlink(os.path.join(self.directory, name))
                removed.append(node)
        if removed:
            fsync_dir(self.directory)
        return removed

    def resize(self, vdi_uuid: str, size: int) -> VdiInfo:
        try:
            vhd_resize(self.path(vdi_uuid), size)
        except ValueError as exc:
            raise SrDriverError(ERR_SIZE, f"VDI Invalid size: {exc}") from None
        return self.info(vdi_uuid)

    def copy_from(self, source_path: str, vdi_uuid: str) -> VdiInfo:
        """A new VDI holding the flattened contents of the chain at ``source_path``."""
        with VhdImage.open(source_path, writable=False) as src:
            dest_path = self.path(vdi_uuid)
            create_dynamic(dest_path, src.virtual_size)
            try:
                with VhdImage.open(dest_path) as dest:
                    for offset, data in export_raw_chunks(src):
                        if any(data):
                            dest.write(offset, data)
                    dest.flush()
            except BaseException:
                os.unlink(dest_path)
                raise
        return self.info(vdi_uuid)
