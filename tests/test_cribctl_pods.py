"""cribctl's pod commands: tables and filters, and the commands against an in-process fake RuntimeService.

Expected values marked "Go" were produced by Go 1.27 with cri-tools 1.36's
vendored packages (go-units, sigs.k8s.io/yaml over go-yaml v2, encoding/json,
strconv, time) or by crictl 1.36 itself, and are pasted here: these tests need
no Go toolchain.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from crib.cribctl import main, sandbox_cmds
from crib.cribctl.client import CommandError
from crib.cribctl.output import protojson_text
from crib.cribctl.sandbox_cmds import (
    pod_filter,
    pod_status_table,
    pod_verbose,
    pods_table,
    select_pods,
    status_json,
)
from crib.proto.cri import api_pb2, api_pb2_grpc
from tests.cribctl_samples import FULL_CONFIG, FULL_YAML

ID_A = "d82b52a133b069c0134c03a4b2a3543ce741369c90b29ab4a28aecc82ba90315"
ID_B = "09db77a116fb118d46bc75ffaaf9cf5bef5a17a3d798929e04e202265855c47d"
ID_C = "c4ea4ad0bde5cb4dc1075c70853d6d563e3785295b0b8c2c701c83b3bf40abe4"
CREATED = 1795845934228241862  # 2026-11-28T06:05:34.228241862Z
JSON_ERR = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "


pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- listing and showing pods -----------------------------------------------------------------


def _pod(
    pod_id: str,
    name: str,
    created: int,
    *,
    namespace: str = "default",
    state: int = api_pb2.SANDBOX_READY,
    attempt: int = 0,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    handler: str = "runc",
) -> api_pb2.PodSandbox:
    return api_pb2.PodSandbox(
        id=pod_id,
        metadata=api_pb2.PodSandboxMetadata(
            name=name, namespace=namespace, uid=f"uid-{name}", attempt=attempt
        ),
        state=state,  # type: ignore[arg-type]
        created_at=created,
        labels=labels or {},
        annotations=annotations or {},
        runtime_handler=handler,
    )


PODS = [
    _pod(ID_A, "web", CREATED, labels={"app": "web"}, annotations={"a": "b"}),
    _pod(ID_B, "db", CREATED + 5 * 10**9, namespace="data", state=api_pb2.SANDBOX_NOTREADY, attempt=1),
    _pod(ID_C, "a-very-long-pod-name-indeed", CREATED - 3600 * 10**9, handler=""),
]


def test_select_pods_filters_by_regex_sorts_newest_first_and_cuts() -> None:
    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in select_pods(list(PODS), **kw)]

    assert names() == ["db", "web", "a-very-long-pod-name-indeed"]
    assert names(name="^(web|db)$") == ["db", "web"]
    assert names(name="e") == ["web", "a-very-long-pod-name-indeed"]  # unanchored
    assert names(namespace="^default$") == ["web", "a-very-long-pod-name-indeed"]
    assert names(name="(") == []  # a bad pattern matches nothing, as in crictl
    assert names(latest=True) == ["db"]
    assert names(last=2) == ["db", "web"] and names(last=9) == names() and names(last=-1) == names()
    assert names(latest=True, last=2) == ["db", "web"]  # --last wins
    assert select_pods([api_pb2.PodSandbox(id="no-metadata")]) == []


def test_pod_filter_is_what_goes_to_the_runtime() -> None:
    assert pod_filter() == api_pb2.PodSandboxFilter()
    assert pod_filter("d82b", "NotReady", {"app": "web"}) == api_pb2.PodSandboxFilter(
        id="d82b",
        state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY),
        label_selector={"app": "web"},
    )
    assert pod_filter(state="READY").state.state == api_pb2.SANDBOX_READY
    with pytest.raises(CommandError, match=r"^--state should be ready or notready$"):
        pod_filter(state="running")


# crictl 1.36's table for PODS at CREATED + 10 s (tabwriter 20/1/3).
PODS_TABLE = (
    "POD ID              CREATED             STATE               NAME                          NAMESPACE"
    "           ATTEMPT             RUNTIME\n"
    "09db77a116fb1       5 seconds ago       NotReady            db                            data"
    "                1                   runc\n"
    "d82b52a133b06       10 seconds ago      Ready               web                           default"
    "             0                   runc\n"
    "c4ea4ad0bde5c       About an hour ago   Ready               a-very-long-pod-name-indeed   default"
    "             0                   (default)\n"
)


def test_pods_table() -> None:
    pods = select_pods(list(PODS))
    assert pods_table(pods, CREATED + 10 * 10**9) == PODS_TABLE
    no_trunc = pods_table(pods[:1], CREATED + 10 * 10**9, no_trunc=True).splitlines()
    assert no_trunc[0].startswith("POD ID" + " " * 61 + "CREATED ")
    assert no_trunc[1].startswith(ID_B + "   5 seconds ago ")
    assert pods_table([], 0) == (
        "POD ID              CREATED             STATE               NAME                NAMESPACE"
        "           ATTEMPT             RUNTIME\n"
    )
    odd = _pod(ID_A, "x", CREATED, state=7)
    with pytest.raises(CommandError, match=r'^Unknown pod state "7"$'):
        pods_table([odd], CREATED)


def test_pod_verbose(local_zone: Callable[[str], None]) -> None:
    assert pod_verbose(PODS[0]) == (
        f"ID: {ID_A}\nName: web\nUID: uid-web\nNamespace: default\nStatus: Ready\n"
        "Created: 2026-11-28 06:05:34.228241862 +0000 UTC\nLabels:\n\tapp -> web\nAnnotations:\n\ta -> b\n"
        "Runtime: runc\n\n"
    )
    # Attempt only when not 0; labels and annotations only when there are some.
    assert pod_verbose(PODS[1]) == (
        f"ID: {ID_B}\nName: db\nUID: uid-db\nNamespace: data\nAttempt: 1\nStatus: NotReady\n"
        "Created: 2026-11-28 06:05:39.228241862 +0000 UTC\nRuntime: runc\n\n"
    )
    assert pod_verbose(PODS[2]).endswith("Runtime: (default)\n\n")


STATUS = api_pb2.PodSandboxStatus(
    id=ID_A,
    metadata=api_pb2.PodSandboxMetadata(name="p1", uid="u1", namespace="ns1"),
    state=api_pb2.SANDBOX_READY,
    created_at=CREATED,
    network=api_pb2.PodSandboxNetworkStatus(ip="10.100.213.2"),
    linux=api_pb2.LinuxPodSandboxStatus(
        namespaces=api_pb2.Namespace(options=api_pb2.NamespaceOption(network=api_pb2.POD))
    ),
    labels={"tier": "front", "app": "web"},
    annotations={"a": "b"},
    runtime_handler="runc",
)
INFO = {"info": '{"pid": 3085, "netns": "/run/netns/x", "ratio": 0.5}'}


def test_pod_status_table(local_zone: Callable[[str], None]) -> None:
    r = api_pb2.PodSandboxStatusResponse(status=STATUS, info=INFO)
    # crictl 1.36's text for the same status.
    assert pod_status_table(r, True) == (
        f"ID: {ID_A}\nName: p1\nUID: u1\nNamespace: ns1\nAttempt: 0\nStatus: SANDBOX_READY\n"
        "Created: 2026-11-28 06:05:34.228241862 +0000 UTC\nIP Addresses: 10.100.213.2\n"
        "Labels:\n\tapp -> web\n\ttier -> front\nAnnotations:\n\ta -> b\n"
        'Info: map[info:{"pid": 3085, "netns": "/run/netns/x", "ratio": 0.5}]\n'
    )
    bare = api_pb2.PodSandboxStatus(id="x", state=api_pb2.SANDBOX_NOTREADY, created_at=CREATED)
    bare.network.additional_ips.add(ip="fd00::2")
    assert pod_status_table(api_pb2.PodSandboxStatusResponse(status=bare), False) == (
        "ID: x\nStatus: SANDBOX_NOTREADY\nCreated: 2026-11-28 06:05:34.228241862 +0000 UTC\n"
        "IP Addresses: \nAdditional IP: fd00::2\n"
    )


def test_status_json_has_local_rfc3339_and_nulls_for_unset_messages(
    local_zone: Callable[[str], None],
) -> None:
    doc = status_json(STATUS)
    assert doc["createdAt"] == "2026-11-28T06:05:34.228241862Z"
    assert doc["network"] == {"additionalIps": [], "ip": "10.100.213.2"}
    bare = status_json(api_pb2.PodSandboxStatus(id="x", created_at=CREATED))
    assert (bare["network"], bare["linux"], bare["metadata"]) == (None, None, None)
    local_zone("Asia/Kolkata")
    assert status_json(STATUS)["createdAt"] == "2026-11-28T11:35:34.228241862+05:30"


def test_protojson_text_keeps_field_order_and_sorts_maps() -> None:
    text = protojson_text(api_pb2.ListPodSandboxResponse(items=[PODS[0]]))
    # crictl 1.36 (protojson, EmitDefaultValues, two-space indent).
    assert text == (
        '{\n  "items": [\n    {\n      "id": "' + ID_A + '",\n      "metadata": {\n        "name": "web",\n'
        '        "uid": "uid-web",\n        "namespace": "default",\n        "attempt": 0\n      },\n'
        '      "state": "SANDBOX_READY",\n      "createdAt": "1795845934228241862",\n      "labels": {\n'
        '        "app": "web"\n      },\n      "annotations": {\n        "a": "b"\n      },\n'
        '      "runtimeHandler": "runc"\n    }\n  ]\n}'
    )
    assert protojson_text(api_pb2.ListPodSandboxResponse()) == '{\n  "items": []\n}'


# --- the commands against a fake runtime -------------------------------------------------------------


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    """Enough of a RuntimeService: pods in memory, ID prefixes, crib's answers for unknown pods."""

    def __init__(self) -> None:
        self.pods: dict[str, api_pb2.PodSandbox] = {}
        self.calls: list[tuple[str, Any, float | None]] = []
        self.version_delay = 0.0
        self.run_error: tuple[grpc.StatusCode, str] | None = None
        self.stop_error: tuple[grpc.StatusCode, str] | None = None
        self.empty_status = False
        self.remove_delay = 0.0
        self.removing = self.most_removing = 0
        self.lock = threading.Lock()
        self.counter = 0

    def _record(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((name, request, context.time_remaining()))

    def _find(self, pod_id: str, context: grpc.ServicerContext) -> api_pb2.PodSandbox | None:
        matches = [p for i, p in self.pods.items() if i.startswith(pod_id)] if pod_id else []
        return matches[0] if len(matches) == 1 else None

    def Version(self, request: api_pb2.VersionRequest, context: grpc.ServicerContext) -> Any:
        self._record("Version", request, context)
        time.sleep(self.version_delay)
        return api_pb2.VersionResponse(version="0.1.0", runtime_name="fake", runtime_api_version="v1")

    def RunPodSandbox(self, request: api_pb2.RunPodSandboxRequest, context: grpc.ServicerContext) -> Any:
        self._record("RunPodSandbox", request, context)
        if self.run_error:
            context.abort(*self.run_error)
        with self.lock:
            self.counter += 1
            pod_id = f"{self.counter:02d}" + "ab" * 31
        c = request.config
        self.pods[pod_id] = api_pb2.PodSandbox(
            id=pod_id,
            metadata=c.metadata,
            state=api_pb2.SANDBOX_READY,
            created_at=CREATED + self.counter,
            labels=c.labels,
            annotations=c.annotations,
            runtime_handler=request.runtime_handler or "runc",
        )
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id="" if c.hostname == "no-id" else pod_id)

    def StopPodSandbox(self, request: api_pb2.StopPodSandboxRequest, context: grpc.ServicerContext) -> Any:
        self._record("StopPodSandbox", request, context)
        if self.stop_error:
            context.abort(*self.stop_error)
        pod = self._find(request.pod_sandbox_id, context)
        if pod is not None:
            pod.state = api_pb2.SANDBOX_NOTREADY
        return api_pb2.StopPodSandboxResponse()  # unknown pods: success, as crib answers

    def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: grpc.ServicerContext
    ) -> Any:
        self._record("RemovePodSandbox", request, context)
        with self.lock:
            self.removing += 1
            self.most_removing = max(self.most_removing, self.removing)
        time.sleep(self.remove_delay)
        with self.lock:
            self.removing -= 1
        pod = self._find(request.pod_sandbox_id, context)
        if pod is not None:
            del self.pods[pod.id]
        return api_pb2.RemovePodSandboxResponse()

    def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: grpc.ServicerContext
    ) -> Any:
        self._record("PodSandboxStatus", request, context)
        if not request.pod_sandbox_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PodSandboxStatus: pod_sandbox_id is empty")
        pod = self._find(request.pod_sandbox_id, context)
        if pod is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"pod sandbox '{request.pod_sandbox_id}' not found")
        if self.empty_status:
            return api_pb2.PodSandboxStatusResponse(status=api_pb2.PodSandboxStatus(id=pod.id))
        status = api_pb2.PodSandboxStatus(
            id=pod.id,
            metadata=pod.metadata,
            state=pod.state,
            created_at=pod.created_at,
            network=api_pb2.PodSandboxNetworkStatus(ip="10.0.0.2"),
            labels=pod.labels,
            annotations=pod.annotations,
            runtime_handler=pod.runtime_handler,
        )
        info = {"info": json.dumps({"pid": 42})} if request.verbose else {}
        return api_pb2.PodSandboxStatusResponse(status=status, info=info)

    def ListPodSandbox(self, request: api_pb2.ListPodSandboxRequest, context: grpc.ServicerContext) -> Any:
        self._record("ListPodSandbox", request, context)
        f = request.filter
        items = [
            p
            for p in self.pods.values()
            if p.id.startswith(f.id)
            and (not f.HasField("state") or p.state == f.state.state)
            and all(p.labels.get(k) == v for k, v in f.label_selector.items())
        ]
        return api_pb2.ListPodSandboxResponse(items=items)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRuntime, str]]:
    servicer = FakeRuntime()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    socket = f"unix://{tmp_path}/fake.sock"
    server.add_insecure_port(socket)
    server.start()
    yield servicer, socket
    server.stop(None)


