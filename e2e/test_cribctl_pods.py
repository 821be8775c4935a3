"""cribctl's pod commands (runp, pods, inspectp, stopp, rmp) against a real cribd and pod network.

Where a crictl binary is available ($CRICTL or `crictl` on PATH), the same
commands are run with crictl on the same cribd and the outputs compared byte
for byte; only the relative CREATED column of the table is masked.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from e2e import cribctl_bed as bed
from e2e.cribctl_bed import ok
from e2e.harness.clients import CALL_TIMEOUT_S, crictl
from e2e.harness.cribd import REPO_ROOT, Cribd
from e2e.harness.network import PodNetwork
from e2e.pods import ns_inode

RESOLV_CONF = "search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
CGROUP_WARNING = "cribctl: cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver\n"


def cribctl(daemon: Cribd, *args: str) -> subprocess.CompletedProcess[str]:
    return bed.cribctl(daemon, *args, config=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod_doc(name: str, namespace: str = "e2e", **extra: object) -> dict:
    """A pod config as crictl users write them: the proto's snake_case names."""
    doc: dict = {
        "metadata": {"name": name, "namespace": namespace, "uid": uuid.uuid4().hex, "attempt": 0},
        "hostname": name,
        "labels": {"app": name, "suite": "cribctl"},
        "annotations": {"crib.e2e/test": "pods"},
    }
    doc.update(extra)
    return doc


def write_config(tmp_path: Path, doc: dict, suffix: str = ".json") -> Path:
    path = tmp_path / f"{doc['metadata']['name']}-{uuid.uuid4().hex[:6]}{suffix}"
    path.write_text(json.dumps(doc, indent=2) if suffix == ".json" else yaml.safe_dump(doc))
    return path


def runp(daemon: Cribd, tmp_path: Path, doc: dict) -> str:
    out = ok(cribctl(daemon, "runp", str(write_config(tmp_path, doc))))
    assert re.fullmatch(r"[0-9a-f]{64}\n", out), out
    return out.strip()


def inspect(daemon: Cribd, pod_id: str) -> dict:
    return json.loads(ok(cribctl(daemon, "inspectp", pod_id)))


def ids(daemon: Cribd, *args: str) -> list[str]:
    return ok(cribctl(daemon, "pods", "-q", *args)).split()


def remove_all(daemon: Cribd) -> None:
    """What a test leaves: nothing. (The fixture would clean up too; this checks rmp -a -f works.)"""
    r = cribctl(daemon, "rmp", "-a", "-f")
    assert r.returncode == 0, r.stderr
    assert ids(daemon) == []


# --- runp --------------------------------------------------------------------------------------


def _check_pod(daemon: Cribd, net: PodNetwork, pod_id: str, name: str, host_port: int) -> None:
    doc = inspect(daemon, pod_id)
    status, info = doc["status"], doc["info"]
    assert status["id"] == pod_id and status["state"] == "SANDBOX_READY"
    assert status["metadata"]["name"] == name and status["labels"]["app"] == name
    assert status["linux"]["namespaces"]["options"]["ipc"] == "NODE"
    assert ipaddress.ip_address(status["network"]["ip"]) in ipaddress.ip_network(net.subnet)
    pid = info["pid"]
    assert Path(f"/proc/{pid}/root/etc/hostname").read_text() == f"{name}-host\n"
    assert Path(f"/proc/{pid}/root/etc/resolv.conf").read_text() == RESOLV_CONF
    # ipc: NODE shares the host's IPC namespace; the network stays the pod's.
    assert ns_inode(f"/proc/{pid}/ns/ipc") == ns_inode("/proc/self/ns/ipc")
    assert ns_inode(f"/proc/{pid}/ns/net") != ns_inode("/proc/self/ns/net")
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30).stdout
    assert f"--dport {host_port} -j DNAT --to-destination {status['network']['ip']}:8080" in nat


JSON_EXTRA = {
    "dns_config": {
        "servers": ["10.96.0.10"],
        "searches": ["ns.svc.cluster.local", "cluster.local"],
        "options": ["ndots:5"],
    },
    "linux": {"security_context": {"namespace_options": {"network": 0, "ipc": 2}}},
}

