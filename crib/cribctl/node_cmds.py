"""cribctl's config, statsp, checkpoint, runtime-config, update-runtime-config and completion,
as crictl 1.36's.

config edits the client config file in place: existing lines keep their
comments, quoting and order, and a key not yet in the file is appended, which
is what crictl's yaml.Node editing does for the flat files it writes. A file
that is not a flat `key: value` mapping is rewritten whole (its comments are
lost). Completion scripts are generated from cribctl's own argparse parser,
so they list cribctl's commands and flags rather than crictl's.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import grpc
import yaml

from crib.cribctl import endpoint
from crib.cribctl.client import Command, CommandError
from crib.cribctl.container_cmds import CLEAR_SCREEN, show_stats
from crib.cribctl.endpoint import (
    CONFIG_KEYS,
    GO_FALSE,
    GO_TRUE,
    ClientConfig,
    ClientConfigError,
    Endpoints,
    read_client_config,
)
from crib.cribctl.golike import go_quote, go_sort, human_size, tabwrite
from crib.cribctl.image_cmds import (
    TRUNCATED_ID_LEN,
    CallError,
    SliceAppend,
    call_error,
    parse_labels,
    show_help,
    table,
)
from crib.cribctl.pod_cmds import GoFlag, connect, int_flag
from crib.proto.cri import api_pb2, api_pb2_grpc

STATSP_COLUMNS = ["POD", "POD ID", "CPU %", "MEM"]

# --- config ------------------------------------------------------------------------------------

_INT_KEYS = frozenset({"timeout"})
_BOOL_KEYS = frozenset({"debug", "pull-image-on-create", "disable-pull-on-run"})
_LINE = re.compile(r"^(?P<key>[A-Za-z0-9_-]+)(?P<sep>\s*:[ \t]*)(?P<value>.*?)(?P<comment>\s+#.*)?$")

CONFIG_EPILOG = """\
EXAMPLES:
   # Set the key "debug" to "true"
   cribctl config --set debug=true

   # Set the key "debug" to "true"
   cribctl config debug true

   # Get the value of "debug"
   cribctl config --get debug

   # Show the full configuration
   cribctl config --list

CRICTL OPTIONS:
   runtime-endpoint:      Container Runtime Interface (CRI) runtime endpoint (default: "")
   image-endpoint:        Container Runtime Interface (CRI) image endpoint (default: "")
   timeout:               Timeout of connecting to server (default: 2)
   debug:                 Enable debug output (default: false)
   pull-image-on-create:  Enable pulling image on create requests (default: false)
   disable-pull-on-run:   Disable pulling image on run requests (default: false)"""


def config_values(config: ClientConfig) -> dict[str, str]:
    """Each option as crictl prints it (strconv.Itoa, strconv.FormatBool)."""
    return {
        "runtime-endpoint": config.runtime_endpoint,
        "image-endpoint": config.image_endpoint,
        "timeout": str(config.timeout),
        "debug": "true" if config.debug else "false",
        "pull-image-on-create": "true" if config.pull_image_on_create else "false",
        "disable-pull-on-run": "true" if config.disable_pull_on_run else "false",
    }


def set_config_value(config: ClientConfig, key: str, value: str) -> None:
    """crictl's setValue: strconv.Atoi for timeout, strconv.ParseBool for the switches."""
    if key in ("runtime-endpoint", "image-endpoint"):
        setattr(config, key.replace("-", "_"), value)
    elif key in _INT_KEYS:
        if not re.fullmatch(r"[+-]?\d+", value):
            raise CommandError(
                f"parse timeout value '{value}': strconv.Atoi: parsing {go_quote(value)}: invalid syntax"
            )
        config.timeout = int(value)
    elif key in _BOOL_KEYS:
        if value not in GO_TRUE | GO_FALSE:
            raise CommandError(
                f"parse {key} value '{value}': strconv.ParseBool: parsing {go_quote(value)}: invalid syntax"
            )
        setattr(config, key.replace("-", "_"), value in GO_TRUE)
    else:
        raise CommandError(f"no configuration option named {key}")


