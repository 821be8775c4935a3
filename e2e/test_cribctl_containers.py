"""cribctl's container commands against a real cribd, pod network and busybox containers.

cribctl runs as a subprocess, as users run it. Where a crictl binary is
available ($CRICTL or `crictl` on PATH), the same commands are run with crictl
on the same cribd and the outputs compared byte for byte; only relative times
("N seconds ago") are masked. Each test removes the containers and pods it made.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from e2e.conftest import AUTH_PASSWORD, AUTH_USER
from e2e.harness.clients import (
    CALL_TIMEOUT_S,
    client_env,
    cribctl_argv,
    crictl,
    crictl_bin,
)
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.pods import import_busybox

IMAGE = "crib.e2e/busybox:1"
ID = re.compile(r"[0-9a-f]{64}")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)"
CRI_LINE = re.compile(rf"^({STAMP}|\S+) (stdout|stderr) ([PF]) (.*)$")


def cribctl(daemon: Cribd, *args: str, config: str = "/dev/null") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cribctl_argv(daemon, *args, config=config),
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        env=client_env(),
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args[6:]}: {r.stderr}"
    return r.stdout


class Output:
    """What a long-running command (logs -f, events) prints, read as it comes."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env())
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self.chunks.append((time.monotonic(), chunk))

    @property
    def text(self) -> str:
        with self._lock:
            return b"".join(c for _, c in self.chunks).decode()

    def first_seen(self, needle: str) -> float | None:
        """When `needle` was first complete in the output (monotonic time)."""
        with self._lock:
            data = b""
            for when, chunk in self.chunks:
                data += chunk
                if needle.encode() in data:
                    return when
        return None

    def finish(self, sig: int | None = None, timeout: float = 30) -> tuple[int, str, str]:
        if sig is not None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.proc.stderr is not None
        return code, self.text, self.proc.stderr.read().decode()


def json_docs(text: str) -> list[dict]:
    """The JSON objects printed one after another (events)."""
    decoder, docs, pos = json.JSONDecoder(), [], 0
    while (start := text.find("{", pos)) >= 0:
        try:
            doc, pos = decoder.raw_decode(text, start)
        except ValueError:
            break  # an object still being written
        docs.append(doc)
    return docs


# --- the test bed: a pod and busybox container configs ---------------------------------------------


@dataclass
class Pod:
    daemon: Cribd
    dir: Path
    pod_id: str
    pod_config: str
    log_dir: Path

    def ctr(self, name: str, command: list[str], **extra: object) -> str:
        """A container config as crictl users write them (YAML, snake_case names); returns its path."""
        doc: dict = {
            "metadata": {"name": name},
            "image": {"image": IMAGE},
            "command": command,
            "log_path": f"{name}.log",
            "labels": {"ctr": name},
        }
        doc.update(extra)
        path = self.dir / f"{name}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def create(self, name: str, command: list[str], **extra: object) -> str:
        out = ok(
            cribctl(self.daemon, "create", self.pod_id, self.ctr(name, command, **extra), self.pod_config)
        )
        assert ID.fullmatch(out.strip()), out
        return out.strip()

    def run(self, name: str, command: list[str], **extra: object) -> str:
        cid = self.create(name, command, **extra)
        assert ok(cribctl(self.daemon, "start", cid)) == f"{cid}\n"
        return cid

    def status(self, cid: str) -> dict:
        return json.loads(ok(cribctl(self.daemon, "inspect", cid)))["status"]

    def wait_exited(self, cid: str, timeout: float = 20) -> dict:
        wait_until(lambda: self.status(cid)["state"] == "CONTAINER_EXITED", timeout=timeout)
        return self.status(cid)

    def ids(self, *args: str) -> list[str]:
        return ok(cribctl(self.daemon, "ps", "-q", *args)).split()

    def clean(self) -> None:
        """Remove every container and pod through cribctl, and check nothing is left."""
        r = cribctl(self.daemon, "rm", "-a", "-f")
        assert r.returncode == 0, r.stderr
        assert ok(cribctl(self.daemon, "ps", "-a", "-q")) == ""
        r = cribctl(self.daemon, "rmp", "-a", "-f")
        assert r.returncode == 0, r.stderr
        assert ok(cribctl(self.daemon, "pods", "-q")) == ""


def pod_yaml(name: str, log_dir: Path) -> str:
    return f"metadata: {{name: {name}, namespace: e2e, uid: {uuid.uuid4().hex}}}\nlog_directory: {log_dir}\n"


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[Pod]:
    import_busybox(net_cribd)
    log_dir = tmp_path / "logs"
    config = tmp_path / "pod.yaml"
    config.write_text(pod_yaml("ctr-pod", log_dir))
    pod_id = ok(cribctl(net_cribd, "runp", str(config))).strip()
    bed = Pod(net_cribd, tmp_path, pod_id, str(config), log_dir)
    yield bed
    # The tests clean up themselves (Pod.clean); this is for a test that failed half way.
    cribctl(net_cribd, "rm", "-a", "-f")
    cribctl(net_cribd, "rmp", "-a", "-f")


