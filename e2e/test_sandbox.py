"""Pod sandboxes over the real socket: netns, CNI plugins, the pause container under runc and conmon."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cleanup import processes_referencing
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.wait import alive, wait_until
from e2e.pods import (
    ECHO_CLIENT,
    echo_server,
    grpc_code,
    in_netns,
    list_pods,
    ns_inode,
    pod_config,
    pod_status,
    remove_pod,
    run_pod,
    stop_pod,
)


def _processes_under(path: Path) -> list[int]:
    return processes_referencing(path)


def test_a_pod_gets_a_netns_an_ip_and_a_pause_process(net_cribd: Cribd, pod_network: PodNetwork) -> None:
    config = pod_config("web")
    pod_id = run_pod(net_cribd, config)
    status, info = pod_status(net_cribd, pod_id)
    assert status.state == api_pb2.SANDBOX_READY
    assert status.metadata.name == "web" and status.labels["app"] == "web"
    assert status.runtime_handler == "runc"
    assert ipaddress.ip_address(status.network.ip) in ipaddress.ip_network(pod_network.subnet)
    assert pod_network.allocated_ips() == [status.network.ip]
    # The pause process: catatonit, in the pod's netns, with the pod's hostname.
    pid = info["pid"]

    # runc start returns once runc init has been released; its exec into catatonit follows a moment
    # later, and while the exec is under way the cmdline reads empty (the new mm has no args yet).
    def _exec_done() -> bool:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        return argv0 != b"" and not argv0.endswith(b"runc")

    wait_until(_exec_done, timeout=5, what="runc init to exec the pause process")
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"/catatonit"
    assert ns_inode(f"/proc/{pid}/ns/net") == ns_inode(info["netns"]) != ns_inode("/proc/self/ns/net")
    assert Path(f"/proc/{pid}/root/etc/hostname").read_text() == "web\n"
    hostname = subprocess.run(
        ["nsenter", f"--uts=/proc/{pid}/ns/uts", "hostname"], capture_output=True, text=True, timeout=10
    )
    assert hostname.stdout.strip() == "web"
    # lo is up without any loopback plugin.
    links = in_netns(info["netns"], "import socket; print(socket.if_nameindex())")
    assert "'lo'" in links.stdout and "'eth0'" in links.stdout

    assert [p.id for p in list_pods(net_cribd)] == [pod_id]
    for f, expected in (
        (api_pb2.PodSandboxFilter(id=pod_id[:10]), [pod_id]),
        (api_pb2.PodSandboxFilter(label_selector={"app": "web"}), [pod_id]),
        (api_pb2.PodSandboxFilter(label_selector={"app": "other"}), []),
        (api_pb2.PodSandboxFilter(state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)), []),
    ):
        assert [p.id for p in list_pods(net_cribd, f)] == expected

    stop_pod(net_cribd, pod_id)
    status, _ = pod_status(net_cribd, pod_id)
    assert status.state == api_pb2.SANDBOX_NOTREADY
    assert status.network.ip == ""  # released: it may already be another pod's
    assert not alive(pid)
    assert not Path(info["netns"]).exists()
    assert pod_network.allocated_ips() == []
    stop_pod(net_cribd, pod_id)  # idempotent
    remove_pod(net_cribd, pod_id)
    remove_pod(net_cribd, pod_id)  # idempotent
    code = grpc_code(
        lambda: net_cribd.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=5
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert list_pods(net_cribd) == []
    stop_pod(net_cribd, "0" * 64)  # unknown: success


def test_two_pods_reach_each_other_and_the_host_reaches_a_host_port(
    net_cribd: Cribd, pod_network: PodNetwork
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host_port = s.getsockname()[1]
    a = run_pod(
        net_cribd,
        pod_config("a", port_mappings=[api_pb2.PortMapping(container_port=8080, host_port=host_port)]),
    )
    b = run_pod(net_cribd, pod_config("b"))
    a_status, a_info = pod_status(net_cribd, a)
    b_status, b_info = pod_status(net_cribd, b)
    assert a_status.network.ip != b_status.network.ip

    server = echo_server(a_info["netns"], 8080, count=2)
    try:
        reply = in_netns(
            b_info["netns"], ECHO_CLIENT.format(host=a_status.network.ip, port=8080, payload="from-b")
        )
        assert reply.stdout.strip() == "echo:from-b", reply.stderr
        # The host reaches pod a through its host port on 127.0.0.1 (portmap DNAT).
        with socket.create_connection(("127.0.0.1", host_port), timeout=10) as c:
            c.sendall(b"from-host")
            assert c.recv(100) == b"echo:from-host"
    finally:
        server.kill()
        server.wait()
    assert any(
        str(host_port) in rule
        for rule in subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()
    )
    for pod in (a, b):
        stop_pod(net_cribd, pod)
        remove_pod(net_cribd, pod)
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30).stdout
    assert not [r for r in rules.splitlines() if f"--dport {host_port}" in r]
    assert pod_network.iptables_mentions() == []


def test_host_network_pod_sees_the_hosts_interfaces(cribd_factory: Callable[..., Cribd]) -> None:
    # No CNI config at all: host-network pods need none.
    daemon = cribd_factory().start()
    pod_id = run_pod(daemon, pod_config("hostnet", host_network=True))
    status, info = pod_status(daemon, pod_id)
    assert status.state == api_pb2.SANDBOX_READY
    assert info["netns"] == "" and status.network.ip == ""
    assert ns_inode(f"/proc/{info['pid']}/ns/net") == ns_inode("/proc/self/ns/net")
    assert status.linux.namespaces.options.network == api_pb2.NODE
    # A pod network pod is refused while the network is not ready.
    with pytest.raises(grpc.RpcError) as err:
        run_pod(daemon, pod_config("needs-cni"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cni config uninitialized" in err.value.details()
    remove_pod(daemon, pod_id)


def test_dns_config_and_sysctls_reach_the_pod(net_cribd: Cribd) -> None:
    dns = api_pb2.DNSConfig(
        servers=["10.96.0.10"], searches=["ns.svc.cluster.local", "cluster.local"], options=["ndots:5"]
    )
    pod_id = run_pod(
        net_cribd, pod_config("dns", dns=dns, sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    )
    _, info = pod_status(net_cribd, pod_id)
    resolv = Path(f"/proc/{info['pid']}/root/etc/resolv.conf").read_text()
    assert resolv == "search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    sysctl = in_netns(info["netns"], "print(open('/proc/sys/net/ipv4/ip_unprivileged_port_start').read())")
    assert sysctl.stdout.strip() == "0"
    remove_pod(net_cribd, pod_id)


def test_names_are_reserved_and_bad_requests_are_refused(net_cribd: Cribd) -> None:
    config = pod_config("same")
    first = run_pod(net_cribd, config)
    with pytest.raises(grpc.RpcError) as err:
        run_pod(net_cribd, config)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first in err.value.details()
    # A new attempt is another name.
    retry = api_pb2.PodSandboxConfig()
    retry.CopyFrom(config)
    retry.metadata.attempt = 1
    second = run_pod(net_cribd, retry)
    remove_pod(net_cribd, first)
    third = run_pod(net_cribd, config)  # the name is free again
    for bad, code in (
        (api_pb2.PodSandboxConfig(), grpc.StatusCode.INVALID_ARGUMENT),
        (pod_config("x/y"), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        assert grpc_code(lambda b=bad: run_pod(net_cribd, b)) == code
    assert (
        grpc_code(lambda: run_pod(net_cribd, pod_config("h"), handler="kata"))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert sorted(p.id for p in list_pods(net_cribd)) == sorted([second, third])
    for pod in (second, third):
        remove_pod(net_cribd, pod)


def test_crun_handler(net_cribd: Cribd) -> None:
    try:
        pod_id = run_pod(net_cribd, pod_config("crun"), handler="crun")
    except grpc.RpcError as exc:
        # crun 1.8's one known refusal of this host's hybrid layout (hugetlb on cgroup2); any
        # other error is crib's and fails the test.
        if "cgroups in hybrid mode not supported" in exc.details():
            pytest.skip(f"crun cannot run on this host's cgroup layout: {exc.details()[:200]}")
        raise
    status, _ = pod_status(net_cribd, pod_id)
    assert status.runtime_handler == "crun" and status.state == api_pb2.SANDBOX_READY
    remove_pod(net_cribd, pod_id)


FAIL_PLUGIN = """#!/bin/sh
# A CNI plugin that fails ADD (after bridge and host-local took an IP) and accepts DEL.
cat > /dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":999,"msg":"crib-e2e refuses","details":"on purpose"}'
  exit 1