def _yaml_scalar(key: str, value: str, old: str | None) -> str:
    """The value's text in the file: a string keeps the old quoting, and is double-quoted
    where go-yaml would (empty, or it would read back as another type)."""
    if key in _INT_KEYS or key in _BOOL_KEYS:
        return value
    double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if old is not None and old.startswith('"'):
        return double
    if old is not None and old.startswith("'"):
        return "'" + value.replace("'", "''") + "'"
    resolved = yaml.safe_load(value) if value else None
    plain_ok = value != "" and isinstance(resolved, str) and resolved == value
    if plain_ok and not re.search(r"^[\s!&*>|%@`#,\[\]{}'\"?:-]|:\s|\s#|\s$", value):
        return value
    return double


def render_config(text: str, config: ClientConfig) -> str:
    """The config file after setting `config`: known lines edited in place, missing keys appended."""
    values = config_values(config)
    lines = text.splitlines()
    seen: set[str] = set()
    flat = True
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#") or line.strip() in ("---", "..."):
            continue
        m = _LINE.match(line)
        if m is None or m.group("key") not in values:
            flat = False
            break
        key = m.group("key")
        old = m.group("value")
        lines[i] = (
            f"{key}{m.group('sep') or ': '}{_yaml_scalar(key, values[key], old)}{m.group('comment') or ''}"
        )
        if not m.group("sep").endswith((" ", "\t")):
            lines[i] = f"{key}: {_yaml_scalar(key, values[key], old)}{m.group('comment') or ''}"
        seen.add(key)
    if not flat:
        lines, seen = [], set()
    for key in CONFIG_KEYS:
        if key not in seen:
            lines.append(f"{key}: {_yaml_scalar(key, values[key], None)}")
    return "\n".join(lines) + "\n"


def config_path(args: argparse.Namespace) -> Path:
    # The same file endpoint.resolve read: --config, then CRI_CONFIG_FILE, then the default.
    explicit = getattr(args, "config", None) or os.environ.get("CRI_CONFIG_FILE") or None
    return Path(explicit) if explicit else endpoint.DEFAULT_CONFIG_PATH


def _load_config(path: Path) -> ClientConfig:
    try:
        return read_client_config(path)
    except ClientConfigError as exc:
        text = str(exc)
        raise CommandError(
            text if text.startswith("load config file") else f"load config file: {text}"
        ) from None


def _write_config(path: Path, config: ClientConfig) -> None:
    try:
        old = path.read_text() if path.exists() else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(old, config))
    except OSError as exc:
        raise CommandError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def cmd_config(args: argparse.Namespace, ep: Endpoints) -> None:
    path = config_path(args)
    if not path.exists():
        # crictl writes a file with every default before it reads one.
        _write_config(path, ClientConfig())
    config = _load_config(path)
    if args.get is not None:
        values = config_values(config)
        if args.get not in values:
            raise CommandError(f"no configuration option named {args.get}")
        print(values[args.get])
        return
    if args.set:
        for setting in args.set:
            for option in setting.split(","):
                pair = option.split("=")
                if len(pair) != 2:
                    raise CommandError(f"incorrectly specified option: {setting}")
                set_config_value(config, pair[0], pair[1])
        _write_config(path, config)
        return
    if args.list:
        rows = [["KEY", "VALUE"]] + [[k, v] for k, v in config_values(config).items()]
        sys.stdout.write(CLEAR_SCREEN + table(rows))
        return
    if not args.args:
        show_help(args)
        return
    key = args.args[0]
    value = args.args[1] if len(args.args) > 1 else ""
    print(
        "cribctl: no --get, --set or --list provided, "
        f"setting key {go_quote(key)} to value {go_quote(value)}",
        file=sys.stderr,
    )
    try:
        set_config_value(config, key, value)
    except CommandError as exc:
        raise CommandError(f"set {go_quote(key)} to {go_quote(value)}: {exc}") from None
    _write_config(path, config)


# --- statsp ------------------------------------------------------------------------------------


def _pod_stats(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, flt: api_pb2.PodSandboxStatsFilter
) -> list[api_pb2.PodSandboxStats]:
    try:
        reply = stub.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(filter=flt), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(f"list pod sandbox stats: {call_error(exc)}") from None
    stats = list(reply.stats)
    go_sort(stats, lambda a, b: a.attributes.id < b.attributes.id)
    return stats


