"""cribctl, crib's crictl-compatible client: the root parser built from the command modules (each
registers its subcommands), help in crictl's layout, and a command run with crictl's exit codes.
docs/cribctl.md maps the modules and says what each matches of crictl (cri-tools 1.36).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys

import grpc

from crib import __version__
from crib.cribctl import (
    completion_cmds,
    config_cmds,
    container_cmds,
    create_cmds,
    events_cmds,
    exec_cmds,
    image_cmds,
    info_cmds,
    load_cmds,
    logs_cmds,
    output,
    sandbox_cmds,
    stats_cmds,
    stream_cmds,
)
from crib.cribctl.client import Command, CommandError, rpc_error
from crib.cribctl.endpoint import ClientConfigError, Endpoints, resolve
from crib.cribctl.golike import go_quote, tabwrite
from crib.cribctl.util import SliceAppend, parser_commands, subparsers_action


def cmd_help(args: argparse.Namespace, ep: Endpoints) -> None:
    root: argparse.ArgumentParser = args.root_parser
    if not args.topic:
        root.print_help()
        return
    for names, _, sub in parser_commands(root):
        if args.topic[0] in names:
            sub.print_help()
            return
    raise UnknownCommand(args.topic[0])


COMMANDS: dict[str, Command] = {
    "help": cmd_help,
    "h": cmd_help,
}


# The modules that add subcommands (crictl's cmd/crictl files): each has register(subparsers).
COMMAND_MODULES: list = [
    info_cmds,
    image_cmds,
    load_cmds,
    sandbox_cmds,
    container_cmds,
    create_cmds,
    logs_cmds,
    exec_cmds,
    stream_cmds,
    stats_cmds,
    events_cmds,
    config_cmds,
    completion_cmds,
]

# argparse lists the commands in this order in its "invalid choice" error (reached when an
# abbreviated global flag takes the command word as its value); the order predates the modules.
COMMAND_ORDER = (
    "version", "info", "pull", "images", "image", "img", "inspecti", "rmi", "imagefsinfo", "load",
    "import", "runp", "pods", "inspectp", "stopp", "rmp", "create", "run", "start", "stop", "rm", "ps",
    "inspect", "logs", "exec", "stats", "update", "events", "event", "attach", "port-forward",
    "metricdescs", "metricsp", "config", "statsp", "checkpoint", "runtime-config",
    "update-runtime-config", "completion",
)  # fmt: skip


def _order_commands(sub: argparse._SubParsersAction) -> None:
    # In place: argparse reads the same dict as sub._name_parser_map.
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    ordered = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()
    sub.choices.update(ordered)


# --- help in crictl's (urfave/cli's) layout --------------------------------------------------------


class UnknownCommand(Exception):
    """crictl: "No help topic for 'x'", exit status 3."""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _flag_names(action: argparse.Action) -> str:
    longs = [s for s in action.option_strings if s.startswith("--")]
    shorts = [s for s in action.option_strings if not s.startswith("--")]
    takes_value = action.nargs != 0
    text = ", ".join(f"{n} value" if takes_value else n for n in longs + shorts)
    if isinstance(action, (argparse._AppendAction, SliceAppend)):
        text += f" [ {text} ]"
    return text


def _flag_usage(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if isinstance(action, argparse._HelpAction):
        return "show help"
    if isinstance(action, argparse._VersionAction):
        return "print the version"
    text = action.help or ""
    if "%(" in text:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            text = text % {"default": action.default, "prog": parser.prog}
    text = _sentence(text)
    if isinstance(action, argparse._StoreTrueAction):
        text += " (default: false)"
    elif isinstance(action.default, str) and action.default and action.default != argparse.SUPPRESS:
        text += f" (default: {go_quote(action.default)})"
    elif isinstance(action.default, int) and not isinstance(action.default, bool):
        text += f" (default: {action.default})"
    return text


def _rows(rows: list[tuple[str, str]]) -> str:
    # urfave/cli: tabwriter.NewWriter(out, 1, 8, 2, ' ', 0) over "   name\tusage" lines.
    return tabwrite("".join(f"   {a}\t{b}\n" for a, b in rows), 1, 8, 2, " ")


def _args_usage(parser: argparse.ArgumentParser) -> str:
    words = []
    for action in parser._actions:
        if action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
        if action.nargs == "*":
            words.append(f"[{name}...]")
        elif action.nargs == "+":
            words.append(f"{name} [{name}...]")
        elif action.nargs == "?":
            words.append(f"[{name}]")
        else:
            words.append(name)
    return " ".join(words)


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """crictl sorts flags by name, help (and version) last."""
    flags, tail = [], []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        row = (_flag_names(action), _flag_usage(parser, action))
        is_tail = isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        (tail if is_tail else flags).append((action.option_strings[0].lstrip("-"), row))
    flags.sort(key=lambda item: item[0])
    return [row for _, row in flags] + [row for _, row in tail]


def render_help(parser: argparse.ArgumentParser) -> str:
    root = subparsers_action(parser) is not None
    description = parser.description or ""
    if not root:
        description = _sentence(description)
    out = ["NAME:", f"   {parser.prog} - {description}", "", "USAGE:"]
    if root:
        out += [f"   {parser.prog} [global options] command [command options]", ""]
        out += ["VERSION:", f"   {__version__}", "", "COMMANDS:"]
        rows = [(", ".join(names), _sentence(h)) for names, h, _ in parser_commands(parser)]
        out += [_rows(rows).rstrip("\n"), "", "GLOBAL OPTIONS:"]
    else:
        usage = f"   {parser.prog} [command options]"
        args_usage = _args_usage(parser)
        out += [f"{usage} {args_usage}" if args_usage else usage, ""]
        if parser.epilog:
            epilog = parser.epilog.rstrip("\n")
            first = epilog.splitlines()[0]
            if first.endswith(":") and first.isupper():
                # Examples and option lists, shown under the usage as crictl's ArgsUsage.
                out += [epilog, ""]
            else:
                out += ["DESCRIPTION:", *("   " + line if line else "" for line in epilog.splitlines()), ""]
        out.append("OPTIONS:")
    out.append(_rows(_options(parser)).rstrip("\n"))
    return "\n".join(out) + "\n"


class CribctlParser(argparse.ArgumentParser):
    """argparse with crictl's help layout; subcommand parsers are made of this class too."""

    def format_help(self) -> str:
        return render_help(self)


