"""The images critest 1.36 pulls, rebuilt here from busybox-static (no internet, no Docker).

critest names them under `registry.k8s.io/e2e-test-images/` and
`gcr.io/k8s-staging-cri-tools/`; cribd's mirrors send both hosts to the test
registry. The upstream images are busybox, nginx and httpd builds; here:
- busybox gets the tools critest runs that Debian's busybox lacks, as small
  scripts (e2e/images/shims.py: `pgrep NAME`, `ipcs -m`);
- nginx and httpd are busybox's httpd on port 80 (12003 for the host-network
  image), nginx writing its pid file as nginx does, httpd logging its name;
- nonewprivs is the upstream program, built from its Go module;
- the user images set USER as cri-tools' images/build does.
One image cannot be rebuilt: critest pins `test-image-digest` by the digest of
an upstream build, which other bytes cannot have (see e2e/test_critest.py).
"""

from __future__ import annotations

from pathlib import Path

from e2e.images.builder import PASSWD, Entry, ImageRecipe, LayerSpec
from e2e.images.shims import busybox_with_shims

E2E = "registry.k8s.io/e2e-test-images"
STAGING = "gcr.io/k8s-staging-cri-tools"

INDEX = b"<html><body><h1>Welcome to nginx!</h1></body></html>\n"


def _busybox() -> LayerSpec:
    return LayerSpec(busybox_with_shims())


def _web(port: int, root: str, pid_file: str = "", banner: str = "") -> ImageRecipe:
    script = ""
    if banner:
        script += f"echo '{banner}'; "
    if pid_file:
        script += f"echo $$ > {pid_file}; "
    script += f"exec httpd -f -v -p {port} -h {root}"
    parts = root.strip("/").split("/")
    dirs = [Entry("/".join(parts[: i + 1]), "dir") for i in range(len(parts))]
    layer = LayerSpec([*dirs, Entry(f"{root.strip('/')}/index.html", data=INDEX), Entry("var/run", "dir")])
    return ImageRecipe([_busybox(), layer], cmd=["sh", "-c", script], exposed_ports=[f"{port}/tcp"])


def _user(user: str) -> ImageRecipe:
    return ImageRecipe([_busybox()], cmd=["sh"], user=user)


def critest_images(bin_dir: Path) -> dict[str, ImageRecipe]:
    """reference -> recipe for every image critest 1.36 pulls on Linux but test-image-digest."""
    plain = ImageRecipe([_busybox()], cmd=["sh"])
    nginx_pid = "/var/run/nginx.pid"
    # The predefined-group image: user 1000 in group 50000, both named in the image.
    group_layer = LayerSpec(
        [
            Entry(
                "etc/passwd",
                data=(PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n").encode(),
            ),
            Entry(
                "etc/group",
                data=b"root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\ndefault-user:x:1000:\n"
                b"group-defined-in-image:x:50000:default-user\n",
            ),
        ]
    )
    pause = ImageRecipe(
        [LayerSpec([Entry("catatonit", data=Path("/usr/bin/catatonit").read_bytes(), mode=0o755)])],
        entrypoint=["/catatonit", "-P"],
        cmd=None,
        user="65535:65535",
    )
    images = {
        # One pause image under two registries' names: critest pulls both and wants one ID.
        "registry.k8s.io/pause:3.9": pause,
        "k8s.gcr.io/pause:3.9": pause,
        f"{E2E}/busybox:1.29-2": plain,
        f"{E2E}/nginx:1.14-2": _web(80, "/usr/share/nginx/html", pid_file=nginx_pid),
        f"{E2E}/httpd:2.4.39-4": _web(80, "/usr/local/apache2/htdocs", banner="httpd: serving on port 80"),
        f"{STAGING}/hostnet-nginx-amd64:latest": _web(
            12003, "/usr/share/nginx/html", pid_file="/var/run/nginx.pid"
        ),
        f"{E2E}/nonewprivs:1.3": ImageRecipe(
            [
                _busybox(),
                LayerSpec(
                    [
                        Entry("usr/local", "dir"),
                        Entry("usr/local/bin", "dir"),
                        # Set-uid root, as upstream's `chmod +s`.
                        Entry("usr/local/bin/nnp", data=(bin_dir / "nonewprivs").read_bytes(), mode=0o4755),
                    ]
                ),
            ],
            cmd=["/usr/local/bin/nnp"],
        ),
        f"{STAGING}/test-image-user-uid:latest": _user("1002"),
        f"{STAGING}/test-image-user-username:latest": _user("www-data"),
        f"{STAGING}/test-image-user-uid-group:latest": _user("1003:1004"),
        f"{STAGING}/test-image-user-username-group:latest": _user("www-data:1004"),
        f"{STAGING}/test-image-predefined-group:latest": ImageRecipe(
            [_busybox(), group_layer], cmd=["sh"], user="1000"
        ),
        # Each test image is an image of its own, as cri-tools builds them (a file named after
        # it): critest checks the tags an image has, which shared content would merge.
        f"{STAGING}/test-image-latest:latest": _marked("test-image-latest"),
        f"{STAGING}/test-image-tag:test": _marked("test-image-tag"),
        f"{STAGING}/test-image-tag:all": _marked("test-image-tag"),
    }
    # Three tags of one image, and three images that differ.
    for i in (1, 2, 3):
        images[f"{STAGING}/test-image-tags:{i}"] = _marked("test-image-tags")
        images[f"{STAGING}/test-image-{i}:latest"] = _marked(f"test-image-{i}")
    return images


def _marked(name: str) -> ImageRecipe:
    return ImageRecipe([_busybox(), LayerSpec([Entry(name, data=b"")])], cmd=["sh"])
