"""``tradekernel completion bash|zsh``: a shell completion script generated from the real parser.

    tradekernel completion bash > ~/.local/share/bash-completion/completions/tradekernel
    tradekernel completion zsh > ~/.zfunc/_tradekernel     # with fpath+=(~/.zfunc) before compinit

The script is made by ``shtab`` from ``kernel.cli.build_parser()`` (every command, option and choice),
so it cannot fall behind the command line. Exit status: 0 printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kernel.exits import EXIT_OK

SHELLS = ("bash", "zsh")


def add_parser(commands: Any) -> None:
    """Add ``completion`` to the ``tradekernel`` sub-commands."""
    parser = commands.add_parser(
        "completion",
        help="print a bash or zsh completion script",
        description="Print a completion script for SHELL, generated from this command line's parser "
        "(commands, options and their choices).",
        epilog="Install (bash): tradekernel completion bash > ~/.local/share/bash-completion/completions/tradekernel; "
        "(zsh): tradekernel completion zsh > ~/.zfunc/_tradekernel with fpath+=(~/.zfunc) before compinit. "
        "See docs/deployment.md.",
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")
    parser.set_defaults(run=run)


def script(shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh)."""
    import shtab  # only this command needs it

    from kernel.cli import build_parser

    return str(shtab.complete(build_parser(), shell=shell))


def run(args: argparse.Namespace) -> int:
    """Print the script; the exit status."""
    sys.stdout.write(script(args.shell))
    return EXIT_OK
