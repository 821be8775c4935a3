"""The Kubernetes node conformance suite (e2e_node.test, [NodeConformance]) against crib.

    python -m e2e.kube.conformance [--procs 4] [--focus REGEX] [--dir DIR]

e2e_node.test runs etcd and kube-apiserver inside itself and starts the
kubelet from the build cache with the config in conformance-kubelet.yaml; crib
is the runtime (a cribd of the run's own, with registry mirrors in front of a
local registry holding agnhost, busybox and stand-ins for the other test
images). The JUnit reports are summed up into DIR/summary.json and printed:
totals as "N passed, M failed, S skipped", the duration, and every failure
with the first lines of its message. Afterwards everything the run made is
removed: pods, cribd, the kubelet's cgroups (it runs with cgroupRoot "/"),
/var/lib/kubelet if it was not there before, iptables chains, sysctls.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from e2e.harness.cleanup import clean_tree, unmount_under
from e2e.harness.junit import read_reports
from e2e.kube import host
from e2e.kube.cluster import Cluster, ensure_built
from e2e.kube.images import push_conformance_images

HERE = Path(__file__).resolve().parent
KUBELET_CONFIG = HERE / "conformance-kubelet.yaml"
KUBELET_ROOT = Path("/var/lib/kubelet")
FOCUS = r"\[NodeConformance\]"
SKIP = r"\[Serial\]|\[Slow\]|\[Flaky\]|\[Feature:[^\]]+\]"
RUN_TIMEOUT_S = 3 * 3600
# The suite's RuntimeClass specs name the handler "test-handler", which its containerd
# config maps to runc; crib keeps its own two beside it.
RUNTIME_HANDLERS = """
[runtime.handlers.runc]
binary = "runc"

[runtime.handlers.crun]
binary = "crun"

[runtime.handlers.test-handler]
binary = "runc"
"""


def top_cgroups() -> set[str]:
    return {f"{root}/{d.name}" for root in host.cgroup_hierarchies() for d in root.iterdir() if d.is_dir()}


def path_without(d: Path, hidden: str) -> str:
    """A PATH of one folder of links to every command on PATH but `hidden`.

    e2e_node.test runs its kubelet under `systemd-run` whenever that command is
    found, and Debian ships it on machines whose PID 1 is not systemd.
    """
    d.mkdir(parents=True, exist_ok=True)
    for folder in os.environ.get("PATH", "").split(":"):
        if not folder or not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            link = d / entry.name
            if entry.name != hidden and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(d)


def summarize(report_dir: Path) -> dict:
    result = read_reports(report_dir)
    return {
        "passed": len(result.passed),
        "failed": len(result.failed),
        "skipped": len(result.skipped),
        "failures": [{"name": n, "message": m} for n, m in result.failed.items()],
    }


def run(d: Path, procs: int, focus: str, skip: str) -> dict:
    bin_dir = ensure_built()
    cgroups_before = top_cgroups()
    kubelet_root_existed = KUBELET_ROOT.exists()
    cluster = Cluster(d / "cluster", bin_dir)
    cluster.cribd_config_extra = RUNTIME_HANDLERS
    report_dir = d / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        cluster.up_runtime()
        push_conformance_images(cluster.state.registry_url, bin_dir)
        work = d / "work"
        work.mkdir()
        # The suite writes its kubeconfig and kubelet config beside its own binary: a copy here
        # keeps them out of the build cache.
        suite = shutil.copy(bin_dir / "e2e_node.test", work / "e2e_node.test")
        env = dict(os.environ, PATH=path_without(d / "path", "systemd-run"))
        argv = [
            str(bin_dir / "ginkgo"), f"--procs={procs}", f"--focus={focus}", f"--skip={skip}",
            "--timeout=3h", "--no-color", "-v",
            str(suite), "--",
            f"--container-runtime-endpoint={cluster.endpoint}",
            f"--image-service-endpoint={cluster.endpoint}",
            f"--k8s-bin-dir={bin_dir}",
            f"--kubelet-config-file={KUBELET_CONFIG}",
            # The suite's own gates, which it also hands the kubelet: with crib the kubelet
            # takes pod and container stats from the CRI (its cAdvisor does not know crib),
            # and the specs must know it too (the cAdvisor-only metrics spec skips itself).
            "--feature-gates=PodAndContainerStatsFromCRI=true",
            # Without systemd the suite sets systemCgroups=/system, and the kubelet then moves
            # every process of the host into it; the host's processes stay where they are.
            "--kubelet-flags=--system-cgroups=",
            f"--report-dir={report_dir}",
            "--prepull-images=false",
            "--node-name=crib-node",
        ]  # fmt: skip
        with (d / "ginkgo.log").open("wb") as log:
            proc = subprocess.run(
                argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S
            )
        summary = summarize(report_dir)
        summary["exit_code"] = proc.returncode
    finally:
        summary_time = round(time.monotonic() - t0)
        # The suite's own kubelet may still run if the suite was cut short.
        for pid in host_processes(str(bin_dir / "kubelet")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        report = cluster.down()
        # Pods' cgroups are killed and removed; any other cgroup the run made is removed only
        # when empty (it may hold host processes the kubelet moved), else reported.
        for name in sorted({Path(cg).name for cg in top_cgroups() - cgroups_before}):
            if name == "kubepods":
                report.setdefault("cgroups_with_processes", []).extend(host.remove_cgroup_root(name))
            else:
                report.setdefault("cgroups_left", []).extend(host.remove_empty_cgroup_root(name))
        if not kubelet_root_existed and KUBELET_ROOT.exists():
            clean_tree(KUBELET_ROOT)
        elif KUBELET_ROOT.exists():
            # The directory was there before; the kubelet's mounts in it (its own bind
            # mount of the root dir among them) are the run's.
            report.setdefault("unmounted", []).extend(unmount_under(KUBELET_ROOT))
    summary["duration_s"] = summary_time
    summary["cleanup"] = {k: v for k, v in report.items() if v and k != "pods_removed"}
    return summary


def host_processes(binary: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/exe") == binary:
                    pids.append(int(entry.name))
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.kube.conformance")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--focus", default=FOCUS)
    parser.add_argument("--skip", default=SKIP)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep DIR (logs, reports) afterwards")
    args = parser.parse_args()
    d = args.dir or Path(tempfile.mkdtemp(prefix="crib-conformance-"))
    summary = run(d, args.procs, args.focus, args.skip)
    (d / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    print(f"duration: {summary['duration_s']} s; exit code {summary.get('exit_code')}")
    for f in summary["failures"]:
        print(f"FAILED {f['name']}\n    " + f["message"].replace("\n", "\n    "))
    print(f"reports and logs: {d}")
    if not args.keep:
        keep = Path(tempfile.mkdtemp(prefix="crib-conformance-report-"))
        for name in ("summary.json", "ginkgo.log"):
            if (d / name).exists():
                shutil.copy(d / name, keep / name)
        print(f"summary kept in {keep}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