def _usage(s: api_pb2.PodSandboxStats) -> tuple[int, int, int]:
    """CPU core-nanoseconds, working set bytes and the CPU sample's time, Linux or Windows."""
    if s.HasField("linux") and s.HasField("windows"):
        raise CommandError(
            f"get pod stats: pod {go_quote(s.attributes.id[:TRUNCATED_ID_LEN])} has both linux and "
            "windows stats which is not supported"
        )
    side: Any = s.linux if s.HasField("linux") else s.windows if s.HasField("windows") else None
    if side is None:
        return 0, 0, 0
    return side.cpu.usage_core_nano_seconds.value, side.memory.working_set_bytes.value, side.cpu.timestamp


def statsp_table(old: list[api_pb2.PodSandboxStats], new: list[api_pb2.PodSandboxStats]) -> str:
    """crictl's statsp table from two samples: a pod without CPU and memory use, or not in
    the first sample, is left out."""
    before = {s.attributes.id: s for s in old}
    rows = [STATSP_COLUMNS]
    for s in new:
        cpu, mem, ts = _usage(s)
        if cpu == 0 and mem == 0:
            continue
        if s.attributes.id not in before:
            continue
        old_cpu, _, old_ts = _usage(before[s.attributes.id])
        percent = 0.0
        if cpu != 0:
            if ts == old_ts:
                raise CommandError("get pod stats: cpu stat is not updated during sample")
            # Unsigned in Go: a counter that went back wraps around, as there.
            percent = float((cpu - old_cpu) % (1 << 64)) / float(ts - old_ts) * 100
        rows.append(
            [
                s.attributes.metadata.name,
                s.attributes.id[:TRUNCATED_ID_LEN],
                f"{percent:.2f}",
                human_size(float(mem)),
            ]
        )
    return table(rows)


def cmd_statsp(args: argparse.Namespace, ep: Endpoints) -> None:
    pod_id = args.id or (args.ids[0] if args.ids else "")
    if len(args.ids) > 1:
        show_help(args)
        return
    try:
        stub = connect(ep)
    except CommandError as exc:
        raise CommandError(f"get runtime service: {exc}") from None
    seconds = int_flag(args.seconds) if args.seconds is not None else 1
    try:
        labels = parse_labels(args.label or [])
    except CommandError as exc:
        raise CommandError(f"parse pod labels: {exc}") from None
    flt = api_pb2.PodSandboxStatsFilter(id=pod_id, label_selector=labels)
    show_stats(
        lambda: _pod_stats(stub, ep, flt),
        lambda stats: api_pb2.ListPodSandboxStatsResponse(stats=stats),
        statsp_table,
        args,
        seconds,
        "get pod stats",
    )


# --- checkpoint, runtime-config --------------------------------------------------------------------


def cmd_checkpoint(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids:
        raise CommandError("ID cannot be empty")
    if not args.export:
        raise CommandError(
            "cannot checkpoint a container without specifying the checkpoint destination. "
            "Use --export=/path/to/checkpoint.tar"
        )
    stub = connect(ep)
    for container_id in args.ids:
        try:
            if not container_id:
                raise CallError("ID cannot be empty")
            request = api_pb2.CheckpointContainerRequest(container_id=container_id, location=args.export)
            try:
                # No deadline of its own: a checkpoint may take long, crictl waits for it too.
                stub.CheckpointContainer(request)
            except grpc.RpcError as exc:
                raise CallError(call_error(exc)) from None
        except CallError as exc:
            raise CommandError(
                f"checkpointing the container {go_quote(container_id)} failed: {exc}"
            ) from None
        print(container_id)


def cmd_runtime_config(args: argparse.Namespace, ep: Endpoints) -> None:
    try:
        stub = connect(ep)
    except CommandError as exc:
        raise CommandError(f"get runtime client: {exc}") from None
    try:
        r = stub.RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"get runtime config: call RuntimeConfig RPC: {call_error(exc)}") from None
    text = ""
    if r.HasField("linux"):
        driver = api_pb2.CgroupDriver.Name(r.linux.cgroup_driver)
        text = f"cgroup driver:\t{driver}\n"
    # tabwriter.NewWriter(os.Stdout, 10, 1, 3, ' ', 0)
    sys.stdout.write(tabwrite(text, 10, 1, 3, " "))


def cmd_update_runtime_config(args: argparse.Namespace, ep: Endpoints) -> None:
    if args.extra or args.pod_cidr is None:
        show_help(args)
        return
    config = api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr=args.pod_cidr))
    stub = connect(ep)
    try:
        stub.UpdateRuntimeConfig(
            api_pb2.UpdateRuntimeConfigRequest(runtime_config=config), timeout=ep.timeout
        )
    except grpc.RpcError as exc:
        raise CommandError(f"update runtime config: {call_error(exc)}") from None
    print("cribctl: runtime config successfully updated", file=sys.stderr)


