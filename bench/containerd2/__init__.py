"""containerd 2.x beside Debian's containerd 1.6 in the benchmarks (DESIGN.md §7).

2.x is what users compare crib with, and 1.6 lacks calls the kubelet makes (its
ListPodSandboxStats fails), so every benchmark that runs 1.6 also runs 2.x where it can be
built: `build()` runs build.sh once per benchmark run (`go install` of
github.com/containerd/containerd/v2's `containerd` and `containerd-shim-runc-v2` from the
module proxy into a cache outside the checkout) and gives the bin dir, or None with the
reason printed, and the benchmark goes on without it.

Its config is e2e/harness/containerd2.py's (the kubelet cluster of bench/node_steady.py
runs it too); the start functions are bench/daemon_idle.py's and bench/pod_lifecycle.py's
`start_containerd2`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

NAME = "containerd2"  # "containerd" stays Debian's 1.6, so older result files compare
BUILD = Path(__file__).resolve().with_name("build.sh")
# A cold build takes minutes (downloads and compiles containerd's dependencies); a warm one,
# a moment. Bounded: past this the benchmark goes on without 2.x.
BUILD_TIMEOUT_S = 1800
# The ratio columns of every benchmark's table: crib over each containerd present.
RATIOS = (("crib", "containerd"), ("crib", NAME))


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-containerd2", action="store_true", help="leave containerd 2.x out (no build, no runs)"
    )


def build(enabled: bool = True, cached_only: bool = False) -> Path | None:
    """The bin dir holding the built `containerd` and `containerd-shim-runc-v2`; None (and
    why, printed) when left out or when the build fails. `cached_only`: a build already in
    the cache, or None (no Go build in a test run)."""
    if not enabled:
        print("containerd 2.x left out (--no-containerd2)", flush=True)
        return None
    env = {**os.environ, "CONTAINERD2_NO_BUILD": "1"} if cached_only else None
    try:
        done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        print(f"containerd 2.x: the build took over {BUILD_TIMEOUT_S} s; going on without it", flush=True)
        return None
    if done.returncode != 0:
        print(f"containerd 2.x could not be built; going on without it:\n{done.stderr[-2000:]}", flush=True)
        return None
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    print(f"containerd 2.x: {bin_dir}", flush=True)
    return bin_dir


def from_args(args: argparse.Namespace) -> Path | None:
    return build(not args.no_containerd2)
