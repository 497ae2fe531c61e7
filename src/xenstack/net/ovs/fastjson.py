"""A faster JSON stream parser for Open vSwitch's Python JSON-RPC, when its C one is absent.

The PyPI ``ovs`` package parses OVSDB's JSON one character at a time in Python unless its
optional C extension was built, which pip's build leaves out: the first replica of a host
with a thousand ports then takes seconds. :class:`StreamParser` keeps ``ovs.json.Parser``'s
interface (``feed`` returns the characters used, ``is_done``, ``finish``) and finds where a
message ends with a regular expression that steps over whole strings at once, then decodes
the message with the standard library's C decoder. :func:`install` puts it in place.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ovs.json  # type: ignore[import-untyped]

# a complete string, an unfinished one running to the end of the text, or a bracket
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:(?P<q>")|\\?\Z)|[{}\[\]]')


class StreamParser:
    def __init__(self, check_trailer: bool = False) -> None:
        self.parts: list[str] = []
        self.pending = ""  # an unfinished string at the end of what was fed
        self.depth = 0
        self.started = False
        self.done = False
        self.value: Any = None
        self.error: str | None = None

    def feed(self, s: str) -> int:
        if self.done:
            return 0
        text, base = self.pending + s, len(self.pending)
        self.pending = ""
        for match in _TOKEN.finditer(text):
            token = match.group()
            if token[0] == '"':
                if match.group("q") is None:  # runs off the end: wait for the rest
                    self.parts.append(text[: match.start()])
                    self.pending = text[match.start() :]
                    return len(s)
                continue
            self.depth += 1 if token in "{[" else -1
            self.started = True
            if self.depth == 0:
                self.parts.append(text[: match.end()])
                self._decode()
                return max(match.end() - base, 0)
        self.parts.append(text)
        return len(s)

    def _decode(self) -> None:
        self.done = True
        try:
            self.value = json.loads("".join(self.parts))
        except ValueError as exc:
            self.error = f"syntax error: {exc}"
        self.parts = []

    def is_done(self) -> bool:
        return self.done

    def finish(self) -> Any:
        if not self.done:
            return "unexpected end of input"
        return self.error if self.error is not None else self.value


def install() -> None:
    """Use :class:`StreamParser` for OVSDB's JSON-RPC unless the C parser is there."""
    if ovs.json.PARSER != ovs.json.PARSER_C:
        ovs.json.Parser = StreamParser
