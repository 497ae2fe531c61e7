"""The XenAPI declaration as typed objects, built once from :mod:`.declaration`.

Everything mechanical in the server (dispatch, accessors, validation, defaults,
``system.listMethods``, the ``xe`` param commands) reads these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import declaration
from .relations import RELATIONS
from .types import Type, parse_default, parse_type

ROLES = (
    "pool-admin",
    "pool-operator",
    "vm-power-admin",
    "vm-admin",
    "vm-operator",
    "read-only",
    "client-cert",
)
NO_ASYNC_CLASSES = frozenset({"session", "event"})


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: Type
    qualifier: str  # "RW", "RO/constructor" or "RO/runtime"
    default: Any

    @property
    def writable(self) -> bool:
        return self.qualifier == "RW"

    @property
    def in_constructor(self) -> bool:
        return self.qualifier in ("RW", "RO/constructor")


@dataclass(frozen=True, slots=True)
class ParamDef:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class MessageDef:
    cls: str
    name: str
    implicit: bool
    result: Type
    params: tuple[ParamDef, ...]
    errors: tuple[str, ...]
    roles: frozenset[str]

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def takes_session(self) -> bool:
        return bool(self.params) and self.params[0].name == "session_id"

    @property
    def has_async(self) -> bool:
        return not self.implicit and self.cls not in NO_ASYNC_CLASSES


@dataclass(slots=True)
class ClassDef:
    name: str
    fields: dict[str, FieldDef]
    messages: dict[str, MessageDef]
    enums: dict[str, tuple[str, ...]]
    relations: dict[str, tuple[str, str]] = field(default_factory=dict)  # one-side field -> many
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)  # many-side -> one

    def defaults(self) -> dict[str, Any]:
        """A fresh record of this class holding every field's default."""
        return {name: _fresh(f.default) for name, f in self.fields.items()}


def _fresh(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _load() -> tuple[dict[str, ClassDef], dict[str, tuple[str, ...]]]:
    enums: dict[str, tuple[str, ...]] = {}
    for _, (_, _, cls_enums) in declaration.CLASSES.items():
        enums.update(cls_enums)
    classes: dict[str, ClassDef] = {}
    for name, (fields, messages, cls_enums) in declaration.CLASSES.items():
        fdefs = {f[0]: _field(f, enums) for f in fields}
        mdefs = {m[0]: _message(name, m) for m in messages}
        classes[name] = ClassDef(name, fdefs, mdefs, dict(cls_enums))
    for (one_cls, one_field), (many_cls, many_field) in RELATIONS:
        if one_cls in classes and many_cls in classes:
            classes[one_cls].relations[one_field] = (many_cls, many_field)
            classes[many_cls].derived[many_field] = (one_cls, one_field)
    return classes, enums


def _field(f: tuple[str, str, str, str | None], enums: dict[str, tuple[str, ...]]) -> FieldDef:
    name, type_text, qualifier, default_text = f
    ty = parse_type(type_text)
    default = parse_default(ty, default_text)
    if ty.kind == "enum" and default_text is None and enums.get(ty.name):
        default = enums[ty.name][0]
    return FieldDef(name, ty, qualifier, default)


def _message(cls: str, m: tuple[Any, ...]) -> MessageDef:
    name, implicit, result, params, errors, role_set = m
    return MessageDef(
        cls,
        name,
        implicit,
        parse_type(result),
        tuple(ParamDef(pname, parse_type(ptype)) for ptype, pname in params),
        tuple(errors),
        frozenset(declaration.ROLE_SETS[role_set]),
    )


CLASSES, ENUMS = _load()
CLASS_BY_LOWER = {name.lower(): name for name in CLASSES}


def message(wire_name: str) -> MessageDef | None:
    """Look up ``Class.message`` as written on the wire (``Async.`` prefix not included)."""
    cls, _, name = wire_name.partition(".")
    cdef = CLASSES.get(cls)
    return cdef.messages.get(name) if cdef else None
