"""critest 1.36 (kubernetes-sigs/cri-tools, built by install.sh) against a test cribd, live.

The whole validation suite runs twice: with SPDY streaming, and with
WebSocket for exec, attach and port-forward. Its images are rebuilt here
(e2e/images/critest_images.py) and reached through cribd's registry mirrors.
The only failures allowed are the specs in EXPECTED_FAILURES, each with the
reason this host or its images cannot satisfy; a listed spec that passes
fails the test too, so the list stays true.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.harness.cribd import Cribd
from e2e.harness.junit import read_reports
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.images import critest_images
from e2e.images.builder import build_image
from e2e.images.registry_client import RegistryClient
from e2e.kube.cluster import kube_bin_dir

CRITOOLS_BUILD = Path(__file__).resolve().parent / "critools" / "build.sh"
RUN_TIMEOUT_S = 1500

# spec name pattern -> why it cannot pass here. Patterns match the full ginkgo spec name.
EXPECTED_FAILURES = {
    r"public image with digest should be pulled and removed": (
        "critest pins test-image-digest by the digest of its upstream build; no image built here can have it"
    ),
    r"NamespaceOption runtime should support (HostPID|ContainerPID)$": (
        "both wait for nginx's 'master process' command line as PID 1; the nginx stand-in is busybox "
        "httpd, whose command line is its own (pid namespaces are checked in e2e/test_sandbox.py and "
        "under the kubelet in e2e/kube/test_security_context.py)"
    ),
    r"runtime should support MaskedPaths": (
        "Debian's busybox-static shell runs `ls` as a built-in applet, so masking /bin/ls cannot make "
        "`sh -c ls` fail; crib's own test (e2e/test_kubelet_shapes.py) checks the masks"
    ),
}


def _critools_bin() -> Path:
    out = subprocess.run([str(CRITOOLS_BUILD), "--print-dir"], capture_output=True, text=True, timeout=30)
    d = Path(out.stdout.strip())
    if not (d / "critest").exists():
        pytest.fail(f"critest is not built ({d}): run scripts/install.sh (it builds cri-tools)")
    return d


@pytest.fixture
def critest_cribd(cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, registry: Registry) -> Cribd:
    with RegistryClient(registry.url) as client:
        for ref, recipe in critest_images.critest_images(kube_bin_dir()).items():
            host_and_repo, tag = ref.rsplit(":", 1)
            client.push_image(host_and_repo.split("/", 1)[1], tag, build_image(recipe))
    mirrors = "".join(
        f'[image.mirrors."{h}"]\nendpoints = ["{registry.url}"]\nmirrors_only = true\n'
        for h in ("registry.k8s.io", "k8s.gcr.io", "gcr.io")
    )
    daemon = cribd_factory(f'[image]\ninsecure_registries = ["{registry.host}"]\n{mirrors}')
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start()


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_critest_passes_all_but_the_listed_specs(
    critest_cribd: Cribd, tmp_path: Path, transport: str
) -> None:
    bin_dir = _critools_bin()
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    endpoint = f"unix://{critest_cribd.socket}"
    argv = [
        str(bin_dir / "critest"),
        f"--runtime-endpoint={endpoint}",
        f"--image-endpoint={endpoint}",
        # critest's own --report-dir writes nothing; ginkgo's reporter does.
        f"--ginkgo.junit-report={report_dir / 'junit.xml'}",
        "--parallel=2",
        "--ginkgo.no-color",
    ]
    if transport == "websocket":
        argv += ["--websocket-exec", "--websocket-attach", "--websocket-portforward"]
    # critest -parallel starts the ginkgo CLI it was built with.
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    result = read_reports(report_dir)
    assert result.passed, (
        f"critest ran no spec ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    )

    def expected(name: str) -> bool:
        return any(re.search(p, name) for p in EXPECTED_FAILURES)

    unexpected = {n: m for n, m in result.failed.items() if not expected(n)}
    now_passing = [n for n in result.passed if expected(n)]
    print(f"critest over {transport}: {result.totals()}")
    for name in result.skipped:
        print(f"  skipped by critest: {name}")
    assert not unexpected, "critest failures that are crib's:\n" + "\n".join(
        f"- {n}\n    {m.replace(chr(10), chr(10) + '    ')}" for n, m in unexpected.items()
    )
    assert not now_passing, f"listed as failing but passing now (update EXPECTED_FAILURES): {now_passing}"
    for pattern in EXPECTED_FAILURES:
        assert any(re.search(pattern, n) for n in result.failed), f"{pattern!r} matched no failing spec"
