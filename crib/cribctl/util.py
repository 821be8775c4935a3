"""What the command modules share: flags read as crictl's urfave/cli reads them, warnings and
help, tables and ID truncation, the filters crictl applies itself, and the command tree.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from crib.cribctl.client import CommandError
from crib.cribctl.cri_config import ConfigError, load_pod_config
from crib.cribctl.golike import go_parse_int, go_quote, go_sort, tabwrite
from crib.cribctl.gotime import parse_go_duration_strict
from crib.proto.cri import api_pb2

TRUNCATED_ID_LEN = 13

# crictl's newDefaultTableDisplay: tabwriter.NewWriter(os.Stdout, 20, 1, 3, ' ', 0).
TABLE_MINWIDTH, TABLE_TABWIDTH, TABLE_PADDING = 20, 1, 3

# display.ClearScreen: crictl clears the terminal before each stats table.
CLEAR_SCREEN = "\033[2J\033[H"


# --- flags and arguments --------------------------------------------------------------------------


class SliceAppend(argparse.Action):
    """urfave/cli's StringSliceFlag: repeatable, and each value is split on commas and trimmed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.extend(part.strip() for part in str(values).split(","))
        setattr(namespace, self.dest, items)


class GoFlag(argparse.Action):
    """Keeps a flag's text and the name it was given by, for Go's flag error ("for flag -n")."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, (str(values), (option_string or self.dest).lstrip("-")))


def _flag_error(flag: tuple[str, str], reason: str) -> CommandError:
    return CommandError(f"invalid value {go_quote(flag[0])} for flag -{flag[1]}: {reason}")


def int_flag(flag: tuple[str, str] | None) -> int:
    """An IntFlag: Go's strconv.ParseInt with base 0 ("0x10" is 16)."""
    if flag is None:
        return 0
    try:
        return go_parse_int(flag[0])
    except ValueError as exc:
        raise _flag_error(flag, str(exc)) from None


def duration_flag(flag: tuple[str, str] | None) -> float:
    """A DurationFlag in seconds: time.ParseDuration, a unit is required."""
    if flag is None:
        return 0.0
    try:
        return parse_go_duration_strict(flag[0])
    except ValueError:
        raise _flag_error(flag, "parse error") from None


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """crictl's parseLabelStringSlice: exactly one '=' per pair."""
    labels: dict[str, str] = {}
    for pair in pairs:
        parts = pair.split("=")
        if len(parts) != 2:
            raise CommandError(f"incorrectly specified label: {pair}")
        labels[parts[0]] = parts[1]
    return labels


def pod_config(path: str, context: str = "") -> api_pb2.PodSandboxConfig:
    """The pod config file a command was given, its warnings printed; CommandError when it does not load."""
    try:
        config, warnings = load_pod_config(path)
    except ConfigError as exc:
        raise CommandError(f"{context}load podSandboxConfig: {exc}") from None
    for warning in warnings:
        warn(warning)
    return config


# --- output ---------------------------------------------------------------------------------------


def warn(message: str) -> None:
    print(f"cribctl: {message}", file=sys.stderr)


def show_help(args: argparse.Namespace) -> None:
    # crictl's ShowSubcommandHelp: usage on stdout, and success.
    args.subparser.print_help()


_print_lock = threading.Lock()


def say(line: str) -> None:
    # rm and rmp work on many at once: whole lines, each at once.
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def table(rows: list[list[str]]) -> str:
    text = "".join("\t".join(row) + "\n" for row in rows)
    return tabwrite(text, TABLE_MINWIDTH, TABLE_TABWIDTH, TABLE_PADDING, " ")


def truncated_id(value: str, prefix: str = "") -> str:
    return value.removeprefix(prefix)[:TRUNCATED_ID_LEN]


def enum_name(enum: Any, value: int) -> str:
    known = enum.DESCRIPTOR.values_by_number.get(value)
    return known.name if known else str(value)


def sorted_pairs(title: str, values: Any) -> list[str]:
    # A map decoded from the wire is nil when empty: crictl prints the section only when set.
    if not values:
        return []
    return [f"{title}:"] + [f"\t{key} -> {values[key]}" for key in sorted(values)]


# --- what crictl filters itself -------------------------------------------------------------------


def matches_regex(pattern: str, target: str) -> bool:
    """crictl's matchesRegex: empty matches all, unanchored, a bad pattern matches nothing."""
    if not pattern:
        return True
    try:
        return re.search(pattern, target) is not None
    except re.error:
        return False


def newest_first(items: list[Any], latest: bool, last: int) -> list[Any]:
    """crictl's list order (newest first), cut to one with --latest or to --last N."""
    go_sort(items, lambda a, b: a.created_at > b.created_at)
    n = len(items)
    if latest:
        n = 1
    if last > 0:
        n = last
    return items[: min(n, len(items))]


# --- commands that run until interrupted ----------------------------------------------------------


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C while a command streams (crictl's shutdown signals)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


WATCH_INTERVAL_S = 0.5


def watch(display: Callable[[], None], interval: float = WATCH_INTERVAL_S) -> None:
    """crictl's `--watch` ticker: a display every interval (the first after one), or right
    after the previous one when that took longer; Ctrl-C or SIGTERM ends it, successfully."""
    try:
        with interruptible():
            next_tick = time.monotonic() + interval
            while True:
                time.sleep(max(0.0, next_tick - time.monotonic()))
                display()
                next_tick = max(next_tick + interval, time.monotonic())
    except KeyboardInterrupt:
        return


# --- the command tree -----------------------------------------------------------------------------


def add_command(
    sub: Any, name: str, help_text: str, aliases: tuple[str, ...] = (), **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand whose help text is also its description; its parser is args.subparser."""
    p = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text, **kwargs)
    p.set_defaults(subparser=p, subcommand=name)
    return p


def subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def parser_commands(parser: argparse.ArgumentParser) -> list[tuple[list[str], str, argparse.ArgumentParser]]:
    """([name, aliases...], help, subparser) for each command, by name as crictl lists them."""
    sub = subparsers_action(parser)
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
