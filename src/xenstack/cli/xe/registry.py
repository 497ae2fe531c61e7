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