def _run(capsys: pytest.CaptureFixture[str], socket: str, *argv: str) -> tuple[int, str, str]:
    code = main.main(["-r", socket, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _parse(*argv: str) -> argparse.Namespace:
    return main.parser().parse_args(list(argv))


def test_argument_parsing() -> None:
    args = _parse("runp", "-r", "crun", "-T", "30s", "pod.json")
    assert (args.runtime, args.cancel_timeout, args.pod_config) == ("crun", ("30s", "T"), ["pod.json"])
    assert main.COMMANDS["runp"] is sandbox_cmds.cmd_runp
    args = _parse("pods", "--id", "ab", "--name", "w", "--namespace", "n", "-s", "ready", "--label",
                  "a=1,b=2", "--label", "c=3", "-qv", "-o", "json", "-l", "--last", "3", "--no-trunc",
                  "ignored")  # fmt: skip
    assert (args.id, args.name, args.namespace, args.state, args.label) == (
        "ab",
        "w",
        "n",
        "ready",
        ["a=1", "b=2", "c=3"],
    )
    assert (args.quiet, args.verbose, args.output, args.latest, args.last, args.no_trunc) == (
        True, True, "json", True, ("3", "last"), True
    )  # fmt: skip
    assert _parse("pods").output == "table"
    args = _parse("inspectp", "-o", "yaml", "-q", "a", "b")
    assert (args.output, args.quiet, args.ids) == ("yaml", True, ["a", "b"])
    assert _parse("inspectp", "-n", "2").last == ("2", "n")
    args = _parse("rmp", "-af", "x")
    assert (args.all, args.force, args.ids) == (True, True, ["x"])
    assert _parse("stopp", "a", "b").ids == ["a", "b"]


def test_runp_reads_the_config_and_doubles_the_timeout(
    fake: tuple[FakeRuntime, str], capsys: Any, tmp_path: Path
) -> None:
    servicer, socket = fake
    path = tmp_path / "pod.yaml"
    path.write_text(FULL_YAML)
    code, out, err = _run(capsys, socket, "--timeout", "3s", "runp", "-r", "crun", str(path))
    assert (code, err) == (0, "")
    pod_id = out.strip()
    assert servicer.pods[pod_id].runtime_handler == "crun"
    (run,) = [c for c in servicer.calls if c[0] == "RunPodSandbox"]
    assert run[1].config == FULL_CONFIG and run[1].runtime_handler == "crun"
    assert 3.0 < run[2] <= 6.1  # the CRI client's 2 x timeout for sandbox operations
    # --cancel-timeout replaces the connection timeout, so RunPodSandbox gets twice it.
    (path := tmp_path / "other.json").write_text('{"metadata": {"name": "b", "namespace": "n"}, "linux": {}}')
    code, _, err = _run(capsys, socket, "runp", "--cancel-timeout", "20s", str(path))
    assert code == 0
    assert err == "cribctl: cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver\n"
    assert 20.0 < servicer.calls[-1][2] <= 40.1


def test_runp_errors(fake: tuple[FakeRuntime, str], capsys: Any, tmp_path: Path) -> None:
    servicer, socket = fake
    path = tmp_path / "pod.yaml"
    path.write_text("metadata: {name: a, namespace: b, uid: c}\nhostname: [1]\n")
    assert _run(capsys, socket, "runp", str(path))[2] == (
        f"cribctl: load podSandboxConfig: {JSON_ERR}array into Go struct field "
        "PodSandboxConfig.hostname of type string\n"
    )
    assert _run(capsys, socket, "runp", str(tmp_path / "nope.yaml"))[2] == (
        f"cribctl: load podSandboxConfig: config at {tmp_path}/nope.yaml not found\n"
    )
    path.write_text("metadata: {name: a, namespace: b, uid: c}\n")
    servicer.run_error = (grpc.StatusCode.ALREADY_EXISTS, "pod sandbox name 'a_b_c_0' is reserved")
    assert _run(capsys, socket, "runp", str(path))[2] == (
        "cribctl: run pod sandbox: rpc error: code = AlreadyExists desc = "
        "pod sandbox name 'a_b_c_0' is reserved\n"
    )
    servicer.run_error = None
    path.write_text("metadata: {name: a, namespace: b, uid: c}\nhostname: no-id\n")
    assert _run(capsys, socket, "runp", str(path))[2] == (
        "cribctl: run pod sandbox: PodSandboxId is not set for sandbox "
        '"name:\\"a\\" uid:\\"c\\" namespace:\\"b\\""\n'
    )
    assert _run(capsys, socket, "runp", "-T", "30", str(path))[2] == (
        'cribctl: invalid value "30" for flag -T: parse error\n'
    )
    code, out, _ = _run(capsys, socket, "runp")
    assert code == 0 and out.startswith("NAME:\n   cribctl runp - ")
    assert "cribctl does not print" in _run(capsys, socket, "runp", "jsonschema")[2]


def test_every_command_checks_the_endpoint_first(
    fake: tuple[FakeRuntime, str], capsys: Any, tmp_path: Path
) -> None:
    servicer, socket = fake
    servicer.version_delay = 0.5
    expected = (
        "cribctl: validate service connection: validate CRI v1 runtime API for endpoint "
        f"{json.dumps(socket)}: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"
    )
    for argv in (
        ["pods"],
        ["inspectp", "x"],
        ["stopp", "x"],
        ["rmp", "x"],
        ["runp", "-T", "100ms", "x.yaml"],
    ):
        assert _run(capsys, socket, "--timeout", "100ms", *argv) == (1, "", expected), argv
    # A negative --cancel-timeout is a context that is over already.
    assert _run(capsys, socket, "runp", "-T=-1s", "x.yaml")[2] == expected
    dead = f"unix://{tmp_path}/nothing.sock"
    code, _, err = _run(capsys, dead, "pods")
    assert code == 1 and err.startswith(
        f'cribctl: validate service connection: validate CRI v1 runtime API for endpoint "{dead}": '
        "rpc error: code = Unavailable desc = "
    )


def _seed(servicer: FakeRuntime) -> None:
    for pod in PODS:
        servicer.pods[pod.id] = api_pb2.PodSandbox()
        servicer.pods[pod.id].CopyFrom(pod)


def test_pods_filters_and_formats(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    servicer, socket = fake
    _seed(servicer)
    assert _run(capsys, socket, "pods", "-q") == (0, f"{ID_B}\n{ID_A}\n{ID_C}\n", "")
    out = _run(capsys, socket, "pods")[1]
    assert out.splitlines()[0].split() == [
        "POD",
        "ID",
        "CREATED",
        "STATE",
        "NAME",
        "NAMESPACE",
        "ATTEMPT",
        "RUNTIME",
    ]
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ID_B[:13], ID_A[:13], ID_C[:13]]
    # --id, --state and --label go to the runtime; --name and --namespace are crictl's regexes.
    assert _run(capsys, socket, "pods", "-q", "--id", ID_A[:6])[1] == f"{ID_A}\n"
    request = servicer.calls[-1][1]
    assert request.filter == api_pb2.PodSandboxFilter(id=ID_A[:6])
    assert _run(capsys, socket, "pods", "-q", "-s", "NotReady")[1] == f"{ID_B}\n"
    assert _run(capsys, socket, "pods", "-q", "--label", "app=web")[1] == f"{ID_A}\n"
    assert servicer.calls[-1][1].filter.label_selector == {"app": "web"}
    assert _run(capsys, socket, "pods", "-q", "--name", "^d")[1] == f"{ID_B}\n"
    assert _run(capsys, socket, "pods", "-q", "--namespace", "def")[1] == f"{ID_A}\n{ID_C}\n"
    assert _run(capsys, socket, "pods", "-q", "-l")[1] == f"{ID_B}\n"
    assert _run(capsys, socket, "pods", "-q", "-n", "0x2")[1] == f"{ID_B}\n{ID_A}\n"
    assert ID_A in _run(capsys, socket, "pods", "--no-trunc")[1]
    assert _run(capsys, socket, "pods", "-v", "--name", "web")[1] == pod_verbose(PODS[0])
    doc = json.loads(_run(capsys, socket, "pods", "-o", "json", "--name", "web")[1])
    assert doc == json.loads(protojson_text(api_pb2.ListPodSandboxResponse(items=[PODS[0]])))
    assert _run(capsys, socket, "pods", "-o", "yaml", "--name", "nothing") == (0, "items: []\n\n", "")
    assert _run(capsys, socket, "pods", "-o", "yaml", "--name", "web")[1].startswith(
        'items:\n- annotations:\n    a: b\n  createdAt: "1795845934228241862"\n'
    )


def test_pods_errors(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    _, socket = fake
    assert _run(capsys, socket, "pods", "-s", "up") == (
        1,
        "",
        "cribctl: --state should be ready or notready\n",
    )
    assert _run(capsys, socket, "pods", "--label", "x")[2] == "cribctl: incorrectly specified label: x\n"
    assert _run(capsys, socket, "pods", "-o", "xml")[2] == (
        'cribctl: listing pod sandboxes: unsupported output format "xml"\n'
    )
    assert (
        _run(capsys, socket, "pods", "--last", "x")[2]
        == 'cribctl: invalid value "x" for flag -last: parse error\n'
    )
    assert _run(capsys, socket, "pods", "-n", "99999999999999999999")[2] == (
        'cribctl: invalid value "99999999999999999999" for flag -n: value out of range\n'
    )


def test_inspectp(fake: tuple[FakeRuntime, str], capsys: Any, local_zone: Callable[[str], None]) -> None:
    servicer, socket = fake
    _seed(servicer)
    doc = json.loads(_run(capsys, socket, "inspectp", ID_A[:8])[1])
    assert doc["info"] == {"pid": 42}
    assert doc["status"]["createdAt"] == "2026-11-28T06:05:34.228241862Z"
    assert doc["status"]["linux"] is None and doc["status"]["metadata"]["name"] == "web"
    assert "info" not in json.loads(_run(capsys, socket, "inspectp", "-q", ID_A)[1])
    assert len(json.loads(_run(capsys, socket, "inspectp", ID_A, ID_B)[1])) == 2  # several: a list
    out = _run(capsys, socket, "inspectp", "-o", "yaml", ID_A)[1]
    assert out.startswith("info:\n  pid: 42\nstatus:\n  annotations:\n    a: b\n  createdAt:")
    assert _run(capsys, socket, "inspectp", "-o", "table", "-q", ID_A, ID_B)[1] == "".join(
        pod_status_table(
            api_pb2.PodSandboxStatusResponse(
                status=api_pb2.PodSandboxStatus(
                    id=p.id, metadata=p.metadata, state=p.state, created_at=p.created_at,
                    network=api_pb2.PodSandboxNetworkStatus(ip="10.0.0.2"), labels=p.labels,
                    annotations=p.annotations, runtime_handler=p.runtime_handler,
                )
            ),
            False,
        )
        for p in PODS[:2]
    )  # fmt: skip
    # Without IDs, crictl's list filters pick the pods.
    doc = json.loads(_run(capsys, socket, "inspectp", "--name", "^(web|db)$")[1])
    assert [d["status"]["id"] for d in doc] == [ID_B, ID_A]
    assert json.loads(_run(capsys, socket, "inspectp", "-s", "notready")[1])["status"]["id"] == ID_B
    assert json.loads(_run(capsys, socket, "inspectp", "--label", "app=web")[1])["status"]["id"] == ID_A
    assert json.loads(_run(capsys, socket, "inspectp", "-l")[1])["status"]["id"] == ID_B
    code, out, err = _run(capsys, socket, "inspectp", "--name", "nothing")
    assert code == 0 and out.startswith("NAME:\n   cribctl inspectp - ")
    assert err == "cribctl: No IDs provided or nothing found per filter\n"


def test_inspectp_errors(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    servicer, socket = fake
    _seed(servicer)
    code, out, err = _run(capsys, socket, "inspectp", "-o", "table", ID_A, "nope")
    assert code == 1 and out.startswith(f"ID: {ID_A}\n")  # printed before the failure
    assert err == (
        "cribctl: get the status of pod sandboxes: get pod sandbox status: "
        "rpc error: code = NotFound desc = pod sandbox 'nope' not found\n"
    )
    assert _run(capsys, socket, "inspectp", "-o", "xml", ID_A)[2] == (
        'cribctl: get the status of pod sandboxes: unsupported format: "xml"\n'
    )
    assert _run(capsys, socket, "inspectp", "-o", "go-template", "--template", "{{.status.id}}", ID_A)[1] == (
        f"{ID_A}\n"
    )
    assert _run(capsys, socket, "inspectp", "--label", "x")[2] == (
        "cribctl: parse label string slice: incorrectly specified label: x\n"
    )
    # The CRI client refuses a status without the fields it needs.
    servicer.empty_status = True
    assert _run(capsys, socket, "inspectp", ID_A)[2] == (
        "cribctl: get the status of pod sandboxes: get pod sandbox status: status.Metadata is not set\n"
    )


def test_stopp(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    servicer, socket = fake
    _seed(servicer)
    unknown = "0" * 64
    # crib answers success for unknown pods, and crictl prints what it asked for.
    assert _run(capsys, socket, "stopp", ID_A, unknown) == (
        0,
        f"Stopped sandbox {ID_A}\nStopped sandbox {unknown}\n",
        "",
    )
    assert servicer.pods[ID_A].state == api_pb2.SANDBOX_NOTREADY
    assert _run(capsys, socket, "stopp", ID_B, "") == (
        1,
        f"Stopped sandbox {ID_B}\n",
        'cribctl: stopping the pod sandbox "": ID cannot be empty\n',
    )
    servicer.stop_error = (grpc.StatusCode.INTERNAL, "boom")
    assert _run(capsys, socket, "stopp", ID_C, ID_A) == (
        1,
        "",
        f'cribctl: stopping the pod sandbox "{ID_C}": rpc error: code = Internal desc = boom\n',
    )
    code, out, _ = _run(capsys, socket, "stopp")
    assert code == 0 and out.startswith("NAME:\n   cribctl stopp - ")


def test_rmp(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    servicer, socket = fake
    _seed(servicer)
    # A ready pod needs --force; a not-ready one goes; errors are joined.
    code, out, err = _run(capsys, socket, "rmp", ID_A, ID_B, "nope")
    assert code == 1 and out == f"Removed sandbox {ID_B}\n"
    assert err == (
        f'cribctl: pod sandbox "{ID_A}" is running, please stop it first\n'
        'getting sandbox status of pod "nope": '
        "rpc error: code = NotFound desc = pod sandbox 'nope' not found\n"
    )
    assert _run(capsys, socket, "rmp", "-f", ID_A) == (
        0,
        f"Stopped sandbox {ID_A}\nRemoved sandbox {ID_A}\n",
        "",
    )
    assert list(servicer.pods) == [ID_C]
    _seed(servicer)
    code, out, err = _run(capsys, socket, "rmp", "-a", "-f", "ignored-when-all")
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == sorted(
        [f"Stopped sandbox {i}" for i in (ID_A, ID_C)] + [f"Removed sandbox {i}" for i in (ID_A, ID_B, ID_C)]
    )
    assert servicer.pods == {}
    assert _run(capsys, socket, "rmp", "-a") == (0, "", "cribctl: No pods to remove\n")
    code, out, _ = _run(capsys, socket, "rmp")
    assert code == 0 and out.startswith("NAME:\n   cribctl rmp - ")
    _seed(servicer)
    servicer.stop_error = (grpc.StatusCode.INTERNAL, "boom")
    assert _run(capsys, socket, "rmp", "-f", ID_A)[2] == (
        f'cribctl: stopping the pod sandbox "{ID_A}" failed: rpc error: code = Internal desc = boom\n'
    )


def test_rmp_works_on_pods_concurrently(fake: tuple[FakeRuntime, str], capsys: Any) -> None:
    servicer, socket = fake
    for i in range(12):
        pod = _pod(f"{i:02d}" + "cd" * 31, f"p{i}", CREATED + i, state=api_pb2.SANDBOX_NOTREADY)
        servicer.pods[pod.id] = pod
    servicer.remove_delay = 0.2
    code, out, _ = _run(capsys, socket, "rmp", "-a")
    assert code == 0 and len(out.splitlines()) == 12 and servicer.pods == {}
    assert servicer.most_removing > 1
