"""The process user of a container, resolved from its image like containerd and runc do.

The user string is the OCI image config / Docker form: "", "name", "uid", "name:group",
"uid:gid", "uid:groupname", "name:gid". Names are looked up in the rootfs's own
/etc/passwd and /etc/group, read through `securejoin.open_in_root` (the rootfs is hostile:
a symlinked /etc/passwd must never make crib read the host's). Missing files are fine;
a name that is not in them is not.

Rules (runc's GetExecUser, containerd's CRI):
- "" is root: uid 0, with root's passwd entry when there is one.
- A numeric user is always a uid, never a name. It need not be in /etc/passwd; then the
  primary gid is 0, the name "" and the home "/" (runc's defaults).
- The primary gid is the passwd entry's unless the user string names a group; the CRI's
  run_as_group overrides both.
- Additional gids (what the OCI spec's process.user.additionalGids gets). The primary gid
  always comes first: containerd's ensureAdditionalGids and CRI-O put it there, and
  critest's SupplementalGroupsPolicy tests expect ContainerStatus.user to list it (the
  kernel sorts the set anyway, so `id -G` shows primary, image groups and supplemental
  groups whatever their order here). Then, with the Merge policy (Kubernetes' default),
  the gid of every /etc/group entry listing the user's name as a member, in file order,
  even when the user string names a group (containerd does the same: only the uid or name
  is used for the lookup); then the CRI's supplemental groups. Duplicates are dropped,
  keeping the first. With the Strict policy /etc/group memberships are ignored. Unlike
  containerd, a group named like the user is not skipped: initgroups(3) and runc keep it.

Parsing is robust against junk: blank lines, "#" comments, NIS "+"/"-" entries, lines
with too few fields (passwd needs name:password:uid:gid, group name:password:gid) or a
non-numeric or out-of-range id are skipped; lines over 64 KiB are ignored and only the
first 16 MiB of a file is read (its cut-off last line dropped).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crib.container.securejoin import open_in_root
from crib.errors import InvalidArgument

MAX_FILE = 16 << 20
MAX_LINE = 64 << 10
# runc's range for ids given in a user string; the kernel takes more, runc does not.
MAX_ID = (1 << 31) - 1
# An id in a passwd or group entry: anything below (uid_t)-1, which means "no id".
_MAX_ENTRY_ID = (1 << 32) - 2
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    username: str  # "" when the uid has no passwd entry
    home: str  # "/" when unknown


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(data: bytes) -> Iterator[list[str]]:
    """The colon-separated fields of every meaningful line."""
    if len(data) > MAX_FILE:
        data = data[:MAX_FILE]
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""
    for raw in data.split(b"\n"):
        if len(raw) > MAX_LINE:
            continue
        line = raw.decode("utf-8", "surrogateescape").strip()
        if not line or line.startswith(("#", "+", "-")):
            continue
        yield line.split(":")


def _entry_id(field: str) -> int | None:
    field = field.strip()
    if not _DIGITS.fullmatch(field):
        return None
    value = int(field)
    return value if value <= _MAX_ENTRY_ID else None


def parse_passwd(data: bytes) -> list[PasswdEntry]:
    entries = []
    for fields in _lines(data):
        if len(fields) < 4 or not fields[0]:
            continue
        uid, gid = _entry_id(fields[2]), _entry_id(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 and fields[5] else "/"
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(data: bytes) -> list[GroupEntry]:
    entries = []
    for fields in _lines(data):
        if len(fields) < 3 or not fields[0]:
            continue
        gid = _entry_id(fields[2])
        if gid is None:
            continue
        members = fields[3].split(",") if len(fields) > 3 else []
        entries.append(GroupEntry(fields[0], gid, tuple(m.strip() for m in members if m.strip())))
    return entries


def _read(root: Path, path: str) -> bytes:
    """At most MAX_FILE + 1 bytes of a regular file in the rootfs; b"" if there is none."""
    fd = open_in_root(root, path)
    if fd is None:
        return b""
    try:
        chunks = []
        left = MAX_FILE + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_passwd(root: Path) -> list[PasswdEntry]:
    return parse_passwd(_read(root, "/etc/passwd"))


def read_group(root: Path) -> list[GroupEntry]:
    return parse_group(_read(root, "/etc/group"))


def passwd_entry(root: Path, uid: int) -> tuple[str, str] | None:
    """(name, home) of the first /etc/passwd entry of `uid` in the rootfs, or None."""
    for e in read_passwd(root):
        if e.uid == uid:
            return e.name, e.home
    return None


def group_entry(root: Path, gid: int) -> str | None:
    """The name of the first /etc/group entry of `gid` in the rootfs, or None."""
    for e in read_group(root):
        if e.gid == gid:
            return e.name
    return None


def _numeric(value: str, what: str, user: str) -> int | None:
    if not _DIGITS.fullmatch(value):
        return None
    n = int(value)
    if n > MAX_ID:
        raise InvalidArgument(f"user {user!r}: {what} {value} is out of range")
    return n


def _check_id(value: int, what: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{what} {value} is out of range")
    return value


def resolve_user(
    root: Path,
    user: str,
    run_as_group: int | None = None,
    supplemental: Sequence[int] = (),
    strict_groups: bool = False,
) -> ExecUser:
    """The uid, gids, name and home the container's process runs with (see the module doc)."""
    if "\x00" in user:
        raise InvalidArgument(f"user {user!r} contains a NUL byte")
    parts = user.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid user {user!r}: expected user, user:group, uid or uid:gid")
    user_arg = parts[0]
    group_arg = parts[1] if len(parts) == 2 else ""
    if run_as_group is not None:
        _check_id(run_as_group, "run_as_group")
    supplemental = [_check_id(g, "supplemental group") for g in supplemental]

    passwd = read_passwd(root)
    uid_arg = 0 if user_arg == "" else _numeric(user_arg, "uid", user)
    if uid_arg is not None:
        entry = next((e for e in passwd if e.uid == uid_arg), None)
        uid = uid_arg
    else:
        entry = next((e for e in passwd if e.name == user_arg), None)
        if entry is None:
            raise InvalidArgument(f"no user {user_arg!r} in the image's /etc/passwd")
        uid = entry.uid
    username = entry.name if entry else ""
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"

    groups: list[GroupEntry] | None = None
    if group_arg:
        gid_arg = _numeric(group_arg, "gid", user)
        if gid_arg is not None:
            gid = gid_arg
        else:
            groups = read_group(root)
            match = next((g for g in groups if g.name == group_arg), None)
            if match is None:
                raise InvalidArgument(f"no group {group_arg!r} in the image's /etc/group")
            gid = match.gid
    if run_as_group is not None:
        gid = run_as_group

    additional = [gid]
    if not strict_groups and username:
        if groups is None:
            groups = read_group(root)
        additional.extend(g.gid for g in groups if username in g.members)
    additional.extend(supplemental)
    return ExecUser(
        uid=uid,
        gid=gid,
        additional_gids=tuple(dict.fromkeys(additional)),
        username=username,
        home=home,
    )
