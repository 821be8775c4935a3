"""Unpacking image layers: a normal tree comes out exact, hostile layers leave nothing behind.

Runs as root: layers own files by other users, carry devices and trusted.* xattrs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import stat
import struct
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from crib.errors import AlreadyExists, InvalidArgument
from crib.image_service import unpack
from crib.image_service.unpack import LayerError, UnpackResult, compression_of, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")

MTIME = 1_600_000_000
MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}
# A VFS_CAP_REVISION_2 security.capability: cap_net_bind_service, effective.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)

Entry = tuple[tarfile.TarInfo, bytes]


def ent(
    name: str,
    kind: str | bytes = "file",
    data: bytes = b"",
    *,
    mode: int | None = None,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    link: str = "",
    dev: tuple[int, int] = (0, 0),
    xattrs: dict[str, bytes] | None = None,
    pax: dict[str, str] | None = None,
) -> Entry:
    """One tar member; `kind` a KINDS key or a raw tar type byte."""
    info = tarfile.TarInfo(name)
    info.type = KINDS[kind] if isinstance(kind, str) else kind
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    info.linkname = link
    info.devmajor, info.devminor = dev
    info.size = len(data) if info.isreg() else 0
    headers = dict(pax or {})
    for key, value in (xattrs or {}).items():
        # tarfile takes PAX values as str; surrogateescape keeps binary values binary.
        headers[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = headers
    return info, data


def tar_bytes(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def compress(raw: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(raw)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def digest(raw: bytes) -> str:
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


@dataclass
class Env:
    root: Path  # tmp_path: nothing below it may change when a layer is refused
    layers: Path  # parent of every dest: where .tmp-* dirs appear
    outside: Path  # what escaping symlinks point at
    blobs: Path

    def blob(self, data: bytes) -> Path:
        path = self.blobs / secrets.token_hex(4)
        path.write_bytes(data)
        return path

    def dest(self, name: str = "layer") -> Path:
        return self.layers / name

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.layers.iterdir() if p.name != "passwd")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path, tmp_path / "layers", tmp_path / "outside", tmp_path / "blobs")
    for d in (e.layers, e.outside, e.blobs):
        d.mkdir()
    # Targets for escapes: a whiteout "../.wh.passwd" would hit layers/passwd.
    (e.layers / "passwd").write_text("sentinel\n")
    (e.outside / "secret").write_text("secret\n")
    return e


def snapshot(root: Path) -> dict[str, tuple[int, ...]]:
    """Everything below root; directories without their mtimes (the tmp dir comes and goes)."""
    out: dict[str, tuple[int, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out[str(path.relative_to(root))] = (st.st_mode, st.st_nlink, st.st_size, st.st_ino, mtime)
    return out


def passwd_state() -> tuple[int, ...]:
    st = os.lstat("/etc/passwd")
    return (st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns)


def refuse(
    env: Env,
    data: bytes,
    how: str = "none",
    *,
    expect: type[Exception] = LayerError,
    media_type: str | None = None,
    expected_diff_id: str | None = None,
) -> Exception:
    """Unpack data, expect `expect`, and check that nothing was left or changed anywhere."""
    blob = env.blob(data)
    before, passwd = snapshot(env.root), passwd_state()
    with pytest.raises(expect) as info:
        unpack_layer(blob, media_type or MEDIA[how], env.dest(), expected_diff_id)
    assert not os.path.lexists(env.dest())
    assert env.leftovers() == []
    assert snapshot(env.root) == before
    assert passwd_state() == passwd
    return info.value


# Entries in front of every hostile one, so a refusal has a half-built tree to remove,
# including a 0000 directory.
PREFIX = (
    ent("ok", "dir"),
    ent("ok/file", data=b"fine"),
    ent("locked", "dir", mode=0o000),
    ent("locked/inner", "dir", mode=0o555),
    ent("locked/inner/f", data=b"x" * 5000),
)


def walk_inodes(root: Path) -> tuple[int, int]:
    st = root.lstat()
    seen = {(st.st_dev, st.st_ino): st.st_blocks * 512}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = Path(dirpath, name).lstat()
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values()), len(seen)


# --------------------------------------------------------------------------- normal layers


def test_normal_tree(env: Env) -> None:
    raw = tar_bytes(
        ent("./", "dir", mode=0o755, mtime=MTIME - 1),
        ent("bin", "dir", mtime=MTIME - 2),
        ent(
            "bin/tool",
            data=b"#!/bin/tool\n",
            mode=0o4755,
            uid=1000,
            gid=1000,
            xattrs={"user.note": b"hello", "security.capability": CAPABILITY},
        ),
        ent("bin/abs", "symlink", link="/usr/bin/tool", uid=1000, gid=1000, mtime=MTIME - 3),
        ent("bin/hard", "hardlink", link="bin/tool"),
        ent("dev", "dir"),
        ent("dev/fifo", "fifo", mode=0o640, uid=1000, gid=1000),
        ent("dev/null", "char", mode=0o666, dev=(1, 3)),
        ent("ro", "dir", mode=0o555, mtime=MTIME - 4),
        ent("ro/a", data=b"a"),
        ent("ro/sub", "dir", mode=0o555),
        ent("ro/sub/b", data=b"b"),
        ent("home/u/.profile", data=b"x", uid=1000, gid=1000),  # parents not listed
        ent("home/u", "dir", mode=0o700, uid=1000, gid=1000, mtime=MTIME - 5),
        ent("tagged", "dir", mode=0o2775, xattrs={"user.dir": b"d", "system.posix_acl_access": b"\x02"}),
        ent("precise", pax={"mtime": "1600000000.123456789"}),
        ent("./././dotted//name", data=b"n"),
    )
    result = unpack_layer(env.blob(raw), MEDIA["none"], env.dest())
    root = env.dest()

    assert result.diff_id == digest(raw)
    assert (result.size, result.inodes) == walk_inodes(root)
    assert env.leftovers() == ["layer"]

    st = root.lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o755, (MTIME - 1) * 10**9)

    tool = (root / "bin/tool").lstat()
    assert stat.S_ISREG(tool.st_mode) and stat.S_IMODE(tool.st_mode) == 0o4755
    assert (tool.st_uid, tool.st_gid, tool.st_mtime_ns, tool.st_nlink) == (1000, 1000, MTIME * 10**9, 2)
    assert (root / "bin/tool").read_bytes() == b"#!/bin/tool\n"
    assert os.getxattr(root / "bin/tool", "user.note") == b"hello"
    assert os.getxattr(root / "bin/tool", "security.capability") == CAPABILITY
    assert (root / "bin/hard").lstat().st_ino == tool.st_ino

    link = (root / "bin/abs").lstat()
    assert stat.S_ISLNK(link.st_mode) and os.readlink(root / "bin/abs") == "/usr/bin/tool"
    assert (link.st_uid, link.st_gid, link.st_mtime_ns) == (1000, 1000, (MTIME - 3) * 10**9)
    assert (root / "bin").lstat().st_mtime_ns == (MTIME - 2) * 10**9

    fifo = (root / "dev/fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640 and fifo.st_uid == 1000
    null = (root / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)

    for path in ("ro", "ro/sub"):
        assert stat.S_IMODE((root / path).lstat().st_mode) == 0o555
    assert (root / "ro").lstat().st_mtime_ns == (MTIME - 4) * 10**9
    assert (root / "ro/sub/b").read_bytes() == b"b"

    home = (root / "home").lstat()  # made for home/u/.profile like tar does
    assert (stat.S_IMODE(home.st_mode), home.st_uid, home.st_gid) == (0o755, 0, 0)
    u = (root / "home/u").lstat()
    assert (stat.S_IMODE(u.st_mode), u.st_uid, u.st_mtime_ns) == (0o700, 1000, (MTIME - 5) * 10**9)

    tagged = root / "tagged"
    assert stat.S_IMODE(tagged.lstat().st_mode) == 0o2775
    assert os.listxattr(tagged) == ["user.dir"]  # system.* is not a layer's to set
    assert (root / "precise").lstat().st_mtime_ns == 1_600_000_000_123_456_789
    assert (root / "dotted/name").read_bytes() == b"n"


@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_diff_id_covers_whole_stream(env: Env, how: str) -> None:
    raw = tar_bytes(ent("f", data=b"data" * 1000), ent("d", "dir"))
    # tarfile pads to 10 KiB records: the reader stops at the first zero block, the hash must not.
    assert len(raw) % tarfile.RECORDSIZE == 0
    result = unpack_layer(env.blob(compress(raw, how)), MEDIA[how], env.dest(), expected_diff_id=digest(raw))
    assert result == UnpackResult(diff_id=digest(raw), size=result.size, inodes=3)
    assert (env.dest() / "f").read_bytes() == b"data" * 1000


def test_diff_id_mismatch_refused(env: Env) -> None:
    raw = tar_bytes(*PREFIX)
    err = refuse(
        env, compress(raw, "gzip"), "gzip", expect=InvalidArgument, expected_diff_id="sha256:" + "0" * 64
    )
    assert "diff_id mismatch" in str(err) and digest(raw) in str(err)


def test_empty_layer(env: Env) -> None:
    """What docker writes for a config-only step: 1024 zero bytes, gzipped."""
    raw = bytes(1024)
    result = unpack_layer(env.blob(gzip.compress(raw)), MEDIA["gzip"], env.dest())
    assert result.diff_id == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    assert result.inodes == 1 and os.listdir(env.dest()) == []
    assert stat.S_IMODE(env.dest().lstat().st_mode) == 0o755


def test_zstd_multiple_frames_skippable_and_checksum(env: Env) -> None:
    raw = tar_bytes(ent("a", data=os.urandom(3000)), ent("b", data=b"\0" * 300_000))
    skippable = struct.pack("<II", 0x184D2A5E, 7) + b"comment"
    cut = 1024
    blob = (
        zstandard.ZstdCompressor(write_checksum=True).compress(raw[:cut])
        + skippable
        + zstandard.ZstdCompressor(write_content_size=False).compress(raw[cut:])
    )
    result = unpack_layer(env.blob(blob), MEDIA["zstd"], env.dest(), expected_diff_id=digest(raw))
    assert result.diff_id == digest(raw)
    assert (env.dest() / "b").read_bytes() == b"\0" * 300_000


def test_whiteouts(env: Env) -> None:
    raw = tar_bytes(
        ent(".wh.gone", uid=1000, gid=1000),
        ent("etc/.wh.old.conf"),
        ent("d", "dir"),
        ent("d/.wh..wh..opq"),
        ent("d/kept", data=b"k"),
        ent(".wh..wh.plnk", "dir"),  # AUFS meta: ignored
        ent("here", data=b"h"),
        ent(".wh.here"),  # whites out what is already there
    )
    root = env.dest()
    unpack_layer(env.blob(raw), MEDIA["none"], root)
    for path in ("gone", "etc/old.conf", "here"):
        st = (root / path).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), path
    assert (root / "gone").lstat().st_uid == 1000
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert (root / "d/kept").read_bytes() == b"k"
    assert sorted(os.listdir(root)) == ["d", "etc", "gone", "here"]


def test_later_entry_replaces_earlier(env: Env) -> None:
    raw = tar_bytes(
        ent("a", data=b"file"),
        ent("a", "dir"),  # file -> dir
        ent("a/inner", data=b"i"),
        ent("b", "dir", mode=0o000),
        ent("b/deep/x", data=b"x"),
        ent("b", data=b"now a file"),  # dir -> file
        ent("c", data=b"file"),
        ent("c", "symlink", link="/nowhere"),  # file -> symlink
        ent("d", "dir", mode=0o755),
        ent("d/keep", data=b"k"),
        ent("d", "dir", mode=0o710, mtime=MTIME - 9),  # dir + dir: merged, newer metadata
        ent("e", data=b"old"),
        ent("e", data=b"new"),
        ent("f", data=b"f"),
        ent("f2", "hardlink", link="f"),
        ent("f2", "hardlink", link="f"),  # the same link again
    )
    root = env.dest()
    result = unpack_layer(env.blob(raw), MEDIA["none"], root)
    assert (root / "a/inner").read_bytes() == b"i"
    assert (root / "b").read_bytes() == b"now a file"
    assert os.readlink(root / "c") == "/nowhere"
    d = (root / "d").lstat()
    assert (stat.S_IMODE(d.st_mode), d.st_mtime_ns) == (0o710, (MTIME - 9) * 10**9)
    assert (root / "d/keep").read_bytes() == b"k"
    assert (root / "e").read_bytes() == b"new"
    assert (root / "f").lstat().st_nlink == 2
    assert (result.size, result.inodes) == walk_inodes(root)


def test_concurrent_unpacks(env: Env) -> None:
    raw = tar_bytes(*PREFIX, *(ent(f"many/{i}", data=os.urandom(i * 100)) for i in range(200)))
    blob = env.blob(compress(raw, "zstd"))
    dests = [env.dest("one"), env.dest("two")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda d: unpack_layer(blob, MEDIA["zstd"], d, digest(raw)), dests))
    assert results[0] == results[1] and results[0].diff_id == digest(raw)
    trees = [{path: st[:3] for path, st in snapshot(d).items()} for d in dests]  # mode, nlink, size
    assert trees[0] == trees[1] and len(trees[0]) == len(PREFIX) + 201
    assert env.leftovers() == ["one", "two"]


def test_compression_of() -> None:
    assert compression_of("application/vnd.oci.image.layer.v1.tar") == "none"
    assert compression_of("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd") == "zstd"
    assert compression_of("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert compression_of("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") == "gzip"
    assert compression_of("application/vnd.docker.image.rootfs.diff.tar") == "none"
    with pytest.raises(InvalidArgument, match="unsupported layer media type") as info:
        compression_of("application/vnd.oci.image.layer.v1.tar+bzip2")
    assert not isinstance(info.value, LayerError)


def test_dest_must_not_exist(env: Env) -> None:
    env.dest().mkdir()
    with pytest.raises(AlreadyExists):
        unpack_layer(env.blob(tar_bytes(*PREFIX)), MEDIA["none"], env.dest())


# --------------------------------------------------------------------------- hostile layers


def test_refuse_parent_escape(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("../escape", data=b"pwned")))
    assert isinstance(err, LayerError) and err.entry == "../escape" and "'..'" in err.reason
    assert not (env.layers / "escape").exists()


def test_refuse_absolute(env: Env) -> None:
    target = f"/tmp/crib-unpack-abs-{secrets.token_hex(6)}"
    err = refuse(env, tar_bytes(*PREFIX, ent(target, data=b"pwned")))
    assert isinstance(err, LayerError) and err.entry == target and "absolute" in err.reason
    assert not os.path.lexists(target)


def test_refuse_dotdot_inside(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("a/../../x", data=b"pwned")))
    assert isinstance(err, LayerError) and err.entry == "a/../../x"
    assert not (env.layers / "x").exists() and not (env.root / "x").exists()


@pytest.mark.parametrize("target", ["outside", "..", "../.."])
def test_refuse_file_through_symlink(env: Env, target: str) -> None:
    link = str(env.outside) if target == "outside" else target
    err = refuse(env, tar_bytes(*PREFIX, ent("evil", "symlink", link=link), ent("evil/pwned", data=b"x")))
    assert isinstance(err, LayerError) and err.entry == "evil/pwned" and "symlink" in err.reason
    assert not (env.outside / "pwned").exists() and not (env.layers / "pwned").exists()


def test_refuse_dir_through_nested_symlink(env: Env) -> None:
    raw = tar_bytes(*PREFIX, ent("a/b", "symlink", link=str(env.outside)), ent("a/b/c/d", "dir"))
    err = refuse(env, raw)
    assert isinstance(err, LayerError) and err.entry == "a/b/c/d"
    assert not (env.outside / "c").exists()


def test_refuse_hardlink_placed_through_symlink(env: Env) -> None:
    raw = tar_bytes(
        *PREFIX, ent("d", "symlink", link=str(env.outside)), ent("d/x", "hardlink", link="ok/file")
    )
    err = refuse(env, raw)
    assert isinstance(err, LayerError) and err.entry == "d/x"
    assert not (env.outside / "x").exists()


def test_refuse_hardlink_through_symlink(env: Env) -> None:
    raw = tar_bytes(
        *PREFIX, ent("d", "symlink", link=str(env.outside)), ent("x", "hardlink", link="d/secret")
    )
    err = refuse(env, raw)
    assert isinstance(err, LayerError) and err.entry == "x" and "'d'" in err.reason
    assert (env.outside / "secret").stat().st_nlink == 1


@pytest.mark.parametrize("link", ["/etc/passwd", "../../etc/passwd", "ok/../../passwd"])
def test_refuse_hardlink_outside(env: Env, link: str) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("x", "hardlink", link=link)))
    assert isinstance(err, LayerError) and err.entry == "x"
    assert (env.layers / "passwd").stat().st_nlink == 1


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ((ent("x", "hardlink", link="nope"),), "not in this layer"),
        ((ent("x", "hardlink", link="missing/dir/f"),), "not in this layer"),
        ((ent("s", "symlink", link="/etc/passwd"), ent("x", "hardlink", link="s")), "not a regular file"),
        ((ent("x", "hardlink", link="ok"),), "not a regular file"),
        ((ent("x", "hardlink", link="."),), "layer root"),
    ],
)
def test_refuse_bad_hardlink_source(env: Env, entries: tuple[Entry, ...], reason: str) -> None:
    err = refuse(env, tar_bytes(*PREFIX, *entries))
    assert isinstance(err, LayerError) and err.entry == "x" and reason in err.reason


@pytest.mark.parametrize("name", ["../.wh.passwd", "ok/.wh..", "ok/.wh."])
def test_refuse_escaping_whiteout(env: Env, name: str) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent(name)))
    assert isinstance(err, LayerError) and err.entry == name
    assert (env.layers / "passwd").read_text() == "sentinel\n"


@pytest.mark.parametrize(
    "attr", ["trusted.overlay.redirect", "trusted.overlay.opaque", "user.overlay.origin"]
)
def test_refuse_overlay_xattr(env: Env, attr: str) -> None:
    raw = tar_bytes(*PREFIX, ent("f", xattrs={attr: b"/etc"}))
    err = refuse(env, raw)
    assert isinstance(err, LayerError) and err.entry == "f" and attr in err.reason


def test_refuse_unknown_type(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("vol", b"V")))  # a GNU volume header
    assert isinstance(err, LayerError) and err.entry == "vol" and "type" in err.reason


def test_refuse_root_as_file(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("./", "symlink", link="/")))
    assert isinstance(err, LayerError) and "root" in err.reason


def test_refuse_long_path(env: Env) -> None:
    name = "a/" * 2048 + "b"
    err = refuse(env, tar_bytes(*PREFIX, ent(name, data=b"x")))
    assert isinstance(err, LayerError) and err.entry == name and "4096" in err.reason


def test_refuse_huge_pax_header(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX, ent("f", xattrs={"user.big": b"x" * (2 << 20)})))
    assert isinstance(err, LayerError) and "meta header" in err.reason


def test_refuse_too_many_entries(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unpack, "MAX_ENTRIES", len(PREFIX))
    err = refuse(env, tar_bytes(*PREFIX, ent("one-too-many")))
    assert isinstance(err, LayerError) and err.entry == "one-too-many"


def test_refuse_corrupt_gzip(env: Env) -> None:
    data = bytearray(compress(tar_bytes(*PREFIX, ent("big", data=os.urandom(50_000))), "gzip"))
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    err = refuse(env, bytes(data), "gzip", expect=InvalidArgument)
    assert not isinstance(err, LayerError) and "gzip" in str(err)


def test_refuse_truncated_gzip(env: Env) -> None:
    data = compress(tar_bytes(*PREFIX, ent("big", data=os.urandom(50_000))), "gzip")
    refuse(env, data[: len(data) - 100], "gzip", expect=InvalidArgument)


def test_refuse_gzip_media_type_for_plain_tar(env: Env) -> None:
    err = refuse(env, tar_bytes(*PREFIX), "gzip", expect=InvalidArgument)
    assert "not gzip" in str(err)


def test_refuse_plain_media_type_for_zstd(env: Env) -> None:
    err = refuse(env, compress(tar_bytes(*PREFIX), "zstd"), "none", expect=InvalidArgument)
    assert "is zstd" in str(err)


def test_refuse_truncated_zstd(env: Env) -> None:
    data = compress(tar_bytes(*PREFIX, ent("big", data=os.urandom(300_000))), "zstd")
    refuse(env, data[: len(data) // 2], "zstd", expect=InvalidArgument)


def test_refuse_zstd_truncated_at_member_boundary(env: Env) -> None:
    """The decoder reports a cut inside a frame as a clean end; the tar then looks complete."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, member_data in PREFIX:
            tar.addfile(info, io.BytesIO(member_data) if info.isreg() else None)
        body = buf.getvalue()  # the members, no end marker yet
    tail = tar_bytes(ent("lost", data=b"tiny"))  # one zstd block: cut, it yields nothing
    data = compress(body, "zstd") + compress(tail, "zstd")
    err = refuse(env, data[:-50], "zstd", expect=InvalidArgument)
    assert "truncated" in str(err)


def test_refuse_zstd_trailing_garbage(env: Env) -> None:
    data = compress(tar_bytes(*PREFIX), "zstd") + b"garbage!"
    refuse(env, data, "zstd", expect=InvalidArgument)


def test_refuse_corrupt_tar_header(env: Env) -> None:
    raw = bytearray(tar_bytes(*PREFIX, ent("later", data=b"x")))
    offset = raw.index(b"later\0")
    assert offset % 512 == 0
    raw[offset + 148 : offset + 156] = b"0000000\0"  # wrong header checksum
    err = refuse(env, bytes(raw), expect=InvalidArgument)
    assert "tar" in str(err)


def test_refuse_wrong_media_type(env: Env) -> None:
    err = refuse(
        env, tar_bytes(*PREFIX), media_type="application/vnd.oci.image.config.v1+json", expect=InvalidArgument
    )
    assert not isinstance(err, LayerError) and "media type" in str(err)
