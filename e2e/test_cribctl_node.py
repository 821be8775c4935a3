"""cribctl statsp, checkpoint, runtime-config, update-runtime-config, -o go-template, config and
help against a real cribd, and next to crictl where a binary is available ($CRICTL or PATH).

Each test removes the containers and pods it made (the `pod` test bed of
e2e/test_cribctl_containers.py checks that with Pod.clean).
"""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.cribctl_bed import SLEEP, Output, Pod, cribctl, ok, pod_yaml
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv, crictl, crictl_bin
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until
from e2e.pods import import_busybox

CLEAR = "\x1b[2J\x1b[H"
CRIBCTL = [sys.executable, "-m", "crib.cribctl.main"]
BUSY = ["/bin/sh", "-c", "while true; do :; done"]


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[Pod]:
    """The container tests' bed: busybox, and one pod to run containers in."""
    import_busybox(net_cribd)
    config = tmp_path / "pod.yaml"
    config.write_text(pod_yaml("ctr-pod", tmp_path / "logs") + "labels: {app: node-e2e}\n")
    bed = Pod(
        net_cribd,
        tmp_path,
        ok(cribctl(net_cribd, "runp", str(config))).strip(),
        str(config),
        tmp_path / "logs",
    )
    yield bed
    # The tests clean up themselves (Pod.clean); this is for a test that failed half way.
    cribctl(net_cribd, "rm", "-a", "-f")
    cribctl(net_cribd, "rmp", "-a", "-f")


def _table(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.removeprefix(CLEAR).splitlines()]


def _crictl_message(stderr: str) -> str:
    """The message of crictl's fatal log line."""
    m = re.search(r'level=fatal msg="((?:[^"\\]|\\.)*)"', stderr)
    assert m, stderr
    return ast.literal_eval(f'"{m.group(1)}"')


