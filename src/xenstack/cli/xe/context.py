"""What a command gets: the connection, a resolver, the printer and its parameters."""

from __future__ import annotations

from .client import Client
from .output import CliError, Printer, UsageError
from .records import Resolver

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any

STDPARAMS = frozenset(
    {"server", "password", "port", "username", "minimal", "force", "multiple", "all",
     "message-priority", "trace", "passwordfile", "nossl", "debug", "debugonfail"}
)  # fmt: skip

TRUE = ("true", "t", "yes", "y", "1", "on")
FALSE = ("false", "f", "no", "n", "0", "off")


def parse_bool(name: str, text: str) -> bool:
    low = text.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise CliError(f"Failed to parse parameter '{name}': expecting a boolean (true or false)")


class Ctx:
    """One command's run: connection, printer, parameters and a shared resolver."""

    def __init__(self, client: Client, printer: Printer, params: list[tuple[str, str]]) -> None:
        self.client = client
        self.printer = printer
        self.params = params
        self.res = Resolver(client)
        self.credentials = ("", "")  # user and password, for a command that reconnects

    def call(self, method: str, *args: Any) -> Any:
        return self.client.call(method, *args)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return default

    def req(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise UsageError("Required parameter not found", key)
        return value

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.params)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        return default if value is None else parse_bool(key, value)

    def map_param(self, prefix: str) -> dict[str, str]:
        """``prefix:key=value`` parameters as a map (``device-config:`` and friends)."""
        head = prefix + ":"
        return {k[len(head) :]: v for k, v in self.params if k.startswith(head)}

    def ref_by_uuid(self, cls: str, uuid: str) -> str:
        return str(self.call(f"{cls}.get_by_uuid", uuid))

    def uuid_of(self, cls: str, ref: str) -> str:
        return str(self.call(f"{cls}.get_uuid", ref))
