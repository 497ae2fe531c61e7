"""What a server function gets as ``ctx``: the toolstack, the caller's session, its task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..db.store import Database
    from ..toolstack import Toolstack


@dataclass(slots=True)
class Context:
    toolstack: Toolstack
    session: str  # the caller's session ref ("" for login)
    task: str | None = None  # the task of an Async call
    method: str = ""

    @property
    def db(self) -> Database:
        return self.toolstack.db

    @property
    def this_host(self) -> str:
        return self.toolstack.this_host
