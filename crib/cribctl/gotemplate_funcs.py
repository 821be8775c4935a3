"""What a go-template works on (text/template's funcs.go and Go's fmt for crictl): decoded JSON
values, the errors, Go's printing of the values and the functions a template may call.
"""

from __future__ import annotations

import html as _html
import json
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crib.cribctl.golike import go_quote


class TemplateError(Exception):
    """Any failure of a template; str() is Go's message."""


class TemplateParseError(TemplateError):
    pass


class TemplateExecError(TemplateError):
    pass


class GoNumber(str):
    """A JSON number as json.Number: its text, a string kind to Go's reflection."""

    __slots__ = ()


class _NoValue:
    """A value that is not there (Go's invalid reflect.Value): prints <no value>."""

    def __repr__(self) -> str:
        return "<no value>"


# --- values as Go's fmt and reflect see them ------------------------------------------------------

NO_VALUE = _NoValue()


def go_type(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, GoNumber):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


def _go_float(value: float) -> str:
    """%v of a float64: strconv 'g' with the shortest repr, exponent when < 1e-4 or >= 1e21."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    r = repr(value)
    if "e" in r or "E" in r:
        mantissa, exp = r.split("e")
        mantissa = mantissa[:-2] if mantissa.endswith(".0") else mantissa
        e = int(exp)
        return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    if abs(value) >= 1e21:
        return _go_float_exp(value)
    return r[:-2] if r.endswith(".0") else r


def _go_float_exp(value: float) -> str:
    text = f"{value:e}"
    mantissa, exp = text.split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    e = int(exp)
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e):02d}"


def sprint_value(value: Any, top: bool = True) -> str:
    """fmt's %v; at the top of an action a missing value is <no value>, inside a map <nil>."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{sprint_value(value[k], False)}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(sprint_value(v, False) for v in value) + "]"
    return str(value)


def _is_stringish(value: Any) -> bool:
    return isinstance(value, str)


def go_sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not _is_stringish(arg) and not _is_stringish(args[i - 1]):
            out.append(" ")
        out.append(sprint_value(arg, False) if arg is not None else "<nil>")
    return "".join(out)


def go_sprintln(*args: Any) -> str:
    return " ".join(sprint_value(a, False) if a is not None else "<nil>" for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the common verbs; Go's %!verb(type=value) marks for a mismatch."""
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*" or prec == "*":
            raise TemplateExecError("printf: * width and precision are not supported by cribctl")
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        text = _format_one(verb, flags, prec, arg)
        if width:
            w = int(width)
            if "-" in flags:
                text = text.ljust(w)
            elif "0" in flags and verb in "dxXfeg" and not isinstance(arg, str):
                sign = text[0] if text[:1] in "+-" else ""
                text = sign + text[len(sign) :].rjust(w - len(sign), "0")
            else:
                text = text.rjust(w)
        out.append(text)
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={sprint_value(a, False)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(arg)}={sprint_value(arg, False)})"


def _format_one(verb: str, flags: str, prec: str | None, arg: Any) -> str:
    p = int(prec) if prec else None
    if verb == "v":
        if arg is None:
            return "<nil>"
        if isinstance(arg, str):
            return str(arg)
        return sprint_value(arg, False)
    if verb == "s":
        if isinstance(arg, str):
            return str(arg)[:p] if p is not None else str(arg)
        if isinstance(arg, (dict, list)):
            return sprint_value(arg, False)
        return _bad_verb(verb, arg)
    if verb == "q":
        if isinstance(arg, str):
            return go_quote(str(arg))
        if isinstance(arg, int) and not isinstance(arg, bool):
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'") + "'"
        return _bad_verb(verb, arg)
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else _bad_verb(verb, arg)
    if verb == "d":
        if isinstance(arg, int) and not isinstance(arg, bool):
            return f"{arg:+d}" if "+" in flags else str(arg)
        return _bad_verb(verb, arg)
    if verb == "c":
        if isinstance(arg, int) and not isinstance(arg, bool):
            return chr(arg)
        return _bad_verb(verb, arg)
    if verb in "xX":
        if isinstance(arg, str):
            text = str(arg).encode().hex()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            text = f"{arg:x}"
        else:
            return _bad_verb(verb, arg)
        return text.upper() if verb == "X" else text
    if verb in "feEgG":
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            if isinstance(arg, int):
                return f"%!{verb}(int={arg})"
            if verb == "f":
                return f"{arg:.{6 if p is None else p}f}"
            if verb in "eE":
                text = f"{arg:.{6 if p is None else p}e}"
                return text.upper() if verb == "E" else text
            return _go_float(arg) if p is None else f"{arg:.{p}g}"
        return _bad_verb(verb, arg)
    raise TemplateExecError(f"printf: cribctl does not support the verb %{verb}")


def is_true(value: Any) -> bool:
    """text/template's truth: the zero value of its type is false."""
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, (bool, int, float, str, dict, list)):
        return bool(value)
    return True


# --- functions ------------------------------------------------------------------------------------


class FuncError(Exception):
    """A function's own error: Go reports it as `error calling NAME: ...`."""


def _basic_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "invalid"  # nil, maps and lists: no basic kind


def _incompatible(arg1: Any, arg2: Any) -> FuncError:
    return FuncError(f"incompatible types for comparison: {go_type(arg1)} and {go_type(arg2)}")


def is_nil(value: Any) -> bool:
    return value is None or value is NO_VALUE


