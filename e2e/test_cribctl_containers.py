"""cribctl's container commands against a real cribd: create, start, ps, inspect, stop, rm, run, errors.

cribctl runs as a subprocess, as users run it, against a real cribd, pod network
and busybox containers (e2e.cribctl_bed). Each test removes the containers and pods it made.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.conftest import AUTH_PASSWORD, AUTH_USER
from e2e.cribctl_bed import (
    ID,
    IMAGE,
    SLEEP,
    Pod,
    cribctl,
    ok,
    pod_bed,
    pod_yaml,
    table_rows,
    three_containers,
)
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.images.registry_client import RegistryClient


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[Pod]:
    with pod_bed(net_cribd, tmp_path) as bed:
        yield bed


# --- create, start, ps, inspect ------------------------------------------------------------------------


def test_create_start_ps_filters_and_formats(pod: Pod) -> None:
    web, db, job = three_containers(pod)
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

    table = table_rows(ok(cribctl(daemon, "ps", "-a")))
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
    wide = table_rows(ok(cribctl(daemon, "ps", "--no-trunc", "-r")))
    assert wide[1][0] == web and wide[1][1] == IMAGE and wide[1][6] == pod.pod_id
    assert table_rows(ok(cribctl(daemon, "ps", "-o", "table")))[0] == table[0]
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
    web, db, job = three_containers(pod)
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
