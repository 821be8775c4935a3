"""The test bed of the cribctl container tests: cribctl as a subprocess, a pod, container configs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2e.harness.clients import (
    CALL_TIMEOUT_S,
    client_env,
    cribctl_argv,
)
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until
from e2e.pods import import_busybox

IMAGE = "crib.e2e/busybox:1"
ID = re.compile(r"[0-9a-f]{64}")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)"
CRI_LINE = re.compile(rf"^({STAMP}|\S+) (stdout|stderr) ([PF]) (.*)$")


def cribctl(daemon: Cribd, *args: str, config: str | None = "/dev/null") -> subprocess.CompletedProcess[str]:
    """cribctl as a subprocess; config None reads the crictl config file as users have it."""
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


@contextlib.contextmanager
def pod_bed(daemon: Cribd, tmp_path: Path) -> Iterator[Pod]:
    """A pod made with `cribctl runp`, for the test's containers."""
    import_busybox(daemon)
    log_dir = tmp_path / "logs"
    config = tmp_path / "pod.yaml"
    config.write_text(pod_yaml("ctr-pod", log_dir))
    pod_id = ok(cribctl(daemon, "runp", str(config))).strip()
    try:
        yield Pod(daemon, tmp_path, pod_id, str(config), log_dir)
    finally:
        # The tests clean up themselves (Pod.clean); this is for a test that failed half way.
        cribctl(daemon, "rm", "-a", "-f")
        cribctl(daemon, "rmp", "-a", "-f")


SLEEP = ["/bin/sleep", "1000"]


def table_rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def three_containers(pod: Pod) -> tuple[str, str, str]:
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


# Pauses between the streams: conmon reads stdout and stderr each on its own.
TALKER = (
    "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; printf part; sleep 0.2; echo ial; "
    "i=0; while [ $i -lt 5 ]; do echo tick$i; i=$((i+1)); sleep 0.3; done"
)


def file_lines(path: Path) -> list[tuple[str, str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = CRI_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return out


def has_event(text: str, cid: str, kind: str) -> bool:
    """Whether events output (JSON or YAML) holds an event of this kind for this container."""
    as_json = f'"containerId": "{cid}",\n  "containerEventType": "{kind}"'
    return as_json in text or f"containerEventType: {kind}\ncontainerId: {cid}\n" in text


def subscribe_all(pod: Pod, *outputs: Output) -> None:
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
