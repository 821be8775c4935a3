"""e2e/demo.sh, the first-run walkthrough of the README, against a test cribd.

The script runs as a user runs it (bash, `cribctl` on PATH, the endpoint in
CONTAINER_RUNTIME_ENDPOINT), once interrupted (SIGINT, as from Ctrl-C), once
with a step made to fail and once through.
Each time nothing may be left behind: no pod, container or image, no
iptables rule or IP of the pod network, no process of the script, no mount,
no temp file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from e2e.harness.cleanup import mounts_under, processes_referencing
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv
from e2e.harness.cribd import REPO_ROOT, Cribd
from e2e.harness.network import PodNetwork

DEMO = REPO_ROOT / "e2e" / "demo.sh"
IMAGE = "localhost/crib-demo/httpd:1"
PAGE = "<h1>Hello from a crib pod!</h1>"
DEMO_TIMEOUT_S = 180
STEPS = [
    "Checking cribd on",
    "Building a root filesystem with busybox httpd",
    f"Making the image {IMAGE} from the tar (no registry needed)",
    "Running a pod with host port",
    "Creating and starting the web server in the pod",
    "Fetching the page over the host port",
    "Running a command in the container",
    "The container's logs (httpd logs each request)",
    "Forwarding a local port to the pod's port 80",
    "Cleaning up",
]

# `cribctl` on PATH: this checkout's; with DEMO_FAIL_ON=<command> that command fails instead, with
# DEMO_INTERRUPT_ON=<command> the script gets a SIGINT (as from Ctrl-C) while that command runs.
SHIM = """#!/bin/sh
if [ -n "${{DEMO_FAIL_ON:-}}" ] && [ "$1" = "$DEMO_FAIL_ON" ]; then
  echo "cribctl: injected failure of $1" >&2
  exit 3
fi
if [ -n "${{DEMO_INTERRUPT_ON:-}}" ] && [ "$1" = "$DEMO_INTERRUPT_ON" ]; then
  kill -INT "$PPID"
