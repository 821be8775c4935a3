"""cribctl's Go look-alikes: go-units durations, strconv, encoding/json floats, times, go-yaml v2.

Expected values marked "Go" were produced by Go 1.27 with cri-tools 1.36's
vendored packages (go-units, sigs.k8s.io/yaml over go-yaml v2, encoding/json,
strconv, time) or by crictl 1.36 itself, and are pasted here: these tests need
no Go toolchain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crib.cribctl.golike import (
    go_format_float32,
    go_format_float64,
    go_json_float,
    go_parse_int,
    go_parse_uint,
    human_duration,
    proto_text,
    resolve_plain_scalar,
    v2_tag,
)
from crib.cribctl.gotime import go_rfc3339_nano, go_time_string, since
from crib.cribctl.output import go_yaml_v2
from crib.cribctl.util import matches_regex
from crib.proto.cri import api_pb2

ID_A = "d82b52a133b069c0134c03a4b2a3543ce741369c90b29ab4a28aecc82ba90315"
ID_B = "09db77a116fb118d46bc75ffaaf9cf5bef5a17a3d798929e04e202265855c47d"
ID_C = "c4ea4ad0bde5cb4dc1075c70853d6d563e3785295b0b8c2c701c83b3bf40abe4"
CREATED = 1795845934228241862  # 2026-11-28T06:05:34.228241862Z
JSON_ERR = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "


pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- Go behaviours --------------------------------------------------------------------------

# Go: (Duration, units.HumanDuration(d)).
HUMAN_DURATIONS = [
    (-5000000000, "Less than a second"),
    (0, "Less than a second"),
    (999000000, "Less than a second"),
    (1000000000, "1 second"),
    (1999000000, "1 second"),
    (59999000000, "59 seconds"),
    (60000000000, "About a minute"),
    (119000000000, "About a minute"),
    (120000000000, "2 minutes"),
    (3599000000000, "59 minutes"),
    (3600000000000, "About an hour"),
    (5340000000000, "About an hour"),
    (5400000000000, "2 hours"),
    (170940000000000, "47 hours"),
    (171000000000000, "2 days"),
    (172800000000000, "2 days"),
    (1123200000000000, "13 days"),
    (1209600000000000, "2 weeks"),
    (5097600000000000, "8 weeks"),
    (5184000000000000, "2 months"),
    (62985600000000000, "24 months"),
    (63072000000000000, "2 years"),
    (259200000000000000, "8 years"),
    (9223372036854775807, "292 years"),
]


@pytest.mark.parametrize(("duration", "text"), HUMAN_DURATIONS)
def test_human_duration_matches_go_units(duration: int, text: str) -> None:
    assert human_duration(duration) == text


def test_since_saturates_like_time_sub() -> None:
    assert since(5, 7) == 2
    assert since(-(1 << 63), 1 << 63) == (1 << 63) - 1
    assert human_duration(since(0, CREATED)) == "56 years"  # a pod without a creation time


# Go: (value, strconv.FormatFloat(v, 'g', -1, 32)) -- a float given for a string in a pod config.
FLOAT32_TEXTS = [
    (0.0, "0"),
    (0.1, "0.1"),
    (1.5, "1.5"),
    (8.0, "8"),
    (1e6, "1e+06"),
    (1.5e6, "1.5e+06"),
    (1234567.0, "1.234567e+06"),
    (123456.0, "123456"),
    (1e-05, "1e-05"),
    (0.0001, "0.0001"),
    (3.14159265358979, "3.1415927"),
    (1e21, "1e+21"),
    (1.2345678901234568e22, "1.2345679e+22"),
    (-2.5, "-2.5"),
    (16777217.0, "1.6777216e+07"),
    (3.4028234663852886e38, "3.4028235e+38"),
    (1e39, "+Inf"),
    (float("inf"), "+Inf"),
    (float("nan"), "NaN"),
    (100000.0, "100000"),
    (999999.5, "999999.5"),
]


@pytest.mark.parametrize(("value", "text"), FLOAT32_TEXTS)
def test_format_float32_matches_go(value: float, text: str) -> None:
    assert go_format_float32(value) == text


# Go: (value, json.Marshal(float64)).
JSON_FLOATS = [
    (80.0, "80"),
    (1.5, "1.5"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1.5e-07, "1.5e-7"),
    (1e-06, "0.000001"),
    (123456789.125, "123456789.125"),
    (1e100, "1e+100"),
    (1.234e-06, "0.000001234"),
    (12345678901234567890.0, "12345678901234567000"),
    (0.30000000000000004, "0.30000000000000004"),
    (-0.0, "-0"),
]


@pytest.mark.parametrize(("value", "text"), JSON_FLOATS)
def test_json_float_matches_go(value: float, text: str) -> None:
    assert go_json_float(value) == text


def test_format_float64() -> None:
    assert [go_format_float64(v) for v in (60.0, 1e21, 1234567.5, 1e-05, 0.0001, float("-inf"))] == [
        "60",
        "1e+21",
        "1.2345675e+06",
        "1e-05",
        "0.0001",
        "-Inf",
    ]


# Go: strconv.ParseInt(s, 0, 64) -- what an IntFlag (--last) accepts.
@pytest.mark.parametrize(
    ("text", "value"),
    [("0x10", 16), ("010", 8), ("1_000", 1000), ("-9223372036854775808", -(1 << 63)), ("+5", 5),
     ("-0x1F", -31), ("0o7_7", 63), ("0", 0), ("0b101", 5)],
)  # fmt: skip
def test_parse_int_base_zero(text: str, value: int) -> None:
    assert go_parse_int(text) == value


@pytest.mark.parametrize(
    ("text", "error"),
    [("_1", "parse error"), ("1__0", "parse error"), ("0b", "parse error"), ("1e3", "parse error"),
     (" 1", "parse error"), ("08", "parse error"), ("", "parse error"),
     ("9223372036854775808", "value out of range"), ("18446744073709551616", "value out of range")],
)  # fmt: skip
def test_parse_int_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=f"^{error}$"):
        go_parse_int(text)


def test_parse_uint() -> None:
    assert go_parse_uint("18446744073709551615") == (1 << 64) - 1
    assert go_parse_uint("4294967295", 10, 32) == (1 << 32) - 1
    with pytest.raises(ValueError, match="value out of range"):
        go_parse_uint("4294967296", 10, 32)
    with pytest.raises(ValueError, match="parse error"):
        go_parse_uint("-1")
    with pytest.raises(ValueError, match="parse error"):
        go_parse_uint("1_0", 10)  # underscores only with base 0


# Go: (ns, time.Unix(0, ns).String(), .Format(time.RFC3339Nano)) in UTC and in Asia/Kolkata.
TIMES = {
    "UTC": [
        (0, "1970-01-01 00:00:00 +0000 UTC", "1970-01-01T00:00:00Z"),
        (CREATED, "2026-11-28 06:05:34.228241862 +0000 UTC", "2026-11-28T06:05:34.228241862Z"),
        (1795845934000000000, "2026-11-28 06:05:34 +0000 UTC", "2026-11-28T06:05:34Z"),
        (1795845934100000000, "2026-11-28 06:05:34.1 +0000 UTC", "2026-11-28T06:05:34.1Z"),
        (-1, "1969-12-31 23:59:59.999999999 +0000 UTC", "1969-12-31T23:59:59.999999999Z"),
    ],
    "Asia/Kolkata": [
        (0, "1970-01-01 05:30:00 +0530 IST", "1970-01-01T05:30:00+05:30"),
        (CREATED, "2026-11-28 11:35:34.228241862 +0530 IST", "2026-11-28T11:35:34.228241862+05:30"),
        (1795845934100000000, "2026-11-28 11:35:34.1 +0530 IST", "2026-11-28T11:35:34.1+05:30"),
        (-1, "1970-01-01 05:29:59.999999999 +0530 IST", "1970-01-01T05:29:59.999999999+05:30"),
    ],
}


@pytest.mark.parametrize("zone", sorted(TIMES))
def test_times_match_go_in_the_local_zone(zone: str, local_zone: Callable[[str], None]) -> None:
    local_zone(zone)
    for ns, string, rfc3339 in TIMES[zone]:
        assert (go_time_string(ns), go_rfc3339_nano(ns)) == (string, rfc3339)


def test_proto_text_is_gos_compact_form() -> None:
    md = api_pb2.PodSandboxMetadata(name="a", uid="c", attempt=3)
    assert proto_text(md) == 'name:"a" uid:"c" attempt:3'
    assert proto_text(api_pb2.PodSandboxMetadata(name='q"\\\t\x01\x85é')) == 'name:"q\\"\\\\\\t\\x01\\u0085é"'
    assert proto_text(api_pb2.PodSandboxMetadata()) == ""
    nested = api_pb2.PodSandboxStatus(id="x", state=api_pb2.SANDBOX_NOTREADY, labels={"b": "2", "a": "1"})
    assert (
        proto_text(nested)
        == 'id:"x" state:SANDBOX_NOTREADY labels:{key:"a" value:"1"} labels:{key:"b" value:"2"}'
    )


def test_matches_regex_is_unanchored_and_bad_patterns_match_nothing() -> None:
    assert matches_regex("", "anything")
    assert matches_regex("eb", "web") and matches_regex("^w", "web") and not matches_regex("^e", "web")
    assert not matches_regex("(", "(")


# --- go-yaml v2 -------------------------------------------------------------------------------


# Go: what sigs.k8s.io/yaml reads for an unquoted scalar (into interface{}).
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("y", True), ("N", False), ("Yes", True), ("on", True), ("OFF", False), ("~", None), ("", None),
        ("null", None), ("017", 15), ("0o17", 15), ("0x1F", 31), ("1_000", 1000), ("08", 8.0),
        ("08.5", 8.5), ("1e3", 1000.0), (".5", 0.5), ("-.5", -0.5), ("+1", 1), ("-0b11", -3),
        ("9223372036854775808", 1 << 63), ("18446744073709551616", 1.8446744073709552e19),
        ("1e999", "1e999"), (".5_0", ".5_0"), ("1:30", "1:30"),
        ("2001-12-14", "2001-12-14"), ("t", "t"), ("abc", "abc"), ("-", "-"), ("1.", 1.0), ("1e", "1e"),
        ("NaN", "NaN"),
    ],
)  # fmt: skip
def test_resolve_plain_scalar_as_go_yaml_v2(text: str, value: Any) -> None:
    got = resolve_plain_scalar(text)
    assert got == value and type(got) is type(value)


def test_v2_tag() -> None:
    assert v2_tag("2001-12-14") == v2_tag("2001-12-14t21:59:43.10Z") == "tag:yaml.org,2002:timestamp"
    assert v2_tag("2001-12-14 21:59:43.10") == "tag:yaml.org,2002:timestamp"
    for plain in ("2001-02-30", "2001-12-14 25:00:00", "<<", "=", "abc"):
        assert v2_tag(plain) == "tag:yaml.org,2002:str", plain
    assert v2_tag(".inf") == "tag:yaml.org,2002:float" and v2_tag("n") == "tag:yaml.org,2002:bool"


V2_INPUT = {
    "keys": {"a10": 1, "a9": 2, "aZ": 3, "a_": 4, "b": 5, "B": 6, "é": 7, "-": 8, "1": 9, "10": 10, "2": 11},
    "strings": ["y", "n", "Yes", "on", "~", "", "null", "0o17", "017", "0x1F", "1_000", "1e3", ".5", "1:30",
                "190:20:30", "2001-12-14", "2001-12-14t21:59:43.10Z", "2001-12-14 21:59:43.10", "2001-02-30",
                "2001-12-14 25:00:00", "<<", "=", "- x", "#x", "a: b", "line1\nline2", "line1\nline2\n", "x ",
                "héllo", ".inf", "NaN", "+1", "-", "1.", "1e", "abc"],
    "numbers": [1, 1.5, 60.0, 1e21, 1234567.5, 0.0001, 0.00001, -2.5, 18446744073709551615, 10**20],
    "bools": [True, False], "nothing": None, "empty": {}, "emptylist": [],
}  # fmt: skip
# Go: yaml.JSONToYAML(json.Marshal(V2_INPUT)).
V2_OUTPUT = """bools:
- true
- false
empty: {}
emptylist: []
keys:
  '-': 8
  "1": 9
  "2": 11
  "10": 10
  B: 6
  a_: 4
  a9: 2
  a10: 1
  aZ: 3
  b: 5
  é: 7
nothing: null
numbers:
- 1
- 1.5
- 60
- 1e+21
- 1.2345675e+06
- 0.0001
- 1e-05
- -2.5
- 18446744073709551615
- 1e+20
strings:
- "y"
- "n"
- "Yes"
- "on"
- "~"
- ""
- "null"
- "0o17"
- "017"
- "0x1F"
- "1_000"
- "1e3"
- ".5"
- "1:30"
- "190:20:30"
- "2001-12-14"
- "2001-12-14t21:59:43.10Z"
- "2001-12-14 21:59:43.10"
- 2001-02-30
- 2001-12-14 25:00:00
- <<
- =
- '- x'
- '#x'
- 'a: b'
- |-
  line1
  line2
- |
  line1
  line2
- 'x '
- héllo
- ".inf"
- NaN
- "+1"
- '-'
- "1."
- 1e
- abc
"""


def test_go_yaml_v2_quotes_and_orders_as_go() -> None:
    assert go_yaml_v2(V2_INPUT) == V2_OUTPUT
