"""Resolving paths inside a hostile rootfs: every link stays inside the root.

`tmp_path / "root"` plays the rootfs; `tmp_path / "host"` plays the host, holding files
with unique markers that must never be reached through the rootfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crib.container import securejoin
from crib.container.securejoin import MAX_SYMLINKS, mkdir_all, open_in_root, secure_join
from crib.errors import InvalidArgument


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def host(tmp_path: Path) -> Path:
    h = tmp_path / "host"
    h.mkdir()
    return h


def read_fd(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def inside(root: Path, host_path: Path) -> Path:
    """Where an absolute host path lands when taken as a path in the container."""
    return root / str(host_path).lstrip("/")


# --- secure_join -------------------------------------------------------------------------


def test_plain_paths(root: Path) -> None:
    (root / "usr" / "bin").mkdir(parents=True)
    assert secure_join(root, "/usr/bin") == root / "usr/bin"
    assert secure_join(root, "usr/bin") == root / "usr/bin"
    assert secure_join(root, "//usr/./bin/") == root / "usr/bin"
    assert secure_join(root, "/") == root
    assert secure_join(root, "") == root
    assert secure_join(root, ".") == root


def test_missing_components_are_appended_literally(root: Path) -> None:
    (root / "usr").mkdir()
    assert secure_join(root, "/usr/missing/deeper/x") == root / "usr/missing/deeper/x"
    assert secure_join(root, "/nothing/here") == root / "nothing/here"
    # `..` after a missing component is lexical.
    assert secure_join(root, "/nothing/../usr") == root / "usr"


def test_dotdot_never_climbs_above_root(root: Path) -> None:
    (root / "a").mkdir()
    assert secure_join(root, "/../../..") == root
    assert secure_join(root, "../../etc/shadow") == root / "etc/shadow"
    assert secure_join(root, "/a/../../../b") == root / "b"


def test_absolute_link_is_relative_to_root(root: Path) -> None:
    (root / "private" / "etc").mkdir(parents=True)
    (root / "etc").symlink_to("/private/etc")
    assert secure_join(root, "/etc/passwd") == root / "private/etc/passwd"
    assert secure_join(root, "/etc") == root / "private/etc"


def test_relative_link(root: Path) -> None:
    (root / "usr" / "lib64").mkdir(parents=True)
    (root / "usr" / "lib").symlink_to("lib64")
    (root / "lib").symlink_to("usr/lib")
    assert secure_join(root, "/lib/libc.so") == root / "usr/lib64/libc.so"


def test_relative_link_is_relative_to_its_resolved_directory(root: Path) -> None:
    (root / "real" / "sub").mkdir(parents=True)
    (root / "real" / "sub" / "up").symlink_to("../sibling")
    (root / "alias").symlink_to("real/sub")
    # alias/up -> real/sub/up -> real/sub/../sibling, not alias/../sibling.
    assert secure_join(root, "/alias/up") == root / "real/sibling"


def test_link_to_host_shadow_resolves_inside_root(root: Path) -> None:
    (root / "shadow").symlink_to("/etc/shadow")
    (root / "up").symlink_to("../../../../../../../../etc/shadow")
    assert secure_join(root, "/shadow") == root / "etc/shadow"
    assert secure_join(root, "/up") == root / "etc/shadow"


def test_dotdot_links_cannot_escape(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "esc").symlink_to("../../../../..")
    (root / "dotdot").symlink_to("..")
    assert secure_join(root, "/a/b/esc") == root
    assert secure_join(root, "/a/b/esc/etc/passwd") == root / "etc/passwd"
    assert secure_join(root, "/dotdot/dotdot/x") == root / "x"


def test_chain_of_links(root: Path) -> None:
    (root / "d").mkdir()
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("/c")
    (root / "c").symlink_to("../d/e")
    assert secure_join(root, "/a") == root / "d/e"
    assert secure_join(root, "/a/f") == root / "d/e/f"


def test_dangling_link_resolves_to_its_target(root: Path) -> None:
    (root / "run").symlink_to("/var/run/missing")
    assert secure_join(root, "/run/x.sock") == root / "var/run/missing/x.sock"


def test_file_in_the_middle_is_taken_literally(root: Path) -> None:
    (root / "f").write_text("x")
    assert secure_join(root, "/f/x/y") == root / "f/x/y"


def test_loops_are_refused(root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    (root / "self").symlink_to("self")
    (root / "dir").mkdir()
    (root / "dir" / "loop").symlink_to("../dir/loop")
    for path in ("/a", "/b/x", "/self", "/dir/loop/x"):
        with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
            secure_join(root, path)


def test_link_limit_is_255(root: Path) -> None:
    (root / "target").mkdir()
    (root / f"l{MAX_SYMLINKS}").symlink_to("target")
    for i in range(MAX_SYMLINKS - 1, -1, -1):
        (root / f"l{i}").symlink_to(f"l{i + 1}")
    # l1 -> ... -> l255 -> target: 255 links.
    assert secure_join(root, "/l1/x") == root / "target/x"
    # l0 adds the 256th.
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        secure_join(root, "/l0/x")


def test_nul_byte_is_refused(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        secure_join(root, "/etc/\x00passwd")


def test_overlong_name_is_invalid_argument(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="too long"):
        secure_join(root, "/" + "x" * 300)


# --- a kernel oracle ---------------------------------------------------------------------

_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def kernel_resolve(root: Path, path: str) -> Path | None:
    """What openat2(RESOLVE_IN_ROOT) resolves `path` to, None if the kernel fails."""
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT)
        fd = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(rfd),
            ctypes.c_char_p(path.encode()),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EPERM):
                pytest.skip("openat2 is not available")
            return None
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)
    finally:
        os.close(rfd)


_NAMES = ("a", "b", "c")
_component = st.sampled_from([*_NAMES, "..", "."])
_rel = st.lists(_component, min_size=1, max_size=4).map("/".join)
_target = st.one_of(_rel, _rel.map(lambda p: "/" + p), st.just("/"), st.just(".."))
_node = st.tuples(
    st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map("/".join),
    st.sampled_from(["dir", "file", "link"]),
    _target,
)


def build_tree(root: Path, nodes: list[tuple[str, str, str]]) -> None:
    """Create the nodes without ever following a link (a link here may point at the host's /)."""
    for relpath, kind, target in nodes:
        parts = relpath.split("/")
        parent = root
        ok = True
        for name in parts[:-1]:
            parent = parent / name
            try:
                mode = os.lstat(parent).st_mode
            except FileNotFoundError:
                os.mkdir(parent)
                continue
            if not stat.S_ISDIR(mode):
                ok = False
                break
        if not ok:
            continue
        path = parent / parts[-1]
        with contextlib.suppress(FileExistsError):
            if kind == "dir":
                os.mkdir(path)
            elif kind == "file":
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            else:
                os.symlink(target, path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(_node, max_size=10), queries=st.lists(_target, min_size=1, max_size=6))
def test_matches_the_kernel_and_stays_in_root(nodes: list[tuple[str, str, str]], queries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        build_tree(root, nodes)
        for query in queries:
            try:
                ours = secure_join(root, query)
            except InvalidArgument:
                continue  # a loop; the kernel gives ELOOP for those too (it allows only 40)
            assert ours == root or root in ours.parents
            kernel = kernel_resolve(root, query)
            if kernel is not None:
                # Where the kernel resolves the path (every component exists), we agree.
                assert ours == kernel, (query, nodes)


# --- mkdir_all ---------------------------------------------------------------------------


def test_mkdir_all_creates_missing_parents(root: Path) -> None:
    got = mkdir_all(root, "/var/lib/app")
    assert got == root / "var/lib/app"
    assert got.is_dir()
    # Existing directories are fine.
    assert mkdir_all(root, "/var/lib/app") == got
    assert mkdir_all(root, "/") == root


def test_mkdir_all_mode(root: Path) -> None:
    old = os.umask(0)
    try:
        got = mkdir_all(root, "/m/n", mode=0o750)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root / "m").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(got).st_mode) == 0o750


