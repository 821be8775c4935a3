"""The OCI specs crib gives runc, built without a daemon: containers (container_spec) and the
pause container (pause_spec), as containerd tests beside container_create_linux.go."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from crib.container import container_spec
from crib.container.container_spec import PodContext
from crib.cri_server.container import effective_stop_signal
from crib.errors import InvalidArgument
from crib.image_service.image_store import ImageRecord
from crib.proto.cri import api_pb2
from crib.runtime import oci_spec
from crib.sandbox import pause_spec
from crib.sandbox.pause_spec import PauseContext

POD_ID = "p" * 64
CID = "c" * 64


def _image(**config: Any) -> ImageRecord:
    return ImageRecord(
        id="sha256:" + "1" * 64, repo_tags=["example.com/app:1"], repo_digests=[], manifest_digest="",
        layers=[], blobs=[], size=0, config={"config": config},
    )  # fmt: skip


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:web:/var/www:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nweb:x:33:\nextra:x:1234:web\n")
    return root


def _pod(
    tmp_path: Path, host_network: bool = False, privileged: bool = False, parent: str = ""
) -> PodContext:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p", namespace="ns", uid="u"))
    config.linux.security_context.privileged = privileged
    if host_network:
        config.linux.security_context.namespace_options.network = api_pb2.NODE
    config.linux.cgroup_parent = parent
    return PodContext(
        sandbox_id=POD_ID, pause_pid=4242, netns="" if host_network else "/run/netns/p", config=config,
        hostname="p", files_dir=tmp_path / "files", shm=tmp_path / "shm", cgroup_parent=parent,
    )  # fmt: skip


def _config(**kw: Any) -> api_pb2.ContainerConfig:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="c"), **kw)
    config.image.image = "example.com/app:1"
    return config


def _build(tmp_path: Path, rootfs: Path, config: api_pb2.ContainerConfig, image: ImageRecord | None = None,
           **pod: Any) -> dict[str, Any]:  # fmt: skip
    built = container_spec.build(
        CID, config, image or _image(Cmd=["/bin/sh"]), _pod(tmp_path, **pod), rootfs, False
    )
    return built.spec


def test_command_args_and_env_override_the_image_as_docker_does(tmp_path: Path, rootfs: Path) -> None:
    image = _image(Entrypoint=["/entry"], Cmd=["default"], Env=["PATH=/bin", "A=image"])
    spec = _build(tmp_path, rootfs, _config(args=["given"]), image)
    assert spec["process"]["args"] == ["/entry", "given"]
    spec = _build(tmp_path, rootfs, _config(command=["/other"]), image)
    assert spec["process"]["args"] == ["/other"]
    config = _config(envs=[api_pb2.KeyValue(key="A", value=b"pod"), api_pb2.KeyValue(key="B", value=b"b")])
    env = _build(tmp_path, rootfs, config, image)["process"]["env"]
    assert env == ["HOSTNAME=p", "PATH=/bin", "A=pod", "B=b"]
    with pytest.raises(InvalidArgument, match="no command"):
        _build(tmp_path, rootfs, _config(), _image())
    with pytest.raises(InvalidArgument, match="environment variable name"):
        _build(tmp_path, rootfs, _config(envs=[api_pb2.KeyValue(key="A=B", value=b"")]))


def test_users_groups_and_the_working_dir(tmp_path: Path, rootfs: Path) -> None:
    config = _config(working_dir="/srv/app")
    config.linux.security_context.run_as_username = "web"
    config.linux.security_context.supplemental_groups.append(4000)
    spec = _build(tmp_path, rootfs, config)
    assert spec["process"]["user"] == {"uid": 33, "gid": 33, "additionalGids": [33, 1234, 4000]}
    assert spec["process"]["cwd"] == "/srv/app" and (rootfs / "srv" / "app").is_dir()
    with pytest.raises(InvalidArgument, match="not absolute"):
        _build(tmp_path, rootfs, _config(working_dir="relative"))


def test_capabilities_add_drop_and_privileged(tmp_path: Path, rootfs: Path) -> None:
    config = _config()
    config.linux.security_context.capabilities.drop_capabilities.append("ALL")
    config.linux.security_context.capabilities.add_capabilities.extend(["NET_ADMIN", "chown"])
    caps = _build(tmp_path, rootfs, config)["process"]["capabilities"]
    assert caps["bounding"] == ["CAP_NET_ADMIN", "CAP_CHOWN"] == caps["effective"]
    default = _build(tmp_path, rootfs, _config())["process"]["capabilities"]["bounding"]
    assert default == list(oci_spec.DEFAULT_CAPABILITIES)
    bad = _config()
    bad.linux.security_context.capabilities.add_capabilities.append("NOT_A_CAP")
    with pytest.raises(InvalidArgument, match="unknown capability"):
        _build(tmp_path, rootfs, bad)
    priv = _config()
    priv.linux.security_context.privileged = True
    with pytest.raises(InvalidArgument, match="privileged pod"):
        _build(tmp_path, rootfs, priv)
    spec = _build(tmp_path, rootfs, priv, privileged=True)
    assert spec["process"]["capabilities"]["bounding"] == oci_spec.available_capabilities()
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []
    assert "seccomp" not in spec["linux"]


def test_namespaces_follow_the_pod(tmp_path: Path, rootfs: Path) -> None:
    # The kubelet asks for a PID namespace of the container's own unless the pod shares one.
    own = _config()
    own.linux.security_context.namespace_options.pid = api_pb2.CONTAINER
    spec = _build(tmp_path, rootfs, own)
    assert spec["linux"]["namespaces"] == [
        {"type": "mount"},
        {"type": "network", "path": "/run/netns/p"},
        {"type": "uts", "path": "/proc/4242/ns/uts"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "pid"},
    ]
    assert spec["hostname"] == "p"
    shared = _config()
    shared.linux.security_context.namespace_options.pid = api_pb2.POD
    host = _build(tmp_path, rootfs, shared, host_network=True)
    assert {"type": "pid", "path": "/proc/4242/ns/pid"} in host["linux"]["namespaces"]
    assert not any(ns["type"] in ("network", "uts") for ns in host["linux"]["namespaces"])
    assert "hostname" not in host
    target = _config()
    target.linux.security_context.namespace_options.pid = api_pb2.TARGET
    with pytest.raises(InvalidArgument, match="not running"):
        _build(tmp_path, rootfs, target)


def test_mounts_masks_seccomp_cgroups_and_resources(tmp_path: Path, rootfs: Path) -> None:
    config = _config()
    config.mounts.append(api_pb2.Mount(container_path="/data", host_path=str(tmp_path), readonly=True))
    config.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    config.linux.security_context.readonly_rootfs = True
    res = config.linux.resources
    res.cpu_shares, res.cpu_quota, res.cpu_period, res.memory_limit_in_bytes = 512, 50_000, 100_000, 64 << 20
    spec = _build(tmp_path, rootfs, config, parent="/kubepods/burstable/podu")
    data = next(m for m in spec["mounts"] if m["destination"] == "/data")
    assert data["source"] == str(tmp_path) and "ro" in data["options"] and "rbind" in data["options"]
    # The pod's files and /dev/shm.
    assert {m["destination"] for m in spec["mounts"]} >= {
        "/etc/resolv.conf",
        "/etc/hosts",
        "/dev/shm",
        "/proc",
    }
    assert spec["root"] == {"path": str(rootfs), "readonly": True}
    assert spec["linux"]["maskedPaths"] == oci_spec.MASKED_PATHS
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec["linux"]["cgroupsPath"] == f"/kubepods/burstable/podu/{CID}"
    assert spec["linux"]["resources"]["cpu"] == {"shares": 512, "quota": 50_000, "period": 100_000}
    assert spec["linux"]["resources"]["memory"]["limit"] == 64 << 20
    # Nothing but what is allowed: the device cgroup denies by default.
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    unconfined = _config()
    unconfined.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.Unconfined
    assert "seccomp" not in _build(tmp_path, rootfs, unconfined)["linux"]


def test_stop_signal_from_the_config_then_the_image() -> None:
    assert container_spec.stop_signal(_config(stop_signal=api_pb2.SIGKILL), {}) == signal.SIGKILL
    assert container_spec.stop_signal(_config(), {"StopSignal": "SIGQUIT"}) == signal.SIGQUIT
    assert container_spec.stop_signal(_config(), {"StopSignal": "int"}) == signal.SIGINT
    assert container_spec.stop_signal(_config(), {}) == signal.SIGTERM
    with pytest.raises(InvalidArgument, match="not a signal"):
        container_spec.stop_signal(_config(), {"StopSignal": "SIGNOPE"})


def test_real_time_stop_signals_as_images_and_the_cri_spell_them() -> None:
    # systemd images (kind's node image among them) say STOPSIGNAL SIGRTMIN+3.
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    for text in ("SIGRTMIN+3", "RTMIN+3", "sigrtmin+3"):
        assert container_spec.stop_signal(_config(), {"StopSignal": text}) == rtmin + 3, text
    assert container_spec.stop_signal(_config(), {"StopSignal": "SIGRTMAX-2"}) == rtmax - 2
    assert container_spec.stop_signal(_config(), {"StopSignal": "SIGRTMIN"}) == rtmin
    assert container_spec.stop_signal(_config(stop_signal=api_pb2.SIGRTMINPLUS3), {}) == rtmin + 3
    assert container_spec.stop_signal(_config(stop_signal=api_pb2.SIGRTMAXMINUS1), {}) == rtmax - 1
    for text in ("SIGRTMIN+99", "SIGRTMAX+1", "SIGRTMIN-1", "SIG_DFL", "RTMIN+"):
        with pytest.raises(InvalidArgument, match="not a signal"):
            container_spec.stop_signal(_config(), {"StopSignal": text})


def test_a_stop_signal_no_signal_names_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: Signal.Name raised ValueError, which became INTERNAL.
    with pytest.raises(InvalidArgument, match="stop_signal -2147483648"):
        container_spec.stop_signal(_config(stop_signal=-(2**31)), {})


def _pause(tmp_path: Path, **security: Any) -> dict[str, Any]:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p", namespace="ns", uid="u"))
    config.linux.sysctls["net.ipv4.ip_forward"] = "1"
    config.linux.cgroup_parent = "/kubepods/besteffort/podu"
    for key, value in security.items():
        if key == "host_network":
            config.linux.security_context.namespace_options.network = api_pb2.NODE
        else:
            setattr(config.linux.security_context, key, value)
    pod = PauseContext(
        sandbox_id=POD_ID, config=config, netns="/run/netns/p", files_dir=tmp_path / "files",
        shm=tmp_path / "shm", rootfs=tmp_path / "rootfs", systemd=False,
    )  # fmt: skip
    return pause_spec.build(pod, {"Entrypoint": ["/catatonit", "-P"], "User": "65535:65535"}, "p")


def test_pause_spec_holds_the_pods_namespaces_files_and_sysctls(tmp_path: Path) -> None:
    spec = _pause(tmp_path)
    assert spec["process"]["args"] == ["/catatonit", "-P"]
    assert spec["process"]["user"]["uid"] == 65535 and spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["capabilities"]["bounding"] == []
    assert [ns["type"] for ns in spec["linux"]["namespaces"]] == ["mount", "pid", "ipc", "uts", "network"]
    assert {"type": "network", "path": "/run/netns/p"} in spec["linux"]["namespaces"]
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert spec["linux"]["cgroupsPath"] == f"/kubepods/besteffort/podu/{POD_ID}"
    assert spec["root"]["readonly"] is True and spec["hostname"] == "p"
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert shm["source"] == str(tmp_path / "shm")
    assert spec["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"


def test_pause_spec_for_host_network_and_privileged_pods(tmp_path: Path) -> None:
    host = _pause(tmp_path, host_network=True)
    assert [ns["type"] for ns in host["linux"]["namespaces"]] == ["mount", "pid", "ipc"]
    assert "hostname" not in host
    priv = _pause(tmp_path, privileged=True)
    assert priv["process"]["capabilities"]["bounding"] == oci_spec.available_capabilities()
    assert priv["linux"]["maskedPaths"] == [] and priv["process"]["noNewPrivileges"] is False


def test_oom_score_adj_as_sent_with_cap_sys_resource_else_not_below_cribds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tcribd\nCapEff:\t0000000001000000\n")
    assert oci_spec.holds_capability(oci_spec.CAP_SYS_RESOURCE, str(status))
    status.write_text("Name:\tcribd\nCapEff:\t000001fffeffffff\n")  # all but bit 24
    assert not oci_spec.holds_capability(oci_spec.CAP_SYS_RESOURCE, str(status))
    oci_spec.oom_score_floor.cache_clear()
    monkeypatch.setattr(oci_spec, "holds_capability", lambda bit: True)
    assert oci_spec.clamp_oom_score_adj(-997) == -997 and oci_spec.clamp_oom_score_adj(5000) == 1000
    oci_spec.oom_score_floor.cache_clear()
    monkeypatch.setattr(oci_spec, "holds_capability", lambda bit: False)
    monkeypatch.setattr(oci_spec, "own_oom_score_adj", lambda: -500)
    assert oci_spec.clamp_oom_score_adj(-997) == -500 and oci_spec.clamp_oom_score_adj(100) == 100
    oci_spec.oom_score_floor.cache_clear()


def test_container_status_reports_the_stop_signal_used() -> None:
    assert effective_stop_signal(signal.SIGQUIT) == api_pb2.SIGQUIT
    assert effective_stop_signal(signal.SIGTERM) == api_pb2.SIGTERM
    assert effective_stop_signal(0) == api_pb2.RUNTIME_DEFAULT
    # Every real-time signal has its CRI name, and the names round-trip.
    assert effective_stop_signal(int(signal.SIGRTMIN) + 3) == api_pb2.SIGRTMINPLUS3
    assert effective_stop_signal(int(signal.SIGRTMAX) - 1) == api_pb2.SIGRTMAXMINUS1
    for number in range(int(signal.SIGRTMIN), int(signal.SIGRTMAX) + 1):
        named = effective_stop_signal(number)
        assert named != api_pb2.RUNTIME_DEFAULT, number
        assert container_spec.stop_signal(_config(stop_signal=named), {}) == number


def test_resources_runc_or_the_kernel_would_refuse_are_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: runc could not unmarshal a negative period (uint64), and the
    # kernel refused a memory limit of -2^63; both became INTERNAL.
    refused = {
        "cpu_shares": -(2**63),
        "cpu_period": -(2**63),
        "cpu_quota": 999,
        "memory_limit_in_bytes": -(2**63),
        "memory_swap_limit_in_bytes": -2,
    }
    for field, value in refused.items():
        with pytest.raises(InvalidArgument, match=f"{field} {value}"):
            container_spec.resources(api_pb2.LinuxContainerResources(**{field: value}))
    for period in (999, 1_000_001):
        with pytest.raises(InvalidArgument, match="cpu_period"):
            container_spec.resources(api_pb2.LinuxContainerResources(cpu_period=period))
    # Found later by the fuzzer: runc refuses shares the kernel would clamp.
    for shares in (1, 262145):
        with pytest.raises(InvalidArgument, match="cpu_shares"):
            container_spec.resources(api_pb2.LinuxContainerResources(cpu_shares=shares))
    assert container_spec.resources(api_pb2.LinuxContainerResources(cpu_quota=-1)) == {"cpu": {"quota": -1}}
    accepted = api_pb2.LinuxContainerResources(
        cpu_shares=2, cpu_period=100_000, cpu_quota=50_000, memory_limit_in_bytes=-1
    )
    assert container_spec.resources(accepted)["cpu"] == {"shares": 2, "quota": 50_000, "period": 100_000}