fi
exit 0
"""


def test_a_failing_cni_plugin_leaves_nothing(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "cni-bin"
    bin_dir.mkdir()
    (bin_dir / "crib-e2e-fail").write_text(FAIL_PLUGIN)
    (bin_dir / "crib-e2e-fail").chmod(0o755)
    daemon = cribd_factory(
        f'[cni]\nconf_dir = "{tmp_path / "net.d"}"\nbin_dirs = ["/usr/lib/cni", "{bin_dir}"]\n'
    )
    pod_network.install(tmp_path / "net.d", extra_plugins=[{"type": "crib-e2e-fail"}])
    daemon.start()
    with pytest.raises(grpc.RpcError) as err:
        run_pod(daemon, pod_config("doomed"))
    assert "crib-e2e refuses" in err.value.details()
    assert list_pods(daemon) == []
    assert pod_network.allocated_ips() == []
    sandboxes = daemon.state / "sandboxes"
    assert not sandboxes.exists() or not list(sandboxes.iterdir())
    assert not [p for p in _processes_under(daemon.dir) if p != (daemon.proc.pid if daemon.proc else 0)]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(daemon.dir) not in mounts
    assert pod_network.iptables_mentions() == []
    # The name is not stuck: after fixing the network, the pod runs.
    pod_network.install(tmp_path / "net.d")
    pod_id = run_pod(daemon, pod_config("doomed"))
    remove_pod(daemon, pod_id)


def _machine(daemon: Cribd, net: PodNetwork) -> dict:
    """What pods of this test's cribd and network leave on the host (tests run in parallel)."""
    me = daemon.proc.pid if daemon.proc else 0
    ports = Path(f"/sys/class/net/{net.bridge}/brif")
    return {
        "mounts": sorted(
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(daemon.dir) in line
        ),
        "processes": sorted(p for p in _processes_under(daemon.dir) if p != me),
        "ipam": net.allocated_ips(),
        "iptables": net.iptables_mentions(),
        "bridge_ports": sorted(os.listdir(ports)) if ports.exists() else [],
    }


