"""``xenstore-read``, ``-write``, ``-ls``, ``-list``, ``-rm``, ``-exists``, ``-chmod``,
``-watch``: Xen's XenStore command-line tools, their options, output and exit status.

Values are printed with Xen's escaping (``\\t \\n \\r \\f \\\\`` and octal ``\\ooo`` for other
bytes outside printable ASCII) unless ``-R``; ``xenstore-write`` reads escapes back the same
way. The socket is ``$XENSTORED_PATH``.
"""

from __future__ import annotations

import contextlib
import getopt
import sys
from collections.abc import Callable

from ...xenstore.client import Client
from ...xenstore.errors import XsError

_NAMED = {"\t": "t", "\n": "n", "\r": "r", "\f": "f", "\\": "\\"}
_UNNAMED = {v: k for k, v in _NAMED.items()}


def sanitise(value: bytes) -> str:
    out = []
    for byte in value:
        ch = chr(byte)
        if " " <= ch <= "~" and ch != "\\":
            out.append(ch)
        elif ch in _NAMED:
            out.append("\\" + _NAMED[ch])
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def unsanitise(text: str) -> bytes:
    out, i = bytearray(), 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        ch = chr(raw[i])
        if ch != "\\" or i + 1 == len(raw):
            out.append(raw[i])
            i += 1
            continue
        nxt = chr(raw[i + 1])
        if nxt in _UNNAMED:
            out += _UNNAMED[nxt].encode()
            i += 2
        elif nxt in "01234567":
            digits = raw[i + 1 : i + 4].decode("ascii", "replace")
            n = len(digits) - len(digits.lstrip("01234567"))
            out.append(int(digits[:n], 8) & 0xFF)
            i += 1 + n
        else:
            out += raw[i + 1 : i + 2]
            i += 2
    return bytes(out)


class Usage(Exception):
    pass


def _opts(args: list[str], spec: str, usage: str) -> tuple[set[str], dict[str, str], list[str]]:
    try:
        pairs, rest = getopt.getopt(args, spec)
    except getopt.GetoptError:
        raise Usage(usage) from None
    flags = {k for k, v in pairs}
    if "-h" in flags:
        raise Usage(usage)
    return flags, dict(pairs), rest


