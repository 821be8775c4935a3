"""Re-record crictl's output of e2e/test_cribctl_parity.py's sequence into sequence.json here.

    sudo CRICTL=/path/to/crictl .venv/bin/python e2e/data/crictl/record.py

Runs that test (its own cribd and pod network) with CRIB_RECORD_CRICTL set:
crictl and cribctl run the sequence, crictl's output, normalized (IDs, times,
sizes, PIDs and temp paths as placeholders), is written to sequence.json, and
then cribctl's is compared with it (the test fails where they differ; the
recording is written all the same: it is crictl's). Needs root and a crictl
binary ($CRICTL or PATH); the binary itself is never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def main() -> int:
    crictl = os.environ.get("CRICTL") or shutil.which("crictl")
    if crictl is None:
        print("record.py: no crictl binary ($CRICTL or PATH)", file=sys.stderr)
        return 2
    out = HERE / "sequence.json"
    before = out.stat().st_mtime_ns if out.exists() else None
    env = dict(os.environ, CRICTL=crictl, CRIB_RECORD_CRICTL=str(out))
    test = "e2e/test_cribctl_parity.py::test_cribctl_matches_crictl"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO, env=env, timeout=600
    )
    written = out.exists() and out.stat().st_mtime_ns != before
    print(f"record.py: {'recorded' if written else 'did not record'} {out} with {crictl}", file=sys.stderr)
    if r.returncode != 0 and written:
        print("record.py: cribctl differs from crictl (the test's report above)", file=sys.stderr)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
