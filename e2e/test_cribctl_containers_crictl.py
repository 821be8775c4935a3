"""cribctl's container commands beside crictl 1.36, on the same cribd.

The same commands run with crictl and cribctl and the outputs are compared byte for
byte; only relative times ("N seconds ago") are masked.
cribctl runs as a subprocess, as users run it, against a real cribd, pod network
and busybox containers (e2e.cribctl_bed). Each test removes the containers and pods it made.
"""

from __future__ import annotations

import ast
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.cribctl_bed import (
    IMAGE,
    SLEEP,
    TALKER,
    Output,
    Pod,
    cribctl,
    file_lines,
    has_event,
    json_docs,
    ok,
    pod_bed,
    subscribe_all,
    table_rows,
    three_containers,
)
from e2e.harness.clients import (
    cribctl_argv,
    crictl,
    crictl_bin,
)
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[Pod]:
    with pod_bed(net_cribd, tmp_path) as bed:
        yield bed


# --- against crictl -----------------------------------------------------------------------------------------


def crictl_argv(daemon: Cribd, *args: str) -> list[str]:
    return [crictl_bin(), "--config", "/dev/null", "-r", f"unix://{daemon.socket}", *args]


# Relative times and, in a table, the padding after them (both tools see the same widths).
_RELATIVE = re.compile(r"(Less than a second|1 second|\d+ seconds|About a minute) ago( +(?=\S))?")


def _mask(text: str) -> str:
    return _RELATIVE.sub(lambda m: "<ago>" + (" " * 20 if m.group(2) else ""), text)


def _crictl_message(stderr: str) -> str:
    """The message of crictl's fatal log line (logrus or log.Fatalf), klog lines left out."""
    m = re.search(r'level=fatal msg="((?:[^"\\]|\\.)*)"', stderr)
    if m:
        return ast.literal_eval(f'"{m.group(1)}"')
    lines = [line for line in stderr.splitlines() if not re.match(r"[EIW]\d{4} ", line)]
    return re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", "\n".join(lines).strip())


def test_output_matches_crictl(pod: Pod) -> None:
    daemon = pod.daemon
    web, db, job = three_containers(pod)
    talker = pod.run("talker", ["/bin/sh", "-c", TALKER])
    pod.wait_exited(talker)
    time.sleep(1.2)  # "N seconds ago" on both sides
    commands = [
        ["ps"],
        ["ps", "-a"],
        ["ps", "-a", "-v"],
        ["ps", "-a", "-q"],
        ["ps", "-a", "--no-trunc"],
        ["ps", "-a", "-r"],
        ["ps", "-a", "-o", "json"],
        ["ps", "-a", "-o", "yaml"],
        ["ps", "-s", "exited", "--label", "tier=back"],
        ["ps", "-a", "--image", IMAGE, "-n", "2"],
        ["ps", "-a", "--name", "nothing"],
        ["ps", "--namespace", "team", "-a", "-o", "json"],
        ["inspect", web],
        ["inspect", "-o", "yaml", db],
        ["inspect", web, db, job],
        ["inspect", "-q", "-o", "yaml", web, job],
        ["inspect", "-o", "table", web, db, job],
        ["inspect", "-a", "--label", "tier=front"],
        ["logs", talker],
        ["logs", "-t", talker],
        ["logs", "--tail", "3", talker],
        ["logs", "--tail", "4", "-t", talker],
        ["logs", "--limit-bytes", "12", talker],
        ["logs", "-s", "stdout", talker],
        ["logs", "--since", "1h", talker],
        ["logs", "--since", file_lines(pod.log_dir / "talker.log")[5][0], talker],
        ["exec", "-s", web, "sh", "-c", "echo out; echo err >&2"],
        ["stats", "--id", job, "-a", "-o", "json"],
    ]
    mismatches = []
    for args in commands:
        ours = cribctl(daemon, *args)
        theirs = crictl(daemon, *args)
        assert (ours.returncode, theirs.returncode) == (0, 0), (args, ours.stderr, theirs.stderr)
        if args[0] == "stats":
            # The sample times differ; the rest is the same.
            same = re.sub(r'"\d{19}"', "<ts>", ours.stdout) == re.sub(r'"\d{19}"', "<ts>", theirs.stdout)
        else:
            same = _mask(ours.stdout) == _mask(theirs.stdout) and ours.stderr == theirs.stderr
        if not same:
            mismatches.append(f"$ {' '.join(args)}\n--- crictl\n{theirs.stdout}--- cribctl\n{ours.stdout}")
    assert not mismatches, "\n".join(mismatches)

    # stats: the same rows and columns (the numbers are samples of their own).
    ours = table_rows(ok(cribctl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))
    theirs = table_rows(ok(crictl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))
    assert ours[0] == theirs[0] and [r[:2] for r in ours] == [r[:2] for r in theirs]
    assert ok(crictl(daemon, "stats")).startswith("\x1b[2J\x1b[H")

    # Lifecycle commands print the IDs alike: each tool works on one of two alike containers.
    one, two = pod.create("one", SLEEP), pod.create("two", SLEEP)
    for args in (["start"], ["update", "--memory", str(64 << 20)], ["stop", "-t", "1"], ["rm"]):
        assert ok(cribctl(daemon, *args, one)) == ok(crictl(daemon, *args, two)).replace(two, one)
    three, four = pod.run("three", SLEEP), pod.run("four", SLEEP)
    assert ok(cribctl(daemon, "rm", "-f", three)) == ok(crictl(daemon, "rm", "-f", four)).replace(four, three)
    unknown = "0" * 64  # crib stops what it does not know successfully, and both tools say so
    assert ok(cribctl(daemon, "stop", unknown)) == ok(crictl(daemon, "stop", unknown)) == f"{unknown}\n"
    five, six = pod.run("five", SLEEP), pod.run("six", SLEEP)
    assert ok(cribctl(daemon, "stop", "-a")).split() == [six, five, web]
    assert (
        ok(crictl(daemon, "stop", "-a"))
        == ok(cribctl(daemon, "stop", "-a"))
        == "No running containers found.\n"
    )
    pod.clean()