def _err(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("cribctl: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr.removeprefix("cribctl: ").removesuffix("\n")


# --- statsp ---------------------------------------------------------------------------------------


def test_statsp(pod: Pod) -> None:
    daemon = pod.daemon
    pod.run("busy", BUSY)
    out = ok(cribctl(daemon, "statsp", "-s", "1"))
    assert out.startswith(CLEAR)  # crictl clears the screen first
    table = _table(out)
    assert table[0] == ["POD", "POD ID", "CPU %", "MEM"]
    (row,) = table[1:]
    assert row[:2] == ["ctr-pod", pod.pod_id[:13]]
    assert float(row[2]) > 5.0  # a busy loop: much of a core, on a shared machine
    assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row[3]) and row[3] != "0B"
    # The pod by --id (a prefix), by the positional ID, by label; nothing for another label.
    for args in (["--id", pod.pod_id[:8]], [pod.pod_id], ["--label", "app=node-e2e"]):
        assert [r[0] for r in _table(ok(cribctl(daemon, "statsp", *args)))[1:]] == ["ctr-pod"], args
    assert _table(ok(cribctl(daemon, "statsp", "--label", "app=none"))) == [["POD", "POD ID", "CPU %", "MEM"]]
    doc = json.loads(ok(cribctl(daemon, "statsp", "-o", "json")))
    (stat,) = doc["stats"]
    assert stat["attributes"]["id"] == pod.pod_id and stat["attributes"]["metadata"]["name"] == "ctr-pod"
    assert int(stat["linux"]["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert [c["attributes"]["metadata"]["name"] for c in stat["linux"]["containers"]] == ["busy"]
    assert yaml.safe_load(ok(cribctl(daemon, "statsp", "-o", "yaml", "--id", pod.pod_id)))["stats"]
    # Two IDs: crictl shows its help.
    assert ok(cribctl(daemon, "statsp", "a", "b")).startswith("NAME:\n   cribctl statsp - ")
    # --watch: a table after each sample until interrupted.
    watch = Output(cribctl_argv(daemon, "statsp", "-w", "-s", "1"))
    wait_until(lambda: watch.text.count(CLEAR) >= 2, timeout=20)
    code, _, err = watch.finish(signal.SIGINT)
    assert (code, err) == (0, "")
    assert (
        _err(cribctl(daemon, "statsp", "--label", "novalue"))
        == "parse pod labels: incorrectly specified label: novalue"
    )
    pod.clean()


def test_statsp_matches_crictl(pod: Pod) -> None:
    pod.run("busy", BUSY)
    ours, theirs = ok(cribctl(pod.daemon, "statsp")), crictl(pod.daemon, "statsp")
    assert theirs.returncode == 0, theirs.stderr
    # The samples differ, and so may their widths (a busy loop's CPU % is 99.87 in one and
    # 100.12 in the other): the numbers masked, and the padding the table gave them.
    mask = re.compile(r"\d+\.\d\d(?= )|\d+(\.\d+)?[kMG]?B$", re.M)

    def masked(table: str) -> str:
        return re.sub(r" {2,}", "  ", mask.sub("N", table))

    assert masked(ours) == masked(theirs.stdout)
    # JSON: the same document but for the numbers of the moment.
    ours_doc = json.loads(ok(cribctl(pod.daemon, "statsp", "-o", "json")))
    theirs_doc = json.loads(crictl(pod.daemon, "statsp", "-o", "json").stdout)

    def shape(obj: object) -> object:
        if isinstance(obj, dict):
            return {k: shape(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [shape(v) for v in obj]
        return "N" if isinstance(obj, (int, float)) or (isinstance(obj, str) and obj.isdigit()) else obj

    assert shape(ours_doc) == shape(theirs_doc)
    pod.clean()


# --- checkpoint, runtime-config, update-runtime-config ------------------------------------------------


def test_checkpoint_errors(pod: Pod, tmp_path: Path) -> None:
    daemon = pod.daemon
    assert _err(cribctl(daemon, "checkpoint")) == "ID cannot be empty"
    assert _err(cribctl(daemon, "checkpoint", "abc")) == (
        "cannot checkpoint a container without specifying the checkpoint destination. "
        "Use --export=/path/to/checkpoint.tar"
    )
    message = _err(cribctl(daemon, "checkpoint", "-e", str(tmp_path / "c.tar"), "nope"))
    assert message.startswith('checkpointing the container "nope" failed: rpc error: code = NotFound desc = ')
    theirs = crictl(daemon, "checkpoint", "-e", str(tmp_path / "c.tar"), "nope")
    assert theirs.returncode == 1 and _crictl_message(theirs.stderr) == message
    assert not (tmp_path / "c.tar").exists()
    pod.clean()


def test_runtime_config(cribd: Cribd) -> None:
    out = ok(cribctl(cribd, "runtime-config"))
    assert re.fullmatch(r"cgroup driver:   (SYSTEMD|CGROUPFS)\n", out), out
    theirs = crictl(cribd, "runtime-config")
    assert (theirs.returncode, theirs.stdout) == (0, out)
    r = cribctl(cribd, "update-runtime-config", "-p", "10.244.0.0/16")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "cribctl: runtime config successfully updated\n")
    assert _err(cribctl(cribd, "update-runtime-config", "-p", "bogus")).startswith(
        "update runtime config: rpc error: code = InvalidArgument desc = "
    )
    assert ok(cribctl(cribd, "update-runtime-config")).startswith(
        "NAME:\n   cribctl update-runtime-config - "
    )


# --- -o go-template -------------------------------------------------------------------------------


def test_go_template(pod: Pod) -> None:
    daemon = pod.daemon
    cid = pod.run("idle", SLEEP)

    def render(*args: str) -> str:
        return ok(cribctl(daemon, *args[:-1], "-o", "go-template", "--template", args[-1]))

    assert render("inspect", cid, "{{.status.id}}") == f"{cid}\n"
    assert render(
        "inspect", cid, '{{.status.metadata.name}} {{.status.state}} {{index .status.labels "ctr"}}'
    ) == ("idle CONTAINER_RUNNING idle\n")
    assert render("inspect", cid, "{{range .info.runtimeSpec.process.args}}[{{.}}]{{end}}") == (
        "[/bin/sleep][1000]\n"
    )
    assert render("inspect", cid, cid, "{{range .}}{{.status.state}} {{end}}") == (
        "CONTAINER_RUNNING CONTAINER_RUNNING \n"
    )
    assert json.loads(render("inspect", cid, "{{json .status.labels}}")) == {"ctr": "idle"}
    assert (
        render("inspectp", pod.pod_id, "{{.status.id}} {{.status.state}}") == f"{pod.pod_id} SANDBOX_READY\n"
    )
    assert render("inspectp", pod.pod_id, '{{if eq .status.metadata.namespace "e2e"}}yes{{end}}') == "yes\n"
    tags = render(
        "inspecti", "crib.e2e/busybox:1", "{{range .status.repoTags}}{{.}} {{end}}{{len .status.id}}"
    )
    assert tags == "crib.e2e/busybox:1 71\n"
    assert render("info", "{{range .status.conditions}}{{.type}}={{.status}} {{end}}") == (
        "RuntimeReady=true NetworkReady=true \n"
    )
    assert render(
        "imagefsinfo", "{{range .status.imageFilesystems}}{{.fsId.mountpoint | len | lt 0}}{{end}}"
    ) == ("true\n")
    # Errors: one line, crictl's words, exit status 1.
    assert _err(cribctl(daemon, "inspect", cid, "-o", "go-template", "--template", "{{.status.nope}}")) == (
        "get the status of containers: execute template: failed to template data: template: "
        'tmplExecuteRawJSON:1:9: executing "tmplExecuteRawJSON" at <.status.nope>: '
        'map has no entry for key "nope"'
    )
    assert _err(cribctl(daemon, "inspectp", pod.pod_id, "-o", "go-template", "--template", "{{nope}}")) == (
        "get the status of pod sandboxes: execute template: failed to generate go-template: template: "
        'tmplExecuteRawJSON:1: function "nope" not defined'
    )
    # Nothing matched: the command's help, as without a template.
    r = cribctl(daemon, "inspect", "-o", "go-template", "--template", "{{.x}}", "--name", "nothing")
    assert r.returncode == 0 and r.stdout.startswith("NAME:\n   cribctl inspect - ")
    assert r.stderr == "cribctl: No IDs provided or nothing found per filter\n"
    assert _err(cribctl(daemon, "events", "-o", "go-template", "--template", "{{if}}")) == (
        "failed to parse go-template: template: :1: missing value for if"
    )
    pod.clean()


def test_events_go_template(pod: Pod) -> None:
    events = Output(
        cribctl_argv(
            pod.daemon,
            "events",
            "-o",
            "go-template",
            "--template",
            "{{.containerEventType}} {{.containerId}}",
        )
    )
    time.sleep(1.0)  # subscribed before the container is made
    cid = pod.create("evt", ["/bin/true"])
    wait_until(lambda: f"CONTAINER_CREATED_EVENT {cid}\n" in events.text, timeout=20)
    code, text, _ = events.finish(signal.SIGINT)
    assert code == 1 and text.startswith(f"CONTAINER_CREATED_EVENT {cid}\n")
    pod.clean()


TEMPLATES = [
    "{{.status.id}}",
    "{{.}}",
    "{{.status.metadata}} {{.status.state}} {{.info.pid}}",
    "{{json .info.runtimeSpec.process}}",
    "{{range $k, $v := .status.labels}}{{$k}}={{$v}};{{end}}",
    '{{if eq .status.state "CONTAINER_RUNNING"}}up{{else}}down{{end}} {{len .status.mounts}}',
    '{{printf "%s|%d|%v|%q" .status.id .info.pid .info.pid .status.state}}',
    "{{.status.image.image | upper | lower | title}}",
    '{{define "x"}}<{{.}}>{{end}}{{template "x" .status.state}}{{block "y" .info.pid}}[{{.}}]{{end}}',
    "{{- .status.id -}}  {{/* comment */}}",
    # Errors.
    "{{.status.nope}}",
    "{{.status.id.x}}",
    "{{eq .info.pid 1}}",
    "{{index .status.labels 5}}",
    "{{range .status.id}}{{end}}",
    "{{printf 1}}",
    "{{.status.id}",
    "{{nope .}}",
    "{{if}}",
    '{{template "x"}}',
]


def test_go_template_matches_crictl(pod: Pod) -> None:
    cid = pod.run("idle", SLEEP)
    mismatches = []
    for template in TEMPLATES:
        for args in (
            ["inspect", cid],
            ["inspectp", pod.pod_id],
            ["inspecti", "crib.e2e/busybox:1"],
            ["info"],
        ):
            # crictl reads flags up to the first argument only.
            argv = [args[0], "-o", "go-template", "--template", template, *args[1:]]
            ours, theirs = cribctl(pod.daemon, *argv), crictl(pod.daemon, *argv)
            if ours.returncode != theirs.returncode or ours.stdout != theirs.stdout:
                mismatches.append(
                    f"$ {argv}\n--- crictl {theirs.returncode}\n{theirs.stdout}--- cribctl\n{ours.stdout}"
                )
            elif theirs.returncode and _crictl_message(theirs.stderr) != _err(ours):
                mismatches.append(f"$ {argv}\n--- crictl\n{theirs.stderr}--- cribctl\n{ours.stderr}")
    assert not mismatches, "\n".join(mismatches)
    pod.clean()


# --- config, help, a dead daemon (no cribd needed) -------------------------------------------------------


def _client(tool: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tool, *args], capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env()
    )


def test_config_matches_crictl(tmp_path: Path) -> None:
    steps = [
        ["--set", "debug=true"],
        ["--set", "image-endpoint=unix:///img.sock,timeout=9"],
        ["--get", "timeout"],
        ["--get", "image-endpoint"],
        ["--list"],
        ["timeout", "5"],
        ["--set", "runtime-endpoint="],
        ["--set", "image-endpoint=true"],
        ["--get", "nope"],
        ["--set", "timeout"],
        ["--set", "debug=maybe"],
    ]
    start = '# my comment\ntimeout: 10 # ten\nruntime-endpoint: "unix:///x.sock"\n'
    files = {"crictl": tmp_path / "crictl.yaml", "cribctl": tmp_path / "cribctl.yaml"}
    for f in files.values():
        f.write_text(start)
    for step in steps:
        ours = _client([*CRIBCTL, "--config", str(files["cribctl"]), "config"], *step)
        theirs = _client([str(crictl_bin()), "--config", str(files["crictl"]), "config"], *step)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), step
        if theirs.returncode:
            assert _err(ours) == _crictl_message(theirs.stderr), step
        assert files["cribctl"].read_text() == files["crictl"].read_text(), step


def test_commands_and_help_match_crictl() -> None:
    theirs = _client([str(crictl_bin()), "--help"]).stdout
    ours = _client([*CRIBCTL, "--help"]).stdout

    def commands(text: str) -> set[str]:
        block = text.split("COMMANDS:\n", 1)[1].split("\n\n", 1)[0]
        return {
            n.strip() for line in block.splitlines() for n in re.split(r"\s{2,}", line.strip())[0].split(",")
        }

    # cribctl has every crictl command (and a few of its own: load, import).
    assert commands(theirs) <= commands(ours), commands(theirs) - commands(ours)
    for text in (ours, theirs):
        sections = [line for line in text.splitlines() if line and not line.startswith(" ")]
        assert sections == ["NAME:", "USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"]
    for command in ("statsp", "checkpoint", "runtime-config", "completion", "inspecti"):
        ours_help = _client([*CRIBCTL, command, "--help"]).stdout
        theirs_help = _client([str(crictl_bin()), command, "--help"]).stdout
        flags = re.compile(r"^   (--[a-z-]+)", re.M)
        assert flags.findall(ours_help) == flags.findall(theirs_help), command
        assert (
            ours_help.split("\n", 2)[1].lower().replace("cribctl", "crictl")
            == theirs_help.split("\n", 2)[1].lower()
        )


def test_no_daemon_every_command_says_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    for args in (
        ["version"],
        ["pods"],
        ["statsp"],
        ["runtime-config"],
        ["inspect", "-o", "go-template", "x"],
    ):
        r = _client([*CRIBCTL, "--config", "/dev/null", "-r", f"unix://{missing}", *args])
        message = _err(r)
        assert f"dial unix {missing}: connect: no such file or directory" in message, args
        # crictl's inspect says something else for a missing socket; every other command matches.
        if args[0] != "inspect":
            theirs = _client([str(crictl_bin()), "--config", "/dev/null", "-r", f"unix://{missing}", *args])
            assert theirs.returncode == 1 and _crictl_message(theirs.stderr) == message, args
