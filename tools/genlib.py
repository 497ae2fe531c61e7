"""What the generators share: the digest line that seals a generated module, and writing it
(or, with ``--check``, comparing it with what is on disk)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def sealed(text: str) -> str:
    """``text`` followed by the DIGEST line of its sha256 (tests check it against the data)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text + f'\nDIGEST = "{digest}"\n'


def write_or_check(out: Path, text: str) -> int:
    """Write ``text`` to ``out``; with ``--check`` on the command line, only compare."""
    if "--check" in sys.argv:
        return 0 if out.read_text() == text else 1
    out.write_text(text)
    return 0


def arguments() -> list[str]:
    return [a for a in sys.argv[1:] if not a.startswith("--")]
