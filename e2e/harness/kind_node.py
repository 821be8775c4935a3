"""A kind node image as the tests read it (deploy/kind/build-node-image.sh's archive): its
archive parts, its one layer extracted, its systemd units as systemd merges them, and the
kind module (sigs.k8s.io/kind) the build takes kind's node files from."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.harness.cribd import REPO_ROOT

BUILD = REPO_ROOT / "deploy/kind/build-node-image.sh"


@functools.cache
def kind_module() -> Path:
    """sigs.k8s.io/kind at the build's pinned version, as the build script fetches it (go mod download)."""
    out = subprocess.run([str(BUILD), "--print-kind-dir"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


@dataclass
class NodeImage:
    archive: Path
    blobs: dict[str, Path]  # "sha256:..." → file
    docker_manifest: list[dict[str, Any]]
    repositories: dict[str, dict[str, str]]
    index: dict[str, Any]
    config: dict[str, Any]  # the image config blob
    rootfs: Path  # the layer, extracted
    images: list[str]  # what the build put in crib's store

    @classmethod
    def extract(cls, archive: Path, work: Path, images: list[str]) -> NodeImage:
        """The archive unpacked in work: its blobs, and its layer as docker would apply it."""
        outer = work / "archive"
        with tarfile.open(archive) as t:
            t.extractall(outer, filter="fully_trusted")
        manifest = json.loads((outer / "manifest.json").read_text())
        rootfs = work / "rootfs"
        rootfs.mkdir()
        # GNU tar, as root: owners, modes, links and capabilities as docker would apply them.
        layer = outer / manifest[0]["Layers"][0]
        tar = ["tar", "-x", "--numeric-owner", "--xattrs", "-f", str(layer), "-C", str(rootfs)]
        subprocess.run(tar, check=True, timeout=600)
        return cls(
            archive=archive,
            blobs={f"sha256:{p.name}": p for p in (outer / "blobs/sha256").iterdir()},
            docker_manifest=manifest,
            repositories=json.loads((outer / "repositories").read_text()),
            index=json.loads((outer / "index.json").read_text()),
            config=json.loads((outer / manifest[0]["Config"]).read_text()),
            rootfs=rootfs,
            images=sorted(images),
        )

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """A program of the image, run in its root (chroot)."""
        return subprocess.run(["chroot", str(self.rootfs), *cmd], capture_output=True, text=True, timeout=120)

    def path(self, p: str) -> Path:
        return self.rootfs / p.lstrip("/")

    def text(self, p: str) -> str:
        return self.path(p).read_text()

    def resolve(self, p: str) -> Path:
        """p inside the image, symlinks followed as the node would (absolute targets from its root)."""
        cur = self.rootfs
        parts = [x for x in p.split("/") if x]
        hops = 0
        while parts:
            cur = cur / parts.pop(0)
            if cur.is_symlink():
                hops += 1
                assert hops < 40, f"symlink loop at {p}"
                target = os.readlink(cur)
                parts = [x for x in target.split("/") if x] + parts
                cur = self.rootfs if target.startswith("/") else cur.parent
        return cur

    def unit(self, name: str) -> Unit:
        """/etc/systemd/system/NAME with its drop-ins (NAME.d/*.conf, in name order)."""
        paths = [self.path(f"/etc/systemd/system/{name}")]
        drop_ins = self.path(f"/etc/systemd/system/{name}.d")
        if drop_ins.is_dir():
            paths += sorted(drop_ins.glob("*.conf"))
        return Unit.read(paths)

    def enabled(self, name: str) -> bool:
        """NAME is enabled for multi-user.target and its link leads to a unit file."""
        link = f"/etc/systemd/system/multi-user.target.wants/{name}"
        return self.path(link).is_symlink() and self.resolve(link).is_file()


@dataclass
class Unit:
    """A unit with its drop-ins, as systemd merges them: every assignment in file order."""

    assignments: dict[tuple[str, str], list[str]]

    @classmethod
    def read(cls, paths: list[Path]) -> Unit:
        unit = cls({})
        for p in paths:
            section = ""
            for raw in p.read_text().replace("\\\n", " ").splitlines():
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                    continue
                key, sep, value = line.partition("=")
                assert sep, f"{p}: {line!r}"
                unit.assignments.setdefault((section, key.strip()), []).append(value.strip())
        return unit

    def get(self, section: str, key: str) -> str:
        """The value a single-valued setting ends with (the last assignment wins)."""
        values = self.assignments.get((section, key), [])
        assert values, f"no {key}= in [{section}]"
        return values[-1]

    def values(self, section: str, key: str) -> list[str]:
        """Every value of a list setting (ExecStartPre=, Before=, ...); an empty one resets."""
        values = self.assignments.get((section, key), [])
        reset = max((i for i, v in enumerate(values) if not v), default=-1)
        return values[reset + 1 :]

    def words(self, section: str, key: str) -> list[str]:
        """A list setting's space-separated items (Before=a b, After=...)."""
        return [w for v in self.values(section, key) for w in v.split()]
