"""crictl's completion: bash, zsh and fish scripts generated from cribctl's own parser (the root
parser reaches the command as args.root_parser).
"""

from __future__ import annotations

import argparse
from typing import Any

from crib.cribctl.client import Command, CommandError
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.util import add_command, parser_commands, show_help

BASH_TEMPLATE = """_cribctl() {
    local cur opts base
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    opts="%s"
    COMPREPLY=( $(compgen -W "${opts}" -- ${cur}) )
    return 0
}

complete -F _cribctl cribctl"""

ZSH_TEMPLATE = """#compdef cribctl

_cribctl() {
  local -a cmds
  cmds=('%s')
  _describe 'commands' cmds

  local -a opts
  opts=('%s')
  _describe 'global options' opts

  return
}

compdef _cribctl cribctl"""


def _long_flags(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """(first long name, action) for each option, sorted by name, then --help and --version."""
    flags = []
    tail = []
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            tail.append((longs[0], action))
        else:
            flags.append((longs[0], action))
    flags.sort(key=lambda item: item[0])
    return flags + tail


def _sentence(text: str | None) -> str:
    text = (text or "").replace("%%", "%")
    return text[:1].upper() + text[1:]


def bash_completion(parser: argparse.ArgumentParser) -> str:
    words = [n for names, _, _ in parser_commands(parser) for n in names]
    words += [flag for flag, _ in _long_flags(parser)]
    return BASH_TEMPLATE % "\n".join(words)


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    cmds = [
        f"{n}:{_sentence(h)}".replace("'", "'\\''") for names, h, _ in parser_commands(parser) for n in names
    ]
    opts = [flag for flag, _ in _long_flags(parser)]
    return ZSH_TEMPLATE % ("' '".join(cmds), "' '".join(opts))


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flag_help(action: argparse.Action) -> str:
    if isinstance(action, argparse._HelpAction):
        return "show help"
    if isinstance(action, argparse._VersionAction):
        return "print the version"
    return _sentence(action.help)


def _fish_flag(condition: str, action: argparse.Action) -> str:
    parts = ["complete -c cribctl -n", _fish_quote(condition), "-f"]
    longs = [o for o in action.option_strings if o.startswith("--")]
    shorts = [o for o in action.option_strings if not o.startswith("--")]
    for opt in longs:
        parts += ["-l", opt[2:]]
    for opt in shorts:
        # fish: -s for a one-letter option, -o for an old-style one ("-pt").
        parts += ["-s" if len(opt) == 2 else "-o", opt[1:]]
    if action.nargs != 0:
        parts.append("-r")
    help_text = _flag_help(action)
    if help_text:
        parts += ["-d", _fish_quote(help_text)]
    return " ".join(parts)


def fish_completion(parser: argparse.ArgumentParser) -> str:
    commands = parser_commands(parser)
    all_names = " ".join(n for names, _, _ in commands for n in names)
    lines = [
        "# cribctl fish shell completion",
        "",
        "function __fish_cribctl_no_subcommand --description 'Test if there has been any subcommand yet'",
        "    for i in (commandline -opc)",
        f"        if contains -- $i {all_names}",
        "            return 1",
        "        end",
        "    end",
        "    return 0",
        "end",
        "",
    ]
    for _, action in _long_flags(parser):
        lines.append(_fish_flag("__fish_cribctl_no_subcommand", action))
    for names, help_text, sub in commands:
        lines.append(
            "complete -c cribctl -n '__fish_cribctl_no_subcommand' -f -a "
            f"{_fish_quote(' '.join(names))} -d {_fish_quote(_sentence(help_text))}"
        )
        for _, action in _long_flags(sub):
            lines.append(_fish_flag(f"__fish_seen_subcommand_from {' '.join(names)}", action))
    return "\n".join(lines)


def cmd_completion(args: argparse.Namespace, ep: Endpoints) -> None:
    root: argparse.ArgumentParser = args.root_parser
    if len(args.shell) > 1:
        show_help(args)
        return
    shell = args.shell[0] if args.shell else "bash"
    render = {"bash": bash_completion, "zsh": zsh_completion, "fish": fish_completion}.get(shell)
    if render is None:
        raise CommandError("only bash, zsh or fish are supported")
    print(render(root))


COMPLETION_EPILOG = """\
Output shell completion code for bash, zsh or fish.

Examples:

    # Installing bash completion on Linux
    source <(cribctl completion bash)

    # Installing zsh completion on Linux
    source <(cribctl completion zsh)

    # Installing fish completion on Linux
    cribctl completion fish | source"""


def register(sub: Any) -> dict[str, Command]:
    """Adds completion; returns {name or alias: command}."""
    p = add_command(
        sub,
        "completion",
        "output shell completion code",
        epilog=COMPLETION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", nargs="*", metavar="SHELL")

    return {"completion": cmd_completion}
