"""Resolving a container's process user from its rootfs's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from crib.container.user import (
    MAX_FILE,
    MAX_LINE,
    ExecUser,
    group_entry,
    parse_group,
    parse_passwd,
    passwd_entry,
    resolve_user,
)
from crib.errors import InvalidArgument

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
nohome:x:1002:1002
123:x:5000:5000::/numeric:/bin/sh
alice:x:7777:7777:second alice:/elsewhere:/bin/sh
"""

GROUP = """\
root:x:0:
wheel:x:10:root,alice
users:x:100:bob
alice:x:1000:
devs:x:2000:alice,bob
audio:x:29: alice , carol
"""


def make_root(base: Path, passwd: str | bytes | None = PASSWD, group: str | bytes | None = GROUP) -> Path:
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    for name, content in (("passwd", passwd), ("group", group)):
        if content is None:
            continue
        data = content.encode() if isinstance(content, str) else content
        (root / "etc" / name).write_bytes(data)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


# --- user forms --------------------------------------------------------------------------


def test_empty_is_root(root: Path) -> None:
    assert resolve_user(root, "") == ExecUser(0, 0, (0, 10), "root", "/root")


def test_name(root: Path) -> None:
    assert resolve_user(root, "alice") == ExecUser(1000, 1000, (1000, 10, 2000, 29), "alice", "/home/alice")


def test_uid(root: Path) -> None:
    assert resolve_user(root, "1000") == resolve_user(root, "alice")
    assert resolve_user(root, "1001") == ExecUser(1001, 100, (100, 2000), "bob", "/home/bob")


def test_unknown_numeric_uid(root: Path) -> None:
    # runc's defaults: gid 0, no name, home "/".
    assert resolve_user(root, "4242") == ExecUser(4242, 0, (0,), "", "/")


def test_numeric_user_is_always_a_uid(root: Path) -> None:
    # "123" is a name in /etc/passwd, but a numeric user string is a uid.
    assert resolve_user(root, "123") == ExecUser(123, 0, (0,), "", "/")
    assert resolve_user(root, "5000").username == "123"


def test_first_entry_wins(root: Path) -> None:
    user = resolve_user(root, "alice")
    assert (user.uid, user.home) == (1000, "/home/alice")


def test_unknown_name(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="no user 'nobody' in the image's /etc/passwd"):
        resolve_user(root, "nobody")


def test_name_and_group_name(root: Path) -> None:
    user = resolve_user(root, "alice:devs")
    assert (user.uid, user.gid) == (1000, 2000)
    # Image memberships are merged even with an explicit group (containerd does the same).
    assert user.additional_gids == (2000, 10, 29)


def test_name_and_gid(root: Path) -> None:
    user = resolve_user(root, "alice:4242")
    assert (user.uid, user.gid, user.username) == (1000, 4242, "alice")
    assert user.additional_gids == (4242, 10, 2000, 29)


def test_uid_and_group_name(root: Path) -> None:
    assert resolve_user(root, "1000:users").gid == 100
    # An unknown uid with a known group.
    assert resolve_user(root, "4242:devs") == ExecUser(4242, 2000, (2000,), "", "/")


def test_uid_and_gid(root: Path) -> None:
    assert resolve_user(root, "4242:4343") == ExecUser(4242, 4343, (4343,), "", "/")
    assert resolve_user(root, "0:10") == ExecUser(0, 10, (10,), "root", "/root")


def test_empty_parts(root: Path) -> None:
    # runc: an empty user part is root, an empty group part is no group.
    assert resolve_user(root, ":10") == ExecUser(0, 10, (10,), "root", "/root")
    assert resolve_user(root, "alice:") == resolve_user(root, "alice")


def test_unknown_group_name(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="no group 'nogroup' in the image's /etc/group"):
        resolve_user(root, "alice:nogroup")
    with pytest.raises(InvalidArgument, match="no group"):
        resolve_user(root, "1000:nogroup")


