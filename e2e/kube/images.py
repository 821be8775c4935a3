"""The cluster's test images, built here and pushed to the local registry.

Pods name them as on a real cluster (`registry.k8s.io/e2e-test-images/...`,
`docker.io/library/busybox`); cribd reaches them through its registry mirrors,
as a node behind a mirror would.
"""

from __future__ import annotations

from pathlib import Path

from e2e.images.builder import Entry, ImageRecipe, LayerSpec, build_image, busybox_rootfs
from e2e.images.registry_client import RegistryClient

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


def push_images(registry_url: str, bin_dir: Path) -> dict[str, str]:
    """Build and push the images; returns reference -> manifest digest."""
    busybox_layer = LayerSpec(busybox_rootfs())
    agnhost = (bin_dir / "agnhost").read_bytes()
    images = {
        # agnhost's own image: the binary at /agnhost, `pause` by default; busybox
        # under it gives the shell and tools the tests exec.
        AGNHOST: ImageRecipe(
            [busybox_layer, LayerSpec([Entry("agnhost", data=agnhost, mode=0o755)], "zstd")],
            entrypoint=["/agnhost"],
            cmd=["pause"],
        ),
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
