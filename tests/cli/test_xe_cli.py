"""``xe`` as a process: exit codes and error layout, authentication, help, bash completion."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from xekit import check_golden, transcript

from xenstack.testing import RunningPool, simulated_pool

BIN = Path(sys.executable).parent
COMPLETION = Path(__file__).parents[2] / "src" / "xenstack" / "cli" / "xe" / "xe-completion.bash"
FOR_USAGE = "For usage run: 'xe help'\n"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    with simulated_pool(tmp_path_factory.mktemp("xe-cli") / "state") as running:
        yield running


def run_xe(pool: RunningPool, *args: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    """xe as a child process; ``extra`` replaces the password part of XE_EXTRA_ARGS."""
    creds = extra or f"username=root,password={pool.password}"
    env = dict(os.environ, XE_EXTRA_ARGS=f"server=127.0.0.1,port={pool.port},{creds}")
    return subprocess.run([str(BIN / "xe"), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


def test_usage_errors_exit_non_zero(pool: RunningPool) -> None:
    res = run_xe(pool, "no-such-command")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == "Unknown command: no-such-command\n" + FOR_USAGE
    res = run_xe(pool, "vm-param-get", "uuid=x")
    assert res.returncode == 1
    assert res.stderr == "Required parameter not found: param-name\n" + FOR_USAGE
    res = run_xe(pool, "vm-start", "colour=blue")
    assert res.returncode == 1
    assert res.stderr == (
        "Error: Parameter 'colour' is not a field of the VM class. "
        "Failed to select VM for operation.\n"
    )
    res = run_xe(pool, "vm-list", "is-control-domain=true", "colour=blue")
    assert (res.returncode, res.stderr) == (1, "Error: Unknown field 'colour'\n")
    res = run_xe(pool, "vm-list", "name-label=none", "colour=blue")
    assert (res.returncode, res.stderr) == (0, "")  # as XenServer: no rows, no field check
    res = run_xe(pool, "vm-start", "name-label=nothing")
    assert (res.returncode, res.stderr) == (1, "Error: No matching VMs found\n")


def test_server_error_layout(pool: RunningPool) -> None:
    res = run_xe(pool, "vm-install", "template=Debian Bookworm 12", "new-name-label=layout")
    uuid = res.stdout.strip()
    res = run_xe(pool, "vm-shutdown", f"uuid={uuid}")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines() == [
        "The VM is not in the power state this operation needs.",
        f"vm: {uuid} (layout)",
        "expected: running",
        "actual: halted",
    ]
    res = run_xe(pool, "vm-param-get", "uuid=no-such-uuid", "param-name=uuid")
    assert res.returncode == 1
    assert res.stderr.splitlines()[1:] == ["type: VM", "uuid: no-such-uuid"]
    assert run_xe(pool, "vm-uninstall", f"uuid={uuid}", "--force").returncode == 0


def test_authentication_failure(pool: RunningPool) -> None:
    res = run_xe(pool, "vm-list", extra="username=root,password=wrong")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == "Authentication failed\n" + FOR_USAGE
    res = run_xe(pool, "vm-list", "-u", "root", "-pw", "wrong")
    assert (res.returncode, res.stderr) == (1, "Authentication failed\n" + FOR_USAGE)
    res = run_xe(pool, "host-list", extra="username=nobody,password=x")
    assert res.returncode == 1 and res.stderr.startswith("Authentication failed\n")


def test_connection_refused(pool: RunningPool) -> None:
    env = dict(os.environ, XE_EXTRA_ARGS="server=127.0.0.1,port=1,password=x")
    res = subprocess.run([str(BIN / "xe"), "vm-list"], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("Unable to contact the server")


def test_help_in_a_fresh_process(pool: RunningPool) -> None:
    """Operation commands are known to help without running any command first."""
    res = run_xe(pool, "help", "--all", "--minimal")
    names = res.stdout.strip().split(",")
    for name in (
        "vm-start",
        "vm-install",
        "vm-uninstall",
        "vm-disk-add",
        "vm-cd-insert",
        "vm-migrate",
        "vm-snapshot",
        "snapshot-revert",
        "event-wait",
        "vdi-copy",
    ):
        assert name in names, name
    assert names == sorted(names)
    res = run_xe(pool, "help", "vm-start")
    assert res.returncode == 0 and "command name            : vm-start" in res.stdout


def test_help_golden(pool: RunningPool) -> None:
    text = transcript(
        pool,
        ["help", "--all"],
        ["help", "vm-uninstall"],
        ["help", "event-wait"],
        ["help", "host-call-plugin"],
        ["help", "vm-disk-add"],
        ["help", "vdi-list"],
        ["help", "no-such-command"],
    )
    check_golden("help_all", text)


def complete(words: list[str], cword: int, pool: RunningPool) -> list[str]:
    """COMPREPLY after calling the completion function on ``words`` in bash."""
    script = (
        f"source {COMPLETION}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={cword}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '_xe xe "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    extra = f"server=127.0.0.1,port={pool.port},password={pool.password}"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", XE_EXTRA_ARGS=extra)
    res = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [line for line in res.stdout.splitlines() if line]


def test_completion_is_registered() -> None:
    res = subprocess.run(["bash", "-c", f"source {COMPLETION}; complete -p xe"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "complete -F _xe xe"


def test_completion_of_commands_and_parameters(pool: RunningPool) -> None:
    assert "vm-list" in complete(["xe", "vm-l"], 1, pool)
    assert all(w.startswith("vm-l") for w in complete(["xe", "vm-l"], 1, pool))
    assert "vm-uninstall" in complete(["xe", "vm-un"], 1, pool)
    params = complete(["xe", "vm-disk-add", "dis"], 2, pool)
    assert params == ["disk-size="]
    assert complete(["xe", "vm-list", "--mi"], 2, pool) == ["--minimal"]
    assert "vm-start" in complete(["xe", "help", "vm-st"], 2, pool)