YAML_CONFIG = """\
# A hand-written YAML config: crictl's snake_case names in any case, YAML 1.1 scalars,
# an enum by name and a lowerCamelCase name (cribctl's extensions).
metadata:
  name: {name}
  namespace: e2e
  attempt: 0            # no uid: runp makes one
Hostname: {name}-host
labels:
  app: {name}
  replicas: 3           # a number for a string: "3"
  canary: yes           # YAML 1.1: true, then "true"
annotations: {{crib.e2e/test: pods}}
portMappings:
- containerPort: 8080
  host_port: {port}
  protocol: 0
dns_config:
  servers: [10.96.0.10]
  searches:
  - ns.svc.cluster.local
  - cluster.local
  options: [ndots:5]
linux:
  security_context:
    namespace_options: {{network: POD, ipc: NODE}}
"""


def test_runp_from_json_and_yaml(net_cribd: Cribd, pod_network: PodNetwork, tmp_path: Path) -> None:
    json_port, yaml_port = _free_port(), _free_port()
    doc = pod_doc(
        "from-json",
        hostname="from-json-host",
        port_mappings=[{"container_port": 8080, "host_port": json_port, "protocol": 0}],
        **JSON_EXTRA,
    )
    r = cribctl(net_cribd, "runp", str(write_config(tmp_path, doc)))
    assert r.returncode == 0 and r.stderr == CGROUP_WARNING, r.stderr
    json_pod = r.stdout.strip()

    path = tmp_path / "from-yaml.yaml"
    path.write_text(YAML_CONFIG.format(name="from-yaml", port=yaml_port))
    yaml_pod = ok(cribctl(net_cribd, "runp", "--runtime", "runc", "-T", "1m", str(path))).strip()

    _check_pod(net_cribd, pod_network, json_pod, "from-json", json_port)
    _check_pod(net_cribd, pod_network, yaml_pod, "from-yaml", yaml_port)
    status = inspect(net_cribd, yaml_pod)["status"]
    assert status["labels"] == {"app": "from-yaml", "replicas": "3", "canary": "true"}
    assert len(status["metadata"]["uid"]) == 36 and status["runtimeHandler"] == "runc"
    assert sorted(ids(net_cribd)) == sorted([json_pod, yaml_pod])

    assert ok(cribctl(net_cribd, "stopp", json_pod, yaml_pod)) == (
        f"Stopped sandbox {json_pod}\nStopped sandbox {yaml_pod}\n"
    )
    assert ok(cribctl(net_cribd, "rmp", json_pod, yaml_pod)).splitlines() in (
        [f"Removed sandbox {json_pod}", f"Removed sandbox {yaml_pod}"],
        [f"Removed sandbox {yaml_pod}", f"Removed sandbox {json_pod}"],  # concurrently, as crictl
    )
    assert ids(net_cribd) == []
    assert pod_network.allocated_ips() == []


# --- pods ----------------------------------------------------------------------------------------


def _three_pods(daemon: Cribd, tmp_path: Path) -> tuple[str, str, str]:
    """alpha (team-a, web), beta (team-b, web, attempt 1), gamma (team-a, db, stopped); oldest first."""
    alpha = runp(daemon, tmp_path, pod_doc("alpha", "team-a", labels={"app": "alpha", "tier": "web"}))
    beta_doc = pod_doc("beta", "team-b", labels={"app": "beta", "tier": "web"})
    beta_doc["metadata"]["attempt"] = 1
    beta = runp(daemon, tmp_path, beta_doc)
    gamma = runp(daemon, tmp_path, pod_doc("gamma", "team-a", labels={"app": "gamma", "tier": "db"}))
    ok(cribctl(daemon, "stopp", gamma))
    return alpha, beta, gamma


