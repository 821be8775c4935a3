"""kubeadm's control-plane images, built here from the binaries e2e/kube/build makes.

    python -m e2e.kube.control_plane_images OUTDIR   # what deploy/kind/control-plane-images.sh runs

One OCI image archive per image in OUTDIR (loadable by `cribctl load`), under the
exact names `kubeadm config images list --kubernetes-version v1.36.3` prints:
kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, coredns, pause
and etcd. Each is a minimal root filesystem holding the static binary where the
upstream image has it, plus:
- kube-proxy: Debian's iptables (the nf_tables flavour, `xtables-nft-multi` as
  iptables/ip6tables and their -save/-restore, with its match and target
  extensions and the shared libraries they load), copied from this host. The
  upstream image is distroless-iptables; kube-proxy runs in iptables mode, which
  writes the host's rules through iptables-nft, as the host's own iptables does.
- pause: catatonit (statically linked) as in e2e/kube/images.py.
Archives are cached beside the binaries under a stamp of their inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from e2e.images import archives, builder
from e2e.images.builder import GROUP, PASSWD, Entry, ImageRecipe, LayerSpec, build_image

KUBE_VERSION = "v1.36.3"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "e2e" / "kube" / "build"
CATATONIT = "/usr/bin/catatonit"
XTABLES = "/usr/sbin/xtables-nft-multi"
XTABLES_EXTENSIONS = "/usr/lib/x86_64-linux-gnu/xtables"
IPTABLES_NAMES = [
    f"{family}{suffix}" for family in ("iptables", "ip6tables") for suffix in ("", "-save", "-restore")
]
IPTABLES_NAMES += [
    f"{family}-nft{suffix}" for family in ("iptables", "ip6tables") for suffix in ("", "-save", "-restore")
]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CMD_TIMEOUT_S = 60


def build_binaries() -> Path:
    """Run the three cached builds; returns the bin dir (seconds when warm)."""
    for script in ("build.sh", "kubeadm.sh", "coredns.sh"):
        proc = subprocess.run([str(BUILD_DIR / script)], capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
    out = subprocess.run(
        [str(BUILD_DIR / "build.sh"), "--print-dir"], capture_output=True, text=True, timeout=30, check=True
    )
    return Path(out.stdout.strip())


def kubeadm_images(bin_dir: Path) -> list[str]:
    """What `kubeadm config images list` prints for KUBE_VERSION (the names kubeadm pulls)."""
    out = subprocess.run(
        [str(bin_dir / "kubeadm"), "config", "images", "list", f"--kubernetes-version={KUBE_VERSION}"],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT_S,
        check=True,
    )
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _dirs(*names: str) -> list[Entry]:
    return [Entry(n, "dir", mode=0o1777 if n == "tmp" else 0o755) for n in names]


def _base() -> list[Entry]:
    """What a distroless static base gives: /etc/passwd and group, /tmp, and the usual dirs."""
    return [
        *_dirs("etc", "tmp", "usr", "usr/local", "usr/local/bin", "var", "var/run", "proc", "sys", "dev"),
        Entry(
            "etc/passwd",
            data=(PASSWD + "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n").encode(),
        ),
        Entry("etc/group", data=(GROUP + "nonroot:x:65532:\n").encode()),
        Entry("etc/nsswitch.conf", data=b"hosts: files dns\n"),
    ]


def _binary(path: str, source: Path) -> Entry:
    return Entry(path, data=source.read_bytes(), mode=0o755)


def _shared_libraries(paths: list[str]) -> dict[str, str]:
    """image path -> host file for every library `paths` load (one ldd for all), at its canonical dir."""
    out = subprocess.run(["ldd", *paths], capture_output=True, text=True, timeout=CMD_TIMEOUT_S).stdout
    libs: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        # "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)";
        # ldd of several files also prints each file's name ("/path:"), which is skipped.
        if not line.startswith("\t") or not parts:
            continue
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if not lib.startswith("/"):
            continue  # the vDSO
        # Debian merges /lib into /usr/lib: keep the soname in the real directory.
        image_path = os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))
        libs[image_path.lstrip("/")] = os.path.realpath(lib)
    return libs


def iptables_entries() -> list[Entry]:
    """iptables-nft from this host: the multi-call binary, its names, extensions and libraries."""
    extensions = sorted(str(p) for p in Path(XTABLES_EXTENSIONS).glob("*.so"))
    libs = _shared_libraries([XTABLES, *extensions])
    entries = _dirs(
        "usr/sbin", "usr/lib", "usr/lib64", "usr/lib/x86_64-linux-gnu", XTABLES_EXTENSIONS.lstrip("/")
    )
    entries += [Entry("sbin", "symlink", linkname="usr/sbin"), Entry("bin", "symlink", linkname="usr/bin")]
    entries += [Entry("lib", "symlink", linkname="usr/lib"), Entry("lib64", "symlink", linkname="usr/lib64")]
    entries.append(Entry("usr/bin", "dir"))
    entries.append(_binary("usr/sbin/xtables-nft-multi", Path(XTABLES)))
    entries += [Entry(f"usr/sbin/{n}", "symlink", linkname="xtables-nft-multi") for n in IPTABLES_NAMES]
    # Symlinked extensions (libxt_NOTRACK.so -> libxt_CT.so, ...) are kept as links.
    for ext in sorted(Path(XTABLES_EXTENSIONS).glob("*.so")):
        name = str(ext).lstrip("/")
        if ext.is_symlink():
            entries.append(Entry(name, "symlink", linkname=os.readlink(ext)))
        else:
            entries.append(Entry(name, data=ext.read_bytes(), mode=0o644))
    for image_path, host_file in sorted(libs.items()):
        entries.append(Entry(image_path, data=Path(host_file).read_bytes(), mode=0o755))
    # iptables takes its lock here; kubeadm's kube-proxy mounts the host's file over it.
    entries += _dirs("run")
    return entries


def _component(name: str, bin_dir: Path) -> ImageRecipe:
    """A static Kubernetes binary at /usr/local/bin/<name>, as the upstream images put it."""
    layer = [*_base(), _binary(f"usr/local/bin/{name}", bin_dir / name)]
    return ImageRecipe(
        [LayerSpec(layer, "zstd")], entrypoint=[f"/usr/local/bin/{name}"], cmd=None, env=[PATH_ENV]
    )


def recipes(bin_dir: Path, refs: list[str]) -> dict[str, ImageRecipe]:
    """A recipe for each of kubeadm's image references, chosen by repository name."""
    made: dict[str, ImageRecipe] = {}
    for ref in refs:
        repo = ref.rsplit(":", 1)[0].rsplit("/", 1)[1]
        if repo in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            made[ref] = _component(repo, bin_dir)
        elif repo == "kube-proxy":
            recipe = _component(repo, bin_dir)
            recipe.layers.append(LayerSpec(iptables_entries(), "zstd"))
            made[ref] = recipe
        elif repo == "coredns":
            # Root, as the pod spec kubeadm writes sets no user and CoreDNS binds port 53
            # (the upstream image runs as 65532 with a file capability on /coredns instead).
            made[ref] = ImageRecipe(
                [LayerSpec([*_base(), _binary("coredns", bin_dir / "coredns")], "zstd")],
                entrypoint=["/coredns"],
                cmd=None,
                env=[PATH_ENV],
                exposed_ports=["53/tcp", "53/udp"],
            )
        elif repo == "pause":
            made[ref] = ImageRecipe(
                [LayerSpec([Entry("pause", data=Path(CATATONIT).read_bytes(), mode=0o755)])],
                entrypoint=["/pause", "-P"],
                cmd=None,
                user="65535:65535",
            )
        else:
            raise ValueError(f"kubeadm lists an image this module cannot build: {ref}")
    return made