# Commands with crictl's `-o go-template`, and the prefix crictl puts before a template error.
GO_TEMPLATE_COMMANDS = {
    "inspect": "get the status of containers: ",
    "inspectp": "get the status of pod sandboxes: ",
    "inspecti": "",
    "imagefsinfo": "",
    "info": "getting status of runtime: ",
    "events": "",
    "event": "",
}
TEMPLATE_HELP = (
    "the template string is only used when output is go-template; the Template format is golang template"
)


def _enable_go_template(sub: argparse._SubParsersAction) -> None:
    """Give the go-template commands a visible --template and say go-template in -o's help."""
    for name in GO_TEMPLATE_COMMANDS:
        p = sub.choices.get(name)
        if p is None:
            continue
        actions = {a.dest: a for a in p._actions}
        if "template" in actions:
            actions["template"].help = TEMPLATE_HELP
        else:
            p.add_argument("--template", default="", help=TEMPLATE_HELP)
        out = actions.get("output")
        if out is not None and out.help and "go-template" not in out.help:
            out.help = out.help.replace("json|yaml", "json|yaml|go-template")
            out.choices = None


def parser() -> argparse.ArgumentParser:
    p = CribctlParser(prog="cribctl", description="crib's crictl-compatible CRI client")
    p.add_argument(
        "--config",
        "-c",
        help="location of the client config file (env CRI_CONFIG_FILE, default /etc/crictl.yaml)",
    )
    p.add_argument("--runtime-endpoint", "-r", help="CRI runtime endpoint (env CONTAINER_RUNTIME_ENDPOINT)")
    p.add_argument(
        "--image-endpoint",
        "-i",
        help="CRI image endpoint (env IMAGE_SERVICE_ENDPOINT; default: runtime-endpoint)",
    )
    p.add_argument("--timeout", "-t", help="timeout of connecting and of each call, e.g. 2s (default 2s)")
    p.add_argument("--debug", "-D", action="store_true", default=None, help="enable debug mode")
    p.add_argument("--version", "-v", action="version", version=f"cribctl version {__version__}")
    p.set_defaults(root_parser=p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        COMMANDS.update(module.register(sub))
    _order_commands(sub)
    helper = sub.add_parser(
        "help",
        aliases=["h"],
        help="shows a list of commands or help for one command",
        description="shows a list of commands or help for one command",
    )
    helper.add_argument("topic", nargs="*", metavar="COMMAND")
    _enable_go_template(sub)
    return p


# Options whose values may start with "-" (crictl takes "--since -1h"); argparse would read the
# value as an option, so such pairs are joined into "--since=-1h" first.
DASH_VALUE_OPTIONS = frozenset({"--since"})


def join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":
            return out + argv[i:]
        if argv[i] in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


# gRPC core's text for a unix socket it could not dial, and Go's for the same.
_GRPC_DIAL = re.compile(
    r"failed to connect to all addresses; last error: \w+: unix:(?P<path>\S+): connect failed: "
    r"addr: unix:\S+ error: (?P<err>.+?)(?=\s*$)"
)


def go_dial_error(message: str) -> str:
    """Rewrites gRPC core's dial failure as grpc-go's, which crictl prints:
    `connection error: desc = "transport: Error while dialing: dial unix PATH: connect: ERRNO"`."""

    def repl(m: re.Match[str]) -> str:
        err = m.group("err").strip()
        return (
            f'connection error: desc = "transport: Error while dialing: dial unix {m.group("path")}: '
            f'connect: {err[:1].lower() + err[1:]}"'
        )

    return _GRPC_DIAL.sub(repl, message)


def _first_command(argv: list[str], p: argparse.ArgumentParser) -> str | None:
    """The command word in argv, skipping global options and their values."""
    takes_value = {s for a in p._actions if a.nargs != 0 for s in a.option_strings}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if word.startswith("-"):
            if word in takes_value and "=" not in word:
                i += 1
            i += 1
            continue
        return word
    return None


def main(argv: list[str] | None = None) -> int:
    p = parser()
    words = join_dash_values(sys.argv[1:] if argv is None else argv)
    command = _first_command(words, p)
    sub = subparsers_action(p)
    if command is not None and sub is not None and command not in sub.choices:
        print(f"No help topic for '{command}'")
        return 3
    args = p.parse_args(words)
    if not args.command:
        p.print_help()
        return 0
    try:
        ep = resolve(
            runtime_endpoint=args.runtime_endpoint or os.environ.get("CONTAINER_RUNTIME_ENDPOINT") or None,
            image_endpoint=args.image_endpoint or os.environ.get("IMAGE_SERVICE_ENDPOINT") or None,
            timeout=args.timeout,
            debug=args.debug,
            config_path=args.config or os.environ.get("CRI_CONFIG_FILE") or None,
        )
        run = COMMANDS[args.command]
        if args.command in GO_TEMPLATE_COMMANDS and getattr(args, "output", None) == "go-template":
            output.run_with_go_template(run, args, ep, GO_TEMPLATE_COMMANDS[args.command])
        else:
            run(args, ep)
    except (CommandError, ClientConfigError) as exc:
        print(f"cribctl: {go_dial_error(str(exc))}", file=sys.stderr)
        return 1
    except UnknownCommand as exc:
        print(f"No help topic for '{exc}'")
        return 3
    except grpc.RpcError as exc:
        # A call a command did not wrap: still one line, never a traceback.
        print(f"cribctl: {go_dial_error(rpc_error(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"cribctl: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