# --- completion ------------------------------------------------------------------------------------

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


def _subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def parser_commands(parser: argparse.ArgumentParser) -> list[tuple[list[str], str, argparse.ArgumentParser]]:
    """([name, aliases...], help, subparser) for each command, by name as crictl lists them."""
    sub = _subparsers_action(parser)
    if sub is None:
        return []
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    groups: dict[int, list[str]] = {}
    parsers: dict[int, argparse.ArgumentParser] = {}
    for name, p in sub.choices.items():
        groups.setdefault(id(p), []).append(name)
        parsers[id(p)] = p
    out = []
    for key, names in groups.items():
        help_text = next((helps[n] for n in names if n in helps), "")
        if help_text == argparse.SUPPRESS:
            continue
        out.append((names, help_text, parsers[key]))
    out.sort(key=lambda item: (item[0][0] == "help", item[0][0]))
    return out


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
    root = getattr(args, "root_parser", None)
    if root is None:
        from crib.cribctl import main  # the root parser, when not handed over by main.parser

        root = main.parser()
    if len(args.shell) > 1:
        show_help(args)
        return
    shell = args.shell[0] if args.shell else "bash"
    render = {"bash": bash_completion, "zsh": zsh_completion, "fish": fish_completion}.get(shell)
    if render is None:
        raise CommandError("only bash, zsh or fish are supported")
    print(render(root))


# --- registration ------------------------------------------------------------------------------------

COMPLETION_EPILOG = """\
Output shell completion code for bash, zsh or fish.

Examples:

    # Installing bash completion on Linux
    source <(cribctl completion bash)

    # Installing zsh completion on Linux
    source <(cribctl completion zsh)

    # Installing fish completion on Linux
    cribctl completion fish | source"""

# Commands that talk to no runtime: main skips resolving and checking endpoints for them.
OFFLINE_COMMANDS = frozenset({"config", "completion"})


def _add(sub: Any, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
    p.set_defaults(subparser=p, subcommand=name)
    return p


def register(sub: Any) -> dict[str, Command]:
    p = _add(
        sub,
        "config",
        "get, set and list crictl configuration options",
        epilog=CONFIG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("args", nargs="*", metavar="<crictl options>")
    p.add_argument("--get", metavar="OPTION", help="show the option value")
    p.add_argument(
        "--set",
        action=SliceAppend,
        metavar="OPTION=VALUE",
        help="set option (can specify multiple or separate values with commas: opt1=val1,opt2=val2)",
    )
    p.add_argument("--list", action="store_true", help="show all option values")

    p = _add(
        sub,
        "statsp",
        "list pod statistics. Stats represent a structured API that will fulfill the "
        "Kubelet's /stats/summary endpoint.",
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--id", default="", help="filter by pod id")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table")
    p.add_argument(
        "--seconds",
        "-s",
        action=GoFlag,
        metavar="N",
        help="sample duration for CPU usage in seconds (default 1)",
    )
    p.add_argument("--watch", "-w", action="store_true", help="watch pod resources")

    p = _add(sub, "checkpoint", "checkpoint one or more running containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument(
        "--export",
        "-e",
        default="",
        metavar="FILE",
        help="specify the name of the tar archive (/path/to/checkpoint.tar) used to export the "
        "checkpoint image.",
    )

    _add(sub, "runtime-config", "retrieve the container runtime configuration")

    p = _add(sub, "update-runtime-config", "update the runtime configuration")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)  # crictl shows its help for arguments
    p.add_argument(
        "--pod-cidr",
        "-p",
        metavar="CIDR",
        help="the new Classless Inter-Domain Routing (CIDR) value to be used for pod IP addresses. "
        "If the CIDR is empty, runtimes should omit it.",
    )

    p = _add(
        sub,
        "completion",
        "output shell completion code",
        epilog=COMPLETION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", nargs="*", metavar="SHELL")

    return {
        "config": cmd_config,
        "statsp": cmd_statsp,
        "checkpoint": cmd_checkpoint,
        "runtime-config": cmd_runtime_config,
        "update-runtime-config": cmd_update_runtime_config,
        "completion": cmd_completion,
    }