SLEEP = ["/bin/sleep", "1000"]


def _table(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


# --- create, start, ps, inspect ------------------------------------------------------------------------


def _three(pod: Pod) -> tuple[str, str, str]:
    """web (running), db (exited, attempt 1, namespace label), job (created); oldest first."""
    web = pod.run("web", SLEEP, labels={"ctr": "web", "tier": "front"})
    db = pod.run(
        "db",
        ["/bin/sh", "-c", "exit 3"],
        metadata={"name": "db", "attempt": 1},
        labels={"ctr": "db", "tier": "back", "io.kubernetes.pod.namespace": "team"},
    )
    job = pod.create("job", ["/bin/true"])
    pod.wait_exited(db)
    return web, db, job


def test_create_start_ps_filters_and_formats(pod: Pod) -> None:
    web, db, job = _three(pod)
    daemon = pod.daemon
    assert pod.ids() == [web]  # running ones by default
    assert pod.ids("-a") == [job, db, web]  # newest first
    assert pod.ids("--all", "--id", db[:10]) == [db]
    assert pod.ids("-a", "--name", "^(web|job)$") == [job, web]
    assert pod.ids("-a", "--pod", pod.pod_id[:12]) == [job, db, web]
    assert pod.ids("-a", "--pod", "0" * 12) == []
    assert pod.ids("-a", "--label", "tier=back") == [db]
    assert pod.ids("-a", "--label", "tier=front,ctr=web") == [web]
    assert pod.ids("--state", "Exited") == [db]
    assert pod.ids("-s", "created") == [job]
    assert pod.ids("-s", "running") == [web]
    assert pod.ids("-s", "unknown") == []
    image_id = pod.status(web)["imageId"]
    assert pod.ids("-a", "--image", IMAGE) == [job, db, web]
    assert pod.ids("-a", "--image", image_id) == [job, db, web]
    assert pod.ids("-a", "--image", "no/such:image") == []
    assert pod.ids("-a", "--namespace", "^team$") == [db]
    assert pod.ids("-a", "--namespace", "unknown") == [job, web]  # no namespace label
    assert pod.ids("-l") == [job] and pod.ids("--latest") == [job]
    assert pod.ids("-n", "2") == [job, db] and pod.ids("--last", "0") == [web]

    table = _table(ok(cribctl(daemon, "ps", "-a")))
    assert table[0] == [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
        "POD",
        "NAMESPACE",
    ]
    rows = [(r[0], r[1], r[3], r[4], r[5], r[6], r[7], r[8]) for r in table[1:]]
    p = pod.pod_id[:13]
    assert rows == [
        (job[:13], IMAGE, "Created", "job", "0", p, "unknown", "unknown"),
        (db[:13], IMAGE, "Exited", "db", "1", p, "unknown", "team"),
        (web[:13], IMAGE, "Running", "web", "0", p, "unknown", "unknown"),
    ]
    assert all(re.fullmatch(r"(Less than a second|\d+ seconds?) ago", r[2]) for r in table[1:])
    wide = _table(ok(cribctl(daemon, "ps", "--no-trunc", "-r")))
    assert wide[1][0] == web and wide[1][1] == IMAGE and wide[1][6] == pod.pod_id
    assert _table(ok(cribctl(daemon, "ps", "-o", "table")))[0] == table[0]
    assert ok(cribctl(daemon, "ps", "-s", "exited", "-v")).startswith(
        f"ID: {db}\nPodID: {pod.pod_id}\nNamespace: team\nName: db\nAttempt: 1\nState: Exited\n"
        f"Image: {IMAGE}\nCreated: "
    )
    assert ok(cribctl(daemon, "ps", "-v", "--name", "web")).endswith(
        "Labels:\n\tctr -> web\n\ttier -> front\n\n"
    )

    doc = json.loads(ok(cribctl(daemon, "ps", "-a", "-o", "json")))
    assert [c["id"] for c in doc["containers"]] == [job, db, web]
    first = doc["containers"][1]
    assert (first["state"], first["metadata"], first["podSandboxId"]) == (
        "CONTAINER_EXITED",
        {"name": "db", "attempt": 1},
        pod.pod_id,
    )
    assert first["image"]["image"] == IMAGE and first["imageRef"].startswith("sha256:")
    assert yaml.safe_load(ok(cribctl(daemon, "ps", "-a", "-o", "yaml"))) == doc
    assert json.loads(ok(cribctl(daemon, "ps", "-o", "json", "--name", "nothing"))) == {"containers": []}
    pod.clean()


def test_inspect(pod: Pod) -> None:
    web, db, job = _three(pod)
    daemon = pod.daemon
    doc = json.loads(ok(cribctl(daemon, "inspect", web[:12])))
    status = doc["status"]
    assert status["id"] == web and status["state"] == "CONTAINER_RUNNING"
    assert status["metadata"] == {"name": "web", "attempt": 0} and status["labels"]["tier"] == "front"
    assert status["logPath"] == str(pod.log_dir / "web.log")
    rfc3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"
    assert re.fullmatch(rfc3339, status["createdAt"]) and re.fullmatch(rfc3339, status["startedAt"])
    assert status["finishedAt"] == "0001-01-01T00:00:00Z"  # not finished: Go's zero time
    assert doc["info"]["pid"] > 0 and doc["info"]["runtimeSpec"]["process"]["args"] == SLEEP
    created = json.loads(ok(cribctl(daemon, "inspect", job)))["status"]
    assert created["startedAt"] == "0001-01-01T00:00:00Z" and created["state"] == "CONTAINER_CREATED"
    exited = json.loads(ok(cribctl(daemon, "inspect", "-q", db)))
    assert list(exited) == ["status"] and exited["status"]["exitCode"] == 3
    assert exited["status"]["finishedAt"] != "0001-01-01T00:00:00Z" and exited["status"]["reason"] == "Error"
    assert yaml.safe_load(ok(cribctl(daemon, "inspect", "-o", "yaml", web))) == doc
    both = json.loads(ok(cribctl(daemon, "inspect", "-q", web, db)))
    assert [d["status"]["id"] for d in both] == [web, db]

    table = ok(cribctl(daemon, "inspect", "-o", "table", db))
    assert re.fullmatch(
        rf"ID: {db}\nName: db\nAttempt: 1\nState: CONTAINER_EXITED\nCreated: .* ago\nStarted: .* ago\n"
        r"Finished: .* ago\nExit Code: 3\nLabels:\n\tctr -> db\n\tio.kubernetes.pod.namespace -> team\n"
        r"\ttier -> back\nInfo: map\[info:\{.*\}\]\n",
        table,
    ), table
    assert "Info:" not in ok(cribctl(daemon, "inspect", "-o", "table", "-q", job))

    # Without IDs: the list filters pick (running ones unless --all or --state).
    assert json.loads(ok(cribctl(daemon, "inspect", "-q")))["status"]["id"] == web
    picked = json.loads(ok(cribctl(daemon, "inspect", "-q", "-a", "--label", "tier=back")))
    assert picked["status"]["id"] == db
    assert [d["status"]["id"] for d in json.loads(ok(cribctl(daemon, "inspect", "-q", "-n", "2")))] == [
        job,
        db,
    ]
    r = cribctl(daemon, "inspect", "-s", "unknown")
    assert r.returncode == 0 and r.stdout.startswith("NAME:\n   cribctl inspect - ")
    assert r.stderr == "cribctl: No IDs provided or nothing found per filter\n"
    pod.clean()


# --- logs --------------------------------------------------------------------------------------------

# Pauses between the streams: conmon reads stdout and stderr each on its own.
TALKER = (
    "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; printf part; sleep 0.2; echo ial; "
    "i=0; while [ $i -lt 5 ]; do echo tick$i; i=$((i+1)); sleep 0.3; done"
)


def _file_lines(path: Path) -> list[tuple[str, str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = CRI_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return out


def _fixed(stamp: str) -> str:
    """The kubelet reader's --timestamps form of a log file's timestamp: 9 digits, Z for UTC."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert m, stamp
    zone = "Z" if m.group(3) in ("Z", "+00:00", "-00:00") else m.group(3)
    return f"{m.group(1)}.{(m.group(2) or '').ljust(9, '0')[:9]}{zone}"


def test_logs(pod: Pod) -> None:
    daemon = pod.daemon
    cid = pod.run("talker", ["/bin/sh", "-c", TALKER])
    pod.wait_exited(cid)
    lines = _file_lines(pod.log_dir / "talker.log")
    # conmon reads stdout and stderr from two pipes, so only the order within a stream is fixed.
    out = [(stamp, t, x) for stamp, s, t, x in lines if s == "stdout"]
    err = [(stamp, t, x) for stamp, s, t, x in lines if s == "stderr"]
    assert [(t, x) for _, t, x in out] == [
        ("F", "out1"),
        ("P", "part"),
        ("F", "ial"),
        *[("F", f"tick{i}") for i in range(5)],
    ]
    assert [(t, x) for _, t, x in err] == [("F", "err1")]
    ticks = "".join(f"tick{i}\n" for i in range(5))
    r = cribctl(daemon, "logs", cid)
    assert (r.returncode, r.stdout, r.stderr) == (0, "out1\npartial\n" + ticks, "err1\n")
    assert ok(cribctl(daemon, "logs", "--tail", "2", cid)) == "tick3\ntick4\n"
    assert ok(cribctl(daemon, "logs", "--tail", "0", cid)) == ""
    assert ok(cribctl(daemon, "logs", "--tail", "-1", cid)) == r.stdout
    r = cribctl(daemon, "logs", "-s", "stderr", cid)
    assert (r.stdout, r.stderr) == ("", "err1\n")
    if lines[0][1:] == ("stdout", "F", "out1") and lines[1][1] == "stderr":
        assert ok(cribctl(daemon, "logs", "--limit-bytes", "7", cid)) == "out1\n"  # + "er" on stderr

    # --timestamps: the file's times, with nine digits, on whole lines only (a joined line once).
    r = cribctl(daemon, "logs", "-t", cid)
    expected = [f"{_fixed(out[0][0])} out1", f"{_fixed(out[1][0])} partial"]
    expected += [f"{_fixed(stamp)} {text}" for stamp, _, text in out[3:]]
    assert r.stdout.splitlines() == expected and r.stderr == f"{_fixed(err[0][0])} err1\n"

    # --since: a time from the file (its line included), durations, Unix seconds.
    tick2 = out[5][0]
    assert ok(cribctl(daemon, "logs", "--since", tick2, cid)) == "tick2\ntick3\ntick4\n"
    assert ok(cribctl(daemon, "logs", "--since", "1h", cid)) == "out1\npartial\n" + ticks
    assert ok(cribctl(daemon, "logs", "--since=-1h", cid)) == ""  # an hour from now
    assert ok(cribctl(daemon, "logs", "--since", str(int(time.time()) + 3600), cid)) == ""
    assert ok(cribctl(daemon, "logs", "--since", "1", cid)) == "out1\npartial\n" + ticks

    r = cribctl(daemon, "logs", "-p", cid)
    assert (r.returncode, r.stderr) == (1, "cribctl: previous terminated container talker not found\n")
    r = cribctl(daemon, "logs", "--since", "yesterday", cid)
    assert r.stderr == 'cribctl: failed to parse value as time or duration: "yesterday"\n'
    pod.clean()
    assert not (pod.log_dir / "talker.log").exists()  # rm removes the log file, as crictl


def test_logs_follow_while_the_container_writes_and_rotates(pod: Pod) -> None:
    daemon = pod.daemon
    count = 25
    cid = pod.run(
        "writer", ["/bin/sh", "-c", f"sleep 1; for i in $(seq 1 {count}); do echo line$i; sleep 0.2; done"]
    )
    log = pod.log_dir / "writer.log"
    follow = Output(cribctl_argv(daemon, "logs", "-f", cid))
    wait_until(lambda: "line8\n" in follow.text, timeout=20)
    assert pod.status(cid)["state"] == "CONTAINER_RUNNING"  # it printed while the container ran
    # Rotate as the kubelet does: rename, then ReopenContainerLog (here through logs -r).
    os.rename(log, f"{log}.1")
    assert ok(cribctl(daemon, "logs", "-r", "--tail", "0", cid)) == ""
    code, out, err = follow.finish(timeout=30)
    assert (code, err) == (0, "")
    assert out == "".join(f"line{i}\n" for i in range(1, count + 1))  # each line once, in order
    finished = time.monotonic()
    wait_until(lambda: pod.status(cid)["state"] == "CONTAINER_EXITED", timeout=5)
    seen_last = follow.first_seen(f"line{count}\n")
    assert seen_last is not None and finished - seen_last < 5  # it ended with the container
    # Both files hold lines: the follower went from one to the other.
    assert (log.parent / "writer.log.1").read_text() and log.read_text()
    pod.clean()


def test_logs_follow_stops_quietly_on_ctrl_c(pod: Pod) -> None:
    cid = pod.run("quiet", ["/bin/sh", "-c", "echo hello; sleep 1000"])
    follow = Output(cribctl_argv(pod.daemon, "logs", "-f", "--timestamps", cid))
    wait_until(lambda: "hello" in follow.text, timeout=20)
    code, out, err = follow.finish(signal.SIGINT)
    assert (code, err) == (0, "") and re.fullmatch(rf"{STAMP} hello\n", out)
    pod.clean()


# --- exec -s -------------------------------------------------------------------------------------------


def test_exec_sync(pod: Pod) -> None:
    daemon = pod.daemon
    cid = pod.run("target", SLEEP)
    r = cribctl(daemon, "exec", "-s", cid, "sh", "-c", "echo out; echo err >&2")
    # crictl's output: stdout, then the command's stderr, each with a newline, all on stdout.
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n\nerr\n\n", "")
    r = cribctl(daemon, "exec", "-s", cid, "sh", "-c", "echo partial; echo bad >&2; exit 7")
    assert (r.returncode, r.stdout) == (7, "partial\n\nbad\n\n")  # the command's exit code
    assert r.stderr == (
        f"cribctl: execing command in container {cid} synchronously: "
        "command 'sh -c echo partial; echo bad >&2; exit 7' exited with 7: bad\n\n"
    )
    assert cribctl(daemon, "exec", "-s", cid, "false").returncode == 1
    assert cribctl(daemon, "exec", "-s", "-e", cid, "false").returncode == 0
    r = cribctl(daemon, "exec", "-s", "--timeout", "1", cid, "sleep", "10")
    assert (r.returncode, r.stderr) == (
        1,
        f'cribctl: execing command in container {cid} synchronously: command timed out: "sleep 10" '
        "timed out after 1s\n",
    )
    assert ok(cribctl(daemon, "exec", "-s", cid, "id", "-u")) == "0\n\n\n"
    # Filters pick the containers; the command is all the arguments then.
    other = pod.run("other", SLEEP)
    out = ok(cribctl(daemon, "exec", "-s", "--label", "ctr=other", "echo", "hi"))
    assert out == f"{other}:\nhi\n\n\n"
    out = ok(cribctl(daemon, "exec", "-s", "--name", ".", "hostname"))
    assert out.count(":\n") == 2 and f"{cid}:\n" in out and f"{other}:\n" in out
    assert ok(cribctl(daemon, "exec", "-s", "-q", "-l", "echo", "x")) == "x\n\n\n"
    # Without -s: the streaming path, with the command's exit code and its output as it comes.
    for transport in ("spdy", "websocket"):
        r = cribctl(daemon, "exec", "-r", transport, cid, "sh", "-c", "echo out; echo err >&2; exit 5")
        assert (r.returncode, r.stdout) == (5, "out\n")
        assert (
            r.stderr
            == f"err\ncribctl: execing command in container {cid}: command terminated with exit code 5\n"
        )
        r = subprocess.run(
            cribctl_argv(daemon, "exec", "-i", "-r", transport, cid, "md5sum"),
            input=b"abc",
            capture_output=True,
            timeout=CALL_TIMEOUT_S,
            env=client_env(),
        )
        assert (r.returncode, r.stdout.split()[0]) == (0, b"900150983cd24fb0d6963f7d28e17f72"), r.stderr
    pod.clean()


# --- stats and update -------------------------------------------------------------------------------------


def test_stats(pod: Pod) -> None:
    daemon = pod.daemon
    busy = pod.run("busy", ["/bin/sh", "-c", "while true; do :; done"])
    idle = pod.run("idle", SLEEP)
    made = pod.create("made", ["/bin/true"])
    out = ok(cribctl(daemon, "stats", "-s", "1"))
    assert out.startswith("\x1b[2J\x1b[H")  # crictl clears the screen first
    table = _table(out.removeprefix("\x1b[2J\x1b[H"))
    assert table[0] == ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES", "SWAP"]
    rows = {r[1]: r for r in table[1:]}
    assert set(rows) == {"busy", "idle"}  # a created container uses no CPU or memory: left out
    assert rows["busy"][0] == busy[:13] and float(rows["busy"][2]) > 20.0  # a busy loop: most of a core
    assert float(rows["idle"][2]) < 5.0
    for row in rows.values():
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row[3]) and row[3] != "0B"
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row[4]) and row[5].isdigit() and row[6] == "0B"
    assert {r[1] for r in _table(ok(cribctl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))[1:]} == {
        "busy",
        "idle",
        "made",
    }
    only = _table(ok(cribctl(daemon, "stats", "--id", idle[:8])).removeprefix("\x1b[2J\x1b[H"))
    assert [r[1] for r in only[1:]] == ["idle"]
    assert [r[1] for r in _table(ok(cribctl(daemon, "stats", busy)).removeprefix("\x1b[2J\x1b[H"))[1:]] == [
        "busy"
    ]
    doc = json.loads(ok(cribctl(daemon, "stats", "-o", "json", "--label", "ctr=busy")))
    (stat,) = doc["stats"]
    assert stat["attributes"]["id"] == busy and int(stat["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert yaml.safe_load(ok(cribctl(daemon, "stats", "-o", "yaml", "--pod", pod.pod_id)))["stats"]
    # --watch: a table after each sample until interrupted.
    watch = Output(cribctl_argv(daemon, "stats", "-w", "-s", "1", "--id", made))
    wait_until(lambda: watch.text.count("\x1b[2J") >= 2, timeout=20)
    code, _, err = watch.finish(signal.SIGINT)
    assert (code, err) == (0, "")
    pod.clean()


def _cgroup_file(cgroups_path: str, v1: str, v2: str) -> Path:
    controller, name = v1.split("/")
    legacy = Path(f"/sys/fs/cgroup/{controller}{cgroups_path}/{name}")
    return legacy if legacy.exists() else Path(f"/sys/fs/cgroup{cgroups_path}/{v2}")


def test_update_changes_the_cgroup(pod: Pod) -> None:
    daemon = pod.daemon
    cid = pod.run("limited", SLEEP, linux={"resources": {"memory_limit_in_bytes": 128 << 20}})
    info = json.loads(ok(cribctl(daemon, "inspect", cid)))["info"]
    cgroup = info["runtimeSpec"]["linux"]["cgroupsPath"]
    memory = _cgroup_file(cgroup, "memory/memory.limit_in_bytes", "memory.max")
    assert int(memory.read_text()) == 128 << 20
    argv = ["update", "--memory", str(64 << 20), "--cpu-quota", "20000", "--cpu-period", "100000"]
    assert ok(cribctl(daemon, *argv, "--cpu-share", "512", cid)) == f"{cid}\n"
    assert int(memory.read_text()) == 64 << 20
    quota = _cgroup_file(cgroup, "cpu/cpu.cfs_quota_us", "cpu.max")
    if quota.name == "cpu.max":
        assert quota.read_text().split() == ["20000", "100000"]
    else:
        assert int(quota.read_text()) == 20000
        assert int(quota.with_name("cpu.cfs_period_us").read_text()) == 100000
        assert int(quota.with_name("cpu.shares").read_text()) == 512
    resources = json.loads(ok(cribctl(daemon, "inspect", cid)))["status"]["resources"]["linux"]
    assert (resources["memoryLimitInBytes"], resources["cpuQuota"], resources["cpuPeriod"]) == (
        str(64 << 20),
        "20000",
        "100000",
    )
    r = cribctl(daemon, "update", "--memory", "lots", cid)
    assert (r.returncode, r.stderr) == (1, 'cribctl: invalid value "lots" for flag -memory: parse error\n')
    pod.clean()


# --- events ---------------------------------------------------------------------------------------------


def has_event(text: str, cid: str, kind: str) -> bool:
    """Whether events output (JSON or YAML) holds an event of this kind for this container."""
    as_json = f'"containerId": "{cid}",\n  "containerEventType": "{kind}"'
    return as_json in text or f"containerEventType: {kind}\ncontainerId: {cid}\n" in text


def _subscribed(pod: Pod, *outputs: Output) -> None:
    """Make events until every listener has seen one: then they are all subscribed."""
    probe = pod.create("probe", ["/bin/true"])
    for _ in range(40):
        if all(probe in out.text for out in outputs):
            break
        time.sleep(0.25)
        ok(cribctl(pod.daemon, "rm", probe))
        probe = pod.create("probe", ["/bin/true"])
    assert all(probe in out.text for out in outputs), "the events commands never subscribed"
    ok(cribctl(pod.daemon, "rm", probe))
    wait_until(
        lambda: all(has_event(out.text, probe, "CONTAINER_DELETED_EVENT") for out in outputs), timeout=10
    )


def test_events(pod: Pod) -> None:
    daemon = pod.daemon
    as_json = Output(cribctl_argv(daemon, "events"))
    as_yaml = Output(cribctl_argv(daemon, "event", "-o", "yaml"))
    _subscribed(pod, as_json, as_yaml)
    json_start, yaml_start = len(as_json.text), len(as_yaml.text)
    cid = pod.run("eventful", ["/bin/sh", "-c", "sleep 0.5"])
    pod.wait_exited(cid)
    ok(cribctl(daemon, "rm", cid))
    wanted = [
        "CONTAINER_CREATED_EVENT",
        "CONTAINER_STARTED_EVENT",
        "CONTAINER_STOPPED_EVENT",
        "CONTAINER_DELETED_EVENT",
    ]

    def seen() -> list[str]:
        docs = json_docs(as_json.text[json_start:])
        return [d["containerEventType"] for d in docs if d["containerId"] == cid]

    wait_until(lambda: seen() == wanted, timeout=15, what=f"the events of {cid}")
    wait_until(lambda: as_yaml.text.count(f"containerId: {cid}\n") == 4, timeout=10)
    code, out, err = as_json.finish(signal.SIGINT)
    assert (code, err) == (1, "cribctl: getting container events: interrupted: context canceled\n")
    docs = [d for d in json_docs(out[json_start:]) if d["containerId"] == cid]
    for doc in docs:
        assert (
            doc["podSandboxStatus"]["id"] == pod.pod_id
            and doc["podSandboxStatus"]["state"] == "SANDBOX_READY"
        )
        assert int(doc["createdAt"]) > 0
    started = next(d for d in docs if d["containerEventType"] == "CONTAINER_STARTED_EVENT")
    assert [s["state"] for s in started["containersStatuses"] if s["id"] == cid] == ["CONTAINER_RUNNING"]
    code, out, err = as_yaml.finish(signal.SIGTERM)  # SIGTERM too, as crictl
    assert (code, err) == (1, "cribctl: getting container events: interrupted: context canceled\n")
    yaml_docs = [yaml.safe_load(part) for part in out[yaml_start:].split("\n\n") if part.strip()]
    assert [d for d in yaml_docs if d["containerId"] == cid] == docs  # the same events, as YAML
    pod.clean()


# --- stop, rm, run ---------------------------------------------------------------------------------------


def test_stop_and_rm(pod: Pod) -> None:
    daemon = pod.daemon
    stubborn = pod.run("stubborn", ["/bin/sh", "-c", 'trap "" TERM; while true; do sleep 1; done'])
    gentle = pod.run("gentle", SLEEP)
    started = time.monotonic()
    assert ok(cribctl(daemon, "stop", "-t", "2", stubborn)) == f"{stubborn}\n"
    # TERM is ignored: only the SIGKILL after the 2 s timeout ends it (not before 2 s, within 10x).
    assert 1.9 < time.monotonic() - started < 20
    assert pod.status(stubborn)["exitCode"] == 137
    r = cribctl(daemon, "rm", gentle)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f'cribctl: container "{gentle}" is running, please stop it first\n'
    # rm removes the log file and its rotations too, unless --keep-logs.
    log = pod.log_dir / "stubborn.log"
    Path(f"{log}.1").write_text("rotated\n")
    assert ok(cribctl(daemon, "rm", "--keep-logs", stubborn)) == f"{stubborn}\n"
    assert log.exists() and Path(f"{log}.1").exists()
    assert ok(cribctl(daemon, "rm", "-f", gentle)) == f"{gentle}\n{gentle}\n"  # stopped, then removed
    assert not (pod.log_dir / "gentle.log").exists()
    a, b = pod.run("a", SLEEP), pod.run("b", SLEEP)
    assert sorted(ok(cribctl(daemon, "stop", "--all")).split()) == sorted([a, b])
    assert ok(cribctl(daemon, "stop", "-a")) == "No running containers found.\n"
    assert ok(cribctl(daemon, "stop", a)) == f"{a}\n"  # again: still fine
    assert sorted(ok(cribctl(daemon, "rm", "-a")).split()) == sorted([a, b])
    r = cribctl(daemon, "rm", "-a")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "cribctl: No containers to remove\n")
    unknown = "0" * 64
    r = cribctl(daemon, "rm", unknown)
    assert r.returncode == 1 and r.stderr.startswith(
        f'cribctl: getting container status "{unknown}": rpc error: code = NotFound desc = '
    )
    pod.clean()


def test_run_makes_the_pod_and_the_container(pod: Pod) -> None:
    daemon = pod.daemon
    config = pod.dir / "run-pod.yaml"
    config.write_text(pod_yaml("run-pod", pod.log_dir))
    r = cribctl(daemon, "run", "--no-pull", "-T", "1m", pod.ctr("runner", SLEEP), str(config))
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert ID.fullmatch(cid)
    status = pod.status(cid)
    assert status["state"] == "CONTAINER_RUNNING" and status["metadata"]["name"] == "runner"
    pods = json.loads(ok(cribctl(daemon, "pods", "-o", "json", "--name", "run-pod")))["items"]
    assert len(pods) == 1 and pods[0]["id"] in ok(cribctl(daemon, "ps", "--no-trunc")).split()
    # The same again: the pod's name is taken.
    r = cribctl(daemon, "run", "--no-pull", pod.ctr("runner", SLEEP), str(config))
    assert r.returncode == 1 and r.stderr.startswith(
        "cribctl: running container: run pod sandbox: rpc error: code = AlreadyExists desc = "
    )
    pod.clean()


def _push(registry: Registry, repo: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    with RegistryClient(registry.url, auth=auth) as client:
        client.push_image(repo, tag, builder.busybox_image())
    return f"{registry.host}/{repo}:{tag}"


def test_pull_on_create_and_run(pod: Pod, registry: Registry, auth_registry: Registry) -> None:
    daemon = pod.daemon
    name = _push(registry, "e2e/pull-on-run", "1")
    # run pulls unless told not to (crictl.yaml disable-pull-on-run, or --no-pull).
    config = pod.dir / "crictl.yaml"
    config.write_text("disable-pull-on-run: true\n")
    run_pod = pod.dir / "run-pod.yaml"
    run_pod.write_text(pod_yaml("pulled", pod.log_dir))
    ctr = pod.ctr("pulled", SLEEP, image={"image": name})
    r = cribctl(daemon, "run", ctr, str(run_pod), config=str(config))
    assert r.returncode == 1 and r.stderr.startswith(
        "cribctl: running container: creating container failed: rpc error: code = NotFound desc = "
    )
    ok(cribctl(daemon, "rmp", "-f", *ok(cribctl(daemon, "pods", "-q", "--name", "pulled")).split()))
    r = cribctl(daemon, "run", ctr, str(run_pod))
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"cribctl: Pulling container image: {name}\n"
    assert pod.status(r.stdout.strip())["state"] == "CONTAINER_RUNNING"
    # create pulls only when asked (--with-pull, or pull-image-on-create).
    other = _push(registry, "e2e/pull-on-create", "1")
    ctr = pod.ctr("created", SLEEP, image={"image": other})
    r = cribctl(daemon, "create", pod.pod_id, ctr, pod.pod_config)
    assert r.returncode == 1 and "code = NotFound" in r.stderr
    config.write_text("pull-image-on-create: true\n")
    assert ID.fullmatch(
        ok(cribctl(daemon, "create", pod.pod_id, ctr, pod.pod_config, config=str(config))).strip()
    )
    # Credentials for the pull.
    private = _push(auth_registry, "e2e/private", "1", auth=(AUTH_USER, AUTH_PASSWORD))
    ctr = pod.ctr("private", SLEEP, image={"image": private})
    r = cribctl(daemon, "create", "--with-pull", pod.pod_id, ctr, pod.pod_config)
    assert r.returncode == 1 and r.stderr.startswith(
        f"cribctl: Pulling container image: {private}\ncribctl: creating container: "
    )
    creds = f"{AUTH_USER}:{AUTH_PASSWORD}"
    r = cribctl(daemon, "create", "--with-pull", "--creds", creds, pod.pod_id, ctr, pod.pod_config)
    assert r.returncode == 0 and ID.fullmatch(r.stdout.strip()), r.stderr
    pod.clean()
    # One image under three names: removing it removes them all.
    ok(cribctl(daemon, "rmi", name))
    assert not {name, other, private} & set(ok(cribctl(daemon, "images")).split())


# --- errors -------------------------------------------------------------------------------------------------


def test_errors(pod: Pod) -> None:
    daemon = pod.daemon

    def err(*args: str) -> str:
        r = cribctl(daemon, *args)
        assert (r.returncode, r.stdout) == (1, ""), r
        return r.stderr

    unknown = "f" * 64
    missing = pod.dir / "absent.yaml"
    assert err("create", pod.pod_id, str(missing), pod.pod_config) == (
        f"cribctl: creating container: config at {missing} not found\n"
    )
    bad = pod.ctr("bad", ["/bin/true"], image={"image": "no/such:image"})
    assert err("create", pod.pod_id, bad, pod.pod_config).startswith(
        "cribctl: creating container: rpc error: code = NotFound desc = "
    )
    assert err("create", unknown, pod.ctr("x", ["/bin/true"]), pod.pod_config).startswith(
        "cribctl: creating container: rpc error: code = NotFound desc = "
    )
    assert err("start", unknown).startswith(
        f'cribctl: starting the container "{unknown}": rpc error: code = NotFound'
    )
    assert err("logs", unknown).startswith("cribctl: rpc error: code = NotFound desc = ")
    assert err("inspect", unknown).startswith(
        "cribctl: get the status of containers: get container status: rpc error: code = NotFound"
    )
    assert (
        err("ps", "-s", "paused") == "cribctl: --state should be one of created, running, exited or unknown\n"
    )
    assert err("ps", "--label", "x") == "cribctl: incorrectly specified label: x\n"
    assert err("exec", "-s", unknown, "true").startswith(
        f"cribctl: execing command in container {unknown} synchronously: rpc error: code = NotFound"
    )
    assert err("events", "-o", "go-template", "--template", "{{nope}}") == (
        'cribctl: failed to parse go-template: template: :1: function "nope" not defined\n'
    )
    # A container without a log yet: the file is not there.
    made = pod.create("quiet", ["/bin/true"])
    assert err("logs", made).startswith(
        f'cribctl: failed to try resolving symlinks in path "{pod.log_dir}/quiet.log": lstat {pod.log_dir}'
    )
    pod.clean()


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
    web, db, job = _three(pod)
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
        ["logs", "--since", _file_lines(pod.log_dir / "talker.log")[5][0], talker],
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
    ours = _table(ok(cribctl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))
    theirs = _table(ok(crictl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))
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
    _subscribed(pod, *outputs.values())
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
