"""``xe help``: every command has a description and declares the parameters it reads."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

from xenstack.cli.xe.context import STDPARAMS
from xenstack.cli.xe.help import all_commands
from xenstack.cli.xe.registry import load_commands

READS = re.compile(r'ctx\.(?:get|req|flag|has)\("([^"]+)"')
CALLS = re.compile(r"\b(_?[a-z][a-z_0-9]*)\(")
# these share one helper that branches on the command's name: each reads only its own params
OPS = "xenstack.cli.xe.ops_"
SHARED_HELPER = {"vm-clone", "vm-copy", "vm-snapshot", "vm-checkpoint"}


def _source(fn: Callable[..., Any]) -> str:
    """The function's source and that of the module-level helpers of ``xe`` it calls."""
    module = sys.modules[fn.__module__]
    text = inspect.getsource(fn)
    for name in set(CALLS.findall(text)):
        helper = getattr(module, name, None)
        where = getattr(helper, "__module__", "")
        if inspect.isfunction(helper) and where.startswith(OPS) and where != OPS + "common":
            text += inspect.getsource(helper)
    return text


def test_every_command_has_help() -> None:
    for name, cmd in all_commands().items():
        assert cmd.help.strip() and cmd.help.rstrip().endswith("."), name
        assert len(cmd.help) < 400, name


@pytest.mark.parametrize("name", sorted(load_commands()))
def test_commands_declare_the_parameters_they_read(name: str) -> None:
    cmd = load_commands()[name]
    if name in SHARED_HELPER:
        return
    declared = {*cmd.reqd, *cmd.optn, *STDPARAMS, *({"vm", "host", "sr"} & cmd.flags)}
    read = set(READS.findall(_source(cmd.impl)))
    assert read <= declared, (name, sorted(read - declared))


def test_help_of_new_commands_shows_their_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    from xenstack.cli.xe import main

    for name, reqd, optn in [
        ("vm-cd-add", "cd-name, device", "<vm-selectors>"),
        ("vm-cd-list", "", "vbd-params, vdi-params, <vm-selectors>"),
        ("vm-disk-list", "", "vbd-params, vdi-params, <vm-selectors>"),
        ("vm-memory-limits-set", "static-min, static-max, dynamic-min, dynamic-max", ""),
        ("vm-reset-powerstate", "", "force, <vm-selectors>"),
        ("vm-vcpu-hotplug", "new-vcpus", "<vm-selectors>"),
        ("vm-export", "filename", "vm, compress, preserve-power-state, <vm-selectors>"),
    ]:
        assert main(["help", name]) == 0
        out = capsys.readouterr().out
        assert f"command name            : {name}\n" in out
        assert f"reqd params     : {reqd}\n" in out
        assert f"optional params : {optn}" in out
