"""Unpacking one OCI image layer into a directory that becomes an overlayfs lower dir.

Layers are hostile input (DESIGN.md §6). Every entry is created by hand with `*at`
calls relative to directory fds that were opened without following symlinks, so no
name, symlink or hard link in a layer can reach outside the layer's directory:
absolute and `..` names are refused, a path through a symlink is refused, symlinks
are created but never followed. The layer is built in a `.tmp-*` sibling of its
destination and renamed into place only when every entry, the stream and the
diff_id check out; on any failure nothing of it remains.

Whiteouts become what overlayfs expects: `.wh.<name>` a 0/0 character device,
`.wh..wh..opq` the `trusted.overlay.opaque` xattr. A layer may not carry overlay
xattrs of its own.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from crib.errors import AlreadyExists, InvalidArgument

MAX_ENTRIES = 1_000_000
MAX_PATH = 4096
_CHUNK = 1 << 20
# tarfile reads these meta headers whole into memory; real ones are far smaller.
_META_LIMITS = {
    tarfile.GNUTYPE_LONGNAME: 64 << 10,
    tarfile.GNUTYPE_LONGLINK: 64 << 10,
    tarfile.XHDTYPE: 1 << 20,
    tarfile.XGLTYPE: 1 << 20,
    tarfile.SOLARIS_XHDTYPE: 1 << 20,
}

# O_PATH fds serve as dir_fd for every *at call; O_NOFOLLOW|O_DIRECTORY makes a
# symlink (or a file) in the middle of a path fail with ENOTDIR/ELOOP.
_O_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# fsetxattr, fchown, fchmod and getdents need a real open file, not an O_PATH one.
_O_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_O_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_WHITEOUT = ".wh."
_WHITEOUT_META = ".wh..wh."
_OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_PAX_XATTR = "SCHILY.xattr."
_XATTR_NAMESPACES = ("user.", "security.", "trusted.")
# overlayfs keeps its metadata in trusted.overlay.* (user.overlay.* with the
# userxattr mount option); a layer that sets either could forge redirects or
# opaque dirs.
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_PAX_MTIME = re.compile(r"(-?)(\d{1,19})(?:\.(\d*))?")
_MAX_ID = 0xFFFF_FFFE  # (uid_t)-1 means "leave unchanged" to chown

# errnos that a layer's own content causes (a name too long, a device number
# the kernel rejects, a hard link whose source a later entry removed, ...);
# anything else (ENOSPC, EIO, EPERM) is the host's trouble and stays an OSError.
_LAYER_ERRNOS = frozenset(
    {
        errno.EINVAL,
        errno.ENAMETOOLONG,
        errno.ERANGE,
        errno.E2BIG,
        errno.EOVERFLOW,
        errno.ELOOP,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENOENT,
        errno.EMLINK,
    }
)

_MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # ..0x184D2A5F


class LayerError(InvalidArgument):
    """A layer crib refuses; the message names the offending entry."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"layer entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes on disk (st_blocks * 512), hard links counted once
    inodes: int  # inodes created, hard links counted once


def compression_of(media_type: str) -> str:
    """The compression ("gzip", "zstd" or "none") of a layer media type crib can unpack."""
    try:
        return _MEDIA_TYPES[media_type]
    except KeyError:
        raise InvalidArgument(f"unsupported layer media type {media_type!r}") from None