def test_pods_filters_and_formats(net_cribd: Cribd, tmp_path: Path) -> None:
    alpha, beta, gamma = _three_pods(net_cribd, tmp_path)
    assert ids(net_cribd) == [gamma, beta, alpha]  # newest first
    # Filters the runtime applies: --id (a prefix), --state, --label.
    assert ids(net_cribd, "--id", beta[:8]) == [beta]
    assert ids(net_cribd, "-s", "ready") == [beta, alpha]
    assert ids(net_cribd, "--state", "NotReady") == [gamma]
    assert ids(net_cribd, "--label", "tier=web") == [beta, alpha]
    assert ids(net_cribd, "--label", "tier=web", "--label", "app=beta") == [beta]
    assert ids(net_cribd, "--label", "tier=web,app=alpha") == [alpha]
    assert ids(net_cribd, "--label", "tier=none") == []
    # crictl's own: regular expressions on name and namespace, --latest and --last.
    assert ids(net_cribd, "--name", "ph") == [alpha]
    assert ids(net_cribd, "--name", "^(alpha|gamma)$") == [gamma, alpha]
    assert ids(net_cribd, "--namespace", "team-a") == [gamma, alpha]
    assert ids(net_cribd, "--namespace", "b$", "--name", "a") == [beta]
    assert ids(net_cribd, "-l") == [gamma]
    assert ids(net_cribd, "--last", "2") == [gamma, beta]
    assert ids(net_cribd, "-n", "0") == [gamma, beta, alpha]

    table = ok(cribctl(net_cribd, "pods")).splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"
    ]  # fmt: skip
    rows = [re.split(r"\s{2,}", line) for line in table[1:]]
    assert [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        (gamma[:13], "NotReady", "gamma", "team-a", "0", "runc"),
        (beta[:13], "Ready", "beta", "team-b", "1", "runc"),
        (alpha[:13], "Ready", "alpha", "team-a", "0", "runc"),
    ]
    assert all(re.fullmatch(r"(Less than a second|\d+ seconds?) ago", r[1]) for r in rows), rows
    assert ok(cribctl(net_cribd, "pods", "-o", "table")).splitlines()[0] == table[0]
    wide = ok(cribctl(net_cribd, "pods", "--no-trunc", "--name", "beta")).splitlines()
    assert wide[1].startswith(f"{beta}   ")

    verbose = ok(cribctl(net_cribd, "pods", "-v", "--name", "beta"))
    assert (
        verbose.startswith(f"ID: {beta}\nName: beta\nUID: ")
        and "\nNamespace: team-b\nAttempt: 1\nStatus: Ready\nCreated: " in verbose
    )
    assert verbose.endswith(
        "Labels:\n\tapp -> beta\n\ttier -> web\nAnnotations:\n\tcrib.e2e/test -> pods\nRuntime: runc\n\n"
    )
    assert "Attempt:" not in ok(cribctl(net_cribd, "pods", "-v", "--name", "alpha"))

    doc = json.loads(ok(cribctl(net_cribd, "pods", "-o", "json")))
    assert [item["id"] for item in doc["items"]] == [gamma, beta, alpha]
    assert doc["items"][2]["metadata"]["namespace"] == "team-a"
    assert doc["items"][0]["state"] == "SANDBOX_NOTREADY" and doc["items"][1]["metadata"]["attempt"] == 1
    assert yaml.safe_load(ok(cribctl(net_cribd, "pods", "-o", "yaml"))) == doc
    assert json.loads(ok(cribctl(net_cribd, "pods", "-o", "json", "--name", "nothing"))) == {"items": []}
    remove_all(net_cribd)


# --- inspectp --------------------------------------------------------------------------------------


