"""The object store: one table per XenAPI class, indexes, relations, generations.

All mutation happens inside :meth:`Database.transaction`, synchronously (the server is one
asyncio thread, so a transaction is atomic as long as it does not await). On commit the
generation counter moves on once, the change log behind ``event.from`` is updated, waiters are
woken, and the changed rows go to the persistence layer.

Records are dicts of field name to value. Set and map values are never mutated in place: a
change replaces the value, so a record handed to an encoder stays coherent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ApiError, handle_invalid
from ..idl.model import CLASSES, ClassDef
from ..idl.types import NULL_REF, Record
from .persistence import Change, Persistence

#: XAPI keeps these in memory only: they do not survive a restart.
TRANSIENT_CLASSES = frozenset({"session", "task", "event"})
DELETED_KEPT = 50_000  # deletions remembered for event.from


class Table:
    """The rows of one class, with uuid and name_label indexes."""

    __slots__ = ("by_name", "by_uuid", "cdef", "rows")

    def __init__(self, cdef: ClassDef) -> None:
        self.cdef = cdef
        self.rows: dict[str, Record] = {}
        self.by_uuid: dict[str, str] = {}
        self.by_name: dict[str, set[str]] = {}

    def index(self, ref: str, row: dict[str, Any]) -> None:
        uuid = row.get("uuid")
        if uuid:
            self.by_uuid[uuid] = ref
        if "name_label" in row:
            self.by_name.setdefault(row["name_label"], set()).add(ref)

    def unindex(self, ref: str, row: dict[str, Any]) -> None:
        if self.by_uuid.get(row.get("uuid", "")) == ref:
            del self.by_uuid[row["uuid"]]
        names = self.by_name.get(row.get("name_label", ""))
        if names is not None:
            names.discard(ref)
            if not names:
                del self.by_name[row["name_label"]]


class _Txn:
    """What one transaction touched, and how to undo it."""

    __slots__ = ("changed", "deleted", "owned", "undo")

    def __init__(self) -> None:
        self.changed: dict[tuple[str, str], bool] = {}  # (cls, ref) -> created here
        self.deleted: dict[tuple[str, str], dict[str, Any]] = {}
        self.undo: list[tuple[str, str, Record | None]] = []
        self.owned: set[tuple[str, str, str]] = set()  # many-side lists copied already


class Database:
    """Tables of every class, a generation counter and the change log."""

    def __init__(self, persistence: Persistence) -> None:
        self.persistence = persistence
        self.tables = {name: Table(cdef) for name, cdef in CLASSES.items()}
        self.generation = 0
        self.created: dict[tuple[str, str], int] = {}
        self.recent: dict[tuple[str, str], int] = {}  # insertion order == generation order
        self.deleted: dict[tuple[str, str], tuple[int, int]] = {}  # -> (created, deleted)
        self.oldest_deletion_kept = 0
        self._txn: _Txn | None = None
        self._waiters: list[asyncio.Future[None]] = []

    # ---- loading -------------------------------------------------------------------

    def load(self) -> None:
        """Fill the tables from persistence (at start-up, before serving)."""
        for cls, ref, row in self.persistence.load():
            table = self.tables.get(cls)
            if table is None:
                continue
            full = Record(table.cdef.defaults())
            full.update((k, v) for k, v in row.items() if k in full)
            table.rows[ref] = full
            table.index(ref, full)
        self.generation = max(1, self.persistence.generation())
        for cls, table in self.tables.items():
            for ref in table.rows:
                self.created[(cls, ref)] = 1
                self.recent[(cls, ref)] = 1

    # ---- reads ---------------------------------------------------------------------

    def table(self, cls: str) -> Table:
        return self.tables[cls]

    def get(self, cls: str, ref: str) -> Record:
        """The live record; raise HANDLE_INVALID if there is none."""
        row = self.tables[cls].rows.get(ref)
        if row is None:
            raise handle_invalid(cls, ref)
        return row

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables[cls].rows

    def field(self, cls: str, ref: str, name: str) -> Any:
        return self.get(cls, ref)[name]

    def refs(self, cls: str) -> list[str]:
        return list(self.tables[cls].rows)

    def by_uuid(self, cls: str, uuid: str) -> str:
        ref = self.tables[cls].by_uuid.get(uuid)
        if ref is None:
            raise ApiError("UUID_INVALID", [cls, uuid])
        return ref

    def by_name(self, cls: str, name: str) -> list[str]:
        return sorted(self.tables[cls].by_name.get(name, ()))

    def find(self, cls: str, **match: Any) -> list[str]:
        """Refs whose fields equal every given value (a linear scan)."""
        items = list(match.items())
        return [
            ref
            for ref, row in self.tables[cls].rows.items()
            if all(row.get(k) == v for k, v in items)
        ]

    # ---- writes --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Group writes; commit them together or undo them all on an exception."""
        if self._txn is not None:  # nested: part of the outer transaction
            yield self
            return
        self._txn = txn = _Txn()
        try:
            yield self
        except BaseException:
            self._rollback(txn)
            raise
        finally:
            self._txn = None
        if txn.changed or txn.deleted:
            self._commit(txn)

    def _active(self) -> _Txn:
        if self._txn is None:
            raise RuntimeError("database write outside a transaction")
        return self._txn

    def _touch(self, cls: str, ref: str) -> None:
        txn = self._active()
        key = (cls, ref)
        if key not in txn.changed:
            txn.changed[key] = False
            row = self.tables[cls].rows[ref]
            txn.undo.append((cls, ref, Record(row)))
            row.wire = None

    def create(self, cls: str, ref: str, record: dict[str, Any]) -> str:
        """Insert a row (defaults filled in) and link it into related rows."""
        txn = self._active()
        table = self.tables[cls]
        row = Record(table.cdef.defaults())
        row.update(record)
        for name in table.cdef.derived:
            row[name] = []
        table.rows[ref] = row
        table.index(ref, row)
        txn.changed[(cls, ref)] = True
        txn.undo.append((cls, ref, None))
        for name, (many_cls, many_field) in table.cdef.relations.items():
            self._link(many_cls, many_field, row.get(name, NULL_REF), ref, add=True, new=True)
        return ref

    def set(self, cls: str, ref: str, name: str, value: Any) -> None:
        """Set one field, keeping indexes and the other side of a relation in step."""
        table = self.tables[cls]
        row = self.get(cls, ref)
        old = row[name]
        if old == value and type(old) is type(value):
            return
        self._touch(cls, ref)
        relation = table.cdef.relations.get(name)
        if relation is not None:
            self._link(relation[0], relation[1], old, ref, add=False)
            self._link(relation[0], relation[1], value, ref, add=True)
        if name in ("uuid", "name_label"):
            table.unindex(ref, row)
            row[name] = value
            table.index(ref, row)
        else:
            row[name] = value

    def update(self, cls: str, ref: str, **fields: Any) -> None:
        for name, value in fields.items():
            self.set(cls, ref, name, value)

    def destroy(self, cls: str, ref: str) -> None:
        """Remove a row and unlink it from the rows that list it."""
        txn = self._active()
        table = self.tables[cls]
        row = self.get(cls, ref)
        for name, (many_cls, many_field) in table.cdef.relations.items():
            self._link(many_cls, many_field, row.get(name, NULL_REF), ref, add=False)
        if (cls, ref) not in txn.changed:
            txn.undo.append((cls, ref, Record(row)))
        created_here = txn.changed.pop((cls, ref), False)
        table.unindex(ref, row)
        del table.rows[ref]
        if not created_here:
            txn.deleted[(cls, ref)] = row

    def _link(
        self, cls: str, field: str, target: Any, ref: str, *, add: bool, new: bool = False
    ) -> None:
        """Add ``ref`` to (or remove it from) ``field`` of the target rows; ``new`` says ``ref``
        was just created, so it cannot be listed yet."""
        targets = target if isinstance(target, list) else [target]
        for other in targets:
            row = self.tables[cls].rows.get(other) if other != NULL_REF else None
            if row is None:
                continue
            if add and not new and ref in row[field]:
                continue
            if not add and ref not in row[field]:
                continue
            self._touch(cls, other)
            members = self._own_list(cls, other, field, row)
            if add:
                members.append(ref)
            else:
                members.remove(ref)

    def _own_list(self, cls: str, ref: str, field: str, row: Record) -> list[str]:
        """The row's list for ``field``, copied once per transaction so the undo log (and any
        record handed out before) keeps the old one; later changes in the same transaction
        append in place, which keeps bulk inserts linear."""
        txn = self._active()
        key = (cls, ref, field)
        if key not in txn.owned:
            txn.owned.add(key)
            row[field] = list(row[field])
        members: list[str] = row[field]
        return members

    def revive(self, rows: list[tuple[str, str, Record]]) -> None:
        """Put back rows a committed transaction destroyed, as they were (same refs and
        fields): undoes a removal whose write did not become durable, so the records keep
        agreeing with what was left on storage. ``rows`` come referenced rows first (a VDI
        before its VBDs): each is linked into the rows its references name."""
        with self.transaction():
            for cls, ref, row in rows:
                derived = self.tables[cls].cdef.derived
                self.create(cls, ref, {k: v for k, v in row.items() if k not in derived})

    def assert_writable(self) -> None:
        """Raise the persistence layer's error while its writes fail (a full disk): callers
        about to act on storage check this first, so nothing is done that cannot be recorded."""
        error = self.persistence.failure()
        if error is not None:
            raise error

    def touch(self, cls: str, ref: str) -> None:
        """Mark a row modified without changing it (``event.inject``)."""
        self.get(cls, ref)
        self._touch(cls, ref)

    def _rollback(self, txn: _Txn) -> None:
        for cls, ref, before in reversed(txn.undo):
            table = self.tables[cls]
            current = table.rows.pop(ref, None)
            if current is not None:
                table.unindex(ref, current)
            if before is not None:
                table.rows[ref] = before
                table.index(ref, before)

    def _commit(self, txn: _Txn) -> None:
        self.generation += 1
        gen = self.generation
        changes: list[Change] = []
        for (cls, ref), created in txn.changed.items():
            key = (cls, ref)
            if created:
                self.created[key] = gen
            self.recent.pop(key, None)
            self.recent[key] = gen
            if cls not in TRANSIENT_CLASSES:
                changes.append((cls, ref, self.tables[cls].rows[ref]))
        for key in txn.deleted:
            cls, ref = key
            self.recent.pop(key, None)
            self.deleted[key] = (self.created.pop(key, 0), gen)
            if cls not in TRANSIENT_CLASSES:
                changes.append((cls, ref, None))
        self._trim_deleted()
        if changes:
            self.persistence.submit(gen, changes)
        self._wake()

    def _trim_deleted(self) -> None:
        while len(self.deleted) > DELETED_KEPT:
            key = next(iter(self.deleted))
            self.oldest_deletion_kept = self.deleted.pop(key)[1]

    # ---- waiting for changes -------------------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_change(self, timeout: float) -> None:
        """Return when the next commit happens, or after ``timeout`` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)

    async def durable(self) -> None:
        """Return once everything committed so far is on disk; while the disk refuses it,
        raise INTERNAL_ERROR ``database: <cause>`` (what is committed is written later)."""
        await self.persistence.durable(self.generation)
