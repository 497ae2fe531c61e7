"""What ``xe`` prints: record blocks, lists, ``--minimal`` lines and errors, as XenServer's."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Sequence

    Record = Sequence[tuple[str, str]]


class CliError(Exception):
    """A failure the CLI itself reports as ``Error: <message>`` (exit status 1)."""


class UsageError(Exception):
    """A command-line mistake: printed with a pointer to ``xe help`` (exit status 1)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


class MultipleFailure(Exception):
    """Some objects of a ``--multiple`` operation failed: (uuid, message) for each."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        super().__init__(failures)
        self.failures = failures


def record_block(rec: Record) -> str:
    """One record as XenServer lays it out: keys right-aligned, the first left-aligned."""
    if not rec:
        return "\n"
    width = 4 + max(len(k) for k, _ in rec)
    first_key, first_val = rec[0]
    lines = [f"{first_key.ljust(width)}: {first_val}"]
    lines.extend(f"{k.rjust(width)}: {v}" for k, v in rec[1:])
    return "\n".join(lines) + "\n"


def escape_commas(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,")


class Printer:
    """Collects output; in ``--minimal`` mode, tables and lists become one comma line."""

    def __init__(self, minimal: bool = False) -> None:
        self.minimal = minimal
        self.out: list[str] = []
        self._minimal_parts: list[str] = []

    def table(self, records: Sequence[Record]) -> None:
        if self.minimal:
            if records and all(records):
                self._minimal_parts.append(",".join(escape_commas(r[0][1]) for r in records))
            return
        for rec in records:
            self.out.append(record_block(rec) + "\n")

    def lines(self, items: Sequence[str]) -> None:
        if self.minimal:
            self._minimal_parts.append(",".join(escape_commas(s) for s in items))
            return
        self.out.extend(s + "\n" for s in items)

    def message(self, text: str) -> None:
        if not self.minimal:
            self.out.append(text + "\n")

    def stderr(self, text: str) -> None:
        self.flush_partial()
        sys.stderr.write(text + "\n")

    def flush_partial(self) -> None:
        if self.out:
            sys.stdout.write("".join(self.out))
            sys.stdout.flush()
            self.out = []

    def finish(self) -> None:
        if self.minimal:
            self.out.append(",".join(reversed(self._minimal_parts)) + "\n")
        self.flush_partial()