def _run(name: str, body: Callable[[Client], int]) -> int:
    try:
        with Client() as client:
            return body(client)
    except Usage as usage:
        sys.stderr.write(f"Usage: {name} {usage}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"{name}: failed to connect to xenstore: {exc}\n")
        return 1


def _fail(name: str, text: str) -> int:
    sys.stderr.write(f"{name}: {text}\n")
    return 1


def read_main(args: list[str]) -> int:
    usage = "[-h] [-p] [-s] [-R] key [...]"

    def body(c: Client) -> int:
        flags, _, keys = _opts(args, "hpsR", usage)
        if not keys:
            raise Usage(usage)
        for key in keys:
            try:
                value = c.read(key)
            except XsError:
                return _fail("xenstore-read", f"couldn't read path {key}")
            shown = value.decode("latin-1") if "-R" in flags else sanitise(value)
            print(f"{key}: {shown}" if "-p" in flags else shown)
        return 0

    return _run("xenstore-read", body)


def write_main(args: list[str]) -> int:
    usage = "[-h] [-s] [-R] key value [...]"

    def body(c: Client) -> int:
        flags, _, rest = _opts(args, "hsR", usage)
        if not rest or len(rest) % 2:
            raise Usage(usage)
        for key, text in zip(rest[::2], rest[1::2], strict=True):
            value = text.encode("utf-8", "surrogateescape") if "-R" in flags else unsanitise(text)
            try:
                c.write(key, value)
            except XsError:
                return _fail("xenstore-write", f"could not write path {key}")
        return 0

    return _run("xenstore-write", body)


def rm_main(args: list[str]) -> int:
    usage = "[-h] [-s] [-t] key [...]"

    def body(c: Client) -> int:
        flags, _, keys = _opts(args, "hst", usage)
        if not keys:
            raise Usage(usage)
        for key in keys:
            try:
                c.rm(key)
            except XsError:
                return _fail("xenstore-rm", f"could not remove path {key}")
            if "-t" in flags:
                _tidy(c, key)
        return 0

    return _run("xenstore-rm", body)


def _tidy(c: Client, key: str) -> None:
    """``-t``: remove the parents left empty, with empty values."""
    path = key.rsplit("/", 1)[0]
    while path and path != "/":
        try:
            if c.directory(path) or c.read(path):
                return
            c.rm(path)
        except XsError:
            return
        path = path.rsplit("/", 1)[0]


def exists_main(args: list[str]) -> int:
    usage = "[-h] [-s] key [...]"

    def body(c: Client) -> int:
        _, _, keys = _opts(args, "hs", usage)
        if not keys:
            raise Usage(usage)
        for key in keys:
            try:
                c.read(key)
            except XsError:
                return 1
        return 0

    return _run("xenstore-exists", body)


def list_main(args: list[str]) -> int:
    usage = "[-h] [-p] [-s] key [...]"

    def body(c: Client) -> int:
        flags, _, keys = _opts(args, "hps", usage)
        if not keys:
            raise Usage(usage)
        for key in keys:
            try:
                names = c.directory(key)
            except XsError:
                return _fail("xenstore-list", f"could not list path {key}")
            for name in names:
                print(f"{key.rstrip('/')}/{name}" if "-p" in flags else name)
        return 0

    return _run("xenstore-list", body)


def ls_lines(c: Client, path: str, full: bool, perms: bool, depth: int = 0) -> list[str]:
    """``xenstore-ls``'s lines for the subtree under ``path``."""
    lines = []
    for name in c.directory(path):
        child = f"{path.rstrip('/')}/{name}"
        text = child if full else " " * depth + name
        try:
            text += f' = "{sanitise(c.read(child))}"'
        except XsError:
            text += ":"
        if perms:
            with contextlib.suppress(XsError):
                text += "  (" + ",".join(c.get_perms(child)) + ")"
        lines.append(text)
        try:
            lines += ls_lines(c, child, full, perms, depth + 1)
        except XsError:
            continue
    return lines


def ls_main(args: list[str]) -> int:
    usage = "[-h] [-f] [-p] [-s] [path]"

    def body(c: Client) -> int:
        flags, _, rest = _opts(args, "hfps", usage)
        path = rest[0] if rest else "/"
        try:
            lines = ls_lines(c, path, "-f" in flags, "-p" in flags)
        except XsError:
            return _fail("xenstore-ls", f"could not list path {path}")
        sys.stdout.write("".join(line + "\n" for line in lines))
        return 0

    return _run("xenstore-ls", body)


def chmod_main(args: list[str]) -> int:
    usage = "[-h] [-u] [-r] [-s] key <mode [modes...]>"

    def body(c: Client) -> int:
        flags, _, rest = _opts(args, "hurs", usage)
        if len(rest) < 2:
            raise Usage(usage)
        key, modes = rest[0], rest[1:]
        targets = [key]
        if "-r" in flags:
            targets = [key, *_descendants(c, key)]
        for target in targets:
            try:
                c.set_perms(target, modes)
            except XsError:
                return _fail("xenstore-chmod", f"Error setting permissions on {target}")
        return 0

    return _run("xenstore-chmod", body)


def _descendants(c: Client, key: str) -> list[str]:
    out = []
    for name in c.directory(key):
        child = f"{key.rstrip('/')}/{name}"
        out += [child, *_descendants(c, child)]
    return out


def watch_main(args: list[str]) -> int:
    usage = "[-h] [-n NR] [-s] key [...]"

    def body(c: Client) -> int:
        _, values, keys = _opts(args, "hn:s", usage)
        if not keys:
            raise Usage(usage)
        count = int(values["-n"]) if "-n" in values else -1
        for i, key in enumerate(keys):
            c.watch(key, str(i))
        while count != 0:
            path, _ = c.next_event()
            print(path, flush=True)
            count -= 1
        return 0

    return _run("xenstore-watch", body)


TOOLS: dict[str, Callable[[list[str]], int]] = {
    "xenstore-read": read_main,
    "xenstore-write": write_main,
    "xenstore-rm": rm_main,
    "xenstore-exists": exists_main,
    "xenstore-list": list_main,
    "xenstore-ls": ls_main,
    "xenstore-chmod": chmod_main,
    "xenstore-watch": watch_main,
}