@pytest.mark.parametrize("user", ["a:b:c", "1:2:3", "2147483648", "0:2147483648", "-1"])
def test_invalid_user_strings(root: Path, user: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_user(root, user)


def test_largest_ids(root: Path) -> None:
    user = resolve_user(root, "2147483647:2147483647")
    assert (user.uid, user.gid) == (2147483647, 2147483647)


def test_home_defaults_to_slash(root: Path) -> None:
    assert resolve_user(root, "nohome").home == "/"
    assert resolve_user(root, "nohome").gid == 1002


# --- run_as_group and supplemental groups ------------------------------------------------


def test_run_as_group_overrides_the_primary_gid(root: Path) -> None:
    user = resolve_user(root, "alice", run_as_group=3000)
    assert (user.uid, user.gid) == (1000, 3000)
    assert user.additional_gids == (3000, 10, 2000, 29)
    assert resolve_user(root, "alice:devs", run_as_group=3000).gid == 3000
    assert resolve_user(root, "4242", run_as_group=0).gid == 0


@pytest.mark.parametrize("bad", [-1, 1 << 31])
def test_out_of_range_groups(root: Path, bad: int) -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        resolve_user(root, "alice", run_as_group=bad)
    with pytest.raises(InvalidArgument, match="out of range"):
        resolve_user(root, "alice", supplemental=[bad])


def test_merge_policy(root: Path) -> None:
    user = resolve_user(root, "alice", supplemental=[5555, 10, 1000, 3000])
    # Primary first, then /etc/group memberships in file order, then supplemental; no duplicates.
    assert user.additional_gids == (1000, 10, 2000, 29, 5555, 3000)


def test_strict_policy_ignores_etc_group(root: Path) -> None:
    user = resolve_user(root, "alice", supplemental=[5555, 1000], strict_groups=True)
    assert user.additional_gids == (1000, 5555)
    assert resolve_user(root, "alice", strict_groups=True).additional_gids == (1000,)


def test_critest_supplemental_groups_policy(tmp_path: Path) -> None:
    # critest's image: default-user (uid 1000, gid 1000) belongs to group 50000 in /etc/group.
    root = make_root(
        tmp_path,
        passwd="root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n",
        group="root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
    )
    merge = resolve_user(root, "1000", supplemental=[1234])
    assert (merge.uid, merge.gid) == (1000, 1000)
    assert sorted(merge.additional_gids) == [1000, 1234, 50000]
    strict = resolve_user(root, "1000", supplemental=[1234], strict_groups=True)
    assert sorted(strict.additional_gids) == [1000, 1234]


def test_unknown_uid_has_no_image_groups(root: Path) -> None:
    assert resolve_user(root, "4242", supplemental=[7]).additional_gids == (0, 7)


# --- missing and hostile files -----------------------------------------------------------


def test_missing_files(tmp_path: Path) -> None:
    root = make_root(tmp_path, passwd=None, group=None)
    assert resolve_user(root, "") == ExecUser(0, 0, (0,), "", "/")
    assert resolve_user(root, "1000:1000", supplemental=[5]) == ExecUser(1000, 1000, (1000, 5), "", "/")
    with pytest.raises(InvalidArgument, match="no user"):
        resolve_user(root, "alice")
    with pytest.raises(InvalidArgument, match="no group"):
        resolve_user(root, "1000:devs")
    assert passwd_entry(root, 0) is None


def test_no_etc_at_all(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert resolve_user(root, "0") == ExecUser(0, 0, (0,), "", "/")


def test_files_that_are_not_regular(tmp_path: Path) -> None:
    root = make_root(tmp_path, passwd=None, group=None)
    (root / "etc" / "passwd").mkdir()
    os.mkfifo(root / "etc" / "group")
    assert resolve_user(root, "") == ExecUser(0, 0, (0,), "", "/")


def test_symlinked_passwd_inside_root(tmp_path: Path) -> None:
    root = make_root(tmp_path, passwd=None, group=None)
    (root / "lib").mkdir()
    (root / "lib" / "passwd").write_text("app:x:10:20::/app:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("../lib/passwd")
    assert resolve_user(root, "app") == ExecUser(10, 20, (20,), "app", "/app")


@pytest.mark.parametrize("absolute", [True, False])
def test_symlinked_passwd_to_the_host_is_never_read(tmp_path: Path, absolute: bool) -> None:
    marker = f"u{secrets.token_hex(6)}"
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text(f"{marker}:x:4321:4321::/host-home:/bin/sh\n")
    (host / "group").write_text(f"g{marker}:x:4321:{marker}\n")
    root = make_root(tmp_path, passwd=None, group=None)
    for name in ("passwd", "group"):
        target = str(host / name)
        (root / "etc" / name).symlink_to(target if absolute else "../" * 30 + target.lstrip("/"))

    with pytest.raises(InvalidArgument, match="no user"):
        resolve_user(root, marker)
    with pytest.raises(InvalidArgument, match="no group"):
        resolve_user(root, f"0:g{marker}")
    assert passwd_entry(root, 4321) is None

    # The same path inside the rootfs is what gets read.
    mirror = root / str(host).lstrip("/")
    mirror.mkdir(parents=True)
    (mirror / "passwd").write_text(f"{marker}:x:55:66::/rootfs-home:/bin/sh\n")
    assert resolve_user(root, marker) == ExecUser(55, 66, (66,), marker, "/rootfs-home")


def test_passwd_through_proc_magic_link_is_not_the_hosts(tmp_path: Path) -> None:
    root = make_root(tmp_path, passwd=None, group=None)
    (root / "etc" / "passwd").symlink_to("/proc/1/root/etc/passwd")
    (root / "etc" / "group").symlink_to("/proc/self/root/etc/group")
    # The host surely has a root entry; the rootfs has none.
    assert passwd_entry(root, 0) is None
    assert resolve_user(root, "0") == ExecUser(0, 0, (0,), "", "/")
    with pytest.raises(InvalidArgument, match="no user 'root'"):
        resolve_user(root, "root")


# --- helpers -----------------------------------------------------------------------------


def test_passwd_and_group_entry(root: Path) -> None:
    assert passwd_entry(root, 1000) == ("alice", "/home/alice")
    assert passwd_entry(root, 1002) == ("nohome", "/")
    assert passwd_entry(root, 9) is None
    assert group_entry(root, 2000) == "devs"
    assert group_entry(root, 9) is None


# --- parser robustness -------------------------------------------------------------------


def test_parse_passwd_skips_junk() -> None:
    data = (
        b"# a comment\n"
        b"\n"
        b"   \n"
        b"short:x:1\n"
        b"nonnum:x:abc:1::/:/bin/sh\n"
        b"neg:x:-1:1::/:/bin/sh\n"
        b"big:x:4294967295:1::/:/bin/sh\n"
        b"unicode:x:\xd9\xa1:1::/:/bin/sh\n"
        b":x:5:5::/:/bin/sh\n"
        b"+nis::0:0:::\n"
        b"-nis2::0:0:::\n"
        b"bad\xffname:x:7:7::/h:/bin/sh\n"
        b"crlf:x:8:9::/crlf:/bin/sh\r\n"
        b"ok:x:10:11:gecos:/home/ok:/bin/sh"
    )
    entries = parse_passwd(data)
    assert [(e.name, e.uid, e.gid, e.home) for e in entries] == [
        ("bad\udcffname", 7, 7, "/h"),
        ("crlf", 8, 9, "/crlf"),
        ("ok", 10, 11, "/home/ok"),
    ]


def test_parse_group_skips_junk() -> None:
    data = b"# comment\nshort:x\nnonnum:x:x1:a\nnomembers:x:5\nmembers:x:6: a, ,b,,\n+:::\n"
    entries = parse_group(data)
    assert [(e.name, e.gid, e.members) for e in entries] == [("nomembers", 5, ()), ("members", 6, ("a", "b"))]


def test_overlong_lines_are_ignored() -> None:
    long_line = b"huge:x:1:1:" + b"g" * MAX_LINE + b":/:/bin/sh\n"
    entries = parse_passwd(long_line + b"after:x:2:2::/:/bin/sh\n")
    assert [e.name for e in entries] == ["after"]


def test_files_are_truncated_at_16_mib(tmp_path: Path) -> None:
    filler = b"#" + b"x" * 1022 + b"\n"  # 1 KiB comment lines
    head = b"early:x:1:1::/:/bin/sh\n"
    body = head + filler * (MAX_FILE // len(filler))
    # A line that straddles the limit is cut off and dropped, and nothing after it is read.
    straddle = b"straddle:x:2:2::/:/bin/sh\n"
    data = body[: MAX_FILE - 10] + straddle + b"late:x:3:3::/:/bin/sh\n"
    assert [e.name for e in parse_passwd(data)] == ["early"]

    root = make_root(tmp_path, passwd=data, group=None)
    assert resolve_user(root, "early").uid == 1
    for name in ("straddle", "late"):
        with pytest.raises(InvalidArgument, match="no user"):
            resolve_user(root, name)
