"""cribctl's pod sandbox commands: `runp`, `pods`, `inspectp`, `stopp` and `rmp`.

The flags, aliases, output and error texts are crictl's (cri-tools 1.36), so
scripts written for crictl work unchanged. crictl logs its errors through
logrus; cribctl prints the same message after "cribctl: ".

Connecting: like crictl's runtime client, every command first calls Version
within the timeout (`validate service connection: ...`), so a dead endpoint
fails the same way whatever the command. Each call then gets the global
--timeout, except RunPodSandbox: the CRI client gives it twice the connection
timeout, and `runp --cancel-timeout` replaces that timeout.

Pod configs (`runp`): crictl reads them with sigs.k8s.io/yaml, i.e. YAML 1.1
(go-yaml v2's scalar rules: `yes`/`y`/`on` are booleans, `017` is octal, `n`
is false even as a key) turned into JSON, then Go's encoding/json on the
generated structs. So the field names are the proto's snake_case names,
matched case-insensitively; numbers and booleans given for string fields
become strings ("1.5e+06"); enums are numbers; keys are applied in sorted
order, a repeated key merges into what is there. This module does the same,
with the same error texts, plus two deliberate extensions that crictl would
ignore or refuse: lowerCamelCase names (`portMappings`, protojson's; crictl
silently drops them, so a file that works with crictl means the same here
unless it also spells a field in camelCase, and a snake_case spelling wins
over a camelCase one) and enum value names (`network: NODE`, an error in
crictl).

Not implemented: `runp jsonschema` (refused with a clear error);
`-o go-template` is main.py's, for every command that has it. Regular
expressions (--name, --namespace) are Python's, standing in for Go's RE2; a
pattern either cannot compile matches nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from crib.cribctl import output
from crib.cribctl.client import Command, CommandError, runtime_stub
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote, go_sort, go_string_map, parse_go_duration_strict
from crib.cribctl.image_cmds import (
    TRUNCATED_ID_LEN,
    CallError,
    SliceAppend,
    call_error,
    parse_labels,
    show_help,
    table,
    warn,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

POD_COLUMNS = ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]
CGROUP_PARENT_WARNING = "cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver"


# --- Go behaviours (generic; they would sit well in golike.py) -----------------------------

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _underscore_ok(text: str) -> bool:
    """strconv's underscoreOK: '_' only between digits, or after a base prefix."""
    saw, i = "^", 0
    if text[:1] in ("+", "-"):
        text = text[1:]
    hexa = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        i, saw, hexa = 2, "0", text[1].lower() == "x"
    for ch in text[i:]:
        if ch.isascii() and (ch.isdigit() or (hexa and ch.lower() in "abcdef")):
            saw = "0"
            continue
        if ch == "_":
            if saw != "0":
                return False
            saw = "_"
            continue
        if saw == "_":
            return False
        saw = "!"
    return saw != "_"