def test_sigkill_with_five_pods_then_recovery_and_clean_teardown(
    net_cribd: Cribd, pod_network: PodNetwork
) -> None:
    warm = run_pod(net_cribd, pod_config("warm"))  # the bridge and shared chains exist from here on
    remove_pod(net_cribd, warm)
    before = _machine(net_cribd, pod_network)
    pods = {run_pod(net_cribd, pod_config(f"p{i}")): None for i in range(5)}
    for pod_id in pods:
        pods[pod_id] = pod_status(net_cribd, pod_id)[0].network.ip
    assert net_cribd.stop(signal.SIGKILL) == -signal.SIGKILL
    net_cribd.start()
    listed = {p.id: p for p in list_pods(net_cribd)}
    assert set(listed) == set(pods)
    for pod_id, ip in pods.items():
        status, info = pod_status(net_cribd, pod_id)
        assert status.state == api_pb2.SANDBOX_READY and status.network.ip == ip
        assert alive(info["pid"])
    for pod_id in pods:
        stop_pod(net_cribd, pod_id)
        remove_pod(net_cribd, pod_id)
    assert _machine(net_cribd, pod_network) == before


def test_twenty_pods_in_a_loop_leave_the_machine_as_it_was(net_cribd: Cribd, pod_network: PodNetwork) -> None:
    warm = run_pod(net_cribd, pod_config("warm"))
    remove_pod(net_cribd, warm)
    before = _machine(net_cribd, pod_network)
    for i in range(20):
        pod_id = run_pod(net_cribd, pod_config(f"loop{i}"))
        stop_pod(net_cribd, pod_id)
        remove_pod(net_cribd, pod_id)
    assert _machine(net_cribd, pod_network) == before
    wait_until(lambda: not list(net_cribd.root.joinpath("containers").iterdir()))