def test_inspectp(net_cribd: Cribd, tmp_path: Path) -> None:
    alpha, beta, gamma = _three_pods(net_cribd, tmp_path)
    doc = inspect(net_cribd, alpha[:12])  # a unique prefix is enough for crib
    assert doc["status"]["id"] == alpha and doc["status"]["state"] == "SANDBOX_READY"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", doc["status"]["createdAt"]
    )
    assert doc["info"]["netns"] and doc["info"]["pid"] > 0
    quiet = json.loads(ok(cribctl(net_cribd, "inspectp", "-q", alpha)))
    assert list(quiet) == ["status"] and quiet["status"] == doc["status"]
    assert yaml.safe_load(ok(cribctl(net_cribd, "inspectp", "-o", "yaml", alpha))) == doc
    both = json.loads(ok(cribctl(net_cribd, "inspectp", alpha, gamma)))
    assert [d["status"]["id"] for d in both] == [alpha, gamma]
    assert both[1]["status"]["state"] == "SANDBOX_NOTREADY"

    table = ok(cribctl(net_cribd, "inspectp", "-o", "table", beta))
    assert table.startswith(f"ID: {beta}\nName: beta\nUID: ")
    assert "\nNamespace: team-b\nAttempt: 1\nStatus: SANDBOX_READY\nCreated: " in table
    assert "\nIP Addresses: 10." in table and "\nInfo: map[info:{" in table
    assert "Info:" not in ok(cribctl(net_cribd, "inspectp", "-o", "table", "-q", beta))

    # Without IDs: the list filters pick the pods, newest first.
    picked = json.loads(ok(cribctl(net_cribd, "inspectp", "--namespace", "team-a")))
    assert [d["status"]["id"] for d in picked] == [gamma, alpha]
    assert json.loads(ok(cribctl(net_cribd, "inspectp", "--label", "tier=web", "-l")))["status"]["id"] == beta
    assert json.loads(ok(cribctl(net_cribd, "inspectp", "-s", "notready")))["status"]["id"] == gamma
    r = cribctl(net_cribd, "inspectp", "--name", "nothing")
    assert r.returncode == 0 and r.stdout.startswith("NAME:\n   cribctl inspectp - ")
    assert r.stderr == "cribctl: No IDs provided or nothing found per filter\n"
    remove_all(net_cribd)


# --- stopp and rmp ------------------------------------------------------------------------------------


def test_stopp_and_rmp(net_cribd: Cribd, pod_network: PodNetwork, tmp_path: Path) -> None:
    a, b, c = (runp(net_cribd, tmp_path, pod_doc(name)) for name in ("pa", "pb", "pc"))
    r = cribctl(net_cribd, "rmp", a)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f'cribctl: pod sandbox "{a}" is running, please stop it first\n'
    assert ok(cribctl(net_cribd, "stopp", a, b)) == f"Stopped sandbox {a}\nStopped sandbox {b}\n"
    assert ids(net_cribd, "-s", "notready") == [b, a]
    assert ok(cribctl(net_cribd, "stopp", a)) == f"Stopped sandbox {a}\n"  # again: still fine
    assert ok(cribctl(net_cribd, "rmp", a)) == f"Removed sandbox {a}\n"
    assert ok(cribctl(net_cribd, "rmp", "--force", c)) == f"Stopped sandbox {c}\nRemoved sandbox {c}\n"
    assert ok(cribctl(net_cribd, "rmp", "--all")) == f"Removed sandbox {b}\n"
    r = cribctl(net_cribd, "rmp", "-a")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "cribctl: No pods to remove\n")

    # --all --force takes running pods too, concurrently.
    more = [runp(net_cribd, tmp_path, pod_doc(f"m{i}")) for i in range(3)]
    out = ok(cribctl(net_cribd, "rmp", "-af"))
    assert sorted(out.splitlines()) == sorted(
        [f"Stopped sandbox {p}" for p in more] + [f"Removed sandbox {p}" for p in more]
    )
    assert ids(net_cribd) == [] and pod_network.allocated_ips() == []

    # crib answers success when stopping a pod it does not know, and crictl says it stopped it.
    unknown = "0" * 64
    assert ok(cribctl(net_cribd, "stopp", unknown)) == f"Stopped sandbox {unknown}\n"
    r = cribctl(net_cribd, "rmp", unknown)
    assert r.returncode == 1 and r.stderr == (
        f'cribctl: getting sandbox status of pod "{unknown}": '
        f"rpc error: code = NotFound desc = pod sandbox '{unknown}' not found\n"
    )
    r = cribctl(net_cribd, "stopp", "")
    assert r.stderr == 'cribctl: stopping the pod sandbox "": ID cannot be empty\n'


