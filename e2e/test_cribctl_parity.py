"""cribctl against crictl: one sequence of commands, the outputs compared field by field.

The sequence (version, info, a pod and a container through their life, the
image commands, then stop, stopp, rmp, rmi) runs through `crictl` and through
`cribctl` against the same cribd, each tool on a pod and container of its own
with the same configs. Outputs are normalized before they are compared: the
IDs of the pod, container and images become placeholders (<POD>, <CTR>,
<IMAGE>, <PAUSE>, other digests <SHA>), and so do what varies from run to run
or machine to machine: times, ages, sizes, PIDs, stats samples, the pod's IP
and temp paths. JSON and YAML outputs are compared as documents, tables cell
by cell, the rest line by line.

Documents must have their keys in crictl's order, and tables crictl's column
layout (Go's text/tabwriter as crictl sets it up), checked on both outputs.

crictl is found as e2e/harness/clients.py finds it ($CRICTL or PATH; install.sh
builds crictl 1.36.0, and a missing crictl fails the test). crictl's output is
also recorded in e2e/data/crictl/sequence.json (with its version; made with
e2e/data/crictl/record.py, which runs this test with CRIB_RECORD_CRICTL set to
the file to write); a recording the live crictl no longer matches fails as stale.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from crib.proto.cri import api_pb2
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv, crictl_bin
from e2e.harness.cribd import REPO_ROOT, Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.wait import wait_until
from e2e.pods import import_busybox

RECORDED = REPO_ROOT / "e2e" / "data" / "crictl" / "sequence.json"
RECORD_ENV = "CRIB_RECORD_CRICTL"
IMAGE = "localhost/parity/busybox:1"
POD_NAME, POD_NAMESPACE = "parity", "parity-ns"
COMMAND = "echo hello; echo oops >&2; exec sleep 3600"

# The sequence: {pod}, {ctr}, {dir} are filled in as the run goes.
SEQUENCE: list[list[str]] = [
    ["version"],
    ["info"],
    ["runp", "{dir}/pod.yaml"],
    ["pods"],
    ["pods", "-q"],
    ["pods", "-o", "json"],
    ["pods", "-o", "yaml"],
    ["pods", "--name", POD_NAME],
    ["pods", "--name", "nothing"],
    ["pods", "--label", "app=parity"],
    ["pods", "--state", "ready"],
    ["pods", "--state", "notready"],
    ["pods", "--namespace", POD_NAMESPACE],
    ["inspectp", "{pod}"],
    ["create", "{pod}", "{dir}/web.yaml", "{dir}/pod.yaml"],
    ["start", "{ctr}"],
    ["ps"],
    ["ps", "-a"],
    ["ps", "-q"],
    ["ps", "--pod", "{pod}"],
    ["ps", "--name", "web"],
    ["ps", "--state", "running"],
    ["ps", "--state", "exited"],
    ["ps", "--image", IMAGE],
    ["ps", "--last", "1"],
    ["ps", "--latest"],
    ["ps", "-o", "json"],
    ["inspect", "{ctr}"],
    ["logs", "{ctr}"],
    ["exec", "-s", "{ctr}", "sh", "-c", "echo out; echo err >&2"],
    ["stats"],
    ["images"],
    ["images", "-q"],
    ["images", "--digests"],
    ["images", "--no-trunc"],
    ["images", "-o", "json"],
    ["inspecti", IMAGE],
    ["imagefsinfo"],
    ["stop", "{ctr}"],
    ["stopp", "{pod}"],
    ["rmp", "{pod}"],
    ["rmi", IMAGE],
]


@dataclass
class Step:
    args: list[str]  # with placeholders, as in SEQUENCE
    rc: int
    stdout: str  # normalized
    stderr: str  # normalized, crictl's log lines reduced to their messages
    # For a table: how its raw output strays from crictl's column layout ("" where it does not).
    layout: str = ""

    def as_json(self) -> dict:
        return {"args": self.args, "rc": self.rc, "stdout": self.stdout.splitlines(), "stderr": self.stderr}


Tool = Callable[[list[str]], subprocess.CompletedProcess[str]]


def cribctl_tool(daemon: Cribd) -> Tool:
    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cribctl_argv(daemon, *args),
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT_S,
            env=client_env(),
        )

    return run


def crictl_tool(daemon: Cribd, binary: str) -> Tool:
    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [binary, "--config", "/dev/null", "-r", f"unix://{daemon.socket}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env())

    return run


# --- normalization ------------------------------------------------------------------------------

_STAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?( ?(Z|[+-]\d\d:?\d\d)( [A-Z]{3,5})?)?")
_AGO = re.compile(r"(Less than a second|About an? (minute|hour)|\d+ (seconds?|minutes?|hours?)) ago")
_SIZE = re.compile(r"(?<![\w.])\d+(\.\d+)?(B|kB|MB|GB|KiB|MiB|GiB)(?![\w])")
# JSON keys whose values vary with the run or the machine, whatever the tool.
_VARYING_KEYS = {
    "createdAt",
    "startedAt",
    "finishedAt",
    "timestamp",
    "size",
    "usedBytes",
    "inodesUsed",
    "pid",
    "conmonPid",
    "created",
}


def _mask_values(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: "<VARIES>" if k in _VARYING_KEYS else _mask_values(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_mask_values(v) for v in doc]
    return doc


@dataclass
class Known:
    """What the normalization replaces: this run's IDs and paths."""

    pod: str = ""
    ctr: str = ""
    image: str = ""  # sha256:...
    pause: str = ""  # sha256:...
    pod_ip: str = ""
    paths: tuple[tuple[str, str], ...] = ()

    def text(self, text: str) -> str:
        for path, name in self.paths:
            text = text.replace(path, name)
        for full, name in (
            (self.pod, "<POD>"),
            (self.ctr, "<CTR>"),
            (self.image, "<IMAGE>"),
            (self.pause, "<PAUSE>"),
        ):
            if not full:
                continue
            hexid = full.removeprefix("sha256:")
            text = text.replace(f"sha256:{hexid}", name).replace(hexid, name)
            text = re.sub(rf"\b{hexid[:13]}\b", name, text)
            text = re.sub(rf"\b{hexid[:12]}\b", name, text)
        text = re.sub(r"(sha256:)?\b[0-9a-f]{64}\b", "<SHA>", text)
        if self.pod_ip:
            text = re.sub(rf"\b{re.escape(self.pod_ip)}\b", "<POD-IP>", text)
        text = _STAMP.sub("<TIME>", text)
        text = re.sub(r"\b\d{19}\b", "<NS>", text)
        text = re.sub(r"/proc/\d+/", "/proc/<PID>/", text)
        return _AGO.sub("<AGO>", text)