def _holds(daemon: Cribd, path: str) -> bool:
    """Whether cribd has `path` open."""
    assert daemon.proc is not None
    for fd in Path(f"/proc/{daemon.proc.pid}/fd").iterdir():
        try:
            if os.readlink(fd) == path:
                return True
        except OSError:
            continue  # closed while listed
    return False


def _eth0_rx(daemon: Cribd) -> int:
    (item,) = daemon.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=10).stats
    assert item.linux.network.default_interface.name == "eth0"
    return item.linux.network.default_interface.rx_bytes.value


def test_pod_network_counters_follow_traffic_and_let_the_netns_go(
    net_cribd: Cribd, pod_network: PodNetwork
) -> None:
    # cribd keeps each ready pod's /proc/PID/net/dev open between stats calls (an open costs
    # twice the read). A kept one must still show new traffic, and must be closed when the pod
    # stops: it holds the pod's netns alive.
    pod_id = run_pod(net_cribd, pod_config("counted"))
    status, info = pod_status(net_cribd, pod_id)
    net_dev = f"/proc/{info['pid']}/net/dev"
    before = _eth0_rx(net_cribd)
    assert _holds(net_cribd, net_dev)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):  # to the discard port: the datagrams count on eth0 either way
            s.sendto(b"x" * 1000, (status.network.ip, 9))
    wait_until(lambda: _eth0_rx(net_cribd) >= before + 20 * 1000, timeout=10, what="eth0's rx_bytes to grow")
    stop_pod(net_cribd, pod_id)
    assert not _holds(net_cribd, net_dev)
    remove_pod(net_cribd, pod_id)


def test_a_pause_that_dies_makes_the_pod_not_ready(net_cribd: Cribd) -> None:
    pod_id = run_pod(net_cribd, pod_config("fragile"))
    _, info = pod_status(net_cribd, pod_id)
    net_dev = f"/proc/{info['pid']}/net/dev"
    _eth0_rx(net_cribd)
    assert _holds(net_cribd, net_dev)
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: pod_status(net_cribd, pod_id)[0].state == api_pb2.SANDBOX_NOTREADY)
    # Its netns is not held past the pause: the kept counters file went with it.
    assert not _holds(net_cribd, net_dev)
    remove_pod(net_cribd, pod_id)
    # An unexpected death is worth a warning (a StopPodSandbox's kill is not: test_churn).
    assert net_cribd.log_text().count('"event": "sandbox.pause_exited"') == 1


def test_a_pod_added_before_the_pod_cidr_came_is_stopped_after_it(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork
) -> None:
    """The kubelet sends the node's pod CIDR (UpdateRuntimeConfig) once it has one; pods that
    were running by then (kubeadm's CoreDNS) must still stop: DEL gets the ipRanges ADD had,
    not today's, or host-local sees two overlapping range sets and refuses."""
    daemon = cribd_factory()
    conf = pod_network.conflist()
    conf["plugins"][0]["capabilities"] = {"ipRanges": True}  # as deploy/cni's conflist has it
    daemon.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (daemon.cni_conf_dir / "10-crib-e2e.conflist").write_text(json.dumps(conf))
    daemon.start()
    pod_id = run_pod(daemon, pod_config("early"))
    cidr = api_pb2.NetworkConfig(pod_cidr=pod_network.subnet)
    daemon.runtime.UpdateRuntimeConfig(
        api_pb2.UpdateRuntimeConfigRequest(runtime_config=api_pb2.RuntimeConfig(network_config=cidr)),
        timeout=5,
    )
    stop_pod(daemon, pod_id)
    remove_pod(daemon, pod_id)
    assert list_pods(daemon) == []
    assert pod_network.allocated_ips() == []
    assert pod_network.iptables_mentions() == []
