"""cribctl's image commands: the pure parts, and the commands against an in-process fake ImageService.

Expected tables, sizes and sort orders were produced by Go itself (text/tabwriter,
go-units' size.go as vendored in cri-tools 1.36, sort.Sort) and are pasted here,
so these tests need no Go toolchain.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from crib.cribctl import image_cmds, main
from crib.cribctl.client import CommandError
from crib.cribctl.golike import go_quote, go_sort, go_string_map, human_size, tabwrite
from crib.cribctl.gotime import parse_go_duration_strict
from crib.cribctl.image_cmds import (
    filter_images,
    get_auth,
    image_less,
    images_table,
    normalize_repo_digest,
    normalize_repo_tag_pairs,
    parse_creds,
    pull_timeout,
    sort_images,
    truncated_id,
)
from crib.cribctl.load_cmds import ChunkStream, import_config, parse_command, parse_expose
from crib.cribctl.util import parse_labels
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.proto.crib.v1 import crib_pb2

Image = api_pb2.Image
HEX_A = "040373946e5cdaf59bb71821066586f95ae7bf12abf542f7b0cd5642dff2b0a4"
HEX_B = "55d639353a09ff7b029fc9f65a9967b58532416a73877201d3672bb0ba315895"
HEX_D = "3435c134fa93ed6f6238841a51d447e728c082ec2065e7362f4846789c2882fb"


pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- text/tabwriter (Go's output for NewWriter(w, 20, 1, 3, ' ', 0)) -----------------

TABWRITER_CASES = [
    (
        "header_only",
        "IMAGE\tTAG\tIMAGE ID\tSIZE\n",
        "IMAGE               TAG                 IMAGE ID            SIZE\n",
    ),
    (
        "wide_first_column",
        "IMAGE\tTAG\tIMAGE ID\tSIZE\n127.0.0.1:41183/library/busybox\t1.36\t040373946e5cd\t1.03MB\n"
        "short\tv1\tabc\t2kB\n",
        "IMAGE                             TAG                 IMAGE ID            SIZE\n"
        "127.0.0.1:41183/library/busybox   1.36                040373946e5cd       1.03MB\n"
        "short                             v1                  abc                 2kB\n",
    ),
    (
        "cell_plus_padding_is_minwidth",
        "12345678901234567\tb\nx\ty\n",
        "12345678901234567   b\nx                   y\n",
    ),
    (
        "one_over_minwidth",
        "123456789012345678\tb\nx\ty\n",
        "123456789012345678   b\nx                    y\n",
    ),
    (
        "runes_not_bytes",
        "héllo wörld ünïcode ok\tb\nñ\tc\n",
        "héllo wörld ünïcode ok   b\nñ                        c\n",
    ),
    (
        "ragged_lines_make_blocks",
        "a\tb\tc\nlong-long-long-long-long-cell\td\nsingle\ne\tf\tg\th\n",
        "a                               b                   c\nlong-long-long-long-long-cell   d\nsingle\n"
        "e                   f                   g                   h\n",
    ),
    (
        "empty_cells",
        "\t\tx\na\t\ty\n",
        "                                        x\na                                       y\n",
    ),
    ("unterminated_last_line", "a\tb\nccc\td", "a                   b\nccc                 d"),
    (
        "blank_line_splits_blocks",
        "aaaaaaaaaaaaaaaaaaaaaaaaa\tb\n\nc\td\n",
        "aaaaaaaaaaaaaaaaaaaaaaaaa   b\n\nc                   d\n",
    ),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("name", "text", "expected"), TABWRITER_CASES, ids=[c[0] for c in TABWRITER_CASES])
def test_tabwrite_matches_go(name: str, text: str, expected: str) -> None:
    assert tabwrite(text, 20, 1, 3, " ") == expected


def test_tabwrite_never_pads_the_last_cell() -> None:
    out = tabwrite("a\tb\nccc\tdddddddddddddddddddddddddddddd\n", 20, 1, 3)
    assert [line.endswith(("b", "d")) for line in out.splitlines()] == [True, True]


# --- go-units: (bytes, HumanSizeWithPrecision(.., 3), HumanSize) as Go prints them --------

HUMAN_SIZES = [
    (0, "0B", "0B"),
    (1, "1B", "1B"),
    (999, "999B", "999B"),
    (1000, "1kB", "1kB"),
    (1023, "1.02kB", "1.023kB"),
    (1024, "1.02kB", "1.024kB"),
    (1125, "1.12kB", "1.125kB"),  # exactly half: to even
    (1135, "1.14kB", "1.135kB"),  # 1.135 is a hair above in binary
    (1145, "1.15kB", "1.145kB"),
    (1999, "2kB", "1.999kB"),
    (9995, "9.99kB", "9.995kB"),
    (99949, "99.9kB", "99.95kB"),
    (99950, "100kB", "99.95kB"),
    (999499, "999kB", "999.5kB"),
    (999500, "1e+03kB", "999.5kB"),  # rounds up past the unit: Go's %g goes exponential
    (999999, "1e+03kB", "1000kB"),
    (1000000, "1MB", "1MB"),
    (1032489, "1.03MB", "1.032MB"),
    (2150878, "2.15MB", "2.151MB"),
    (123456789, "123MB", "123.5MB"),
    (12345678901, "12.3GB", "12.35GB"),
    (10**15, "1PB", "1PB"),
    (10**18, "1EB", "1EB"),
    (10**21, "1ZB", "1ZB"),
    (10**24, "1YB", "1YB"),
    (10**27, "1e+03YB", "1000YB"),  # YB is the last unit
    (15 * 10**26, "1.5e+03YB", "1500YB"),
]


@pytest.mark.parametrize(("size", "three", "four"), HUMAN_SIZES)
def test_human_size_matches_go_units(size: int, three: str, four: str) -> None:
    assert human_size(float(size), 3) == three
    assert human_size(float(size)) == four


# --- sort.Sort ---------------------------------------------------------------------------


def _odd_less(a: int, b: int) -> bool:
    # Not an order at all: every algorithm gives its own answer, so only Go's swaps give Go's.
    return (a * 31 + b * 17) % 7 < 3


# fmt: off
GO_SORTED_60 = [
    12, 50, 36, 59, 22, 5, 45, 19, 8, 33, 10, 47, 24, 1, 38, 15, 52, 29, 31, 43, 54, 57, 17, 40, 3, 26,
    30, 27, 16, 23, 0, 7, 44, 21, 58, 35, 2, 49, 9, 37, 14, 51, 28, 42, 56, 39, 53, 46, 11, 25, 32, 18,
    4, 20, 34, 13, 48, 55, 6, 41,
]
# fmt: on
GO_SORTED = {
    7: [0, 1, 2, 6, 3, 4, 5],
    13: [11, 6, 9, 2, 4, 1, 12, 10, 0, 8, 7, 3, 5],
    60: GO_SORTED_60,
}


@pytest.mark.parametrize("n", sorted(GO_SORTED))
def test_go_sort_makes_gos_swaps(n: int) -> None:
    values = [(i * 37) % n for i in range(n)]
    go_sort(values, _odd_less)
    assert values == GO_SORTED[n]


@pytest.mark.parametrize("n", [0, 1, 2, 12, 13, 49, 50, 51, 200, 1000])
def test_go_sort_sorts(n: int) -> None:
    values = [(i * 7919) % 1009 for i in range(n)]
    for start in (values, sorted(values), sorted(values, reverse=True)):
        got = list(start)
        go_sort(got, lambda a, b: a < b)
        assert got == sorted(values)


def test_images_sort_as_crictl_even_without_a_consistent_order() -> None:
    # tagged z < untagged b (by digest) < tagged a (by digest) < tagged z (by tag): a cycle.
    images = [
        Image(id="sha256:3", repo_tags=["z:1"], repo_digests=["r@sha256:a"]),
        Image(id="sha256:1", repo_digests=["r@sha256:b"]),
        Image(id="sha256:2", repo_tags=["a:1"], repo_digests=["r@sha256:c"]),
        Image(id="sha256:0"),
    ]
    sort_images(images)
    assert [i.id for i in images] == ["sha256:0", "sha256:3", "sha256:1", "sha256:2"]  # Go's result


def test_image_less() -> None:
    assert image_less(Image(repo_tags=["a:1"], id="2"), Image(repo_tags=["b:1"], id="1"))
    assert image_less(Image(repo_digests=["a@x"], id="2"), Image(repo_digests=["b@x"], id="1"))
    assert image_less(Image(repo_tags=["z:1"], id="1"), Image(repo_digests=["b@x"], id="2"))


# --- Go formatting -----------------------------------------------------------------------


def test_go_quote() -> None:
    assert go_quote("nope") == '"nope"'
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there\n\x00\x7fé\u200b") == '"tab\\there\\n\\x00\\x7fé\\u200b"'


def test_go_string_map() -> None:
    assert go_string_map({}) == "map[]"
    assert go_string_map({"b": "2", "a": '{"x": 1}'}) == 'map[a:{"x": 1} b:2]'


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("-0", 0.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("-1s", -1.0)],
)
def test_parse_go_duration_strict(text: str, seconds: float) -> None:
    assert parse_go_duration_strict(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        ("5x", 'time: invalid duration "5x"'),
        (" 5s", 'time: invalid duration " 5s"'),
    ],
)
def test_parse_go_duration_strict_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_go_duration_strict(text)


# --- names, digests, IDs ----------------------------------------------------------------


def test_truncated_id() -> None:
    assert truncated_id("sha256:" + HEX_A) == "040373946e5cd"
    assert truncated_id(HEX_A) == "040373946e5cd"
    assert truncated_id("<none>") == "<none>"


def test_normalize_repo_digest() -> None:
    assert normalize_repo_digest([]) == ("<none>", "<none>")
    assert normalize_repo_digest(["r/x@sha256:1", "q@sha256:2"]) == ("r/x", "sha256:1")
    assert normalize_repo_digest(["no-at-sign"]) == ("errorName", "errorRepoDigest")


def test_normalize_repo_tag_pairs() -> None:
    assert normalize_repo_tag_pairs([], "r/x") == [("r/x", "<none>")]
    assert normalize_repo_tag_pairs(["127.0.0.1:5000/a/b:1.0", "c:latest"], "n") == [
        ("127.0.0.1:5000/a/b", "1.0"),
        ("c", "latest"),
    ]
    # The last colon splits, so a registry port stays in the name.
    assert normalize_repo_tag_pairs(["host:5000/x"], "n") == [("host", "5000/x")]
    assert normalize_repo_tag_pairs(["<none>:<none>"], "r/x") == [("r/x", "<none>")]
    assert normalize_repo_tag_pairs(["notag"], "n") == [("errorRepoTag", "errorRepoTag")]


# --- filters (crictl's filterImagesList on a sorted list) ------------------------------

A = Image(id="sha256:aaa1", repo_tags=["reg/a:1"], repo_digests=["reg/a@sha256:d1"], size=1)
B = Image(id="sha256:bbb2", repo_tags=["reg/b:2"], repo_digests=["reg/b@sha256:d2"], size=2)
C = Image(id="sha256:ccc3", repo_digests=["reg/c@sha256:d3"], size=3)
D = Image(id="sha256:ddd4", repo_tags=["reg/d:4"], size=4)
ALL = [A, B, C, D]


def _ids(images: list[api_pb2.Image]) -> list[str]:
    return [i.id.removeprefix("sha256:") for i in images]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["dangling=true"], ["ccc3"]),
        (["dangling=false"], ["aaa1", "bbb2", "ddd4"]),
        (["dangling=yes"], []),
        # The regexp is compiled as given and matched anywhere in the digest's repository.
        (["reference=reg/[ab]"], ["aaa1", "bbb2"]),
        (["reference=^c"], []),
        (["reference=/a/"], []),
        (["reference=<none>"], ["ddd4"]),
        # since/before stop at the first match: since keeps what comes before it in the
        # sorted list, before keeps what comes after it.
        (["since=reg/c:<none>"], ["aaa1", "bbb2"]),
        (["before=reg/b:2"], ["ccc3", "ddd4"]),
        # An ID prefix is compared with the whole ID, "sha256:" included, and a value
        # with a colon is a name:tag: so in crictl no ID form matches a CRI image ID.
        (["since=bbb2"], ["aaa1", "bbb2", "ccc3", "ddd4"]),
        (["since=sha256:bbb"], ["aaa1", "bbb2", "ccc3", "ddd4"]),
        (["since=reg/c@sha256:d3"], ["aaa1", "bbb2"]),
        (["before=reg/a@sha256:d"], ["bbb2", "ccc3"]),  # no digests: neither match nor kept
        (["since=reg@x"], []),  # '@' without ':' matches no form and keeps nothing
        (["since=nothing"], ["aaa1", "bbb2", "ccc3", "ddd4"]),
        (["dangling=false", "since=reg/d:4"], ["aaa1", "bbb2"]),
    ],
)
def test_filters(filters: list[str], expected: list[str]) -> None:
    assert _ids(filter_images(ALL, filters)) == expected


def test_filter_by_id_prefix_needs_ids_without_algorithm() -> None:
    bare = [Image(id=i.id.removeprefix("sha256:"), repo_tags=i.repo_tags) for i in ALL]
    assert _ids(filter_images(bare, ["since=bbb"])) == ["aaa1"]
    assert _ids(filter_images(bare, ["before=bbb"])) == ["ccc3", "ddd4"]


def test_filter_errors() -> None:
    with pytest.raises(ValueError, match=r"^unknown filter flag: label=x$"):
        filter_images(ALL, ["label=x"])
    with pytest.raises(ValueError, match=r"^error parsing regexp: .*: `\[`$"):
        filter_images(ALL, ["reference=["])


# --- tables and text -------------------------------------------------------------------

LISTED = [
    Image(
        id=f"sha256:{HEX_A}",
        repo_tags=["127.0.0.1:5000/library/busybox:1.36", "127.0.0.1:5000/library/busybox:latest"],
        repo_digests=[f"127.0.0.1:5000/library/busybox@sha256:{HEX_D}"],
        size=1032489,
        pinned=True,
    ),
    Image(id=f"sha256:{HEX_B}", size=2150878),
]


def test_images_table() -> None:
    assert images_table(LISTED) == (
        "IMAGE                            TAG                 IMAGE ID            SIZE\n"
        "127.0.0.1:5000/library/busybox   1.36                040373946e5cd       1.03MB\n"
        "127.0.0.1:5000/library/busybox   latest              040373946e5cd       1.03MB\n"
        "<none>                           <none>              55d639353a09f       2.15MB\n"
    )


def test_images_table_digests_no_trunc_pinned() -> None:
    lines = images_table(LISTED, digests=True, no_trunc=True, pinned=True).splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "DIGEST", "IMAGE", "ID", "SIZE", "PINNED"]
    # Columns: the widest cell + 3, at least 20; the last one unpadded.
    widths = (len("127.0.0.1:5000/library/busybox") + 3, 20, 71 + 3, 71 + 3, 20)
    cells = ("127.0.0.1:5000/library/busybox", "1.36", f"sha256:{HEX_D}", f"sha256:{HEX_A}", "1.03MB")
    assert lines[1] == "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "true"
    assert lines[3].split() == ["<none>", "<none>", "<none>", f"sha256:{HEX_B}", "2.15MB", "false"]
    assert images_table(LISTED, digests=True).splitlines()[1].split()[2] == HEX_D[:13]


def test_image_verbose() -> None:
    image = Image(id="sha256:x", repo_tags=["a:1"], repo_digests=["a@sha256:y"], size=5, username="www")
    assert image_cmds.image_verbose(image) == (
        "ID: sha256:x\nRepoTags: a:1\nRepoDigests: a@sha256:y\nSize: 5\nUsername: www\n\n"
    )
    image = Image(id="sha256:x", pinned=True)
    image.uid.value = 0
    assert image_cmds.image_verbose(image) == "ID: sha256:x\nUid: value:0\nPinned: true\n\n"


def test_image_status_table() -> None:
    r = api_pb2.ImageStatusResponse(image=LISTED[0], info={"info": '{"id": "x"}'})
    assert image_cmds.image_status_table(r, verbose=True) == (
        f"ID: sha256:{HEX_A}\n"
        "Tag: 127.0.0.1:5000/library/busybox:1.36\nTag: 127.0.0.1:5000/library/busybox:latest\n"
        f"Digest: 127.0.0.1:5000/library/busybox@sha256:{HEX_D}\n"
        'Size: 1.03MB\nInfo: map[info:{"id": "x"}]\n'
    )
    assert "Info" not in image_cmds.image_status_table(r, verbose=False)


def test_fs_info_table() -> None:
    def usage(ts: int, used: int, inodes: int, mountpoint: str) -> api_pb2.FilesystemUsage:
        return api_pb2.FilesystemUsage(
            timestamp=ts,
            fs_id=api_pb2.FilesystemIdentifier(mountpoint=mountpoint),
            used_bytes=api_pb2.UInt64Value(value=used),
            inodes_used=api_pb2.UInt64Value(value=inodes),
        )

    r = api_pb2.ImageFsInfoResponse(
        image_filesystems=[usage(7, 3141632, 299, "/r")], container_filesystems=[usage(8, 0, 0, "/r/c")]
    )
    assert image_cmds.fs_info_table(r) == (
        "Container Filesystem \nTimeStamp[0]: 8\nDisk[0]: 0B\nInodes[0]: 0\nMountpoint[0]: /r/c\n"
        "Image Filesystem \nTimeStamp[0]: 7\nDisk[0]: 3.142MB\nInodes[0]: 299\nMountpoint[0]: /r\n"
    )


def test_list_json_is_protojson_in_field_order() -> None:
    text = image_cmds.list_json([Image(id="sha256:x", repo_tags=["a:1"], size=5)])
    assert text == (
        '{\n  "images": [\n    {\n      "id": "sha256:x",\n      "repoTags": [\n        "a:1"\n      ],\n'
        '      "repoDigests": [],\n      "size": "5",\n      "username": "",\n      "pinned": false\n'
        "    }\n  ]\n}"
    )
    assert image_cmds.list_json([]) == '{\n  "images": []\n}'
    # Set and default fields interleave in declaration order; map keys are sorted.
    image = Image(id="i", size=1, spec=api_pb2.ImageSpec(image="s", annotations={"b": "2", "a": "1"}))
    image.uid.value = 33
    doc = json.loads(image_cmds.list_json([image]))["images"][0]
    assert list(doc) == ["id", "repoTags", "repoDigests", "size", "uid", "username", "spec", "pinned"]
    assert list(doc["spec"]) == ["image", "annotations", "userSpecifiedImage", "runtimeHandler", "imageRef"]
    assert list(doc["spec"]["annotations"]) == ["a", "b"] and doc["uid"] == {"value": "33"}


# --- pull's auth and flags --------------------------------------------------------------


def test_parse_creds() -> None:
    assert parse_creds("user") == ("user", "")
    assert parse_creds("user:pa:ss") == ("user", "pa:ss")
    assert parse_creds("user:") == ("user", "")
    with pytest.raises(CommandError, match=r"^username can't be empty$"):
        parse_creds(":pass")
    with pytest.raises(CommandError, match=r"^credentials can't be empty$"):
        parse_creds("")


def test_get_auth() -> None:
    assert get_auth("", "", "") is None
    assert get_auth("u:p", "", "") == api_pb2.AuthConfig(username="u", password="p")
    assert get_auth("", "dTpw", "") == api_pb2.AuthConfig(auth="dTpw")
    with pytest.raises(CommandError, match=r"^both `--creds` and `--auth` are specified$"):
        get_auth("u:p", "dTpw", "")
    # --username wins over both, with the password read from the prompt.
    assert get_auth("u:p", "dTpw", "me", lambda: "typed") == api_pb2.AuthConfig(
        username="me", password="typed"
    )


def test_parse_labels() -> None:
    assert parse_labels(["a=1", "b="]) == {"a": "1", "b": ""}
    for bad in ("a", "a=b=c"):
        with pytest.raises(CommandError, match=f"^incorrectly specified label: {bad}$"):
            parse_labels([bad])


def test_pull_timeout() -> None:
    assert pull_timeout(None, None) == 0.0
    assert pull_timeout("90s", "1s") == 90.0
    assert pull_timeout(None, "2m") == 120.0
    assert pull_timeout("-1s", None) == -1.0
    with pytest.raises(CommandError, match=r'^invalid value "5" for flag -pull-timeout: parse error$'):
        pull_timeout("5", None)
    with pytest.raises(CommandError, match=r'env var "CRICTL_PULL_TIMEOUT" .*missing unit in duration "5"'):
        pull_timeout(None, "5")


def _parse(*argv: str) -> argparse.Namespace:
    return main.parser().parse_args(list(argv))


def test_argument_parsing() -> None:
    args = _parse("pull", "--creds", "u:p", "-a", "a=1,b=2", "--annotation", " c=3 ", "--pt", "5m", "busybox")
    assert (args.command, args.image, args.creds, args.pull_timeout) == ("pull", ["busybox"], "u:p", "5m")
    assert args.annotation == ["a=1", "b=2", "c=3"]  # urfave/cli splits slices on commas and trims
    args = _parse("pull", "-u", "me", "--auth", "dTpw", "--pull-timeout", "0", "x")
    assert (args.username, args.auth, args.pull_timeout, args.annotation) == ("me", "dTpw", "0", None)

    args = _parse(
        "img", "-qv", "--digests", "--no-trunc", "--pinned", "-f", "dangling=true,since=x", "busybox"
    )
    assert args.command == "img" and main.COMMANDS["img"] is image_cmds.cmd_images
    assert (args.quiet, args.verbose, args.digests, args.no_trunc, args.pinned) == (True,) * 5
    assert args.filter == ["dangling=true", "since=x"] and args.names == ["busybox"]
    assert _parse("image").output == "" and _parse("images", "-o", "yaml").output == "yaml"

    args = _parse("inspecti", "-q", "-o", "table", "--name", "busybox", "a", "b")
    assert (args.quiet, args.output, args.name, args.ids) == (True, "table", "busybox", ["a", "b"])
    args = _parse("rmi", "-a", "-q", "x")
    assert (args.all, args.prune, args.ids) == (True, True, ["x"])
    assert _parse("imagefsinfo", "-o", "table").output == "table"
    assert _parse("load", "-i", "/tmp/x.tar").input == "/tmp/x.tar"
    assert _parse("load").input is None

    args = _parse(
        "import", "--cmd", '["sh","-c","echo hi"]', "--entrypoint", "/bin/tini --", "--env", "A=1",
        "--env", "B=2", "--expose", "80", "--label", "x=y", "rootfs.tar", "example.com/app:1",
    )  # fmt: skip
    assert (args.file, args.name, args.env, args.expose) == (
        "rootfs.tar",
        "example.com/app:1",
        ["A=1", "B=2"],
        ["80"],
    )


def test_parse_command() -> None:
    assert parse_command('["sh", "-c", "echo a  b"]', "--cmd") == ["sh", "-c", "echo a  b"]
    assert parse_command("/bin/sh -c  true", "--cmd") == ["/bin/sh", "-c", "true"]
    assert parse_command("[not json", "--cmd") == ["[not", "json"]
    assert parse_command('"quoted"', "--cmd") == ['"quoted"']
    assert parse_command("[]", "--cmd") == []
    with pytest.raises(CommandError, match=r"^--cmd: a JSON array must hold only strings"):
        parse_command("[1, 2]", "--cmd")


def test_parse_expose() -> None:
    assert parse_expose("80") == "80/tcp"
    assert parse_expose("53/UDP") == "53/udp"
    assert parse_expose("0132/sctp") == "132/sctp"
    for bad in ("0", "65536", "http", "80/icmp", "", "8000-8010"):
        with pytest.raises(CommandError, match="expected PORT"):
            parse_expose(bad)


def test_import_config() -> None:
    config = import_config(
        entrypoint='["/bin/sh", "-c"]',
        cmd="echo hello",
        env=["A=1", "B=x=y"],
        workdir="/srv",
        user="33:33",
        expose=["80", "80/tcp", "53/udp"],
        stop_signal="SIGQUIT",
        labels=["a=b=c", "flag"],
    )
    assert config == crib_pb2.ImportConfig(
        entrypoint=["/bin/sh", "-c"],
        cmd=["echo", "hello"],
        env=["A=1", "B=x=y"],
        working_dir="/srv",
        user="33:33",
        exposed_ports=["80/tcp", "53/udp"],
        stop_signal="SIGQUIT",
        labels={"a": "b=c", "flag": ""},
    )
    assert import_config() == crib_pb2.ImportConfig()
    with pytest.raises(CommandError, match="expected KEY=VALUE"):
        import_config(env=["NOVALUE"])


# --- streaming uploads ---------------------------------------------------------------------


class _FakeFuture:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> bool:
        self.cancelled.set()
        return True


def test_chunk_stream_sends_head_then_mebibyte_chunks() -> None:
    data = bytes(range(256)) * 8193  # 2 MiB + 256 bytes
    head = crib_pb2.ImportImageRequest(name="x")
    stream = ChunkStream(io.BytesIO(data), lambda d: crib_pb2.ImportImageRequest(data=d), head)
    messages = list(stream)
    assert messages[0] == head
    assert [len(m.data) for m in messages[1:]] == [1 << 20, 1 << 20, 256]
    assert b"".join(m.data for m in messages) == data


def test_chunk_stream_read_error_cancels_instead_of_ending() -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError(5, "Input/output error")
            return b"x" * size

    stream = ChunkStream(Broken(), lambda d: crib_pb2.LoadImageRequest(data=d))  # type: ignore[arg-type]
    future = _FakeFuture()
    stream.arm(future)  # type: ignore[arg-type]
    assert len(list(stream)) == 1
    assert future.cancelled.is_set() and stream.error is not None and stream.error.errno == 5


# --- the commands against an in-process fake daemon ------------------------------------------


class FakeImages(api_pb2_grpc.ImageServiceServicer):
    """Just enough of an image service; no RuntimeService, so ListContainers is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.images: dict[str, api_pb2.Image] = {}
        self.pull_delay = 0.0
        self.pull_error: tuple[grpc.StatusCode, str] | None = None
        self.pulls: list[api_pb2.PullImageRequest] = []
        self.removed: list[str] = []

    def _find(self, name: str) -> api_pb2.Image | None:
        for image in self.images.values():
            if (
                name == image.id
                or image.id.removeprefix("sha256:").startswith(name)
                or name in image.repo_tags
            ):
                return image
        return None

    def PullImage(self, request: api_pb2.PullImageRequest, context: grpc.ServicerContext) -> Any:
        self.pulls.append(request)
        time.sleep(self.pull_delay)
        if self.pull_error:
            context.abort(*self.pull_error)
        return api_pb2.PullImageResponse(image_ref="sha256:" + HEX_A)

    def ListImages(self, request: api_pb2.ListImagesRequest, context: grpc.ServicerContext) -> Any:
        return api_pb2.ListImagesResponse(images=list(self.images.values()))

    def ImageStatus(self, request: api_pb2.ImageStatusRequest, context: grpc.ServicerContext) -> Any:
        image = self._find(request.image.image)
        return api_pb2.ImageStatusResponse(image=image) if image else api_pb2.ImageStatusResponse()

    def RemoveImage(self, request: api_pb2.RemoveImageRequest, context: grpc.ServicerContext) -> Any:
        image = self._find(request.image.image)
        if image is not None:
            self.removed.append(image.id)
            del self.images[image.id]
        return api_pb2.RemoveImageResponse()

    def ImageFsInfo(self, request: api_pb2.ImageFsInfoRequest, context: grpc.ServicerContext) -> Any:
        return api_pb2.ImageFsInfoResponse()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeImages, str]]:
    servicer = FakeImages()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api_pb2_grpc.add_ImageServiceServicer_to_server(servicer, server)
    socket = f"unix://{tmp_path}/fake.sock"
    server.add_insecure_port(socket)
    server.start()
    yield servicer, socket
    server.stop(None)