def _crictl_messages(stderr: str) -> str:
    """crictl's logrus lines (time="..." level=... msg="...") as `level: message`; klog lines dropped."""
    out = []
    for line in stderr.splitlines():
        m = re.match(r'time="[^"]*" level=(\w+) msg="((?:[^"\\]|\\.)*)"', line)
        if m:
            out.append(f"{m.group(1)}: {json.loads(chr(34) + m.group(2) + chr(34))}")
        elif not re.match(r"[EIW]\d{4} ", line):
            out.append(line)
    return "\n".join(out)


def _cribctl_messages(stderr: str) -> str:
    """cribctl's `cribctl: message` lines as crictl's: warnings and fatal errors by level."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("cribctl: "):
            message = line.removeprefix("cribctl: ")
            out.append(f"{'warning' if message.startswith('cgroup_parent') else 'fatal'}: {message}")
        else:
            out.append(line)
    return "\n".join(out)


def normalize(args: list[str], stdout: str, known: Known) -> str:
    text = known.text(stdout)
    if args[0] == "info":
        doc = json.loads(text)
        # Key paths two levels deep: the values are the runtime's state of the moment.
        keys = sorted(
            {k for k in doc} | {f"{k}.{k2}" for k, v in doc.items() if isinstance(v, dict) for k2 in v}
        )
        return "\n".join(keys) + "\n"
    if args[0] == "stats":
        # The samples' numbers (CPU %, memory, disk, inodes, swap).
        lines = text.splitlines(keepends=True)
        return "".join(
            lines[:1] + [re.sub(r"(?<=\s)\d+(\.\d+)?(B|kB|MB|GB|%)?(?=\s)", "<N>", ln) for ln in lines[1:]]
        )
    if args[0] in ("images", "inspecti", "imagefsinfo"):
        text = _SIZE.sub("<SIZE>", text)
    # Numbers of the moment in JSON: PIDs, sizes, usage.
    return re.sub(r'"(pid|conmonPid|size|value)": (\d+|"\d+")', r'"\1": "<N>"', text)


def _document(args: list[str], text: str) -> object | None:
    """The output as a document where it is one (JSON, YAML), its varying values masked."""
    fmt = args[args.index("-o") + 1] if "-o" in args else None
    if fmt == "yaml":
        return _mask_values(yaml.safe_load(text))
    if fmt == "json" or (fmt is None and args[0] in ("inspectp", "inspect", "inspecti", "imagefsinfo")):
        return _mask_values(json.loads(text))
    return None


def _cells(text: str) -> list[list[str]]:
    """A table (or plain lines) as rows of cells: columns are 2+ spaces apart."""
    return [re.split(r"\s{2,}", line.rstrip()) for line in text.splitlines()]


# crictl's tables: Go's text/tabwriter with minwidth 20, tabwidth 1, padding 3, spaces
# (cri-tools v1.36.0 cmd/crictl/display.go, newDefaultTableDisplay).
TAB_MINWIDTH, TAB_PADDING = 20, 3
TABLE_COMMANDS = ("ps", "pods", "images", "stats", "statsp")


def tabwriter_layout(rows: list[list[str]]) -> str:
    """The rows as text/tabwriter lays them out: every cell but a row's last is a column cell,
    and a column is as wide as its widest cell plus the padding (at least the minimum width)
    across each run of consecutive rows that have that column."""
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]
    columns = max((len(r) - 1 for r in rows), default=0)
    for col in range(columns):
        line = 0
        while line < len(rows):
            if len(rows[line]) - 1 <= col:
                line += 1
                continue
            block = line
            while block < len(rows) and len(rows[block]) - 1 > col:
                block += 1
            width = max(TAB_MINWIDTH, *(len(rows[i][col]) + TAB_PADDING for i in range(line, block)))
            for i in range(line, block):
                widths[i][col] = width
            line = block
    out = []
    for row, w in zip(rows, widths, strict=True):
        out.append("".join(cell.ljust(w[i]) for i, cell in enumerate(row[:-1])) + row[-1])
    return "".join(line + "\n" for line in out)


def layout_error(args: list[str], raw: str) -> str:
    """For a table command, the diff of its raw output against the tabwriter layout of its cells."""
    if args[0] not in TABLE_COMMANDS or "-o" in args or "-q" in args or not raw:
        return ""
    # stats clears the screen before its table, outside the tabwriter.
    raw = raw.removeprefix("\x1b[2J\x1b[H")
    laid_out = tabwriter_layout(_cells(raw))
    if laid_out == raw:
        return ""
    return "".join(difflib.unified_diff(laid_out.splitlines(True), raw.splitlines(True), "layout", "output"))


def _ordered(doc: object) -> object:
    """A document with its key order made part of its value (Go's encoders fix the order)."""
    if isinstance(doc, dict):
        return [[k, _ordered(v)] for k, v in doc.items()]
    if isinstance(doc, list):
        return [_ordered(v) for v in doc]
    return doc


def _dump(doc: object) -> str:
    return json.dumps(doc, indent=1) + "\n"


def differences(
    ours: list[Step], theirs: list[Step], names: tuple[str, str] = ("cribctl", "crictl")
) -> list[str]:
    """Where `ours` differs from `theirs`, as unified diffs (theirs first)."""

    def diff(b: str, a: str) -> str:
        lines = difflib.unified_diff(b.splitlines(True), a.splitlines(True), names[1], names[0], n=2)
        return "".join(lines)

    found = []
    assert [s.args for s in ours] == [s.args for s in theirs]
    for a, b in zip(ours, theirs, strict=True):
        where = "$ " + " ".join(a.args)
        if a.rc != b.rc:
            found.append(f"{where}: exit code {a.rc}, {names[1]}'s {b.rc}")
        if a.stderr != b.stderr:
            found.append(f"{where}: stderr\n" + diff(b.stderr + "\n", a.stderr + "\n"))
        doc_a, doc_b = _document(a.args, a.stdout), _document(b.args, b.stdout)
        if doc_b is not None:
            # Keys in the same order, not just the same keys.
            if _ordered(doc_a) != _ordered(doc_b):
                found.append(f"{where}: document\n" + diff(_dump(doc_b), _dump(doc_a)))
        elif _cells(a.stdout) != _cells(b.stdout):
            found.append(f"{where}: stdout\n" + diff(b.stdout, a.stdout))
        for name, step in ((names[0], a), (names[1], b)):
            if step.layout:
                found.append(f"{where}: {name}'s columns stray from crictl's layout\n{step.layout}")
    return found


# --- the sequence -------------------------------------------------------------------------------


def _write_configs(d: Path) -> None:
    d.mkdir(parents=True)
    pod = {
        "metadata": {"name": POD_NAME, "namespace": POD_NAMESPACE, "uid": "parity-uid", "attempt": 0},
        "hostname": POD_NAME,
        "log_directory": str(d / "logs"),
        "labels": {"app": "parity", "tier": "web"},
        "annotations": {"crib.e2e/test": "parity"},
    }
    web = {
        "metadata": {"name": "web"},
        "image": {"image": IMAGE},
        "command": ["/bin/sh", "-c", COMMAND],
        "labels": {"role": "server"},
        "log_path": "web.log",
    }
    (d / "pod.yaml").write_text(yaml.safe_dump(pod))
    (d / "web.yaml").write_text(yaml.safe_dump(web))


def run_sequence(daemon: Cribd, net: PodNetwork, tool: Tool, tool_name: str, work: Path) -> list[Step]:
    """The whole sequence through one tool, on a pod, container and image of its own; normalized."""
    d = work / tool_name
    _write_configs(d)
    image = import_busybox(daemon, IMAGE)
    pause = [
        i.id
        for i in daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=30).images
        if i.pinned and i.id != image
    ]
    known = Known(image=image, pause=pause[0] if pause else "")
    known.paths = ((str(d), "<DIR>"), (str(daemon.dir), "<CRIBD>"), (net.name, "<NETWORK>"))
    steps = []
    for template in SEQUENCE:
        args = [a.format(pod=known.pod, ctr=known.ctr, dir=d) for a in template]
        if args[0] == "logs":
            log = d / "logs" / "web.log"
            wait_until(lambda: log.exists() and "oops" in log.read_text(), 15, "the container's log")  # noqa: B023
        r = tool(args)
        if args[0] == "runp" and r.returncode == 0:
            known.pod = r.stdout.strip()
            status = daemon.runtime.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=known.pod), timeout=30
            )
            known.pod_ip = status.status.network.ip
            if not known.pause:
                pause = [
                    i.id
                    for i in daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=30).images
                    if i.pinned
                ]
                known.pause = pause[0] if pause else ""
        elif args[0] == "create" and r.returncode == 0:
            known.ctr = r.stdout.strip()
        messages = _crictl_messages(r.stderr) if tool_name == "crictl" else _cribctl_messages(r.stderr)
        steps.append(
            Step(
                template,
                r.returncode,
                normalize(args, r.stdout, known),
                known.text(messages),
                layout_error(args, r.stdout),
            )
        )
    # Whatever the tool left (it should be nothing, asserted by the caller).
    assert not daemon.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
    shutil.rmtree(d)
    return steps