def test_events_match_crictl(pod: Pod) -> None:
    daemon = pod.daemon
    outputs = {
        (tool, fmt): Output(argv)
        for fmt in ("json", "yaml")
        for tool, argv in (
            ("cribctl", cribctl_argv(daemon, "events", "-o", fmt)),
            ("crictl", crictl_argv(daemon, "events", "-o", fmt)),
        )
    }
    subscribe_all(pod, *outputs.values())
    starts = {key: len(out.text) for key, out in outputs.items()}
    cid = pod.run("watched", ["/bin/sh", "-c", "sleep 0.3"])
    pod.wait_exited(cid)
    ok(cribctl(daemon, "rm", cid))
    for out in outputs.values():
        wait_until(lambda o=out: has_event(o.text, cid, "CONTAINER_DELETED_EVENT"), timeout=15)
    time.sleep(0.5)
    texts = {key: out.finish(signal.SIGINT)[1][starts[key] :] for key, out in outputs.items()}
    for fmt in ("json", "yaml"):
        assert texts[("cribctl", fmt)] == texts[("crictl", fmt)], fmt
    assert len([d for d in json_docs(texts[("cribctl", "json")]) if d["containerId"] == cid]) == 4
    pod.clean()


def test_errors_match_crictl(pod: Pod) -> None:
    daemon = pod.daemon
    web = pod.run("web", SLEEP)
    unknown = "0" * 64
    noimage = pod.dir / "noimage.yaml"
    noimage.write_text("metadata: {name: x}\nimage: {user_specified_image: b}\n")
    badenv = pod.dir / "badenv.yaml"
    badenv.write_text("metadata: {name: x}\nimage: {image: a}\nenvs: [{key: A, value: [1]}]\n")
    cases = [
        ["create", pod.pod_id, str(pod.dir / "absent.yaml"), pod.pod_config],
        ["create", pod.pod_id, str(noimage), pod.pod_config],
        ["create", pod.pod_id, str(badenv), pod.pod_config],
        ["create", "--no-pull", "--with-pull", "a", "b", "c"],
        ["start"],
        ["start", unknown],
        ["stop", "-a", web],
        ["rm", unknown],
        ["rm", web],
        ["update", "--memory", "1", unknown],
        ["ps", "-s", "bogus"],
        ["ps", "--label", "x"],
        ["ps", "-o", "xml"],
        ["inspect", unknown],
        ["inspect", "-o", "xml", web],
        ["logs", unknown],
        ["logs", "-p", web],
        ["logs", "-s", "both", web],
        ["logs", "--tail", "1", "-s", "stdout", web],
        ["logs", "--since", "2026-13-01", web],
        ["logs", "--since", "tomorrow", web],
        ["logs", "--since", "2026-11-28Tx", web],
        ["exec", "-s", unknown, "true"],
        ["exec", "-s", "--timeout", "1", web, "sleep", "5"],
        ["events", "-o", "xml"],
        ["events", "--template", "x"],
        ["stats", "--label", "x"],
    ]
    for args in cases:
        ours = cribctl(daemon, *args)
        theirs = crictl(daemon, *args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (1, ""), args
        assert ours.stderr.removeprefix("cribctl: ").rstrip("\n") == _crictl_message(theirs.stderr).rstrip(
            "\n"
        ), args
    pod.clean()