def unpack_layer(
    blob: Path, media_type: str, dest: Path, expected_diff_id: str | None = None
) -> UnpackResult:
    """Unpack the layer `blob` into the new directory `dest`; blocking (run it in a worker thread).

    Raises LayerError for an entry crib refuses, InvalidArgument for a corrupt
    stream, a wrong media type or a diff_id mismatch; `dest` then does not exist
    and no temporary directory remains.
    """
    compression = compression_of(media_type)
    dest = Path(dest)
    if os.path.lexists(dest):
        raise AlreadyExists(f"layer directory {dest} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        with open(blob, "rb") as raw:
            stream = _LayerStream(raw, compression, media_type)
            root = os.open(tmp, _O_WALK)
            try:
                unpacker = _Unpacker(root)
                try:
                    unpacker.run(stream)
                finally:
                    unpacker.close()
                diff_id = stream.diff_id()
                if expected_diff_id is not None and diff_id != expected_diff_id:
                    raise InvalidArgument(
                        f"layer diff_id mismatch: expected {expected_diff_id}, the layer has {diff_id}"
                    )
                size, inodes = unpacker.finish()
            finally:
                os.close(root)
        os.rename(tmp, dest)
    except BaseException as exc:
        _discard(tmp, exc)
        if isinstance(exc, OSError) and not exc.filename:
            # Written through directory fds, the error names no file: say which layer (and so
            # which file system, when it is a full one).
            exc.filename = str(dest)
        if isinstance(exc, tarfile.TarError):
            raise InvalidArgument(f"corrupt layer tar stream: {exc}") from exc
        raise
    return UnpackResult(diff_id=diff_id, size=size, inodes=inodes)


# --------------------------------------------------------------------------- stream


class _ZstdFrames:
    """Follows the zstd frame structure (RFC 8878 §3.1) of the compressed bytes without decoding them.

    python-zstandard's readers report a stream cut off inside a frame as a clean
    end of data, so a layer truncated at a tar member boundary would unpack
    "fine" but short. Block sizes are in the block headers, so telling whether
    the input ended exactly at a frame boundary needs no decompression.
    """

    _MAGIC, _DESCRIPTOR, _HEADER, _BLOCK, _CHECKSUM, _SKIP_SIZE = range(6)

    def __init__(self) -> None:
        self._state = self._MAGIC
        self._want = 4  # header bytes the current state needs
        self._buf = bytearray()
        self._skip = 0  # block or skippable-frame content still to pass over
        self._checksum = False
        self.frames = 0

    @property
    def complete(self) -> bool:
        return self.frames > 0 and self._state == self._MAGIC and not self._buf and not self._skip

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._want:
                header = int.from_bytes(self._buf, "little")
                self._buf.clear()
                self._advance(header)

    def _advance(self, header: int) -> None:
        if self._state == self._MAGIC:
            if header == _ZSTD_MAGIC:
                self._state, self._want = self._DESCRIPTOR, 1
            elif header & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                self._state, self._want = self._SKIP_SIZE, 4
            else:
                raise InvalidArgument("corrupt zstd stream: no zstd frame where one must start")
        elif self._state == self._DESCRIPTOR:
            if header & 0x08:
                raise InvalidArgument("corrupt zstd stream: reserved frame header bit set")
            single_segment = bool(header & 0x20)
            self._checksum = bool(header & 0x04)
            rest = (0 if single_segment else 1) + (0, 1, 2, 4)[header & 0x03]
            rest += ((1 if single_segment else 0), 2, 4, 8)[header >> 6]
            if rest:
                self._state, self._want = self._HEADER, rest
            else:
                self._state, self._want = self._BLOCK, 3
        elif self._state == self._HEADER:
            self._state, self._want = self._BLOCK, 3
        elif self._state == self._BLOCK:
            block_type, block_size = (header >> 1) & 0x03, header >> 3
            if block_type == 3:
                raise InvalidArgument("corrupt zstd stream: reserved block type")
            self._skip = 1 if block_type == 1 else block_size  # an RLE block holds one byte
            if header & 0x01:  # last block of the frame
                if self._checksum:
                    self._state, self._want = self._CHECKSUM, 4
                else:
                    self._end_frame()
        elif self._state == self._CHECKSUM:
            self._end_frame()
        else:  # skippable frame size
            self._skip = header
            self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._state, self._want = self._MAGIC, 4


class _Tap:
    """A file-like source that shows every byte read through it to `feed`."""

    def __init__(self, raw: BinaryIO, feed: Callable[[bytes], None]) -> None:
        self._raw = raw
        self._feed = feed

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._feed(data)
        return data


class _LayerStream:
    """The uncompressed tar stream of a layer: decompresses, hashes every byte that passes.

    Decoder failures surface as InvalidArgument wherever the tar reader happens
    to be reading.
    """

    def __init__(self, raw: BinaryIO, compression: str, media_type: str) -> None:
        self._compression = compression
        self._hash = hashlib.sha256()
        self._eof = False
        self._frames: _ZstdFrames | None = None
        self._tap: _Tap | None = None
        _check_magic(raw, compression, media_type)
        self._src: BinaryIO
        if compression == "gzip":
            self._src = gzip.GzipFile(fileobj=raw, mode="rb")
        elif compression == "zstd":
            self._frames = _ZstdFrames()
            self._tap = _Tap(raw, self._frames.feed)
            # read_across_frames: layers may be several frames (zstd:chunked is).
            self._src = zstandard.ZstdDecompressor().stream_reader(
                self._tap, read_across_frames=True, closefd=False
            )
        else:
            self._src = raw

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._src.read(size)
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise InvalidArgument(f"corrupt {self._compression} layer stream: {exc}") from exc
        if data:
            self._hash.update(data)
        elif size != 0 and not self._eof:
            self._eof = True
            self._check_end()
        return data

    def drain(self) -> None:
        """Read to the end: the diff_id covers the padding after the tar end marker too."""
        while self.read(_CHUNK):
            pass

    def diff_id(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"

    def _check_end(self) -> None:
        if self._frames is None or self._tap is None:
            return
        while self._tap.read(_CHUNK):  # whatever the decoder left, for the frame check
            pass
        if not self._frames.complete:
            raise InvalidArgument("corrupt zstd layer stream: truncated inside a frame")


def _check_magic(raw: BinaryIO, compression: str, media_type: str) -> None:
    """Name the problem when the data is not what the media type says."""
    head = raw.read(4)
    raw.seek(0)
    is_gzip = head.startswith(_GZIP_MAGIC)
    magic = int.from_bytes(head, "little") if len(head) == 4 else -1
    is_zstd = magic == _ZSTD_MAGIC or magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE
    found = "gzip" if is_gzip else "zstd" if is_zstd else "none"
    if found == compression:
        return
    if compression == "none":
        raise InvalidArgument(f"layer media type {media_type} says uncompressed but the data is {found}")
    raise InvalidArgument(
        f"layer media type {media_type} says {compression} but the data is not {compression}"
    )


class _LayerTarInfo(tarfile.TarInfo):
    """TarInfo that is strict where TarFile.next() is lenient."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            # Past the first member TarFile.next() takes these for the end of the
            # archive: a damaged or cut-off layer would unpack short, silently.
            raise tarfile.ReadError(f"bad tar header at offset {tarfile_.offset}: {exc}") from None

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        info = super().frombuf(buf, encoding, errors)
        limit = _META_LIMITS.get(info.type)
        if limit is not None and info.size > limit:
            raise LayerError(info.name, f"tar meta header of {info.size} bytes (limit {limit})")
        return info


# --------------------------------------------------------------------------- entries


@dataclass
class _DirMeta:
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None  # None: a parent tar created implicitly, keep its time


class _Unpacker:
    """Creates the entries of one layer under the directory fd `root`."""

    def __init__(self, root: int) -> None:
        self._root = root
        # Every directory that exists under root, by path; its metadata is applied
        # at the end so that 0555 dirs take children and children's creation
        # does not undo their parent's mtime.
        self._dirs: dict[tuple[str, ...], _DirMeta] = {(): _DirMeta(0o755, 0, 0, None)}
        # The parent directory of the previous entry (layers list a directory's
        # entries together). Always valid: entries only ever remove children of
        # the current parent, never the parent or its ancestors.
        self._parent_key: tuple[str, ...] | None = None
        self._parent_fd: int | None = None

    def close(self) -> None:
        if self._parent_fd is not None:
            os.close(self._parent_fd)
            self._parent_fd = None

    def run(self, stream: _LayerStream) -> None:
        with tarfile.open(
            fileobj=stream,  # a streaming TarFile only calls read()
            mode="r|",
            tarinfo=_LayerTarInfo,
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            count = 0
            while (member := tar.next()) is not None:
                count += 1
                if count > MAX_ENTRIES:
                    raise LayerError(member.name, f"the layer has more than {MAX_ENTRIES} entries")
                try:
                    self._entry(tar, member)
                except OSError as exc:
                    if exc.errno not in _LAYER_ERRNOS:
                        raise
                    raise LayerError(member.name, f"cannot create it: {exc.strerror}") from exc
                except (ValueError, OverflowError) as exc:
                    raise LayerError(member.name, f"cannot create it: {exc}") from exc
                # Streaming TarFile keeps every member it read; a layer may have a million.
                tar.members = []
        stream.drain()

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _split(name, name)
        xattrs = _xattrs(member)
        uid, gid = _owner(member)
        if not parts:  # "./": the layer root itself
            if not member.isdir():
                raise LayerError(name, "the layer root can only be a directory")
            self._dirs[()] = _DirMeta(member.mode & 0o7777, uid, gid, _mtime_ns(member))
            if xattrs:
                self._set_dir_xattrs(self._root, ".", xattrs)
            return
        base = parts[-1]
        if base.startswith(_WHITEOUT):
            self._whiteout(member, parts)
            return
        if member.islnk():  # before the parent walk: it needs its own fd for the source
            self._hardlink(member, parts)
            return
        parent = self._parent(parts, name)
        if member.isdir():
            if not self._clear(parent, parts, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent)
            self._dirs[parts] = _DirMeta(member.mode & 0o7777, uid, gid, _mtime_ns(member))
            if xattrs:
                self._set_dir_xattrs(parent, base, xattrs)
        elif member.isreg():
            self._clear(parent, parts, keep_dir=False)
            self._file(tar, member, parent, base, uid, gid, xattrs)
        elif member.issym():
            if len(os.fsencode(member.linkname)) > MAX_PATH:
                raise LayerError(name, f"symlink target longer than {MAX_PATH} bytes")
            self._clear(parent, parts, keep_dir=False)
            os.symlink(member.linkname, base, dir_fd=parent)
            os.chown(base, uid, gid, dir_fd=parent, follow_symlinks=False)
            mtime = _mtime_ns(member)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            device = os.makedev(member.devmajor, member.devminor) if kind != stat.S_IFIFO else 0
            self._clear(parent, parts, keep_dir=False)
            os.mknod(base, kind | 0o600, device, dir_fd=parent)
            # Never opened: opening a device or a FIFO has effects (or blocks).
            os.chown(base, uid, gid, dir_fd=parent, follow_symlinks=False)
            os.chmod(base, member.mode & 0o7777, dir_fd=parent)  # after chown, which drops setuid
            mtime = _mtime_ns(member)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        else:
            raise LayerError(name, f"unsupported tar entry type {member.type!r}")

    def _file(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        parent: int,
        base: str,
        uid: int,
        gid: int,
        xattrs: dict[str, bytes],
    ) -> None:
        mtime = _mtime_ns(member)
        fd = os.open(base, _O_FILE, 0o600, dir_fd=parent)
        try:
            data = tar.extractfile(member)
            if data is None:  # only for non-regular members
                raise LayerError(member.name, "no data for a regular file")
            while chunk := data.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid
            for key, value in xattrs.items():  # after chown, which drops security.capability
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _hardlink(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        name = member.name
        source = _split(name, member.linkname)
        if not source:
            raise LayerError(name, "hard link to the layer root")
        src_dir = self._walk(source[:-1], name, create=False)
        try:
            try:
                src = os.stat(source[-1], dir_fd=src_dir, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(name, f"hard link target {member.linkname!r} is not in this layer") from None
            if not stat.S_ISREG(src.st_mode):
                raise LayerError(name, f"hard link target {member.linkname!r} is not a regular file")
            parent = self._parent(parts, name)
            base = parts[-1]
            try:
                dst = os.stat(base, dir_fd=parent, follow_symlinks=False)
                if (dst.st_dev, dst.st_ino) == (src.st_dev, src.st_ino):
                    return  # already that file
            except FileNotFoundError:
                pass
            self._clear(parent, parts, keep_dir=False)
            os.link(source[-1], base, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_dir)

    def _whiteout(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        name, base = member.name, parts[-1]
        parent = self._parent(parts, name)
        if base == _OPAQUE:
            self._set_dir_xattrs(parent, ".", {_OPAQUE_XATTR: b"y"})
            return
        if base.startswith(_WHITEOUT_META):
            return  # other AUFS meta files (.wh..wh.plnk, ...) mean nothing to overlayfs
        target = base[len(_WHITEOUT) :]
        if target in ("", ".", ".."):
            raise LayerError(name, "whiteout of no name")
        uid, gid = _owner(member)
        self._clear(parent, (*parts[:-1], target), keep_dir=False)
        os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        os.chown(target, uid, gid, dir_fd=parent, follow_symlinks=False)

    def _clear(self, parent: int, parts: tuple[str, ...], keep_dir: bool) -> bool:
        """Remove what is at `parts` (the later tar entry wins); True when a directory stays."""
        base = parts[-1]
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=parent)
            return False
        if keep_dir:
            return True

        def forget(rel: tuple[str, ...]) -> None:
            del self._dirs[parts + rel]

        _rmtree_at(parent, base, forget)
        return False

    def _parent(self, parts: tuple[str, ...], entry: str) -> int:
        """Borrowed fd of the directory holding `parts`, creating missing ones like tar does."""
        key = parts[:-1]
        if self._parent_fd is None or self._parent_key != key:
            fd = self._walk(key, entry, create=True)
            self.close()
            self._parent_key, self._parent_fd = key, fd
        return self._parent_fd

    def _walk(self, dirs: tuple[str, ...], entry: str, create: bool) -> int:
        """An O_PATH fd of root/dirs, reached one component at a time without following symlinks."""
        fd = os.dup(self._root)
        try:
            for depth, component in enumerate(dirs, 1):
                try:
                    nxt = os.open(component, _O_WALK, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise LayerError(entry, f"{'/'.join(dirs[:depth])!r} is not in this layer") from None
                    os.mkdir(component, 0o700, dir_fd=fd)
                    self._dirs[dirs[:depth]] = _DirMeta(0o755, 0, 0, None)
                    nxt = os.open(component, _O_WALK, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    where = "/".join(dirs[:depth])
                    raise LayerError(entry, f"{where!r} is not a directory (a symlink or a file)") from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _set_dir_xattrs(self, parent: int, base: str, xattrs: dict[str, bytes]) -> None:
        fd = os.open(base, _O_DIR, dir_fd=parent)
        try:
            for key, value in xattrs.items():
                os.setxattr(fd, key, value)
        finally:
            os.close(fd)

    def finish(self) -> tuple[int, int]:
        """Give every directory its owner, mode and times; return the bytes and inodes of the tree.

        One post-order walk: a directory gets its metadata once everything below
        it exists (creating a child changes its parent's mtime; a 0555 or 0000
        directory must still let the walk through) and once its listing was read
        (reading sets atime). Bytes and inodes count hard links once.
        """
        st = os.fstat(self._root)
        seen = {(st.st_dev, st.st_ino)}
        size = st.st_blocks * 512

        def on_entry(fd: int, rel: tuple[str, ...], entry: os.DirEntry[str]) -> bool:
            nonlocal size
            est = entry.stat(follow_symlinks=False)
            if (est.st_dev, est.st_ino) not in seen:
                seen.add((est.st_dev, est.st_ino))
                size += est.st_blocks * 512
            return stat.S_ISDIR(est.st_mode)

        def on_leave(parent: int, rel: tuple[str, ...], name: str) -> None:
            self._apply_dir(parent, name, self._dirs.pop((*rel, name)))

        _walk_tree(self._root, on_entry, on_leave)
        self._apply_dir(self._root, ".", self._dirs.pop(()))
        return size, len(seen)

    @staticmethod
    def _apply_dir(parent: int, name: str, meta: _DirMeta) -> None:
        fd = os.open(name, _O_DIR, dir_fd=parent)
        try:
            os.fchown(fd, meta.uid, meta.gid)
            os.fchmod(fd, meta.mode)  # after chown, which may clear setgid
            if meta.mtime_ns is not None:
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        finally:
            os.close(fd)


def _split(entry: str, path: str) -> tuple[str, ...]:
    """The components of a path inside the layer; refuses anything that could leave it."""
    if "\0" in path:
        raise LayerError(entry, "path contains NUL")
    if len(os.fsencode(path)) > MAX_PATH:
        raise LayerError(entry, f"path longer than {MAX_PATH} bytes")
    if path.startswith("/"):
        raise LayerError(entry, f"absolute path {path!r}")
    # "./a//b/" is a/b; a bare "." or "" is the layer root.
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(entry, f"'..' in path {path!r}")
    return parts


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """The xattrs an entry carries in SCHILY.xattr.* PAX records that crib sets."""
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR):
            continue
        attr = key[len(_PAX_XATTR) :]
        if attr.startswith(_OVERLAY_XATTRS):
            raise LayerError(member.name, f"overlayfs xattr {attr!r} in a layer")
        if not attr.startswith(_XATTR_NAMESPACES):
            continue  # system.* (ACLs) and unknown namespaces
        # tarfile decodes PAX values as utf-8 with surrogateescape: binary values survive.
        out[attr] = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    return out


def _owner(member: tarfile.TarInfo) -> tuple[int, int]:
    for what, value in (("uid", member.uid), ("gid", member.gid)):
        if not 0 <= value <= _MAX_ID:
            raise LayerError(member.name, f"{what} {value} out of range")
    return member.uid, member.gid


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """The entry's mtime in ns, exact when a PAX record gives a fraction."""
    raw = member.pax_headers.get("mtime")
    match = _PAX_MTIME.fullmatch(raw) if isinstance(raw, str) else None
    if match:
        sign, seconds, fraction = match.groups()
        ns = int(seconds) * 1_000_000_000 + int((fraction or "")[:9].ljust(9, "0"))
        ns = -ns if sign else ns
    else:
        try:
            ns = round(member.mtime * 1_000_000_000)
        except (OverflowError, ValueError):  # inf or nan from a PAX record
            raise LayerError(member.name, f"mtime {member.mtime!r} out of range") from None
    if not -(2**63) <= ns < 2**63:
        raise LayerError(member.name, f"mtime {member.mtime!r} out of range")
    return ns


# --------------------------------------------------------------------------- trees


def _walk_tree(
    top: int,
    on_entry: Callable[[int, tuple[str, ...], os.DirEntry[str]], bool],
    on_leave: Callable[[int, tuple[str, ...], str], None] | None = None,
) -> None:
    """Depth-first over the tree below the directory fd `top`, never following symlinks.

    `on_entry(dir_fd, rel, entry)` sees every entry of the directory `rel` and
    returns True to descend into it; `on_leave(parent_fd, parent_rel, name)`
    follows once everything below a directory is done. No recursion and two fds at most, whatever the depth
    (paths up to 4096 bytes nest 2048 deep): the walk climbs back with "..",
    which is safe because nothing else changes the tree meanwhile.
    """
    cur = os.open(".", _O_DIR, dir_fd=top)
    names: list[str] = []
    try:
        pending = [_scan(cur, (), on_entry)]
        while pending:
            if pending[-1]:
                name = pending[-1].pop()
                nxt = os.open(name, _O_DIR, dir_fd=cur)
                os.close(cur)
                cur = nxt
                names.append(name)
                pending.append(_scan(cur, tuple(names), on_entry))
                continue
            pending.pop()
            if not names:
                break
            up = os.open("..", _O_DIR, dir_fd=cur)
            os.close(cur)
            cur = up
            done = names.pop()
            if on_leave is not None:
                on_leave(cur, tuple(names), done)
    finally:
        os.close(cur)


def _scan(
    fd: int, rel: tuple[str, ...], on_entry: Callable[[int, tuple[str, ...], os.DirEntry[str]], bool]
) -> list[str]:
    with os.scandir(fd) as it:
        entries = list(it)  # whole, so on_entry may remove entries
    return [entry.name for entry in entries if on_entry(fd, rel, entry)]


def _rmtree_at(parent: int, name: str, forget: Callable[[tuple[str, ...]], None] | None = None) -> None:
    """Remove the directory `name` in `parent` and everything below, following no symlink.

    Directories are made 0700 first: a layer's 0000 or 0555 dirs must go too
    (root does not need it, an unprivileged test run does). `forget` hears the
    path (relative to `name`) of every directory removed.
    """
    os.chmod(name, 0o700, dir_fd=parent)

    def on_entry(fd: int, rel: tuple[str, ...], entry: os.DirEntry[str]) -> bool:
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.name, 0o700, dir_fd=fd)
            if forget is not None:
                forget((*rel, entry.name))
            return True
        os.unlink(entry.name, dir_fd=fd)
        return False

    def on_leave(fd: int, rel: tuple[str, ...], done: str) -> None:
        os.rmdir(done, dir_fd=fd)

    top = os.open(name, _O_WALK, dir_fd=parent)
    try:
        _walk_tree(top, on_entry, on_leave)
    finally:
        os.close(top)
    os.rmdir(name, dir_fd=parent)
    if forget is not None:
        forget(())


def _discard(tmp: Path, exc: BaseException) -> None:
    """Remove a failed layer's temporary directory; a failure here must not hide `exc`."""
    try:
        parent = os.open(tmp.parent, _O_WALK)
        try:
            _rmtree_at(parent, tmp.name)
        finally:
            os.close(parent)
    except FileNotFoundError:
        pass
    except OSError as cleanup:
        exc.add_note(f"removing {tmp} failed too: {cleanup}")
