"""The table of operation commands: name, parameters, help text, implementation."""

from __future__ import annotations

from .context import Ctx

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Callable

    Impl = Callable[[Ctx], None]


class Command:
    """A command: its parameters, help text, implementation and flags."""

    def __init__(
        self,
        name: str,
        reqd: tuple[str, ...],
        optn: tuple[str, ...],
        help: str,
        impl: Impl,
        flags: frozenset[str],
    ) -> None:
        self.name, self.reqd, self.optn, self.help = name, reqd, optn, help
        self.impl = impl
        self.flags = flags  # standard, vm, host, sr (selectors), hidden


COMMANDS: dict[str, Command] = {}
_loaded = False


def load_commands() -> dict[str, Command]:
    """The operation commands: every ``ops_*`` module of this package registers its own.

    The modules are found by name, so a new family needs no edit here; they are imported
    only when a command is not a generic param command (start-up speed).
    """
    global _loaded
    if not _loaded:
        import importlib
        import os

        here = os.path.dirname(__file__)
        names = sorted(
            n[:-3] if n.endswith(".py") else n
            for n in os.listdir(here)
            if n.startswith("ops_") and (n.endswith(".py") or os.path.isdir(os.path.join(here, n)))
        )
        for name in names:
            importlib.import_module(f"{__package__}.{name}")
        _loaded = True
    return COMMANDS


def command(
    name: str, reqd: str = "", optn: str = "", help: str = "", flags: str = ""
) -> Callable[[Impl], Impl]:
    """Register ``fn(ctx)`` as the command ``name`` (parameters as space-separated names)."""

    def wrap(fn: Impl) -> Impl:
        COMMANDS[name] = Command(
            name, tuple(reqd.split()), tuple(optn.split()), help, fn, frozenset(flags.split())
        )
        return fn

    return wrap