def go_parse_uint(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseUint; ValueError("parse error" or "value out of range") as Go's flag package words it."""
    if not text:
        raise ValueError("parse error")
    digits = text
    if base == 0:
        base = 10
        if text[0] == "0":
            if len(text) >= 3 and text[1].lower() in "box":
                base = {"b": 2, "o": 8, "x": 16}[text[1].lower()]
                digits = text[2:]
            else:
                base, digits = 8, text[1:]
        underscores_allowed = True
    else:
        underscores_allowed = False
    limit = 1 << bits
    value, underscores = 0, False
    for ch in digits:
        if ch == "_" and underscores_allowed:
            underscores = True
            continue
        d = int(ch, 36) if ch.isascii() and ch.isalnum() else 99
        if d >= base:
            raise ValueError("parse error")
        value = value * base + d
        if value >= limit:
            # Go stops at the first overflow, before looking at later digits.
            raise ValueError("value out of range")
    if underscores and not _underscore_ok(text):
        raise ValueError("parse error")
    return value


def go_parse_int(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseInt, with the errors of go_parse_uint."""
    if not text:
        raise ValueError("parse error")
    negative = text[0] == "-"
    body = text[1:] if text[0] in "+-" else text
    value = go_parse_uint(body, base, bits)
    cutoff = 1 << (bits - 1)
    if (not negative and value >= cutoff) or (negative and value > cutoff):
        raise ValueError("value out of range")
    return -value if negative else value


def _go_div(a: int, b: int) -> tuple[int, int]:
    """Go's integer / and %: truncated toward zero."""
    q = abs(a) // b
    q = -q if a < 0 else q
    return q, a - q * b


def _go_units(d: int, unit: int) -> float:
    # time.Duration.Seconds/Minutes/Hours: whole units plus the rest as a fraction.
    whole, rest = _go_div(d, unit)
    return float(whole) + float(rest) / float(unit)


def human_duration(d: int) -> str:
    """go-units' HumanDuration of a duration in nanoseconds ("About a minute", "3 days")."""
    seconds = int(_go_units(d, 10**9))
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(_go_units(d, 60 * 10**9))
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(_go_units(d, 3600 * 10**9) + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(_go_units(d, 3600 * 10**9)) // 24 // 365} years"


def since(created_ns: int, now_ns: int) -> int:
    """time.Now().Sub(time.Unix(0, created)): saturated to a Duration (int64 nanoseconds)."""
    return min(max(now_ns - created_ns, _INT64_MIN), _INT64_MAX)


def _local_parts(ns: int) -> tuple[str, str, int, str]:
    """(date and clock, fraction, UTC offset in seconds, zone name) of time.Unix(0, ns) in the local zone."""
    sec, nsec = divmod(ns, 10**9)  # Go normalises the nanoseconds into [0, 1e9) too
    tm = time.localtime(sec)
    clock = (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    )
    # Layout .999999999: trailing zeros dropped, and the dot too when nothing is left.
    frac = f".{nsec:09d}".rstrip("0") if nsec else ""
    return clock, frac, tm.tm_gmtoff or 0, tm.tm_zone or ""


def go_time_string(ns: int) -> str:
    """time.Unix(0, ns).String(): "2006-01-02 15:04:05.999999999 -0700 MST"."""
    clock, frac, offset, zone = _local_parts(ns)
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{clock}{frac} {sign}{hours:02d}{minutes:02d} {zone or f'{sign}{hours:02d}{minutes:02d}'}"


def go_rfc3339_nano(ns: int) -> str:
    """time.Unix(0, ns).Format(time.RFC3339Nano) in the local zone ("Z" at offset zero)."""
    clock, frac, offset, _ = _local_parts(ns)
    if offset == 0:
        zone = "Z"
    else:
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"
    return f"{clock.replace(' ', 'T')}{frac}{zone}"


def _shortest_digits(value: float, significant_max: int, same: Callable[[float], bool]) -> str:
    """The shortest %e form of `value` that reads back as the same number, as Go's shortest formatting."""
    for precision in range(significant_max):
        text = f"{value:.{precision}e}"
        if same(float(text)):
            return text
    return f"{value:.{significant_max - 1}e}"


def _digits_and_exponent(e_text: str) -> tuple[str, int]:
    mantissa, _, exponent = e_text.partition("e")
    return mantissa.replace(".", "").lstrip("-"), int(exponent)


def _format_g(negative: bool, digits: str, exp: int) -> str:
    """strconv.FormatFloat(v, 'g', -1, _) from the shortest digits: %e below 1e-4 and from 1e6 (eprec 6)."""
    sign = "-" if negative else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + _fixed(digits, exp)


def _to_float32(value: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        # Go's float32 conversion of a too-large float64 gives an infinity.
        return math.copysign(math.inf, value)


def go_format_float32(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 32): what sigs.k8s.io/yaml makes of a float given for a string."""
    f32 = _to_float32(value)
    if math.isnan(f32):
        return "NaN"
    if math.isinf(f32):
        return "+Inf" if f32 > 0 else "-Inf"
    if f32 == 0:
        return "-0" if math.copysign(1.0, f32) < 0 else "0"
    digits, exp = _digits_and_exponent(_shortest_digits(f32, 9, lambda back: _to_float32(back) == f32))
    return _format_g(f32 < 0, digits.rstrip("0") or "0", exp)


def go_format_float64(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return _format_g(value < 0, *_shortest_decimal(value))


def _shortest_decimal(value: float) -> tuple[str, int]:
    """(digits, exponent of the first digit) of the shortest text that reads back as `value` (repr's)."""
    sign_digits_exp = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, sign_digits_exp.digits)).rstrip("0") or "0"
    exp = len(sign_digits_exp.digits) + int(sign_digits_exp.exponent) - 1
    return digits, exp


def go_json_float(value: float) -> str:
    """encoding/json's text of a float64: shortest digits, 'f' form unless below 1e-6 or from 1e21."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exp = _shortest_decimal(value)
    sign = "-" if value < 0 else ""
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        # Go writes e-07 as e-7, but keeps two digits after a plus: e+21.
        exponent = f"-{abs(exp)}" if exp < 0 else f"+{exp:02d}"
        return f"{sign}{mantissa}e{exponent}"
    return sign + _fixed(digits, exp)


def _fixed(digits: str, exp: int) -> str:
    """Significant `digits` with the first at 10**exp, written without an exponent."""
    if exp < 0:
        return f"0.{'0' * (-exp - 1)}{digits}"
    whole = digits[: exp + 1].ljust(exp + 1, "0")
    rest = digits[exp + 1 :]
    return whole + ("." + rest if rest else "")


def _text_string(value: str) -> str:
    """A string in protobuf-go's text format (the String() of a message)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0x80 <= code <= 0x9F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _text_value(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "{" + proto_text(value) + "}"
    if field.type == FieldDescriptor.TYPE_STRING:
        return _text_string(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _text_string(value.decode("latin-1"))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known else str(value)
    return str(value)


def proto_text(msg: Message) -> str:
    """The compact text form Go's %v/%q print for a message: `name:"a" uid:"b" attempt:1`.

    protobuf-go may put two spaces between fields in some builds on purpose
    (to keep the form from being parsed); crictl 1.36's build puts one.
    """
    parts = []
    for field in sorted(msg.DESCRIPTOR.fields, key=lambda f: f.number):
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in sorted(value):
                entry = field.message_type
                parts.append(
                    f"{field.name}:{{key:{_text_value(entry.fields_by_name['key'], key)} "
                    f"value:{_text_value(entry.fields_by_name['value'], value[key])}}}"
                )
        elif field.is_repeated:
            parts.extend(f"{field.name}:{_text_value(field, item)}" for item in value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if msg.HasField(field.name):
                parts.append(f"{field.name}:{_text_value(field, value)}")
        elif value:
            parts.append(f"{field.name}:{_text_value(field, value)}")
    return " ".join(parts)


def protojson_text(msg: Message) -> str:
    """protojson.MarshalOptions{EmitDefaultValues: true, Indent: "  "}: fields in number order, maps sorted.

    (image_cmds.list_json does the same for images; a shared home would be output.py.)
    """
    return json.dumps(_in_field_order(msg, output.proto_json(msg)), indent=2, ensure_ascii=False)


def _in_field_order(msg: Message, doc: dict[str, Any]) -> dict[str, Any]:
    ordered: dict[str, Any] = {}
    for field in sorted(msg.DESCRIPTOR.fields, key=lambda f: f.number):
        if field.json_name not in doc:
            continue
        value = doc[field.json_name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = dict(sorted(value.items()))
        elif field.message_type is not None and field.is_repeated:
            value = [_in_field_order(m, v) for m, v in zip(getattr(msg, field.name), value, strict=True)]
        elif field.message_type is not None:
            value = _in_field_order(getattr(msg, field.name), value)
        ordered[field.json_name] = value
    return ordered


def matches_regex(pattern: str, target: str) -> bool:
    """crictl's matchesRegex: empty matches all, unanchored, a bad pattern matches nothing."""
    if not pattern:
        return True
    try:
        return re.search(pattern, target) is not None
    except re.error:
        return False


# --- pod configs: sigs.k8s.io/yaml (go-yaml v2, then encoding/json) -------------------------


class ConfigError(Exception):
    """A pod config that does not load; the message is crictl's, without "load podSandboxConfig: "."""


_JSON_ERROR = "error unmarshaling JSON: while decoding JSON: "
_YAML_ERROR = "error converting YAML to JSON: "
_PLAIN_TAG = "tag:crib.cribctl,2025:go-yaml-v2-plain"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# go-yaml v2's resolve table: the scalars it reads as something else than a string.
_V2_WORDS: dict[str, Any] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_V2_HINTS = frozenset("+-0123456789yYnNtTfFoO~.")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")


def resolve_plain_scalar(text: str) -> Any:
    """What go-yaml v2 makes of an unquoted scalar when decoding into interface{}.

    Unlike PyYAML: `y`/`n` are booleans, "1e3" is a float, "1:30" and dates stay strings.
    """
    if text in _V2_WORDS:
        return _V2_WORDS[text]
    if text[0] not in _V2_HINTS or text[0] in "yYnNtTfFoO~":
        return text
    if text[0] == ".":
        # strconv.ParseFloat of the text as it is (underscores would need a base prefix).
        if _DOT_FLOAT.fullmatch(text) and not math.isinf(value := float(text)):
            return value
        return text
    plain = text.replace("_", "")
    for parse in (go_parse_int, go_parse_uint):
        try:
            return parse(plain)
        except ValueError:
            pass
    if _YAML_STYLE_FLOAT.fullmatch(plain) and not math.isinf(value := float(plain)):
        return value  # an overflow is a ParseFloat error: the scalar stays a string
    # (v2's later 0b branches cannot succeed where ParseInt with base 0 failed.)
    return text


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?))?"
)
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _v2_timestamp(text: str) -> bool:
    """go-yaml v2's parseTimestamp: the four layouts it tries with time.Parse, ranges checked."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return False
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS[month - 1] + (month == 2 and leap):
        return False
    clock = [int(v) for v in (m[4], m[5], m[6]) if v is not None] or [
        int(v) for v in (m[7], m[8], m[9]) if v is not None
    ]
    return not clock or (clock[0] < 24 and clock[1] < 60 and clock[2] < 60)


_YAML_TAG = "tag:yaml.org,2002:"


def v2_tag(text: str) -> str:
    """The tag go-yaml v2's resolve gives an unquoted scalar."""
    # ("<<" is a merge key only when decoding a mapping: v2 resolves it as a plain string.)
    if text[:1] in "+-0123456789" and text and _v2_timestamp(text):
        return _YAML_TAG + "timestamp"
    value = resolve_plain_scalar(text)
    if value is None:
        return _YAML_TAG + "null"
    if isinstance(value, bool):
        return _YAML_TAG + "bool"
    if isinstance(value, int):
        return _YAML_TAG + "int"
    if isinstance(value, float):
        return _YAML_TAG + "float"
    return _YAML_TAG + "str"


class GoYamlV2Dumper(yaml.SafeDumper):
    """PyYAML's emitter (a port of libyaml, as go-yaml v2) deciding plain scalars by go-yaml v2's rules."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return v2_tag(value)
        return super().resolve(kind, value, implicit)


def _represent_v2_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # go-yaml v2's stringv: a literal block with newlines, double quotes for what would not read
    # back as a string (base-60 floats too, which v2 reads as strings but others may not).
    if "\n" in value:
        style: str | None = "|"
    elif v2_tag(value) != _YAML_TAG + "str" or _BASE60_FLOAT.fullmatch(value):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar(_YAML_TAG + "str", value, style=style)


def _represent_v2_float(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    text = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(go_format_float64(value))
    return dumper.represent_scalar(_YAML_TAG + "float", text or go_format_float64(value))


GoYamlV2Dumper.add_representer(str, _represent_v2_str)
GoYamlV2Dumper.add_representer(float, _represent_v2_float)


def _v2_key_less(a: str, b: str) -> bool:
    """go-yaml v2's keyList.Less for string keys: letters after other runes, digit runs by value."""
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            continue
        a_letter, b_letter = a[i].isalpha(), b[i].isalpha()
        if a_letter and b_letter:
            return a[i] < b[i]
        if a_letter or b_letter:
            return b_letter
        an = bn = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdecimal():
            an = an * 10 + ord(a[ai]) - ord("0")
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            bn = bn * 10 + ord(b[bi]) - ord("0")
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return a[i] < b[i]
    return len(a) < len(b)


def _as_v2(obj: Any) -> Any:
    """What sigs.k8s.io/yaml's JSONToYAML holds after reading Go's JSON of `obj`: keys in v2's order,
    numbers as the JSON text reads back (60.0 is the int 60, 1e21 stays a float)."""
    if isinstance(obj, dict):
        keys = list(obj)
        go_sort(keys, _v2_key_less)
        return {key: _as_v2(obj[key]) for key in keys}
    if isinstance(obj, list):
        return [_as_v2(value) for value in obj]
    if isinstance(obj, float) and math.isfinite(obj):
        return resolve_plain_scalar(go_json_float(obj))
    if isinstance(obj, int) and not isinstance(obj, bool):
        return resolve_plain_scalar(str(obj))  # past uint64, go-yaml reads a float
    return obj


def go_yaml_v2(obj: Any) -> str:
    """sigs.k8s.io/yaml.JSONToYAML of Go's JSON for `obj` (go-yaml v2 underneath)."""
    return yaml.dump(
        _as_v2(obj), Dumper=GoYamlV2Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True
    )


class GoYamlV2Loader(yaml.SafeLoader):
    """PyYAML with go-yaml v2's rules for unquoted scalars (see resolve_plain_scalar)."""

    # No implicit resolvers at all: resolve() below sends every plain scalar to go-yaml v2's rules.
    yaml_implicit_resolvers: dict = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _MERGE_TAG if value == "<<" else _PLAIN_TAG
        return super().resolve(kind, value, implicit)

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        value = super().construct_scalar(node)
        # PyYAML keeps a \ud83d escape as a lone surrogate; go-yaml's scanner refuses it.
        if isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value):
            raise yaml.scanner.ScannerError(
                None, None, "found invalid Unicode character escape code", node.start_mark
            )
        return value


def _construct_plain(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return resolve_plain_scalar(loader.construct_scalar(node))


GoYamlV2Loader.add_constructor(_PLAIN_TAG, _construct_plain)


# An escape go-yaml v2 refuses in a double-quoted scalar (an odd number of backslashes before it).
_V2_BAD_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\(/|u[dD][89abAB][0-9a-fA-F]{2}|u[dD][c-fC-F][0-9a-fA-F]{2})")


def _json_document(data: bytes | str) -> tuple[bool, Any]:
    """(True, value) when the input is JSON, read as go-yaml v2 reads JSON.

    JSON is YAML, but PyYAML refuses tabs between tokens where go-yaml takes
    them, and tab-indented JSON is common. Numbers go through v2's scalar rules.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text,
            parse_int=resolve_plain_scalar,
            parse_float=resolve_plain_scalar,
            parse_constant=resolve_plain_scalar,
        )
    except ValueError:
        return False, None
    bad = _V2_BAD_ESCAPE.search(text)
    if bad is not None:
        unicode = bad[1] != "/"
        problem = (
            f"found {'invalid Unicode character escape code' if unicode else 'unknown escape character'}"
        )
        line = text.count("\n", 0, bad.start())
        raise ConfigError(f"{_YAML_ERROR}yaml: {f'line {line + 1}: ' if line else ''}{problem}")
    return True, value


def _first_document(data: bytes | str) -> Any:
    """go-yaml v2 decodes the first document only; an empty stream is null."""
    is_json, value = _json_document(data)
    if is_json:
        return value
    loader = GoYamlV2Loader(data)
    try:
        return loader.get_data() if loader.check_data() else None
    except yaml.MarkedYAMLError as exc:
        # go-yaml's wording differs from PyYAML's, but not where it puts the line: the
        # 0-based line of the problem (+1 for scanner errors), else of the context; none for 0.
        line = 0
        if exc.problem_mark is not None and exc.problem_mark.line:
            line = exc.problem_mark.line + isinstance(exc, yaml.scanner.ScannerError)
        elif exc.context_mark is not None:
            line = exc.context_mark.line
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{_YAML_ERROR}yaml: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_YAML_ERROR}yaml: {exc}") from None
    finally:
        loader.dispose()


# A target: where a JSON value goes, as sigs.k8s.io/yaml looks it up to turn numbers into strings.
# ("msg", Descriptor) | ("map", field) | ("list", field) | ("scalar", field) | None
Target = tuple[str, Any] | None


def _go_fold(name: str) -> str:
    """bytes.EqualFold's classes for field names: ASCII case, plus the Kelvin sign and long s."""
    return "".join(
        "k" if ch == "\u212a" else "s" if ch == "\u017f" else ch.lower() if ch.isascii() else ch
        for ch in name
    )


def _crictl_field(desc: Descriptor, key: str) -> FieldDescriptor | None:
    """encoding/json's field for a key: the exact json tag (the proto name), else a case-insensitive match."""
    if key in desc.fields_by_name:
        return desc.fields_by_name[key]
    folded = _go_fold(key)
    for field in desc.fields:
        if _go_fold(field.name) == folded:
            return field
    return None


def _camel_field(desc: Descriptor, key: str) -> FieldDescriptor | None:
    """cribctl's extension: protojson's lowerCamelCase name, also case-insensitively."""
    folded = _go_fold(key)
    for field in desc.fields:
        if _go_fold(field.json_name) == folded:
            return field
    return None


def _fields_for(desc: Descriptor, keys: Iterable[str]) -> dict[str, FieldDescriptor]:
    """The field of each key; a camelCase key is dropped when another key already names its field."""
    found = {key: field for key in keys if (field := _crictl_field(desc, key)) is not None}
    taken = set(found.values())
    for key in keys:
        if key not in found and (field := _camel_field(desc, key)) is not None and field not in taken:
            found[key] = field
    return found


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _field_target(field: FieldDescriptor) -> Target:
    if _is_map(field):
        return ("map", field)
    if field.is_repeated:
        return ("list", field)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return ("msg", field.message_type)
    return ("scalar", field)


def _element_target(field: FieldDescriptor) -> Target:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return ("msg", field.message_type)
    return ("scalar", field)


def _go_map_key(key: Any, value: Any) -> str:
    """sigs.k8s.io/yaml's map keys: JSON has only string keys."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int) and _INT64_MIN <= key <= _INT64_MAX:
        return str(key)
    if isinstance(key, int):
        # go-yaml gives a uint64 past int64, a key type sigs.k8s.io/yaml has no case for.
        raise ConfigError(
            f"{_YAML_ERROR}unsupported map key of type: uint64, key: {key:#x}, value: {_go_value_text(value)}"
        )
    if isinstance(key, float):
        text = go_format_float32(key)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
    kind = "%!s(<nil>)" if key is None else type(key).__name__
    shown = "<nil>" if key is None else repr(key)
    raise ConfigError(
        f"{_YAML_ERROR}unsupported map key of type: {kind}, key: {shown}, value: {_go_value_text(value)}"
    )


def _go_value_text(value: Any) -> str:
    """fmt's %+#v of what go-yaml v2 decoded (for sigs.k8s.io/yaml's key error)."""
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value <= _INT64_MAX else f"{value:#x}"
    if isinstance(value, float):
        return go_format_float64(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_value_text(v) for v in value) + "}"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        inner = ", ".join(f"{_go_value_text(k)}:{_go_value_text(v)}" for k, v in items)
        return "map[interface {}]interface {}{" + inner + "}"
    return str(value)


def _to_jsonable(obj: Any, target: Target) -> Any:
    """sigs.k8s.io/yaml's convertToJSONableObject: string keys, and scalars given for strings made strings."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = _go_map_key(key, value)
            child: Target = None
            if target is not None and target[0] == "msg":
                field = _fields_for(target[1], [name]).get(name)
                child = _field_target(field) if field is not None else None
            elif target is not None and target[0] == "map":
                child = _element_target(target[1].message_type.fields_by_name["value"])
            out[name] = _to_jsonable(value, child)
        return out
    if isinstance(obj, list):
        element = _element_target(target[1]) if target is not None and target[0] == "list" else None
        return [_to_jsonable(value, element) for value in obj]
    if target is not None and target[0] == "scalar" and target[1].type == FieldDescriptor.TYPE_STRING:
        if isinstance(obj, bool):
            return "true" if obj else "false"
        if isinstance(obj, int):
            return str(obj)
        if isinstance(obj, float):
            return go_format_float32(obj)
    if isinstance(obj, bytes):  # !!binary: go-yaml gives the decoded bytes as a string
        return obj.decode("latin-1")
    if obj is not None and not isinstance(obj, (str, int, float)):
        return str(obj)  # explicit !!timestamp, !!set...: rare, kept as text
    return obj


def _check_marshalable(obj: Any) -> None:
    """json.Marshal's refusal of NaN and infinities, in its (sorted key) order."""
    if isinstance(obj, dict):
        for key in sorted(obj):
            _check_marshalable(obj[key])
    elif isinstance(obj, list):
        for value in obj:
            _check_marshalable(value)
    elif isinstance(obj, float) and not math.isfinite(obj):
        text = "NaN" if math.isnan(obj) else "+Inf" if obj > 0 else "-Inf"
        raise ConfigError(f"{_YAML_ERROR}json: unsupported value: {text}")


def _go_name(desc: Any) -> str:
    """The Go type of a CRI message or enum: runtime.v1.DNSConfig is v1.DNSConfig."""
    local = desc.full_name.removeprefix(desc.file.package + ".")
    return "v1." + local.replace(".", "_")


_GO_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_SINT32: "int32",
    FieldDescriptor.TYPE_SFIXED32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_SINT64: "int64",
    FieldDescriptor.TYPE_SFIXED64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_FIXED32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_FIXED64: "uint64",
    FieldDescriptor.TYPE_DOUBLE: "float64",
    FieldDescriptor.TYPE_FLOAT: "float32",
    FieldDescriptor.TYPE_BYTES: "[]uint8",
}
_SIGNED_BITS = {"int32": 32, "int64": 64}
_UNSIGNED_BITS = {"uint32": 32, "uint64": 64}


def _go_element_type(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _go_name(field.message_type)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _go_name(field.enum_type)
    return _GO_SCALARS[field.type]


def _go_field_type(field: FieldDescriptor) -> str:
    def element(f: FieldDescriptor) -> str:
        pointer = "*" if f.type == FieldDescriptor.TYPE_MESSAGE else ""
        return pointer + _go_element_type(f)

    if _is_map(field):
        entry = field.message_type.fields_by_name
        return f"map[{element(entry['key'])}]{element(entry['value'])}"
    if field.is_repeated:
        return "[]" + element(field)
    return _go_element_type(field)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _json_number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else go_json_float(value)


# Where a JSON value lands, as encoding/json names it in an error: the innermost Go struct
# holding the field, and the JSON keys of the fields down to it (no slice indices, no map keys).
Where = tuple[str, tuple[str, ...]] | None


def _type_error(value: Any, where: Where, go_type: str, what: str | None = None) -> ConfigError:
    """encoding/json's UnmarshalTypeError as crictl 1.36 (Go 1.26, json v1) words it."""
    what = what or _json_kind(value)
    if where is None:
        return ConfigError(f"{_JSON_ERROR}json: cannot unmarshal {what} into Go value of type {go_type}")
    struct, fields = where
    return ConfigError(
        f"{_JSON_ERROR}json: cannot unmarshal {what} into Go struct field {struct}.{'.'.join(fields)}"
        f" of type {go_type}"
    )


def _struct_name(desc: Any) -> str:
    """The Go struct's own name (reflect's Name): runtime.v1.DNSConfig is DNSConfig."""
    return _go_name(desc).removeprefix("v1.")


def _decode_scalar(field: FieldDescriptor, value: Any, path: Where, current: Any) -> Any:
    """One JSON value into a scalar Go field; null leaves the field as it is."""
    if value is None:
        return current
    go_type = _go_element_type(field)
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        raise _type_error(value, path, go_type)
    if kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise _type_error(value, path, go_type)
    if kind == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise _type_error(value, path, go_type) from None
        raise _type_error(value, path, go_type)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        literal = _json_number(value)
        number = _parse_number(literal, _GO_SCALARS.get(kind, "int32"))
        if number is None:
            raise _type_error(value, path, go_type, f"number {literal}")
        return number
    if kind == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        named = field.enum_type.values_by_name.get(value)
        if named is not None:  # cribctl's extension: the value's name, as protojson reads it
            return named.number
    raise _type_error(value, path, go_type)


def _parse_number(literal: str, go_type: str) -> int | float | None:
    """encoding/json's number into an int, uint or float field (base 10, no exponent for integers)."""
    try:
        if go_type in _SIGNED_BITS:
            number = go_parse_int(literal, 10, 64)
            bits = _SIGNED_BITS[go_type]
            return number if -(1 << (bits - 1)) <= number < (1 << (bits - 1)) else None
        if go_type in _UNSIGNED_BITS:
            number = go_parse_uint(literal, 10, 64)
            return number if number < (1 << _UNSIGNED_BITS[go_type]) else None
    except ValueError:
        return None
    parsed = float(literal)
    if go_type == "float32" and math.isinf(_to_float32(parsed)):
        return None
    return parsed


def _decode_message(msg: Message, obj: Any, path: tuple[str, ...] = (), where: Where = None) -> None:
    """A JSON object into a Go struct: keys in sorted order (json.Marshal sorted them), unknown skipped.

    `path` is the JSON keys down to this struct; `where` names it if `obj` is no object.
    """
    if not isinstance(obj, dict):
        raise _type_error(obj, where, _go_name(msg.DESCRIPTOR))
    fields = _fields_for(msg.DESCRIPTOR, obj)
    for key in sorted(obj):
        field = fields.get(key)
        if field is not None:
            # Errors name the field as its struct tag does (keys match case-insensitively).
            _decode_field(msg, field, obj[key], (*path, field.name))


def _decode_field(msg: Message, field: FieldDescriptor, value: Any, keys: tuple[str, ...]) -> None:
    name = field.name
    path: Where = (_struct_name(msg.DESCRIPTOR), keys)
    if _is_map(field):
        if value is None:
            msg.ClearField(name)
            return
        if not isinstance(value, dict):
            raise _type_error(value, path, _go_field_type(field))
        entries = getattr(msg, name)
        value_field = field.message_type.fields_by_name["value"]
        for key in sorted(value):
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                # Each map element is decoded into a fresh value, not merged.
                entries.pop(key, None)
                if value[key] is not None:
                    _decode_message(entries[key], value[key], keys, path)
                else:
                    entries[key].Clear()
            else:
                # A fresh zero element each time: null stores "" (or 0).
                entries[key] = _decode_scalar(value_field, value[key], path, _zero(value_field))
        return
    if field.is_repeated:
        if value is None:
            msg.ClearField(name)
            return
        if not isinstance(value, list):
            raise _type_error(value, path, _go_field_type(field))
        items = getattr(msg, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            # Go decodes into the elements already there (merging), then cuts the slice to length.
            for i, item in enumerate(value):
                element = items[i] if i < len(items) else items.add()
                if item is None:
                    element.Clear()
                else:
                    _decode_message(element, item, keys, path)
            del items[len(value) :]
        else:
            # A null element keeps what was there (Go decodes into the existing slice).
            old = list(items)
            new = [
                _decode_scalar(field, item, path, old[i] if i < len(old) else _zero(field))
                for i, item in enumerate(value)
            ]
            del items[:]
            items.extend(new)
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if value is None:
            msg.ClearField(name)
            return
        if not isinstance(value, dict):
            raise _type_error(value, path, _go_field_type(field))
        sub = getattr(msg, name)
        sub.SetInParent()  # `{}` still makes the pointer non-nil in Go
        _decode_message(sub, value, keys, path)
        return
    setattr(msg, name, _decode_scalar(field, value, path, getattr(msg, name)))


def _zero(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return ""
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b""
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.0
    return 0


def parse_pod_config(data: bytes | str) -> api_pb2.PodSandboxConfig:
    """A PodSandboxConfig from YAML or JSON text as sigs.k8s.io/yaml.Unmarshal fills crictl's struct."""
    raw = _first_document(data)
    target: Target = ("msg", api_pb2.PodSandboxConfig.DESCRIPTOR)
    obj = _to_jsonable(raw, target)
    _check_marshalable(obj)
    config = api_pb2.PodSandboxConfig()
    if obj is not None:  # JSON null into a struct changes nothing
        _decode_message(config, obj)
    return config


def go_path_error(op: str, path: str, exc: OSError) -> str:
    # Go's *PathError: "open x: permission denied".
    reason = exc.strerror or str(exc)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


def load_pod_config(path: str) -> tuple[api_pb2.PodSandboxConfig, list[str]]:
    """crictl's loadPodSandboxConfig: the config and the warnings to print; ConfigError on failure."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config at {path} not found") from None
    except IsADirectoryError as exc:
        # Go opens a directory fine; reading it fails.
        raise ConfigError(go_path_error("read", path, exc)) from None
    except OSError as exc:
        raise ConfigError(go_path_error("open", path, exc)) from None
    config = parse_pod_config(data)
    if not config.HasField("metadata"):
        raise ConfigError("metadata is not set")
    if not config.metadata.uid:
        config.metadata.uid = str(uuid.uuid4())
    if not config.metadata.name or not config.metadata.namespace:
        raise ConfigError(f"name or namespace is not in metadata {go_quote(proto_text(config.metadata))}")
    warnings = []
    if config.HasField("linux") and not config.linux.cgroup_parent:
        warnings.append(CGROUP_PARENT_WARNING)
    return config, warnings


# --- listing and showing pods ----------------------------------------------------------------


def state_filter(state: str) -> api_pb2.PodSandboxStateValue | None:
    """--state: ready or notready, any case; anything else is fatal in crictl."""
    if not state:
        return None
    lowered = state.lower()
    if lowered == "ready":
        return api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    if lowered == "notready":
        return api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)
    raise CommandError("--state should be ready or notready")


def pod_filter(
    pod_id: str = "", state: str = "", labels: dict[str, str] | None = None
) -> api_pb2.PodSandboxFilter:
    """The part of the filtering crictl leaves to the runtime: ID (crib: a prefix), state and labels."""
    f = api_pb2.PodSandboxFilter(id=pod_id, label_selector=labels or {})
    st = state_filter(state)
    if st is not None:
        f.state.CopyFrom(st)
    return f


def select_pods(
    pods: list[api_pb2.PodSandbox], name: str = "", namespace: str = "", latest: bool = False, last: int = 0
) -> list[api_pb2.PodSandbox]:
    """crictl's getSandboxesList: name and namespace regexes, newest first, then --latest/--last."""
    kept = [
        p
        for p in pods
        if p.HasField("metadata")
        and matches_regex(name, p.metadata.name)
        and matches_regex(namespace, p.metadata.namespace)
    ]
    return newest_first(kept, latest, last)


def newest_first(items: list[Any], latest: bool, last: int) -> list[Any]:
    """crictl's list order (newest first), cut to one with --latest or to --last N."""
    go_sort(items, lambda a, b: a.created_at > b.created_at)
    n = len(items)
    if latest:
        n = 1
    if last > 0:
        n = last
    return items[: min(n, len(items))]


def pod_state(state: int) -> str:
    if state == api_pb2.SANDBOX_READY:
        return "Ready"
    if state == api_pb2.SANDBOX_NOTREADY:
        return "NotReady"
    known = api_pb2.PodSandboxState.DESCRIPTOR.values_by_number.get(state)
    raise CommandError(f"Unknown pod state {go_quote(known.name if known else str(state))}")


def runtime_handler(pod: api_pb2.PodSandbox) -> str:
    return pod.runtime_handler or "(default)"


def truncated(pod_id: str) -> str:
    return pod_id[:TRUNCATED_ID_LEN]


def pods_table(pods: list[api_pb2.PodSandbox], now_ns: int, no_trunc: bool = False) -> str:
    """`crictl pods` as a table (tabwriter 20/1/3), CREATED relative to `now_ns`."""
    rows = [POD_COLUMNS]
    for pod in pods:
        rows.append(
            [
                pod.id if no_trunc else truncated(pod.id),
                human_duration(since(pod.created_at, now_ns)) + " ago",
                pod_state(pod.state),
                pod.metadata.name,
                pod.metadata.namespace,
                str(pod.metadata.attempt),
                runtime_handler(pod),
            ]
        )
    return table(rows)


def sorted_pairs(title: str, values: Any) -> list[str]:
    # A map decoded from the wire is nil when empty: crictl prints the section only when set.
    if not values:
        return []
    return [f"{title}:"] + [f"\t{key} -> {values[key]}" for key in sorted(values)]


def pod_verbose(pod: api_pb2.PodSandbox) -> str:
    """One pod of `crictl pods -v`, with its trailing blank line."""
    lines = [f"ID: {pod.id}"]
    if pod.HasField("metadata"):
        md = pod.metadata
        lines += [f"Name: {md.name}"] if md.name else []
        lines += [f"UID: {md.uid}"] if md.uid else []
        lines += [f"Namespace: {md.namespace}"] if md.namespace else []
        lines += [f"Attempt: {md.attempt}"] if md.attempt else []
    lines.append(f"Status: {pod_state(pod.state)}")
    lines.append(f"Created: {go_time_string(pod.created_at)}")
    lines += sorted_pairs("Labels", pod.labels)
    lines += sorted_pairs("Annotations", pod.annotations)
    lines.append(f"Runtime: {runtime_handler(pod)}")
    return "\n".join(lines) + "\n\n"


def _enum_text(enum: Any, value: int) -> str:
    known = enum.DESCRIPTOR.values_by_number.get(value)
    return known.name if known else str(value)


def pod_status_table(r: api_pb2.PodSandboxStatusResponse, verbose: bool) -> str:
    """crictl's outputPodSandboxStatusTable."""
    status = r.status
    lines = [f"ID: {status.id}"]
    if status.HasField("metadata"):
        md = status.metadata
        lines += [f"Name: {md.name}"] if md.name else []
        lines += [f"UID: {md.uid}"] if md.uid else []
        lines += [f"Namespace: {md.namespace}"] if md.namespace else []
        lines.append(f"Attempt: {md.attempt}")
    lines.append(f"Status: {_enum_text(api_pb2.PodSandboxState, status.state)}")
    lines.append(f"Created: {go_time_string(status.created_at)}")
    if status.HasField("network"):
        lines.append(f"IP Addresses: {status.network.ip}")
        lines += [f"Additional IP: {ip.ip}" for ip in status.network.additional_ips]
    lines += sorted_pairs("Labels", status.labels)
    lines += sorted_pairs("Annotations", status.annotations)
    if verbose:
        lines.append(f"Info: {go_string_map(dict(r.info))}")
    return "\n".join(lines) + "\n"


def status_json(status: api_pb2.PodSandboxStatus) -> dict[str, Any]:
    """crictl's marshalPodSandboxStatus: protojson with createdAt as RFC 3339 in the local zone.

    It re-marshals by the Go struct's fields, so a message field left unset
    comes out as null instead of being left out.
    """
    doc: dict[str, Any] = dict.fromkeys((f.json_name for f in status.DESCRIPTOR.fields), None)
    doc.update(output.proto_json(status))
    doc["createdAt"] = go_rfc3339_nano(status.created_at)
    return doc


def verify_sandbox_status(status: api_pb2.PodSandboxStatus) -> str | None:
    """The CRI client's verifySandboxStatus: what it refuses in a runtime's answer."""
    if not status.id:
        return "status.Id is not set"
    if not status.HasField("metadata"):
        return "status.Metadata is not set"
    md = status.metadata
    if not md.name or not md.namespace or not md.uid:
        return (
            f"metadata.Name, metadata.Namespace or metadata.Uid is not in metadata {go_quote(proto_text(md))}"
        )
    if not status.created_at:
        return "status.CreatedAt is not set"
    return None


# --- calls -----------------------------------------------------------------------------------------

_DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"


def connect(ep: Endpoints, timeout: float | None = None) -> api_pb2_grpc.RuntimeServiceStub:
    """crictl's getRuntimeService: the CRI client checks the endpoint with Version within the timeout."""
    seconds = timeout or ep.timeout
    stub = runtime_stub(ep)
    try:
        if seconds <= 0:
            # A negative --cancel-timeout: Go's context is over before the call starts.
            raise CallError(_DEADLINE_EXCEEDED)
        try:
            stub.Version(api_pb2.VersionRequest(), timeout=seconds)
        except grpc.RpcError as exc:
            raise CallError(call_error(exc)) from None
    except CallError as exc:
        endpoint = go_quote(ep.runtime)
        raise CommandError(
            f"validate service connection: validate CRI v1 runtime API for endpoint {endpoint}: {exc}"
        ) from None
    return stub


def list_pods(
    stub: api_pb2_grpc.RuntimeServiceStub,
    ep: Endpoints,
    *,
    pod_id: str = "",
    state: str = "",
    labels: dict[str, str] | None = None,
    name: str = "",
    namespace: str = "",
    latest: bool = False,
    last: int = 0,
) -> list[api_pb2.PodSandbox]:
    """crictl's ListPodSandboxes; CallError for a failed call, CommandError for a bad --state."""
    request = api_pb2.ListPodSandboxRequest(filter=pod_filter(pod_id, state, labels))
    try:
        r = stub.ListPodSandbox(request, timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(f"call list sandboxes RPC: {call_error(exc)}") from None
    return select_pods(list(r.items), name, namespace, latest, last)


def pod_status(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str, verbose: bool
) -> api_pb2.PodSandboxStatusResponse:
    request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose)
    try:
        r = stub.PodSandboxStatus(request, timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None
    if r.HasField("status") and (problem := verify_sandbox_status(r.status)):
        raise CallError(problem)
    return r


_print_lock = threading.Lock()


def say(line: str) -> None:
    # rm and rmp work on many at once: whole lines, each at once.
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def stop_pod(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str) -> None:
    """crictl's StopPodSandbox: prints "Stopped sandbox <id>"; CallError on failure."""
    if not pod_id:
        raise CallError("ID cannot be empty")
    try:
        stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None
    say(f"Stopped sandbox {pod_id}")


def remove_pod(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str) -> None:
    if not pod_id:
        raise CallError("ID cannot be empty")
    try:
        stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None
    say(f"Removed sandbox {pod_id}")


# --- flags -------------------------------------------------------------------------------------


class GoFlag(argparse.Action):
    """Keeps a flag's text and the name it was given by, for Go's flag error ("for flag -n")."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, (str(values), (option_string or self.dest).lstrip("-")))


def _flag_error(flag: tuple[str, str], reason: str) -> CommandError:
    return CommandError(f"invalid value {go_quote(flag[0])} for flag -{flag[1]}: {reason}")


def int_flag(flag: tuple[str, str] | None) -> int:
    """An IntFlag: Go's strconv.ParseInt with base 0 ("0x10" is 16)."""
    if flag is None:
        return 0
    try:
        return go_parse_int(flag[0])
    except ValueError as exc:
        raise _flag_error(flag, str(exc)) from None


def duration_flag(flag: tuple[str, str] | None) -> float:
    """A DurationFlag in seconds: time.ParseDuration, a unit is required."""
    if flag is None:
        return 0.0
    try:
        return parse_go_duration_strict(flag[0])
    except ValueError:
        raise _flag_error(flag, "parse error") from None


# --- commands ------------------------------------------------------------------------------------


def cmd_runp(args: argparse.Namespace, ep: Endpoints) -> None:
    cancel_timeout = duration_flag(args.cancel_timeout)
    if len(args.pod_config) != 1 or not args.pod_config[0]:
        show_help(args)
        return
    path = args.pod_config[0]
    if path in ("jsonschema", "js") and not Path(path).exists():
        raise CommandError(f"runp {path}: cribctl does not print the PodSandboxConfig JSON schema")
    # The connection timeout, which --cancel-timeout replaces, also sets RunPodSandbox's deadline.
    timeout = cancel_timeout or ep.timeout
    stub = connect(ep, timeout)
    try:
        config, warnings = load_pod_config(path)
    except ConfigError as exc:
        raise CommandError(f"load podSandboxConfig: {exc}") from None
    for warning in warnings:
        warn(warning)
    request = api_pb2.RunPodSandboxRequest(config=config, runtime_handler=args.runtime or "")
    try:
        # The CRI client doubles the timeout for sandbox operations.
        r = stub.RunPodSandbox(request, timeout=2 * timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"run pod sandbox: {call_error(exc)}") from None
    if not r.pod_sandbox_id:
        raise CommandError(
            f"run pod sandbox: PodSandboxId is not set for sandbox {go_quote(proto_text(config.metadata))}"
        )
    print(r.pod_sandbox_id)


def cmd_pods(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    stub = connect(ep)
    labels = parse_labels(args.label or [])
    try:
        pods = list_pods(
            stub,
            ep,
            pod_id=args.id or "",
            state=args.state or "",
            labels=labels,
            name=args.name or "",
            namespace=args.namespace or "",
            latest=args.latest,
            last=last,
        )
    except CallError as exc:
        raise CommandError(f"listing pod sandboxes: list pod sandboxes: {exc}") from None
    fmt = args.output
    if fmt == "json":
        print(protojson_text(api_pb2.ListPodSandboxResponse(items=pods)))
        return
    if fmt == "yaml":
        print(go_yaml_v2(output.proto_json(api_pb2.ListPodSandboxResponse(items=pods))))
        return
    if fmt != "table":
        raise CommandError(f"listing pod sandboxes: unsupported output format {go_quote(fmt)}")
    if args.quiet:
        sys.stdout.write("".join(f"{pod.id}\n" for pod in pods))
    elif args.verbose:
        for pod in pods:
            # Printed as it goes, as crictl: earlier pods show before a pod with a bad state.
            sys.stdout.write(pod_verbose(pod))
    else:
        sys.stdout.write(pods_table(pods, time.time_ns(), args.no_trunc))


def cmd_inspectp(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    stub = connect(ep)
    ids = list(args.ids)
    if not ids:
        try:
            labels = parse_labels(args.label or [])
        except CommandError as exc:
            raise CommandError(f"parse label string slice: {exc}") from None
        try:
            pods = list_pods(
                stub,
                ep,
                state=args.state or "",
                labels=labels,
                name=args.name or "",
                namespace=args.namespace or "",
                latest=args.latest,
                last=last,
            )
        except CallError as exc:
            raise CommandError(f"listing pod sandboxes: {exc}") from None
        ids = [pod.id for pod in pods]
    if not ids:
        warn("No IDs provided or nothing found per filter")
        show_help(args)
        return
    verbose = not args.quiet

    def status_of(pod_id: str) -> api_pb2.PodSandboxStatusResponse:
        try:
            return pod_status(stub, ep, pod_id, verbose)
        except CallError as exc:
            raise CommandError(f"get the status of pod sandboxes: get pod sandbox status: {exc}") from None

    output.show_statuses(
        ids,
        status_of,
        lambda r: pod_status_table(r, verbose),
        lambda r: output.status_document(status_json(r.status), r.info),
        args.output or "json",
        lambda docs, fmt: render_go_statuses(docs, fmt, "pod sandboxes"),
    )


def render_go_statuses(docs: list[dict[str, Any]], fmt: str, what: str) -> str:
    """inspect and inspectp's JSON, or YAML by sigs.k8s.io/yaml (inspecti's YAML is another)."""
    if fmt == "yaml":
        return go_yaml_v2(docs[0] if len(docs) == 1 else docs)
    if fmt != "json":
        raise CommandError(f"get the status of {what}: unsupported format: {go_quote(fmt)}")
    return output.render_status_documents(docs, fmt)


def cmd_stopp(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids:
        show_help(args)
        return
    stub = connect(ep)
    for pod_id in args.ids:
        try:
            stop_pod(stub, ep, pod_id)
        except CallError as exc:
            raise CommandError(f"stopping the pod sandbox {go_quote(pod_id)}: {exc}") from None


def _remove_one(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str, force: bool) -> str | None:
    """One pod of rmp: the error text, or None."""
    quoted = go_quote(pod_id)
    try:
        r = pod_status(stub, ep, pod_id, False)
    except CallError as exc:
        return f"getting sandbox status of pod {quoted}: {exc}"
    if r.status.state == api_pb2.SANDBOX_READY:
        if not force:
            return f"pod sandbox {quoted} is running, please stop it first"
        try:
            stop_pod(stub, ep, pod_id)
        except CallError as exc:
            return f"stopping the pod sandbox {quoted} failed: {exc}"
    try:
        remove_pod(stub, ep, pod_id)
    except CallError as exc:
        return f"removing the pod sandbox {quoted}: {exc}"
    return None


# crictl removes every pod at once; a bound keeps a huge --all from opening thousands of threads.
RMP_WORKERS = 16


def cmd_rmp(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = connect(ep)
    ids = list(args.ids)
    if args.all:
        try:
            r = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=ep.timeout)
        except grpc.RpcError as exc:
            raise CommandError(call_error(exc)) from None
        ids = [pod.id for pod in r.items]
    if not ids:
        if args.all:
            warn("No pods to remove")
            return
        show_help(args)
        return
    # Concurrently, as crictl: output and errors come in the order the pods finish.
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=min(len(ids), RMP_WORKERS)) as pool:
        futures = [pool.submit(_remove_one, stub, ep, pod_id, args.force) for pod_id in ids]
        for future in futures:
            error = future.result()
            if error:
                errors.append(error)
    if errors:
        raise CommandError("\n".join(errors))


# --- registration ----------------------------------------------------------------------------------


def _add(sub: Any, name: str, help_text: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text)
    p.set_defaults(subparser=p)
    return p


def _list_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="", help="filter by pod name regular expression pattern")
    p.add_argument("--namespace", default="", help="filter by pod namespace regular expression pattern")
    p.add_argument("--state", "-s", default="", help="filter by pod state")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument("--latest", "-l", action="store_true", help="show the most recently created pod")
    p.add_argument(
        "--last",
        "-n",
        action=GoFlag,
        metavar="N",
        help="show last n recently created pods. Set 0 for unlimited",
    )


def register(sub: Any) -> dict[str, Command]:
    """Add the pod subcommands to cribctl's subparsers; returns {name: command}."""
    p = _add(sub, "runp", "run a new pod")
    p.add_argument("pod_config", nargs="*", metavar="pod-config.[json|yaml]")
    p.add_argument(
        "--runtime", "-r", default="", help="runtime handler to use, as the container runtime defines them"
    )
    p.add_argument(
        "--cancel-timeout",
        "-T",
        action=GoFlag,
        metavar="DURATION",
        help="how long to wait for the pod before cancelling the request, e.g. 2m (default: --timeout)",
    )

    p = _add(sub, "pods", "list pods")
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)  # crictl ignores arguments here
    p.add_argument("--id", default="", help="filter by pod id")
    _list_filters(p)
    p.add_argument("--verbose", "-v", action="store_true", help="show verbose info for pods")
    p.add_argument("--quiet", "-q", action="store_true", help="list only pod IDs")
    p.add_argument("--output", "-o", default="table", help="output format, one of: json|yaml|table")
    p.add_argument("--no-trunc", action="store_true", help="show output without truncating the ID")

    p = _add(sub, "inspectp", "display the status of one or more pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it
    _list_filters(p)

    p = _add(sub, "stopp", "stop one or more running pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")

    p = _add(sub, "rmp", "remove one or more pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")
    p.add_argument(
        "--force", "-f", action="store_true", help="force removal of the pod sandbox, disregarding if running"
    )
    p.add_argument("--all", "-a", action="store_true", help="remove all pods")

    return {"runp": cmd_runp, "pods": cmd_pods, "inspectp": cmd_inspectp, "stopp": cmd_stopp, "rmp": cmd_rmp}
