"""Text that XML 1.0 can carry, and what to do with text that it cannot.

XML 1.0 has no way, not even a character reference, to carry NUL, the C0 controls other than
tab, LF and CR, U+FFFE, U+FFFF or a lone surrogate. XAPI's database truncates a string at the
first such character; xenstack instead refuses it at the wire (``INVALID_VALUE [param,
value]``) so that what a client stores is what it reads back, and its XML-RPC encoder replaces
any that are somehow stored with U+FFFD so that no answer is ever ill-formed.
"""

from __future__ import annotations

import re

# What XML 1.0's Char production leaves out (U+007F..U+009F are allowed, if discouraged).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


class Unstorable(str):
    """A wire string that XML cannot carry: the decoders mark it, the type check refuses it."""

    __slots__ = ()


def storable(text: str) -> bool:
    """Whether XML 1.0 can carry ``text`` (printable text, the common case, is checked fast)."""
    return text.isprintable() or _UNSTORABLE.search(text) is None


def xml_safe(text: str) -> str:
    """``text`` with every character XML cannot carry replaced by U+FFFD."""
    return text if storable(text) else _UNSTORABLE.sub(REPLACEMENT, text)


def visible(text: str) -> str:
    """``text`` with the characters XML cannot carry spelled as escapes (for error messages)."""
    return _UNSTORABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def mark(value: object) -> object:
    """``value`` (decoded JSON) with its unstorable strings, keys too, made :class:`Unstorable`."""
    if type(value) is str:
        return value if storable(value) else Unstorable(value)
    if type(value) is list:
        return [mark(v) for v in value]
    if type(value) is dict:
        return {mark(k): mark(v) for k, v in value.items()}
    return value