def load_recorded() -> list[Step]:
    doc = json.loads(RECORDED.read_text())
    return [
        Step(s["args"], s["rc"], "".join(line + "\n" for line in s["stdout"]), s["stderr"])
        for s in doc["steps"]
    ]


def _check_own_sense(steps: list[Step]) -> None:
    """What the sequence must show whichever tool ran it: no vacuous comparison."""
    by = {" ".join(s.args): s for s in steps}
    assert all(s.rc == 0 for s in steps), [(s.args, s.stderr) for s in steps if s.rc]
    assert by["runp {dir}/pod.yaml"].stdout == "<POD>\n"
    assert by["create {pod} {dir}/web.yaml {dir}/pod.yaml"].stdout == "<CTR>\n"
    assert by["pods -q"].stdout == "<POD>\n"
    assert by["ps -q"].stdout == "<CTR>\n"
    assert by["pods --name nothing"].stdout.count("\n") == 1  # the header alone
    assert by["ps --state exited"].stdout.count("\n") == 1
    assert _cells(by["ps"].stdout)[1][0] == "<CTR>" and "web" in _cells(by["ps"].stdout)[1]
    assert by["logs {ctr}"].stdout == "hello\n" and by["logs {ctr}"].stderr == "oops"
    # crictl exec -s: stdout, then stderr, each followed by a newline.
    assert by["exec -s {ctr} sh -c echo out; echo err >&2"].stdout == "out\n\nerr\n\n"
    assert "<IMAGE>" in by["images -q"].stdout and "<PAUSE>" in by["images -q"].stdout
    assert by["rmi " + IMAGE].stdout == f"Deleted: {IMAGE}\n"
    assert json.loads(by["inspecti " + IMAGE].stdout)["status"]["repoTags"] == [IMAGE]


