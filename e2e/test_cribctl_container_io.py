"""cribctl's container I/O against a real cribd: logs, exec -s, stats, update, events.

cribctl runs as a subprocess, as users run it, against a real cribd, pod network
and busybox containers (e2e.cribctl_bed). Each test removes the containers and pods it made.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.cribctl_bed import (
    SLEEP,
    STAMP,
    TALKER,
    Output,
    Pod,
    cribctl,
    file_lines,
    json_docs,
    ok,
    pod_bed,
    subscribe_all,
    table_rows,
)
from e2e.harness.clients import (
    CALL_TIMEOUT_S,
    client_env,
    cribctl_argv,
)
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[Pod]:
    with pod_bed(net_cribd, tmp_path) as bed:
        yield bed


# --- logs --------------------------------------------------------------------------------------------


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
    lines = file_lines(pod.log_dir / "talker.log")
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
    table = table_rows(out.removeprefix("\x1b[2J\x1b[H"))
    assert table[0] == ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES", "SWAP"]
    rows = {r[1]: r for r in table[1:]}
    assert set(rows) == {"busy", "idle"}  # a created container uses no CPU or memory: left out
    assert rows["busy"][0] == busy[:13] and float(rows["busy"][2]) > 20.0  # a busy loop: most of a core
    assert float(rows["idle"][2]) < 5.0
    for row in rows.values():
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row[3]) and row[3] != "0B"
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row[4]) and row[5].isdigit() and row[6] == "0B"
    assert {
        r[1] for r in table_rows(ok(cribctl(daemon, "stats", "-a")).removeprefix("\x1b[2J\x1b[H"))[1:]
    } == {
        "busy",
        "idle",
        "made",
    }
    only = table_rows(ok(cribctl(daemon, "stats", "--id", idle[:8])).removeprefix("\x1b[2J\x1b[H"))
    assert [r[1] for r in only[1:]] == ["idle"]
    assert [
        r[1] for r in table_rows(ok(cribctl(daemon, "stats", busy)).removeprefix("\x1b[2J\x1b[H"))[1:]
    ] == ["busy"]
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


def test_events(pod: Pod) -> None:
    daemon = pod.daemon
    as_json = Output(cribctl_argv(daemon, "events"))
    as_yaml = Output(cribctl_argv(daemon, "event", "-o", "yaml"))
    subscribe_all(pod, as_json, as_yaml)
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