# --- errors -------------------------------------------------------------------------------------------


def test_errors(net_cribd: Cribd, tmp_path: Path) -> None:
    def err(*args: str) -> str:
        r = cribctl(net_cribd, *args)
        assert (r.returncode, r.stdout) == (1, ""), r
        return r.stderr

    missing = tmp_path / "absent.yaml"
    assert err("runp", str(missing)) == f"cribctl: load podSandboxConfig: config at {missing} not found\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {name: x, namespace: y\n")
    assert err("runp", str(bad)).startswith(
        "cribctl: load podSandboxConfig: error converting YAML to JSON: yaml: line 1: "
    )
    bad.write_text("metadata: {name: x, namespace: y}\nport_mappings: [{container_port: http}]\n")
    assert err("runp", str(bad)) == (
        "cribctl: load podSandboxConfig: error unmarshaling JSON: while decoding JSON: "
        "json: cannot unmarshal string into Go struct field "
        "PortMapping.port_mappings.container_port of type int32\n"
    )
    bad.write_text("hostname: nameless\n")
    assert err("runp", str(bad)) == "cribctl: load podSandboxConfig: metadata is not set\n"
    bad.write_text('{"metadata": {"name": "x", "uid": "u"}}')
    assert err("runp", str(bad)) == (
        'cribctl: load podSandboxConfig: name or namespace is not in metadata "name:\\"x\\" uid:\\"u\\""\n'
    )
    good = write_config(tmp_path, pod_doc("once"))
    assert err("runp", "-r", "kata", str(good)).startswith(
        "cribctl: run pod sandbox: rpc error: code = InvalidArgument desc = "
    )
    pod_id = ok(cribctl(net_cribd, "runp", str(good))).strip()
    assert err("runp", str(good)).startswith(
        "cribctl: run pod sandbox: rpc error: code = AlreadyExists desc = "
    )

    unknown = "f" * 64
    assert err("inspectp", unknown) == (
        "cribctl: get the status of pod sandboxes: get pod sandbox status: "
        f"rpc error: code = NotFound desc = pod sandbox '{unknown}' not found\n"
    )
    assert err("pods", "-s", "running") == "cribctl: --state should be ready or notready\n"
    assert err("pods", "--label", "app") == "cribctl: incorrectly specified label: app\n"
    assert err("pods", "-o", "xml") == 'cribctl: listing pod sandboxes: unsupported output format "xml"\n'
    assert err("pods", "--last", "two") == 'cribctl: invalid value "two" for flag -last: parse error\n'
    assert err("inspectp", "-o", "xml", pod_id) == (
        'cribctl: get the status of pod sandboxes: unsupported format: "xml"\n'
    )
    dead = f"unix://{tmp_path}/nothing.sock"
    r = subprocess.run(
        [sys.executable, "-m", "crib.cribctl.main", "-r", dead, "pods"],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert r.returncode == 1 and r.stderr.startswith(
        f'cribctl: validate service connection: validate CRI v1 runtime API for endpoint "{dead}": '
        "rpc error: code = Unavailable desc = "
    )
    assert (
        ok(cribctl(net_cribd, "rmp", "-f", pod_id)) == f"Stopped sandbox {pod_id}\nRemoved sandbox {pod_id}\n"
    )


# --- against crictl ------------------------------------------------------------------------------------


# A CREATED cell and its padding: tabwriter's column is 20 wide for any "N seconds ago".
_CREATED = re.compile(r"(?<=   )(1 second|\d+ seconds) ago +")


def _mask_created(text: str) -> str:
    return _CREATED.sub(lambda m: "<created>".ljust(len(m.group(0))), text)


def _crictl_message(stderr: str) -> str:
    """The message of crictl's fatal log line (logrus or log.Fatalf)."""
    m = re.search(r'level=fatal msg="((?:[^"\\]|\\.)*)"', stderr)
    if m:
        return ast.literal_eval(f'"{m.group(1)}"')
    return re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", stderr.strip())


def test_output_matches_crictl(net_cribd: Cribd, tmp_path: Path) -> None:
    alpha, beta, gamma = _three_pods(net_cribd, tmp_path)
    # Old enough for "N seconds ago" on both sides, which keeps the CREATED column 20 wide.
    time.sleep(1.2)
    commands = [
        ["pods"],
        ["pods", "-v"],
        ["pods", "--no-trunc"],
        ["pods", "-o", "json"],
        ["pods", "-o", "yaml"],
        ["pods", "-q"],
        ["pods", "--name", "^(alpha|gamma)$", "-s", "ready"],
        ["pods", "--namespace", "team-a", "-v"],
        ["pods", "--label", "tier=web", "-o", "yaml"],
        ["pods", "-n", "2", "--no-trunc"],
        ["pods", "--name", "nothing"],
        ["inspectp", alpha],
        ["inspectp", "-o", "yaml", alpha],
        ["inspectp", alpha, gamma],
        ["inspectp", "-o", "yaml", beta, gamma],
        ["inspectp", "-q", beta],
        ["inspectp", "-o", "table", alpha, gamma],
        ["inspectp", "--namespace", "team-a"],
    ]
    mismatches = []
    for args in commands:
        ours = ok(cribctl(net_cribd, *args))
        theirs = crictl(net_cribd, *args)
        assert theirs.returncode == 0, theirs.stderr
        if _mask_created(ours) != _mask_created(theirs.stdout):
            mismatches.append(f"$ {' '.join(args)}\n--- crictl\n{theirs.stdout}--- cribctl\n{ours}")
    assert not mismatches, "\n".join(mismatches)

    # stopp is idempotent: both tools stop the same pod.
    assert ok(cribctl(net_cribd, "stopp", alpha)) == ok(crictl(net_cribd, "stopp", alpha))
    unknown = "0" * 64
    assert ok(cribctl(net_cribd, "stopp", unknown)) == ok(crictl(net_cribd, "stopp", unknown))
    # rmp: each tool removes one of two alike pods (stopped, then running with -f).
    assert ok(cribctl(net_cribd, "rmp", alpha)) == ok(crictl(net_cribd, "rmp", gamma)).replace(gamma, alpha)
    one, two = (runp(net_cribd, tmp_path, pod_doc(name)) for name in ("one", "two"))
    assert ok(cribctl(net_cribd, "rmp", "-f", one)) == ok(crictl(net_cribd, "rmp", "-f", two)).replace(
        two, one
    )
    assert ok(cribctl(net_cribd, "rmp", "-a", "-f")) == f"Stopped sandbox {beta}\nRemoved sandbox {beta}\n"
    assert ids(net_cribd) == []


def test_errors_match_crictl(net_cribd: Cribd, tmp_path: Path) -> None:
    pod_id = runp(net_cribd, tmp_path, pod_doc("errs"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "metadata: {name: a, namespace: b, uid: c}\nlabels: {a: [1]}\nDNS_Config: {servers: [x, [1]]}\n"
    )
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("metadata: {name: a, uid: c, attempt: 3}\n")
    unknown = "0" * 64
    cases = [
        ["runp", str(tmp_path / "absent.json")],
        ["runp", str(bad)],
        ["runp", str(nameless)],
        ["inspectp", unknown],
        ["rmp", unknown],
        ["rmp", pod_id],
        ["stopp", ""],
        ["pods", "-s", "bogus"],
        ["pods", "--label", "x"],
        ["pods", "-o", "xml"],
        ["inspectp", "--label", "x"],
    ]
    for args in cases:
        ours = cribctl(net_cribd, *args)
        theirs = crictl(net_cribd, *args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (1, ""), args
        assert ours.stderr.removeprefix("cribctl: ").rstrip("\n") == _crictl_message(theirs.stderr), args
    ok(cribctl(net_cribd, "rmp", "-f", pod_id))
    assert ids(net_cribd) == []
