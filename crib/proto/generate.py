"""Regenerate the Python modules for crib's protos: `python -m crib.proto.generate`.

The generated modules are committed so that a node needs no protoc; the test
suite regenerates them into a temporary tree and fails if they differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The source tree's root: protos are compiled with their package-relative paths
# so generated modules import each other as `crib.proto...`.
REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS = ("crib/proto/cri/api.proto", "crib/proto/crib/v1/crib.proto")


def generate(out_dir: Path) -> None:
    """Compile every proto in PROTOS into `out_dir` (same relative layout)."""
    # grpc_tools is a test-only dependency, imported only when the protos are regenerated.
    from grpc_tools import protoc  # noqa: PLC0415

    include = Path(protoc.__file__).parent / "_proto"
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{REPO_ROOT}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            proto,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {proto}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="output root (default: the source tree)")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
