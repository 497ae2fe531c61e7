"""``xe``: XenServer's command line for xenstack, with the same syntax and output.

Start-up matters (``xe vm-list`` runs in scripts, often in loops), so this package imports
only what a command needs: a JSON-RPC client on a raw socket and a compact table of the CLI
records, never the full IDL.
"""

from __future__ import annotations

import sys

from .client import Client, ConnectError, XenApiError
from .config import Usage, endpoint, settings
from .output import CliError, MultipleFailure, Printer, UsageError

__all__ = ["main"]

FOR_USAGE = "For usage run: 'xe help'"


def parse_params(args: list[str]) -> list[tuple[str, str]]:
    """``key=value`` and ``--flag`` arguments as XenServer's CLI reads them."""
    params: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            params.append((arg[2:], "true"))
        elif arg.startswith("-") and "=" not in arg:
            raise UsageError("Syntax error", f"Unknown switch: {arg}")
        else:
            key, _, value = arg.partition("=")
            params.append((key, value))
        i += 1
    return params


def usage(argv0: str) -> None:
    sys.stderr.write(
        f"Usage: {argv0} <cmd> [-s server] [-p port] ([-u username] [-pw password] or "
        "[-pwf <password file>]) <other arguments>\n\n"
        f"For the list of commands run\n\t{argv0} help\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return _main(args)
    except Usage:
        usage("xe")
        return 0
    except BrokenPipeError:
        return 1


def _main(args: list[str]) -> int:
    try:
        st, rest = settings(args)
    except CliError as err:
        sys.stderr.write(f"Error: {err}\n")
        return 1
    if not rest:
        raise Usage
    name = rest[0]
    printer = Printer()
    try:
        if "=" in name:
            raise UsageError("Syntax error", "command name is missing")
        params = parse_params(rest[1:])
        printer.minimal = _minimal(params)
        if name == "help":
            from .help import show_help

            show_help(printer, "xe", params)
            printer.finish()
            return 0
        run = _lookup(name, params)
        host, port, sock, user, password = endpoint(st)
        client = Client(host, port, sock)
        return _run(client, user, password, run, params, printer)
    except UsageError as err:
        printer.stderr(f"{err.kind}: {err.detail}" if err.kind else err.detail)
        sys.stderr.write(FOR_USAGE + "\n")
        return 1
    except CliError as err:
        printer.stderr(f"Error: {err}")
        return 1


def _minimal(params: list[tuple[str, str]]) -> bool:
    for key, value in params:
        if key == "minimal":
            return value.lower() == "true"
    return False


def _lookup(name: str, params: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """The implementation of command ``name``; checks its required parameters."""
    from . import generic

    found = generic.split_generic(name)
    keys = {k for k, _ in params}
    if found is not None:
        kind, op = found
        for req in generic.REQUIRED[op]:
            if req not in keys:
                raise UsageError("Required parameter not found", req)
        handler = generic.HANDLERS[op]
        return lambda ctx: handler(ctx, kind)
    from .registry import load_commands

    cmd = load_commands().get(name)
    if cmd is None:
        raise UsageError("Unknown command", name)
    for req in cmd.reqd:
        if req not in keys:
            raise UsageError("Required parameter not found", req)
    return cmd.impl


def _run(client: Client, user: str, password: str, run, params, printer: Printer) -> int:  # type: ignore[no-untyped-def]
    from .context import Ctx

    try:
        try:
            client.login(user, password)
        except XenApiError as err:
            if err.code != "SESSION_AUTHENTICATION_FAILED":
                raise
            printer.stderr(
                "Authentication failed" if user else "Username/password must be specified"
            )
            sys.stderr.write(FOR_USAGE + "\n")
            return 1
        try:
            ctx = Ctx(client, printer, list(params))
            ctx.credentials = (user, password)
            run(ctx)
            printer.finish()
            return 0
        except XenApiError as err:
            return _report(client, printer, err)
        except MultipleFailure as err:
            printer.flush_partial()
            for uuid, msg in err.failures:
                sys.stdout.write(f"operation failed on {uuid}: {msg}\n")
            return 1
        finally:
            client.logout()
    except ConnectError as err:
        printer.stderr(f"Unable to contact the server ({err}). Check the server and port settings.")
        return 1
    except XenApiError as err:
        return _report(client, printer, err)
    finally:
        client.close()


def _report(client: Client, printer: Printer, err: XenApiError) -> int:
    from .report import server_error

    printer.flush_partial()
    sys.stderr.write(server_error(client, err))
    return 1
