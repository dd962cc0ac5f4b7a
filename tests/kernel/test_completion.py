"""``tradekernel completion bash|zsh``: scripts generated from the real parser, checked by bash."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from kernel.cli import COMMAND_NAMES
from kernel.cli.completion import script
from tests.conftest import run_cli

# Every command, written out by hand (the parser must offer each).
COMMANDS = (
    "arm", "audit", "completion", "config", "diagram", "drive", "fills", "halt", "market", "migrate",
    "pnl", "reduce", "report", "resume", "run", "ship", "status", "stop", "venue",
)  # fmt: skip
BASH = shutil.which("bash")  # every CI image has it: a missing bash fails the test


def completions(script_path: Path, *words: str) -> list[str]:
    """What the sourced bash script offers for the last of ``words`` (``tradekernel`` first)."""
    assert BASH is not None
    array = " ".join(f"'{word}'" for word in ("tradekernel", *words))
    program = (
        f"source {script_path}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _shtab_tradekernel; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run([BASH, "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


def test_every_command_is_known() -> None:
    assert set(COMMANDS) == COMMAND_NAMES


def test_bash_accepts_the_script_and_completes_commands_options_and_choices(tmp_path: Path) -> None:
    result = run_cli("completion", "bash")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "tradekernel.bash"
    path.write_text(result.stdout, encoding="utf-8")
    assert BASH is not None
    assert subprocess.run([BASH, "-n", str(path)], capture_output=True, timeout=30).returncode == 0
    registered = subprocess.run(
        [BASH, "-c", f"source {path} && complete -p tradekernel"], capture_output=True, text=True, timeout=30
    )
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip().endswith(" tradekernel")
    assert "-F _shtab_tradekernel" in registered.stdout
    assert sorted(completions(path, "")) == sorted(COMMANDS)
    assert completions(path, "ru") == ["run"]
    assert completions(path, "completion", "") == ["bash", "zsh"]
    assert completions(path, "run", "--dur") == ["--duration"]


def test_zsh_script_names_every_command() -> None:
    text = script("zsh")
    assert text.startswith("#compdef tradekernel")
    named = set(re.findall(r"^\s+([a-z-]+):'", text, flags=re.M))
    assert set(COMMANDS) <= named
    assert "--duration" in text


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = run_cli("completion", "fish")
    assert result.returncode == 2
    assert "invalid choice: 'fish'" in result.stderr
