"""kubectl logs, exec, attach, port-forward and cp: API server -> kubelet -> crib's streaming server."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from e2e.harness.terminal import on_a_terminal, read_all
from e2e.kube.images import AGNHOST, BUSYBOX
from e2e.kube.kube import Kube, container, container_status, pod_manifest, restarts, shell

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")


def _kubectl_argv(kube: Kube, *args: str) -> list[str]:
    return [
        str(kube.cluster.kubectl_path),
        f"--kubeconfig={kube.cluster.admin_kubeconfig}",
        "-n",
        kube.ns,
        *args,
    ]


def test_logs_with_timestamps_since_and_previous(kube: Kube) -> None:
    # Each run prints its number, then a line on stderr, and exits after the second run is up a while.
    script = (
        "n=$(($(cat /state/n 2>/dev/null || echo 0)+1)); echo $n > /state/n; "
        "echo run $n; echo err $n >&2; "
        "if [ $n -eq 1 ]; then exit 1; fi; sleep 3600"
    )
    kube.apply(
        pod_manifest(
            "talk",
            [
                shell(
                    "main",
                    script,
                    volumeMounts=[{"name": "s", "mountPath": "/state"}],
                )
            ],
            volumes=[{"name": "s", "emptyDir": {}}],
        )
    )
    kube.wait_pod(
        "talk",
        lambda p: restarts(p, "main") == 1 and "running" in container_status(p, "main")["state"],
        "running after one restart",
    )
    current = kube.wait(
        "both lines of run 2",
        lambda: kube.kubectl("logs", "talk").stdout,
        lambda out: out.split("\n")[:2] == ["run 2", "err 2"],
    )
    assert current == "run 2\nerr 2\n"
    assert kube.kubectl("logs", "talk", "--previous").stdout == "run 1\nerr 1\n"
    stamped = kube.kubectl("logs", "talk", "--timestamps").stdout.splitlines()
    assert len(stamped) == 2 and all(RFC3339NANO.match(line) for line in stamped), stamped
    assert [line.split(" ", 1)[1] for line in stamped] == ["run 2", "err 2"]
    # --since-time is whole seconds on the wire: after the last line's second nothing is left,
    # from the first line's second both lines are.
    first, last = (datetime.fromisoformat(line.split(" ", 1)[0][:19]) for line in stamped)
    after = (last + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert kube.kubectl("logs", "talk", f"--since-time={after}").stdout == ""
    assert kube.kubectl("logs", "talk", f"--since-time={first:%Y-%m-%dT%H:%M:%SZ}").stdout == current
    assert kube.kubectl("logs", "talk", "--since=1h").stdout == current


def test_follow_across_rotations_loses_no_line(kube: Kube) -> None:
    # 3000 numbered lines of ~100 bytes: 300 KB against a 64 KiB containerLogMaxSize, written
    # over about six seconds so the kubelet (checking every 3 s) rotates several times.
    lines = 3000
    pad = "x" * 90
    script = (
        "while [ ! -f /tmp/go ]; do sleep 0.1; done; i=1; "
        f'while [ $i -le {lines} ]; do echo "$i {pad}"; i=$((i+1)); '
        "[ $((i % 50)) -eq 0 ] && sleep 0.1; done; echo done; sleep 3600"
    )
    kube.apply(pod_manifest("chatty", [shell("main", script)]))
    pod = kube.wait_ready("chatty")
    follower = subprocess.Popen(
        _kubectl_argv(kube, "logs", "-f", "chatty"), stdout=subprocess.PIPE, text=True
    )
    try:
        kube.kubectl("exec", "chatty", "--", "touch", "/tmp/go")
        seen = []
        deadline = time.monotonic() + 90
        for line in follower.stdout:  # type: ignore[union-attr]
            seen.append(line.split(" ", 1)[0].strip())
            if seen[-1] == "done" or time.monotonic() > deadline:
                break
    finally:
        follower.kill()
        follower.wait(10)
    assert seen[-1] == "done", f"the follower stopped at {seen[-3:]}"
    numbers = [int(x) for x in seen[:-1]]
    missing = sorted(set(range(1, lines + 1)) - set(numbers))
    assert not missing, f"{len(missing)} lines lost across rotations, first {missing[:10]}"
    assert numbers == list(range(1, lines + 1)), "lines repeated or out of order"
    # It did rotate: the kubelet keeps rotated files beside the current one.
    log_dir = Path(kube.cluster.pod_logs) / f"{kube.ns}_chatty_{pod['metadata']['uid']}" / "main"
    rotated = [p.name for p in log_dir.iterdir() if p.name != "0.log"]
    assert rotated, f"no rotation happened: {os.listdir(log_dir)}"


def test_exec_with_and_without_a_terminal(kube: Kube) -> None:
    kube.apply(pod_manifest("shell", [container("main", BUSYBOX, command=["sleep", "3600"])]))
    kube.wait_ready("shell")
    plain = kube.kubectl("exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (plain.returncode, plain.stdout) == (3, "out\n")
    assert "err" in plain.stderr
    piped = kube.kubectl("exec", "-i", "shell", "--", "sh", "-c", "tr a-z A-Z; tty || true", input="hello\n")
    assert piped.stdout == "HELLO\nnot a tty\n"
    env = dict(os.environ, KUBECONFIG=str(kube.cluster.admin_kubeconfig), TERM="xterm")
    with on_a_terminal(
        _kubectl_argv(kube, "exec", "-it", "shell", "--", "sh"), env, columns=97, lines=31
    ) as (
        proc,
        term,
    ):
        os.write(term, b"tty; stty size; echo $((6*7)); exit 5\r")
        out = read_all(term, proc, 60).decode(errors="replace")
        assert proc.wait(30) == 5
    assert "/dev/pts/0" in out and "31 97" in out and "42" in out, out


def test_attach_to_a_container_reading_stdin(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "reader",
            [shell("main", "while read l; do echo got:$l; done", stdin=True)],
        )
    )
    kube.wait_ready("reader")
    proc = subprocess.Popen(
        _kubectl_argv(kube, "attach", "-i", "reader"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # The attach is live once a line sent through it comes back.
        deadline = time.monotonic() + 30
        got = ""
        while "got:ping" not in got:
            assert time.monotonic() < deadline, f"no echo through attach: {got!r}"
            proc.stdin.write("ping\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            got += proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait(10)
    assert restarts(kube.pod("reader"), "main") == 0


def test_port_forward_and_cp(kube: Kube, tmp_path: Path) -> None:
    kube.apply(pod_manifest("web", [container("main", AGNHOST, "netexec", "--http-port=8080")]))
    kube.wait_ready("web")
    pf = subprocess.Popen(
        _kubectl_argv(kube, "port-forward", "pod/web", ":8080"), stdout=subprocess.PIPE, text=True
    )
    try:
        line = pf.stdout.readline()  # type: ignore[union-attr]
        m = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, line
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{m.group(1)}/hostname", timeout=10).text == "web"
    finally:
        pf.kill()
        pf.wait(10)
    payload = os.urandom(300_000)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    kube.kubectl("cp", str(src), f"{kube.ns}/web:/tmp/payload.bin")
    size = kube.kubectl("exec", "web", "--", "stat", "-c", "%s", "/tmp/payload.bin").stdout.strip()
    assert size == str(len(payload))
    back = tmp_path / "back.bin"
    kube.kubectl("cp", f"{kube.ns}/web:/tmp/payload.bin", str(back))
    assert back.read_bytes() == payload