def test_mkdir_all_through_absolute_link_to_host_stays_inside(root: Path, host: Path) -> None:
    (root / "var").mkdir()
    # An absolute link naming a directory that exists on the host.
    (root / "var" / "run").symlink_to(str(host))
    got = mkdir_all(root, "/var/run/sub/dir")
    assert got == inside(root, host) / "sub/dir"
    assert got.is_dir()
    assert list(host.iterdir()) == []


def test_mkdir_all_through_dotdot_link_stays_inside(root: Path, host: Path) -> None:
    (root / "esc").symlink_to("../" * 30 + str(host).lstrip("/"))
    got = mkdir_all(root, "/esc/x")
    assert got == inside(root, host) / "x"
    assert got.is_dir()
    assert list(host.iterdir()) == []


def test_mkdir_all_follows_links_inside_root(root: Path) -> None:
    (root / "data").mkdir()
    (root / "link").symlink_to("data")
    assert mkdir_all(root, "/link/x") == root / "data/x"
    assert (root / "data/x").is_dir()


def test_mkdir_all_refuses_a_file_where_a_directory_is_expected(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    with pytest.raises(InvalidArgument, match=r"/etc/passwd exists .* not a directory"):
        mkdir_all(root, "/etc/passwd")
    with pytest.raises(InvalidArgument, match="not a directory"):
        mkdir_all(root, "/etc/passwd/sub")
    assert (root / "etc" / "passwd").is_file()


def test_mkdir_all_refuses_a_component_swapped_for_a_link(
    root: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolution saw a directory "a"; by the time of the walk it is a link to the host.
    (root / "a").symlink_to(str(host))
    monkeypatch.setattr(securejoin, "_resolve", lambda _root, _unsafe: ["a", "x"])
    with pytest.raises(InvalidArgument, match="became a symlink"):
        mkdir_all(root, "/a/x")
    assert list(host.iterdir()) == []


def test_mkdir_all_loop_is_invalid(root: Path) -> None:
    (root / "loop").symlink_to("loop")
    with pytest.raises(InvalidArgument, match="too many levels"):
        mkdir_all(root, "/loop/x")


# --- open_in_root ------------------------------------------------------------------------


def test_open_in_root_reads_a_file(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("box\n")
    fd = open_in_root(root, "/etc/hostname")
    assert fd is not None
    assert os.get_blocking(fd)
    assert not os.get_inheritable(fd)
    assert read_fd(fd) == b"box\n"


def test_open_in_root_follows_links_inside_root(root: Path) -> None:
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "os-release").write_text("ID=test\n")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    fd = open_in_root(root, "/etc/os-release")
    assert fd is not None
    assert read_fd(fd) == b"ID=test\n"


@pytest.mark.parametrize("absolute", [True, False])
def test_open_in_root_never_reads_the_host_file(root: Path, host: Path, absolute: bool) -> None:
    marker = f"host-{secrets.token_hex(8)}"
    host_passwd = host / "passwd"
    host_passwd.write_text(f"{marker}:x:0:0::/:/bin/sh\n")
    (root / "etc").mkdir()
    target = str(host_passwd) if absolute else "../" * 30 + str(host_passwd).lstrip("/")
    (root / "etc" / "passwd").symlink_to(target)

    assert open_in_root(root, "/etc/passwd") is None

    # With a file at the same path inside the rootfs, that one is read.
    mirror = inside(root, host_passwd)
    mirror.parent.mkdir(parents=True)
    mirror.write_text("rootfs:x:1:1::/:/bin/sh\n")
    fd = open_in_root(root, "/etc/passwd")
    assert fd is not None
    data = read_fd(fd)
    assert data == b"rootfs:x:1:1::/:/bin/sh\n"
    assert marker.encode() not in data


def test_open_in_root_through_proc_magic_link_stays_inside(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "passwd").symlink_to("/proc/1/root/etc/passwd")
    (root / "etc" / "group").symlink_to("/proc/self/root/etc/group")
    assert open_in_root(root, "/etc/passwd") is None
    assert open_in_root(root, "/etc/group") is None


def test_open_in_root_none_for_missing_and_non_regular(root: Path) -> None:
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    os.mkfifo(root / "fifo")
    (root / "dangling").symlink_to("/nowhere")
    assert open_in_root(root, "/missing") is None
    assert open_in_root(root, "/missing/deeper") is None
    assert open_in_root(root, "/dir") is None
    assert open_in_root(root, "/") is None
    assert open_in_root(root, "/file/x") is None
    assert open_in_root(root, "/dangling") is None
    # A FIFO is neither opened nor waited on.
    result: list[int | None] = []
    t = threading.Thread(target=lambda: result.append(open_in_root(root, "/fifo")), daemon=True)
    t.start()
    t.join(5)
    assert result == [None]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_open_in_root_does_not_open_devices(root: Path) -> None:
    os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert open_in_root(root, "/null") is None


def test_open_in_root_refuses_a_component_swapped_for_a_link(
    root: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = secrets.token_hex(8)
    (host / "passwd").write_text(marker)
    (root / "etc").symlink_to(str(host))
    monkeypatch.setattr(securejoin, "_resolve", lambda _root, _unsafe: ["etc", "passwd"])
    assert open_in_root(root, "/etc/passwd") is None
    # And the final component swapped for a link.
    (root / "f").symlink_to(str(host / "passwd"))
    monkeypatch.setattr(securejoin, "_resolve", lambda _root, _unsafe: ["f"])
    assert open_in_root(root, "/f") is None


def test_open_in_root_loop_is_invalid(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgument, match="too many levels"):
        open_in_root(root, "/etc/passwd")
