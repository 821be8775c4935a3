"""The RuntimeDefault seccomp profile: containerd's default, built from seccomp_default.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crib.runtime import seccomp

DATA = Path(seccomp.__file__).with_name("seccomp_default.json")

# The actions of the OCI runtime spec (config-linux.md, seccomp).
OCI_ACTIONS = {
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
}
OCI_OPS = {
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
}
CLONE_NEW_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
ENOSYS = 38
ADMIN_SYSCALLS = ("mount", "umount", "umount2", "unshare", "setns")
CAP_SETS = [set(), {"CAP_SYS_ADMIN"}, {"CAP_SYS_PTRACE"}, {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF"}]


def profile(caps: set[str], arch: str = "amd64", kernel: tuple[int, int] | None = (6, 1)) -> dict[str, Any]:
    return seccomp.build(caps, arch, kernel)


def rules_for(section: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in section["syscalls"] if name in rule["names"]]


def allowed_plainly(section: dict[str, Any], name: str) -> bool:
    """Allowed whatever the arguments."""
    return any(
        rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") for rule in rules_for(section, name)
    )


def test_data_file_names_its_origin() -> None:
    data = json.loads(DATA.read_text())
    assert "containerd/containerd" in data["origin"]
    assert "contrib/seccomp/seccomp_default.go" in data["origin"]
    assert "2026-12-06" in data["origin"]


@pytest.mark.parametrize("caps", CAP_SETS)
def test_io_uring_is_refused(caps: set[str]) -> None:
    for rule in profile(caps)["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            assert not [name for name in rule["names"] if name.startswith("io_uring")]


@pytest.mark.parametrize("caps", CAP_SETS)
def test_output_is_an_oci_seccomp_section(caps: set[str]) -> None:
    section = profile(caps)
    assert set(section) <= {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
    assert section["defaultAction"] == "SCMP_ACT_ERRNO"
    assert section["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in section["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}, rule
        assert rule["action"] in OCI_ACTIONS
        assert rule["names"]
        for arg in rule.get("args", []):
            assert set(arg) <= {"index", "value", "valueTwo", "op"}
            assert arg["op"] in OCI_OPS


def test_every_action_in_the_data_is_an_oci_action() -> None:
    data = json.loads(DATA.read_text())
    assert data["defaultAction"] in OCI_ACTIONS
    for rule in data["syscalls"]:
        assert rule["action"] in OCI_ACTIONS
        assert set(rule) <= {"comment", "names", "action", "args", "errnoRet", "includes", "excludes"}
        for condition in (rule.get("includes", {}), rule.get("excludes", {})):
            assert set(condition) <= {"caps", "arches", "minKernel"}


def test_unconditional_allow_list_has_each_name_once() -> None:
    data = json.loads(DATA.read_text())
    plain = [
        rule
        for rule in data["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not {"args", "includes", "excludes"} & set(rule)
    ]
    assert plain
    for rule in plain:
        assert [name for name, n in Counter(rule["names"]).items() if n > 1] == []
    assert [name for name, n in Counter(n for r in plain for n in r["names"]).items() if n > 1] == []


def test_clone_is_filtered_without_cap_sys_admin() -> None:
    section = profile(set())
    (clone,) = rules_for(section, "clone")
    assert clone["action"] == "SCMP_ACT_ALLOW"
    assert clone["args"] == [
        {"index": 0, "value": CLONE_NEW_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert rules_for(section, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}
    ]


def test_clone_is_plainly_allowed_with_cap_sys_admin() -> None:
    section = profile({"CAP_SYS_ADMIN"})
    for name in ("clone", "clone3"):
        rules = rules_for(section, name)
        assert rules and all(r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in rules), name


def test_clone_filter_on_s390x_reads_the_second_argument() -> None:
    (clone,) = rules_for(profile(set(), arch="s390x"), "clone")
    assert clone["args"][0]["index"] == 1


@pytest.mark.parametrize("name", ADMIN_SYSCALLS)
def test_mounts_and_namespaces_need_cap_sys_admin(name: str) -> None:
    assert rules_for(profile(set()), name) == []
    assert rules_for(profile({"CAP_SYS_PTRACE", "CAP_NET_ADMIN"}), name) == []
    assert allowed_plainly(profile({"CAP_SYS_ADMIN"}), name)


def test_ptrace_follows_containerd() -> None:
    # containerd allows ptrace and process_vm_* to every container on kernels >= 4.8;
    # kcmp, pidfd_getfd and process_madvise still need CAP_SYS_PTRACE.
    for name in ("ptrace", "process_vm_readv", "process_vm_writev"):
        assert allowed_plainly(profile(set(), kernel=(4, 8)), name)
        assert not rules_for(profile(set(), kernel=(4, 7)), name)
        assert not rules_for(profile(set(), kernel=None), name)
        assert allowed_plainly(profile({"CAP_SYS_PTRACE"}, kernel=(4, 7)), name)
    for name in ("kcmp", "pidfd_getfd", "process_madvise"):
        assert not rules_for(profile(set()), name)
        assert allowed_plainly(profile({"CAP_SYS_PTRACE"}), name)


def test_personality_allows_only_the_harmless_personas() -> None:
    rules = rules_for(profile(set()), "personality")
    assert rules and all(r["action"] == "SCMP_ACT_ALLOW" and len(r["args"]) == 1 for r in rules)
    assert {(r["args"][0]["index"], r["args"][0]["value"], r["args"][0]["op"]) for r in rules} == {
        (0, value, "SCMP_CMP_EQ") for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
    }


def test_socket_refuses_af_alg_and_af_vsock() -> None:
    af_alg, af_vsock = 38, 40
    rules = rules_for(profile(set()), "socket")
    assert rules and all(r["action"] == "SCMP_ACT_ALLOW" and len(r["args"]) == 1 for r in rules)

    def allowed(family: int) -> bool:
        checks = {
            "SCMP_CMP_LT": lambda v: family < v,
            "SCMP_CMP_EQ": lambda v: family == v,
            "SCMP_CMP_GT": lambda v: family > v,
        }
        return any(checks[r["args"][0]["op"]](r["args"][0]["value"]) for r in rules)

    assert allowed(1) and allowed(2) and allowed(10) and allowed(16) and allowed(39) and allowed(44)
    assert not allowed(af_alg) and not allowed(af_vsock)


def test_arch_rules_follow_the_host() -> None:
    assert allowed_plainly(profile(set(), arch="amd64"), "arch_prctl")
    assert not rules_for(profile(set(), arch="arm64"), "arch_prctl")
    assert allowed_plainly(profile(set(), arch="arm64"), "set_tls")
    assert profile(set(), arch="arm64")["architectures"] == ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]


def test_capabilities_open_their_syscalls() -> None:
    for cap, name in [
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_CHROOT", "chroot"),
        ("CAP_SYS_MODULE", "init_module"),
        ("CAP_SYS_TIME", "settimeofday"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ]:
        assert not rules_for(profile(set()), name), name
        assert allowed_plainly(profile({cap}), name), name


def test_runtime_default_uses_the_host_and_returns_fresh_copies() -> None:
    first = seccomp.runtime_default(set())
    assert first["architectures"]
    first["syscalls"][0]["names"].clear()
    assert seccomp.runtime_default(set())["syscalls"][0]["names"]


def test_parse_kernel() -> None:
    assert seccomp.parse_kernel("6.18.44-fc-v1272") == (6, 18)
    assert seccomp.parse_kernel("4.8") == (4, 8)
    assert seccomp.parse_kernel("garbage") is None
