"""Go behaviours crictl's output and parsing depend on: strconv, fmt, sort.Sort, text/tabwriter,
go-units and go-yaml v2's scalar rules, each as Go has it for the inputs crictl gives it.

Go's time is gotime.py and its text/template gotemplate.py; docs/cribctl.md says where each is narrower.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

T = TypeVar("T")
_MASK64 = (1 << 64) - 1


# --- text/tabwriter -------------------------------------------------------------------------------


def tabwrite(text: str, minwidth: int, tabwidth: int, padding: int, padchar: str = " ") -> str:
    """What tabwriter.NewWriter(w, minwidth, tabwidth, padding, padchar, 0) writes for `text`.

    Cells end at '\\t', lines at '\\n'. A column is padded to the widest of
    its cells plus `padding`, but never below `minwidth`; widths are per
    block of consecutive lines that have a cell in that column, and the last
    cell of a line is not a column cell, so it is never padded. Widths count
    runes, as Go does. Only flags 0 and a non-tab padchar (crictl's use):
    `tabwidth` only matters for tab padding, so it is accepted and unused.
    """
    if padchar == "\t" or len(padchar) != 1:
        raise ValueError("only a single non-tab padchar is supported")
    del tabwidth
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            for j, cell in enumerate(lines[i]):
                out.append(cell)
                if j < len(widths):
                    out.append(padchar * (widths[j] - len(cell)))
            # The text after the last '\n' is an unterminated line: no newline.
            if i + 1 < len(lines):
                out.append("\n")

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            # A column block starts here: print the lines before it as they are.
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(lines))
    return "".join(out)


# --- github.com/docker/go-units -------------------------------------------------------------------

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """units.HumanSizeWithPrecision: decimal units, `%.<precision>g` of the scaled size.

    Python's %g and Go's agree here (both round the exact binary value half
    to even and switch to exponent form at the same point: "1e+03kB").
    """
    value = float(size)
    unit = 0
    while value >= 1000.0 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000.0
        unit += 1
    return f"{value:.{precision}g}{_DECIMAL_UNITS[unit]}"


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


# --- sort.Sort ------------------------------------------------------------------------------------


class _Data:
    def __init__(self, items: list[T], less: Callable[[T, T], bool]) -> None:
        self.items = items
        self._less = less

    def less(self, i: int, j: int) -> bool:
        return self._less(self.items[i], self.items[j])

    def swap(self, i: int, j: int) -> None:
        self.items[i], self.items[j] = self.items[j], self.items[i]


def go_sort(items: list[T], less: Callable[[T, T], bool]) -> None:
    """sort.Sort on `items` in place, swap for swap.

    crictl's image order (imageByRef) is not a consistent order when tagged
    and untagged images mix, so any other algorithm would order some lists
    differently from crictl; this is Go's pattern-defeating quicksort.
    """
    n = len(items)
    if n > 1:
        _pdqsort(_Data(items, less), 0, n, n.bit_length())


def _insertion_sort(d: _Data, a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and d.less(j, j - 1):
            d.swap(j, j - 1)
            j -= 1


def _sift_down(d: _Data, lo: int, hi: int, first: int) -> None:
    root = lo
    while True:
        child = 2 * root + 1
        if child >= hi:
            return
        if child + 1 < hi and d.less(first + child, first + child + 1):
            child += 1
        if not d.less(first + root, first + child):
            return
        d.swap(first + root, first + child)
        root = child


def _heap_sort(d: _Data, a: int, b: int) -> None:
    first, lo, hi = a, 0, b - a
    for i in range((hi - 1) // 2, -1, -1):
        _sift_down(d, i, hi, first)
    for i in range(hi - 1, -1, -1):
        d.swap(first, first + i)
        _sift_down(d, lo, i, first)


_UNKNOWN_HINT, _INCREASING_HINT, _DECREASING_HINT = 0, 1, 2


def _pdqsort(d: _Data, a: int, b: int, limit: int) -> None:
    max_insertion = 12
    was_balanced = was_partitioned = True
    while True:
        length = b - a
        if length <= max_insertion:
            _insertion_sort(d, a, b)
            return
        if limit == 0:
            _heap_sort(d, a, b)
            return
        if not was_balanced:
            _break_patterns(d, a, b)
            limit -= 1
        pivot, hint = _choose_pivot(d, a, b)
        if hint == _DECREASING_HINT:
            _reverse_range(d, a, b)
            pivot = (b - 1) - (pivot - a)
            hint = _INCREASING_HINT
        likely_sorted = was_balanced and was_partitioned and hint == _INCREASING_HINT
        if likely_sorted and _partial_insertion_sort(d, a, b):
            return
        if a > 0 and not d.less(a - 1, pivot):
            a = _partition_equal(d, a, b, pivot)
            continue
        mid, was_partitioned = _partition(d, a, b, pivot)
        left_len, right_len = mid - a, b - mid
        balance_threshold = length // 8
        if left_len < right_len:
            was_balanced = left_len >= balance_threshold
            _pdqsort(d, a, mid, limit)
            a = mid + 1
        else:
            was_balanced = right_len >= balance_threshold
            _pdqsort(d, mid + 1, b, limit)
            b = mid


def _partition(d: _Data, a: int, b: int, pivot: int) -> tuple[int, bool]:
    d.swap(a, pivot)
    i, j = a + 1, b - 1
    while i <= j and d.less(i, a):
        i += 1
    while i <= j and not d.less(j, a):
        j -= 1
    if i > j:
        d.swap(j, a)
        return j, True
    d.swap(i, j)
    i += 1
    j -= 1
    while True:
        while i <= j and d.less(i, a):
            i += 1
        while i <= j and not d.less(j, a):
            j -= 1
        if i > j:
            break
        d.swap(i, j)
        i += 1
        j -= 1
    d.swap(j, a)
    return j, False


def _partition_equal(d: _Data, a: int, b: int, pivot: int) -> int:
    d.swap(a, pivot)
    i, j = a + 1, b - 1
    while True:
        while i <= j and not d.less(a, i):
            i += 1
        while i <= j and d.less(a, j):
            j -= 1
        if i > j:
            return i
        d.swap(i, j)
        i += 1
        j -= 1


def _partial_insertion_sort(d: _Data, a: int, b: int) -> bool:
    max_steps, shortest_shifting = 5, 50
    i = a + 1
    for _ in range(max_steps):
        while i < b and not d.less(i, i - 1):
            i += 1
        if i == b:
            return True
        if b - a < shortest_shifting:
            return False
        d.swap(i, i - 1)
        if i - a >= 2:
            for j in range(i - 1, 0, -1):
                if not d.less(j, j - 1):
                    break
                d.swap(j, j - 1)
        if b - i >= 2:
            for j in range(i + 1, b):
                if not d.less(j, j - 1):
                    break
                d.swap(j, j - 1)
    return False


def _break_patterns(d: _Data, a: int, b: int) -> None:
    length = b - a
    if length < 8:
        return
    random = length  # xorshift seeded with the length: Go's sort is deterministic.
    modulus = 1 << length.bit_length()
    start = a + (length // 4) * 2 - 1
    for idx in range(start, start + 3):
        random ^= (random << 13) & _MASK64
        random ^= random >> 7
        random ^= (random << 17) & _MASK64
        other = random & (modulus - 1)
        if other >= length:
            other -= length
        d.swap(idx, a + other)


def _choose_pivot(d: _Data, a: int, b: int) -> tuple[int, int]:
    shortest_ninther, max_swaps = 50, 4 * 3
    n = b - a
    swaps = [0]
    i, j, k = a + n // 4 * 1, a + n // 4 * 2, a + n // 4 * 3
    if n >= 8:
        if n >= shortest_ninther:
            i = _median(d, i - 1, i, i + 1, swaps)
            j = _median(d, j - 1, j, j + 1, swaps)
            k = _median(d, k - 1, k, k + 1, swaps)
        j = _median(d, i, j, k, swaps)
    if swaps[0] == 0:
        return j, _INCREASING_HINT
    if swaps[0] == max_swaps:
        return j, _DECREASING_HINT
    return j, _UNKNOWN_HINT


def _order2(d: _Data, a: int, b: int, swaps: list[int]) -> tuple[int, int]:
    if d.less(b, a):
        swaps[0] += 1
        return b, a
    return a, b


def _median(d: _Data, a: int, b: int, c: int, swaps: list[int]) -> int:
    a, b = _order2(d, a, b, swaps)
    b, c = _order2(d, b, c, swaps)
    a, b = _order2(d, a, b, swaps)
    return b


def _reverse_range(d: _Data, a: int, b: int) -> None:
    i, j = a, b - 1
    while i < j:
        d.swap(i, j)
        i += 1
        j -= 1


# --- fmt and os -----------------------------------------------------------------------------------

_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """fmt's %q of a string (strconv.Quote); Python's isprintable stands in for unicode.IsPrint."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_string_map(values: Mapping[str, str]) -> str:
    """fmt's %v of a map[string]string: keys sorted, `map[k1:v1 k2:v2]`."""
    return "map[" + " ".join(f"{k}:{values[k]}" for k in sorted(values)) + "]"


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


def go_path_error(op: str, path: str, exc: OSError) -> str:
    # Go's *PathError: "open x: permission denied".
    reason = exc.strerror or str(exc)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


# --- strconv --------------------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


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


def to_float32(value: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        # Go's float32 conversion of a too-large float64 gives an infinity.
        return math.copysign(math.inf, value)


def _without_digits(value: float) -> str | None:
    """strconv's text of NaN, the infinities and the zeros; None for any other number."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return None


def go_format_float32(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 32): what sigs.k8s.io/yaml makes of a float given for a string."""
    f32 = to_float32(value)
    if (text := _without_digits(f32)) is not None:
        return text
    digits, exp = _digits_and_exponent(_shortest_digits(f32, 9, lambda back: to_float32(back) == f32))
    return _format_g(f32 < 0, digits.rstrip("0") or "0", exp)


def go_format_float64(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64)."""
    if (text := _without_digits(value)) is not None:
        return text
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


# --- go-yaml v2's resolve: what an unquoted scalar is ---------------------------------------------

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
