"""The cluster's test images, built here and pushed to the local registry.

Pods name them as on a real cluster (`registry.k8s.io/e2e-test-images/...`,
`docker.io/library/busybox`); cribd reaches them through its registry mirrors,
as a node behind a mirror would.
"""

from __future__ import annotations

from pathlib import Path

from e2e.images.builder import PASSWD, Entry, ImageRecipe, LayerSpec, build_image
from e2e.images.registry_client import RegistryClient
from e2e.images.shims import bash_entries, busybox_with_shims

# The versions the Kubernetes 1.36 e2e suites ask for (test/utils/image/manifest.go).
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.63.0"
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
# A Docker Hub name, to prove the docker.io mirror too.
HUB_BUSYBOX = "docker.io/library/busybox:1.36"
# Only in the registry until a test pulls it: the image GC test's victim.
GC_VICTIM = "docker.io/library/busybox:gc-victim"
# For runtimes that pull their sandbox image (containerd); crib builds its own.
PAUSE = "registry.k8s.io/pause:3.10"
CATATONIT = "/usr/bin/catatonit"


def _repo_and_tag(ref: str) -> tuple[str, str]:
    name, tag = ref.rsplit(":", 1)
    return name.split("/", 1)[1], tag


AGNHOST_PASSWD = PASSWD + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
AGNHOST_GROUP = (
    "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\n"
    "group-defined-in-image:x:50000:user-defined-in-image\n"
)


def agnhost_recipe(bin_dir: Path, busybox_layer: LayerSpec) -> ImageRecipe:
    """agnhost's image as its Dockerfile makes it: /agnhost, the agnhost-2 link, /uploads, the
    porter's key pair, the user and group defined in the image, bash (also as /bin/sh);
    busybox below it for the other tools."""
    # build.sh copies the porter's key pair from the source tree beside the binaries.
    porter = bin_dir.parent / "agnhost"
    extra = [
        Entry("agnhost", data=(bin_dir / "agnhost").read_bytes(), mode=0o755),
        Entry("agnhost-2", "symlink", linkname="agnhost"),
        Entry("uploads", "dir"),
        Entry("localhost.crt", data=(porter / "localhost.crt").read_bytes()),
        Entry("localhost.key", data=(porter / "localhost.key").read_bytes()),
        Entry("etc/passwd", data=AGNHOST_PASSWD.encode()),
        Entry("etc/group", data=AGNHOST_GROUP.encode()),
        *bash_entries(),
        # Debian's busybox ash runs its own applet for any name it has (nc among them)
        # before it looks at PATH, so the UDP nc above is only reached from bash. The
        # real image's ash is Alpine's, whose nc does UDP itself.
        Entry("bin/sh", "symlink", linkname="bash"),
    ]
    return ImageRecipe([busybox_layer, LayerSpec(extra, "zstd")], entrypoint=["/agnhost"], cmd=["pause"])


def push_images(registry_url: str, bin_dir: Path) -> dict[str, str]:
    """Build and push the images; returns reference -> manifest digest."""
    busybox_layer = LayerSpec(busybox_with_shims())
    images = {
        # agnhost's own image: the binary at /agnhost, `pause` by default; busybox
        # under it gives the shell and tools the tests exec.
        AGNHOST: agnhost_recipe(bin_dir, busybox_layer),
        BUSYBOX: ImageRecipe([busybox_layer], cmd=["sh"]),
        HUB_BUSYBOX: ImageRecipe([busybox_layer], cmd=["sh"]),
        PAUSE: ImageRecipe(
            [LayerSpec([Entry("catatonit", data=Path(CATATONIT).read_bytes(), mode=0o755)])],
            entrypoint=["/catatonit", "-P"],
            cmd=None,
            user="65535:65535",
        ),
        GC_VICTIM: ImageRecipe(
            [busybox_layer, LayerSpec([Entry("etc/gc-victim", data=b"collect me\n")])], cmd=["sh"]
        ),
    }
    digests = {}
    with RegistryClient(registry_url) as client:
        for ref, recipe in images.items():
            repo, tag = _repo_and_tag(ref)
            digests[ref] = client.push_image(repo, tag, build_image(recipe))
    return digests


# --- node conformance -----------------------------------------------------------------------------
# Stand-ins for the images the [NodeConformance] specs ask for, built from what this machine
# has; CONFORMANCE.md lists the specs they cannot satisfy.
E2E = "registry.k8s.io/e2e-test-images"
NGINX_HTML = b"<html><body><h1>Welcome to nginx!</h1></body></html>\n"


def conformance_recipes(bin_dir: Path) -> dict[str, ImageRecipe]:
    busybox_layer = LayerSpec(busybox_with_shims())
    nginx = ImageRecipe(
        [
            busybox_layer,
            LayerSpec(
                [
                    Entry("usr/share/nginx", "dir"),
                    Entry("usr/share/nginx/html", "dir"),
                    Entry("usr/share/nginx/html/index.html", data=NGINX_HTML),
                ]
            ),
        ],
        # busybox's httpd in nginx's place: port 80, the same document root.
        cmd=["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"],
        exposed_ports=["80/tcp"],
    )
    return {
        f"{E2E}/agnhost:2.55": agnhost_recipe(bin_dir, busybox_layer),
        f"{E2E}/nginx:1.15-4": nginx,
        f"{E2E}/nginx:1.27-0": nginx,
        f"{E2E}/nonroot:1.5": ImageRecipe([busybox_layer], cmd=["sh"], user="1234"),
        f"{E2E}/ipc-utils:1.4": ImageRecipe([busybox_layer], cmd=["sh"]),
        f"{E2E}/nonewprivs:1.4": ImageRecipe(
            [
                busybox_layer,
                # Set-uid root, as the upstream image's `chmod +s`.
                LayerSpec(
                    [
                        Entry("usr/local", "dir"),
                        Entry("usr/local/bin", "dir"),
                        Entry("usr/local/bin/nnp", data=(bin_dir / "nonewprivs").read_bytes(), mode=0o4755),
                    ]
                ),
            ],
            cmd=["nnp"],
            env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        ),
        # glibc's resolver test image: busybox's hostname and nslookup in its place.
        f"{E2E}/glibc-dns-testing:2.0.0": ImageRecipe([busybox_layer], cmd=["sh"]),
        "registry.k8s.io/pause:3.10.2": ImageRecipe(
            [LayerSpec([Entry("catatonit", data=Path(CATATONIT).read_bytes(), mode=0o755)])],
            entrypoint=["/catatonit", "-P"],
            cmd=None,
            user="65535:65535",
        ),
    }


def push_conformance_images(registry_url: str, bin_dir: Path) -> None:
    with RegistryClient(registry_url) as client:
        for ref, recipe in conformance_recipes(bin_dir).items():
            repo, tag = _repo_and_tag(ref)
            client.push_image(repo, tag, build_image(recipe))