def archive_name(ref: str) -> str:
    """registry.k8s.io/coredns/coredns:v1.14.2 -> coredns_v1.14.2.tar"""
    repo, tag = ref.rsplit(":", 1)
    return f"{repo.rsplit('/', 1)[1]}_{tag}.tar"


def _stamp(bin_dir: Path) -> str:
    """The inputs of the archives: the builds' stamps and the code that makes the images."""
    h = hashlib.sha256()
    for f in ("STAMP", "kubeadm.STAMP", "coredns.STAMP"):
        h.update((bin_dir.parent / f).read_bytes())
    for f in (
        Path(__file__),
        Path(builder.__file__),
        Path(archives.__file__),
        Path(XTABLES),
        Path(CATATONIT),
    ):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def write_archives(out_dir: Path, bin_dir: Path | None = None) -> dict[str, Path]:
    """One OCI archive per kubeadm image in out_dir (from the cache when its stamp matches)."""
    bin_dir = bin_dir or build_binaries()
    refs = kubeadm_images(bin_dir)
    cache = bin_dir.parent / "control-plane-images"
    stamp = _stamp(bin_dir)
    if not ((cache / "STAMP").is_file() and (cache / "STAMP").read_text() == stamp):
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        for ref, recipe in recipes(bin_dir, refs).items():
            archives.oci_layout_tar([(build_image(recipe), ref)], cache / archive_name(ref))
        (cache / "STAMP").write_text(stamp)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for ref in refs:
        target = out_dir / archive_name(ref)
        if target.resolve() != (cache / archive_name(ref)).resolve():
            shutil.copyfile(cache / archive_name(ref), target)
        written[ref] = target
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m e2e.kube.control_plane_images OUTDIR", file=sys.stderr)
        return 2
    for ref, path in write_archives(Path(argv[0])).items():
        print(f"{path}\t{ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