fi
exec {python} -m crib.cribctl.main "$@"
"""


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_members(sid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _images(daemon: Cribd) -> list[str]:
    """The image tags, but the pinned pause image, which cribd builds for the first pod and keeps."""
    doc = json.loads(_cribctl(daemon, "images", "-o", "json"))
    return sorted(tag for image in doc["images"] if not image.get("pinned") for tag in image["repoTags"])


def _cribctl(daemon: Cribd, *args: str) -> str:
    r = subprocess.run(
        cribctl_argv(daemon, *args), capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env()
    )
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def run_demo(daemon: Cribd, tmp_path: Path, port: int, **extra_env: str) -> Run:
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "cribctl"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {
        **client_env(),
        "PATH": f"{shim_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        "CONTAINER_RUNTIME_ENDPOINT": f"unix://{daemon.socket}",
        "CRI_CONFIG_FILE": "/dev/null",  # no /etc/crictl.yaml of this machine
        "CRIB_DEMO_PORT": str(port),
        "TMPDIR": str(tmp_path / "tmp"),
        **extra_env,
    }
    # Its own session: what it leaves running is found by the session ID.
    proc = subprocess.Popen(
        ["bash", str(DEMO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"demo.sh ran over {DEMO_TIMEOUT_S}s:\n{out}\n{err}") from None
    finally:
        left = _session_members(proc.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"demo.sh left processes running: {left}"
    return Run(proc.returncode, out, err)


def assert_nothing_left(
    daemon: Cribd, net: PodNetwork, tmp_path: Path, port: int, images: list[str], mounts: list[str]
) -> None:
    assert _cribctl(daemon, "pods", "-q") == ""
    assert _cribctl(daemon, "ps", "-a", "-q") == ""
    assert _images(daemon) == images
    assert net.allocated_ips() == []
    assert net.iptables_mentions() == []
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30).stdout
    assert [line for line in nat.splitlines() if f"--dport {port} " in line] == []
    assert sorted(mounts_under(daemon.dir)) == mounts
    assert daemon.proc is not None
    assert [p for p in processes_referencing(daemon.dir) if p != daemon.proc.pid] == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_demo_runs_through_and_cleans_up_also_after_a_failed_step_or_ctrl_c(
    net_cribd: Cribd, pod_network: PodNetwork, tmp_path: Path
) -> None:
    images = _images(net_cribd)
    mounts = sorted(mounts_under(net_cribd.dir))
    port = _free_port()

    # Ctrl-C while the web server starts: the script stops there and removes all it made.
    stopped = run_demo(net_cribd, tmp_path, port, DEMO_INTERRUPT_ON="start")
    assert stopped.code == 130, stopped
    assert stopped.stderr.endswith("\ndemo.sh: interrupted; everything it made is removed.\n"), stopped
    assert "==> Fetching the page" not in stopped.stdout and "Done:" not in stopped.stdout
    pod = re.search(r"^Removed sandbox ([0-9a-f]{64})$", stopped.stdout, re.M)
    assert pod and f"Stopped sandbox {pod.group(1)}" in stopped.stdout, stopped.stdout
    assert f"Deleted: {IMAGE}" in stopped.stdout
    assert_nothing_left(net_cribd, pod_network, tmp_path, port, images, mounts)

    # A step half way fails (exec, with the pod and its web server running): all is removed all the same.
    failed = run_demo(net_cribd, tmp_path, port, DEMO_FAIL_ON="exec")
    assert failed.code == 3, failed
    assert "cribctl: injected failure of exec" in failed.stderr
    assert "demo.sh: a step failed (exit code 3); everything it made is removed." in failed.stderr
    assert failed.stdout.count(PAGE) == 1 and "Done:" not in failed.stdout
    pod = re.search(r"^Removed sandbox ([0-9a-f]{64})$", failed.stdout, re.M)
    assert pod and f"Stopped sandbox {pod.group(1)}" in failed.stdout, failed.stdout
    assert f"Deleted: {IMAGE}" in failed.stdout
    assert_nothing_left(net_cribd, pod_network, tmp_path, port, images, mounts)

    ok = run_demo(net_cribd, tmp_path, port)
    assert ok.code == 0, f"{ok.stdout}\n{ok.stderr}"
    out = ok.stdout
    # Every step says what it does, in order, and shows the commands it runs.
    headers = [line[4:] for line in out.splitlines() if line.startswith("==> ")]
    assert len(headers) == len(STEPS) and all(h.startswith(s) for h, s in zip(headers, STEPS, strict=True)), (
        headers
    )
    for command in ("$ cribctl import ", "$ cribctl runp ", "$ cribctl create ", "$ cribctl exec "):
        assert command in out
    image_id = re.search(rf"^Imported image: {re.escape(IMAGE)} \((sha256:[0-9a-f]{{64}})\)$", out, re.M)
    assert image_id, out
    pod_id = re.search(r"^\$ cribctl runp .*\n([0-9a-f]{64})$", out, re.M)
    ctr_id = re.search(r"^\$ cribctl create .*\n([0-9a-f]{64})$", out, re.M)
    assert pod_id and ctr_id, out
    # The page, once over the host port and once through port-forward.
    assert out.count(PAGE) == 2
    assert f"$ timeout 10 /bin/busybox wget -Y off -q -O - http://127.0.0.1:{port}/\n{PAGE}\n" in out
    forwarded = re.search(r"^Forwarding from 127\.0\.0\.1:(\d+) -> 80$", out, re.M)
    assert forwarded, out
    assert f"http://127.0.0.1:{forwarded.group(1)}/\n{PAGE}\n" in out
    assert f"Handling connection for {forwarded.group(1)}" in out
    # exec ran in the container: its hostname, its files, its processes (the pod's, with httpd).
    assert "hostname: crib-demo\nindex.html\nPID   USER     COMMAND\n" in out
    assert re.search(r"^ +\d+ root +/bin/httpd -f -vv -p 80 -h /www$", out, re.M), out
    # logs: httpd's request log is its stderr, and cribctl logs keeps it there. Two requests came
    # through the host port (the wait for httpd, then the fetch shown), from the bridge's address.
    gateway = re.escape(f"[::ffff:{pod_network.gateway}]")
    requests = "".join(rf"{gateway}:(\d+): url:/\n{gateway}:\{n}: response:200\n" for n in (1, 2))
    assert re.fullmatch(requests, ok.stderr), ok.stderr
    assert f"Stopped sandbox {pod_id.group(1)}\n" in out and f"Removed sandbox {pod_id.group(1)}\n" in out
    assert f"Deleted: {IMAGE}\n" in out
    assert out.endswith("\nDone: the pod, its container, the image and the temp files are gone.\n")
    assert_nothing_left(net_cribd, pod_network, tmp_path, port, images, mounts)