def _run(capsys: pytest.CaptureFixture[str], socket: str, *argv: str) -> tuple[int, str, str]:
    code = main.main(["-r", socket, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_pull_has_no_deadline_but_pull_timeout(fake: tuple[FakeImages, str], capsys: Any) -> None:
    servicer, socket = fake
    servicer.pull_delay = 0.6
    # --timeout bounds the connect, not the pull (crictl's PullImage context has no deadline).
    code, out, err = _run(
        capsys, socket, "--timeout", "200ms", "pull", "--creds", "u:p", "-a", "k=v", "busybox"
    )
    assert (code, out, err) == (0, f"Image is up to date for sha256:{HEX_A}\n", "")
    assert servicer.pulls[-1].auth == api_pb2.AuthConfig(username="u", password="p")
    assert dict(servicer.pulls[-1].image.annotations) == {"k": "v"}
    code, out, err = _run(capsys, socket, "pull", "--pt", "100ms", "busybox")
    assert code == 1
    assert (
        err == "cribctl: pulling image: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"
    )


def test_pull_errors(fake: tuple[FakeImages, str], capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, socket = fake
    servicer.pull_error = (grpc.StatusCode.NOT_FOUND, "not found on registry")
    assert _run(capsys, socket, "pull", "x")[2] == (
        "cribctl: pulling image: rpc error: code = NotFound desc = not found on registry\n"
    )
    # The CRI client strips the code of an Unknown error.
    servicer.pull_error = (grpc.StatusCode.UNKNOWN, "something odd")
    assert _run(capsys, socket, "pull", "x")[2] == "cribctl: pulling image: something odd\n"
    assert _run(capsys, socket, "pull")[2] == "cribctl: image name cannot be empty\n"
    assert (
        _run(capsys, socket, "pull", "--pt=-1s", "x")[2]
        == "cribctl: pulling image: timeout should be bigger than 0\n"
    )
    monkeypatch.setenv("CRICTL_CREDS", "u:p")
    monkeypatch.setenv("CRICTL_AUTH", "dTpw")
    assert _run(capsys, socket, "pull", "x")[2] == "cribctl: both `--creds` and `--auth` are specified\n"
    code, out, _ = _run(capsys, socket, "pull", "a", "b")
    assert code == 0 and out.startswith("NAME:\n   cribctl pull - ")


def test_images_quiet_and_missing_inspecti(fake: tuple[FakeImages, str], capsys: Any) -> None:
    servicer, socket = fake
    servicer.images = {i.id: i for i in reversed(LISTED)}
    assert _run(capsys, socket, "images", "-q") == (0, f"sha256:{HEX_A}\nsha256:{HEX_B}\n", "")
    code, out, err = _run(capsys, socket, "inspecti", "-o", "table", HEX_A[:13], "nope")
    assert code == 1 and out.startswith(f"ID: sha256:{HEX_A}\n")
    assert err == 'cribctl: no such image "nope" present\n'
    doc = json.loads(_run(capsys, socket, "inspecti", HEX_B)[1])
    assert doc == {"status": json.loads(image_cmds.list_json([LISTED[1]]))["images"][0]}
    assert _run(capsys, socket, "inspecti", "-o", "xml", HEX_B)[2] == 'cribctl: unsupported format: "xml"\n'


def test_rmi(fake: tuple[FakeImages, str], capsys: Any) -> None:
    servicer, socket = fake
    servicer.images = {i.id: i for i in LISTED}
    code, out, err = _run(capsys, socket, "rmi", "127.0.0.1:5000/library/busybox:1.36", "nope")
    assert code == 1
    assert (
        out
        == "Deleted: 127.0.0.1:5000/library/busybox:1.36\nDeleted: 127.0.0.1:5000/library/busybox:latest\n"
    )
    assert "has multiple tags" in err and err.endswith("cribctl: no such image nope\n")
    # --prune keeps pinned images; ListContainers is UNIMPLEMENTED here, meaning no containers.
    servicer.images = {i.id: i for i in LISTED}
    assert _run(capsys, socket, "rmi", "--prune") == (0, "", "")
    assert servicer.removed[-1] == f"sha256:{HEX_B}" and f"sha256:{HEX_A}" in servicer.images
    assert _run(capsys, socket, "rmi", "-a") == (
        0,
        "Deleted: 127.0.0.1:5000/library/busybox:1.36\nDeleted: 127.0.0.1:5000/library/busybox:latest\n",
        "",
    )
    assert _run(capsys, socket, "rmi", "-a") == (0, "", "cribctl: No images to remove\n")