def test_cribctl_matches_crictl(net_cribd: Cribd, pod_network: PodNetwork, tmp_path: Path) -> None:
    ours = run_sequence(net_cribd, pod_network, cribctl_tool(net_cribd), "cribctl", tmp_path)
    _check_own_sense(ours)
    binary = crictl_bin()
    record = os.environ.get(RECORD_ENV)
    theirs = run_sequence(net_cribd, pod_network, crictl_tool(net_cribd, binary), "crictl", tmp_path)
    _check_own_sense(theirs)
    source = f"{binary}"
    if record:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
        Path(record).write_text(
            json.dumps(
                {"crictl": version.strip(), "steps": [s.as_json() for s in theirs]},
                indent=1,
                ensure_ascii=False,
            )
            + "\n"
        )
    else:
        # The recording is what this crictl prints: else it is stale (re-record it).
        stale = differences(theirs, load_recorded(), ("crictl", "recorded"))
        assert not stale, (
            "e2e/data/crictl/sequence.json is stale; run e2e/data/crictl/record.py:\n" + "\n".join(stale)
        )
    found = differences(ours, theirs)
    assert not found, f"cribctl differs from {source}:\n" + "\n\n".join(found)
    assert pod_network.iptables_mentions() == [] and pod_network.allocated_ips() == []


def test_recording_is_whole_and_normalized() -> None:
    """The committed recording: this sequence, crictl's sense, and nothing of the machine it was made on."""
    steps = load_recorded()
    assert [s.args for s in steps] == SEQUENCE
    _check_own_sense(steps)
    text = RECORDED.read_text()
    assert not re.search(r"[0-9a-f]{64}", text)  # IDs and digests
    assert not re.search(r"(?<![\d.])\d+\.\d+\.\d+\.\d+(?![\d.])", text)  # addresses
    assert "/tmp/" not in text and "crib-e2e-" not in text  # temp dirs, network names
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)  # times