def _eq(arg1: Any, *args: Any) -> bool:
    """Go's eq: basic kinds must match; nil equals only nil; maps and lists are not comparable."""
    if not args:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if not is_nil(arg1) and not is_nil(arg):
                raise _incompatible(arg1, arg)
            continue
        if k1 == "invalid":
            if is_nil(arg1) or is_nil(arg):
                if is_nil(arg1) and is_nil(arg):
                    return True
                continue
            bad = arg if isinstance(arg, (dict, list)) else arg1
            raise FuncError(f"non-comparable type {sprint_value(bad, False)}: {go_type(bad)}")
        if arg1 == arg:
            return True
    return False


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if k1 == "invalid" or k2 == "invalid":
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise _incompatible(arg1, arg2)
    if k1 == "bool":
        raise FuncError("invalid type for comparison")
    return bool(arg1 < arg2)


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: Any, arg2: Any) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: Any, arg2: Any) -> bool:
    return not _lt(arg1, arg2)


def _not(arg: Any) -> bool:
    return not is_true(arg)


def _len(item: Any) -> int:
    if isinstance(item, (str, dict, list)):
        return len(item.encode() if isinstance(item, str) else item)
    if item is None or item is NO_VALUE:
        raise FuncError("len of nil pointer")
    raise FuncError(f"len of type {go_type(item)}")


def _to_index(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None or value is NO_VALUE:
        raise FuncError(f"cannot index {what} with nil")
    raise FuncError(f"cannot index {what} with type {go_type(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise FuncError("index of untyped nil")
    for key in indexes:
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise FuncError(f"value has type {go_type(key)}; should be string")
            item = item.get(str(key))
        elif isinstance(item, (list, str)):
            i = _to_index(key, "slice/array" if isinstance(item, list) else "string")
            if i < 0 or i >= len(item):
                raise FuncError(f"index out of range: {i}")
            item = item[i] if isinstance(item, list) else item.encode()[i]
        elif item is None:
            raise FuncError("index of nil pointer")
        else:
            raise FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (list, str)):
        raise FuncError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    bounds = [_to_index(i, "slice/array") for i in indexes]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise FuncError(f"index out of range: {end if end > len(item) else start}")
    return item[start:end]


def _json_text(value: Any) -> str:
    if isinstance(value, GoNumber):
        return str(value)  # json.Number: its text as it came
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_text(str(k))}:{_json_text(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if value is None or value is NO_VALUE:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _json(value: Any) -> str:
    """crictl's json function: json.Encoder.Encode, compact, keys sorted, HTML-safe, then a newline."""
    text = _json_text(value)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


_WORD_JOINERS = {".": "ln", "'": "ln", "\u2019": "ln", ":": "l", "\u00b7": "l", ",": "n", ";": "n"}


def _title(text: str) -> str:
    """cases.Title(language.Und, cases.NoLower): the first letter of each word upper case.

    Words are Unicode word-break words, as far as ASCII text needs: letters
    and digits run together, and '.', ':' or an apostrophe between letters
    (or '.', ',', ';' between digits) do not end one ("crib.e2e" is a word).
    """
    out: list[str] = []
    in_word = titled = False
    for i, ch in enumerate(text):
        if ch.isalnum() or ch == "_":
            if not in_word:
                in_word, titled = True, False
            # The first letter of a word, even after its digits ("1.2x" is "1.2X").
            if ch.isalpha() and not titled:
                out.append(ch.upper())
                titled = True
                continue
        elif in_word and ch in _WORD_JOINERS and 0 < i < len(text) - 1:
            before, after = text[i - 1], text[i + 1]
            rule = _WORD_JOINERS[ch]
            in_word = ("l" in rule and before.isalpha() and after.isalpha()) or (
                "n" in rule and before.isdigit() and after.isdigit()
            )
        else:
            in_word = False
        out.append(ch)
    return "".join(out)


def _html_escape(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    return _html.escape(str(text), quote=True).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")


_JS_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _js_escape(*args: Any) -> str:
    """template.JSEscapeString of the arguments' print form."""
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    out = []
    for ch in str(text):
        if ch in _JS_ESCAPES:
            out.append(_JS_ESCAPES[ch])
        elif ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    """url.QueryEscape of the arguments' print form."""
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    return urllib.parse.quote_plus(str(text), safe="~")


@dataclass(frozen=True)
class _Func:
    call: Callable[..., Any]
    arity: int | None  # None: variadic
    min_args: int = 0
    string_params: int = 0  # leading parameters typed `string` in Go


FUNCS: dict[str, _Func] = {
    "and": _Func(lambda *a: a, None, 1),  # evaluated lazily in _call
    "or": _Func(lambda *a: a, None, 1),
    "not": _Func(_not, 1),
    "len": _Func(_len, 1),
    "index": _Func(_index, None, 1),
    "slice": _Func(_slice, None, 1),
    "print": _Func(go_sprint, None),
    "printf": _Func(go_sprintf, None, 1, 1),
    "println": _Func(go_sprintln, None),
    "eq": _Func(_eq, None, 1),
    "ne": _Func(_ne, 2),
    "lt": _Func(_lt, 2),
    "le": _Func(_le, 2),
    "gt": _Func(_gt, 2),
    "ge": _Func(_ge, 2),
    "html": _Func(_html_escape, None),
    "js": _Func(_js_escape, None),
    "urlquery": _Func(_urlquery, None),
    "json": _Func(_json, 1),
    "title": _Func(_title, 1, 0, 1),
    "lower": _Func(str.lower, 1, 0, 1),
    "upper": _Func(str.upper, 1, 0, 1),
}
