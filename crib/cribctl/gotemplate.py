"""A subset of Go's text/template, for crictl's `-o go-template --template '...'`.

crictl decodes its JSON output with json.Decoder.UseNumber, executes the
template with missingkey=error and its own functions (json, title, lower,
upper) next to Go's builtins, and prints the result with a newline. This
module follows that: data comes from decode_json (numbers stay GoNumber, their
JSON text), and errors read like Go's ("template: NAME:LINE:COL: executing
...") so a script that matches on them works with cribctl too.

Supported: text with {{- -}} trimming and comments; fields (.a.b), $variables
(:= and =), parenthesised pipelines and chains on them, `|` pipelines,
if/else if/else, range (lists, maps in key order, integers, $i, $v :=, break,
continue), with/else if/else, define/template/block; the functions and, or,
not, len, index, slice, print, printf, println, eq, ne, lt, le, gt, ge, html,
js, urlquery, json, title, lower, upper. Not supported: `call` (refused when
parsing: decoded JSON holds no functions to call). printf knows the verbs
v s d q t x X f e E g G c and %%, with flags, width and precision; Go's fmt
has more (a * width is refused). title's word breaks follow Unicode's rules
for ASCII text only.
"""

from __future__ import annotations

import html as _html
import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crib.cribctl.golike import go_quote

TEMPLATE_NAME = "tmplExecuteRawJSON"


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


def decode_json(text: str) -> Any:
    """json.Decoder with UseNumber: numbers keep their text."""
    return json.loads(text, parse_int=GoNumber, parse_float=GoNumber, parse_constant=GoNumber)


# --- lexer -----------------------------------------------------------------------------------------


@dataclass
class _Tok:
    kind: str  # text, open, close, field, dot, var, ident, string, char, number, ( ) | := = ,
    value: str
    pos: int
    space_before: bool = False


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(\d[\d_]*)?\.?\d[\d_]*([eE][+-]?\d+)?)"
)
_KEYWORDS = frozenset(
    {
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        "break",
        "continue",
        "nil",
        "true",
        "false",
    }
)


class _Lexer:
    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name

    def line(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def error(self, pos: int, message: str) -> TemplateParseError:
        return TemplateParseError(f"template: {self.name}:{self.line(pos)}: {message}")

    def tokens(self) -> list[_Tok]:
        text, out, pos = self.text, [], 0
        while pos < len(text):
            start = text.find("{{", pos)
            if start < 0:
                out.append(_Tok("text", text[pos:], pos))
                break
            chunk = text[pos:start]
            inner = start + 2
            if text.startswith("- ", inner) or text.startswith("-\t", inner) or text.startswith("-\n", inner):
                chunk = chunk.rstrip(" \t\r\n")
                inner += 1
            if chunk:
                out.append(_Tok("text", chunk, pos))
            pos = self._action(inner, start, out)
        return out

    def _action(self, pos: int, start: int, out: list[_Tok]) -> int:
        text = self.text
        # A comment is the whole action: {{/* ... */}}, trim markers allowed around it.
        probe = pos
        while probe < len(text) and text[probe] in " \t\r\n":
            probe += 1
        if text.startswith("/*", probe):
            end = text.find("*/", probe + 2)
            if end < 0:
                raise self.error(start, "unclosed comment")
            after = end + 2
            trim = False
            rest = after
            while rest < len(text) and text[rest] in " \t\r\n":
                rest += 1
            if text.startswith("-}}", rest) and rest > after:
                trim, after = True, rest + 1
            if not text.startswith("}}", after):
                raise self.error(start, "comment ends before closing delimiter")
            return self._after_close(after + 2, trim)
        out.append(_Tok("open", "{{", start))
        space = False
        while True:
            if pos >= len(text):
                raise self.error(start, "unclosed action")
            ch = text[pos]
            if ch in " \t\r\n":
                j = pos
                while j < len(text) and text[j] in " \t\r\n":
                    j += 1
                if text.startswith("-}}", j):
                    out.append(_Tok("close", "}}", j))
                    return self._after_close(j + 3, True)
                pos, space = j, True
                continue
            if text.startswith("}}", pos):
                out.append(_Tok("close", "}}", pos))
                return self._after_close(pos + 2, False)
            tok, pos = self._item(pos, start)
            tok.space_before = space
            out.append(tok)
            space = False

    def _after_close(self, pos: int, trim: bool) -> int:
        if trim:
            while pos < len(self.text) and self.text[pos] in " \t\r\n":
                pos += 1
        return pos

    def _item(self, pos: int, start: int) -> tuple[_Tok, int]:
        text = self.text
        ch = text[pos]
        if text.startswith(":=", pos):
            return _Tok(":=", ":=", pos), pos + 2
        if ch in "()|=,":
            return _Tok(ch, ch, pos), pos + 1
        if ch == '"':
            end = pos + 1
            while end < len(text) and text[end] != '"':
                if text[end] == "\\":
                    end += 1
                if end < len(text) and text[end] == "\n":
                    raise self.error(pos, "unterminated quoted string")
                end += 1
            if end >= len(text):
                raise self.error(pos, "unterminated quoted string")
            return _Tok("string", _unquote(text[pos : end + 1], self, pos), pos), end + 1
        if ch == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise self.error(pos, "unterminated raw quoted string")
            return _Tok("string", text[pos + 1 : end], pos), end + 1
        if ch == "'":
            m = re.compile(r"'(\\.[^']*|[^\\'])'").match(text, pos)
            if not m:
                raise self.error(pos, "unterminated character constant")
            value = _unquote('"' + m.group(1) + '"', self, pos)
            return _Tok("char", value, pos), m.end()
        if ch == "$":
            m = _IDENT.match(text, pos + 1)
            end = m.end() if m else pos + 1
            return _Tok("var", text[pos:end], pos), end
        if ch == ".":
            m = _IDENT.match(text, pos + 1)
            if m:
                return _Tok("field", m.group(), pos), m.end()
            if pos + 1 < len(text) and text[pos + 1].isdigit():
                return self._number(pos)
            return _Tok("dot", ".", pos), pos + 1
        if ch.isdigit() or (
            ch in "+-" and pos + 1 < len(text) and (text[pos + 1].isdigit() or text[pos + 1] == ".")
        ):
            return self._number(pos)
        m = _IDENT.match(text, pos)
        if m:
            return _Tok("ident", m.group(), pos), m.end()
        raise self.error(pos, f"bad character U+{ord(ch):04X} '{ch}'")

    def _number(self, pos: int) -> tuple[_Tok, int]:
        m = _NUMBER.match(self.text, pos)
        assert m is not None
        return _Tok("number", m.group(), pos), m.end()


_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _unquote(quoted: str, lexer: _Lexer, pos: int) -> str:
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i + 2 : i + 2 + size]
            if len(digits) != size or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise lexer.error(pos, f"invalid syntax: {quoted}")
            out.append(chr(int(digits, 16)))
            i += 2 + size
        else:
            raise lexer.error(pos, f"invalid syntax: {quoted}")
    return "".join(out)


# --- parse tree --------------------------------------------------------------------------------------


@dataclass
class _Node:
    pos: int


@dataclass
class _Text(_Node):
    text: str


@dataclass
class _Field(_Node):
    names: list[str]

    def __str__(self) -> str:
        return "".join("." + n for n in self.names)


@dataclass
class _Variable(_Node):
    names: list[str]  # "$x", then fields

    def __str__(self) -> str:
        return ".".join(self.names)


@dataclass
class _Dot(_Node):
    def __str__(self) -> str:
        return "."


@dataclass
class _Ident(_Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class _Literal(_Node):
    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class _Chain(_Node):
    node: _Node
    names: list[str]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + n for n in self.names)


@dataclass
class _Command(_Node):
    args: list[_Node]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


@dataclass
class _Pipe(_Node):
    decl: list[str]
    is_assign: bool
    cmds: list[_Command]

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass
class _Action(_Node):
    pipe: _Pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class _Branch(_Node):
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[_Node]
    else_body: list[_Node] | None = None

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


@dataclass
class _TemplateCall(_Node):
    name: str
    pipe: _Pipe | None

    def __str__(self) -> str:
        return "{{template " + go_quote(self.name) + (f" {self.pipe}" if self.pipe else "") + "}}"


@dataclass
class _Loop(_Node):
    kind: str  # break, continue


# The data is decoded JSON: it holds no functions, so `call` could never succeed.
_UNSUPPORTED_FUNCS = ("call",)


class _Parser:
    def __init__(self, text: str, name: str) -> None:
        self.lexer = _Lexer(text, name)
        self.toks = self.lexer.tokens()
        self.i = 0
        self.range_depth = 0
        self.vars: list[str] = ["$"]
        self.defines: dict[str, list[_Node]] = {}

    def error(self, tok: _Tok | None, message: str) -> TemplateParseError:
        pos = tok.pos if tok else len(self.lexer.text)
        return self.lexer.error(pos, message)

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> _Tok | None:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> list[_Node]:
        body, stop = self.list_until(())
        assert stop is None
        return body

    def list_until(self, stops: tuple[str, ...]) -> tuple[list[_Node], str | None]:
        """Nodes up to an {{end}} or {{else}} (consumed); which one ended it."""
        body: list[_Node] = []
        while True:
            tok = self.next()
            if tok is None:
                if stops:
                    raise self.error(None, "unexpected EOF")
                return body, None
            if tok.kind == "text":
                body.append(_Text(tok.pos, tok.value))
                continue
            word = self.peek()
            if word is not None and word.kind == "ident" and word.value in _KEYWORDS:
                kw = word.value
                if kw in ("end", "else"):
                    if kw not in stops:
                        raise self.error(word, f"unexpected {{{{{kw}}}}}")
                    self.i += 1
                    return body, kw
                if kw in ("if", "range", "with"):
                    self.i += 1
                    body.append(self.branch(kw, word))
                    continue
                if kw in ("break", "continue"):
                    self.i += 1
                    if self.range_depth == 0:
                        raise self.error(word, f"{{{{{kw}}}}} outside {{{{range}}}}")
                    self.expect_close(kw)
                    body.append(_Loop(word.pos, kw))
                    continue
                if kw == "define":
                    self.i += 1
                    if stops or self.range_depth:
                        raise self.error(word, "unexpected <define> in command")
                    self.define(word)
                    continue
                if kw in ("template", "block"):
                    self.i += 1
                    body.append(self.template_call(kw, word))
                    continue
            pipe = self.pipeline("command", allow_decl=True)
            body.append(_Action(tok.pos, pipe))

    def template_name(self, context: str) -> _Tok:
        tok = self.next()
        if tok is None or tok.kind != "string":
            raise self.error(tok, f"unexpected {self.describe(tok)} in {context} clause")
        return tok

    def define(self, word: _Tok) -> None:
        name = self.template_name("define")
        self.expect_close("define clause")
        mark = self.vars
        self.vars = ["$"]
        body, _ = self.list_until(("end",))
        self.vars = mark
        self.expect_close("end")
        self.defines[name.value] = body

    def template_call(self, kw: str, word: _Tok) -> _Node:
        name = self.template_name(kw)
        pipe: _Pipe | None = None
        nxt = self.peek()
        if nxt is not None and nxt.kind != "close":
            pipe = self.pipeline(kw, allow_decl=False)
        else:
            self.expect_close(f"{kw} clause")
        if kw == "block":
            if pipe is None:
                raise self.error(word, "missing value for block")
            mark = self.vars
            self.vars = ["$"]
            body, _ = self.list_until(("end",))
            self.vars = mark
            self.expect_close("end")
            self.defines[name.value] = body
        return _TemplateCall(name.pos, name.value, pipe)

    def expect_close(self, context: str) -> None:
        tok = self.next()
        if tok is None or tok.kind != "close":
            raise self.error(tok, f"unexpected {self.describe(tok)} in {context}")

    def describe(self, tok: _Tok | None) -> str:
        if tok is None:
            return "EOF"
        if tok.kind == "close":
            return '"}}"'
        return go_quote(tok.value) if tok.kind != "string" else f"quoted string {go_quote(tok.value)}"

    def branch(self, kind: str, word: _Tok) -> _Branch:
        mark = len(self.vars)
        pipe = self.pipeline(kind, allow_decl=True, allow_two=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self.list_until(("end", "else"))
        if kind == "range":
            self.range_depth -= 1
        node = _Branch(word.pos, kind, pipe, body)
        if stop == "else":
            nxt = self.peek()
            if kind in ("if", "with") and nxt is not None and nxt.kind == "ident" and nxt.value == kind:
                # {{else if ...}}: an if inside the else, sharing this {{end}}.
                self.i += 1
                node.else_body = [self.branch(kind, nxt)]
            else:
                self.expect_close("else")
                node.else_body, stop = self.list_until(("end",))
        if stop == "end" or node.else_body is None:
            self.expect_close("end")
        del self.vars[mark:]
        return node

    def pipeline(self, context: str, allow_decl: bool, allow_two: bool = False) -> _Pipe:
        start = self.peek()
        decl: list[str] = []
        is_assign = False
        if allow_decl and start is not None and start.kind == "var":
            # $x := ..., $x = ..., or (range) $i, $v := ...
            nxt = self.peek(1)
            if nxt is not None and nxt.kind in (":=", "="):
                decl, is_assign = [start.value], nxt.kind == "="
                self.i += 2
            elif allow_two and nxt is not None and nxt.kind == "," and (self.peek(2) or start).kind == "var":
                third = self.peek(3)
                if third is not None and third.kind in (":=", "="):
                    decl, is_assign = [start.value, self.toks[self.i + 2].value], third.kind == "="
                    self.i += 4
                else:
                    raise self.error(third, "range can only initialize variables")
        for name in decl:
            if is_assign and name not in self.vars:
                raise self.error(start, f"undefined variable: {name}")
            if not is_assign:
                self.vars.append(name)
        cmds: list[_Command] = []
        pos = start.pos if start else len(self.lexer.text)
        while True:
            tok = self.peek()
            if tok is None:
                raise self.error(None, "unclosed action")
            if tok.kind == "close":
                self.i += 1
                break
            if tok.kind == ")":
                raise self.error(tok, "unexpected right paren")
            cmds.append(self.command())
            tok = self.peek()
            if tok is not None and tok.kind == "|":
                self.i += 1
                if self.peek() is None or self.peek().kind in ("close", "|"):  # type: ignore[union-attr]
                    raise self.error(tok, "missing command")
        if not cmds:
            raise self.error(start, f"missing value for {context}")
        self.check_pipeline(cmds, context, start)
        return _Pipe(pos, decl, is_assign, cmds)

    def check_pipeline(self, cmds: list[_Command], context: str, tok: _Tok | None) -> None:
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (_Literal, _Dot)):
                raise self.error(tok, f"non executable command in pipeline stage {stage}")

    def command(self) -> _Command:
        args: list[_Node] = []
        start = self.peek()
        while True:
            tok = self.peek()
            if tok is None:
                raise self.error(None, "unclosed action")
            if tok.kind in ("close", "|", ")"):
                break
            if args and not tok.space_before:
                raise self.error(tok, f"missing space? unexpected {self.describe(tok)} in operand")
            args.append(self.operand())
        if not args:
            raise self.error(start, "empty command")
        return _Command(args[0].pos, args)

    def operand(self) -> _Node:
        node = self.term()
        fields: list[str] = []
        chain_pos = 0
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "field" and not tok.space_before:
                if not fields:
                    chain_pos = tok.pos
                fields.append(tok.value)
                self.i += 1
            else:
                break
        if not fields:
            return node
        # As Go's parser: the node takes the position of the first field chained on the term.
        if isinstance(node, _Field):
            return _Field(chain_pos, node.names + fields)
        if isinstance(node, _Variable):
            return _Variable(chain_pos, node.names + fields)
        if isinstance(node, (_Literal, _Dot)):
            raise self.error(self.peek(-1), f"unexpected . after term {go_quote(str(node))}")
        return _Chain(chain_pos, node, fields)

    def term(self) -> _Node:
        tok = self.next()
        if tok is None:
            raise self.error(None, "unclosed action")
        kind, value = tok.kind, tok.value
        if kind == "field":
            return _Field(tok.pos, [value])
        if kind == "dot":
            return _Dot(tok.pos)
        if kind == "var":
            if value not in self.vars:
                raise self.error(tok, f"undefined variable {go_quote(value)}")
            return _Variable(tok.pos, [value])
        if kind == "string":
            return _Literal(tok.pos, value, go_quote(value))
        if kind == "char":
            return _Literal(tok.pos, ord(value[0]) if value else 0, f"'{value}'")
        if kind == "number":
            return _Literal(tok.pos, _number_value(value, self, tok), value)
        if kind == "(":
            pipe = self.paren_pipeline(tok)
            return pipe
        if kind == "ident":
            if value in ("true", "false"):
                return _Literal(tok.pos, value == "true", value)
            if value == "nil":
                return _Literal(tok.pos, None, "nil")
            if value in _KEYWORDS:
                raise self.error(tok, f"unexpected <{value}> in command")
            if value in _UNSUPPORTED_FUNCS:
                raise self.error(
                    tok, f"cribctl's go-template does not support the function {go_quote(value)}"
                )
            if value not in FUNCS:
                raise self.error(tok, f"function {go_quote(value)} not defined")
            return _Ident(tok.pos, value)
        raise self.error(tok, f"unexpected {self.describe(tok)} in operand")

    def paren_pipeline(self, open_tok: _Tok) -> _Pipe:
        cmds: list[_Command] = []
        decl: list[str] = []
        is_assign = False
        tok = self.peek()
        if tok is not None and tok.kind == "var":
            nxt = self.peek(1)
            if nxt is not None and nxt.kind in (":=", "="):
                decl, is_assign = [tok.value], nxt.kind == "="
                self.i += 2
                if not is_assign:
                    self.vars.append(tok.value)
        while True:
            tok = self.peek()
            if tok is None or tok.kind == "close":
                raise self.error(tok, "unclosed left paren")
            if tok.kind == ")":
                self.i += 1
                break
            cmds.append(self.command())
            tok = self.peek()
            if tok is not None and tok.kind == "|":
                self.i += 1
        if not cmds:
            raise self.error(open_tok, "missing value for parenthesized pipeline")
        return _Pipe(open_tok.pos, decl, is_assign, cmds)


def _number_value(text: str, parser: _Parser, tok: _Tok) -> int | float:
    clean = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xXbBoO].*", clean):
            return int(clean, 0)
        if re.fullmatch(r"[+-]?\d+", clean):
            # Go reads a leading 0 as octal.
            digits = clean.lstrip("+-")
            sign = -1 if clean.startswith("-") else 1
            return sign * (int(digits, 8) if len(digits) > 1 and digits.startswith("0") else int(digits))
        return float(clean)
    except ValueError:
        raise parser.error(tok, f"illegal number syntax: {go_quote(text)}") from None


# --- values as Go's fmt and reflect see them ----------------------------------------------------------

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


# --- functions ------------------------------------------------------------------------------------------


class _FuncError(Exception):
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


def _incompatible(arg1: Any, arg2: Any) -> _FuncError:
    return _FuncError(f"incompatible types for comparison: {go_type(arg1)} and {go_type(arg2)}")


def _is_nil(value: Any) -> bool:
    return value is None or value is NO_VALUE


def _eq(arg1: Any, *args: Any) -> bool:
    """Go's eq: basic kinds must match; nil equals only nil; maps and lists are not comparable."""
    if not args:
        raise _FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if not _is_nil(arg1) and not _is_nil(arg):
                raise _incompatible(arg1, arg)
            continue
        if k1 == "invalid":
            if _is_nil(arg1) or _is_nil(arg):
                if _is_nil(arg1) and _is_nil(arg):
                    return True
                continue
            bad = arg if isinstance(arg, (dict, list)) else arg1
            raise _FuncError(f"non-comparable type {sprint_value(bad, False)}: {go_type(bad)}")
        if arg1 == arg:
            return True
    return False


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if k1 == "invalid" or k2 == "invalid":
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        raise _incompatible(arg1, arg2)
    if k1 == "bool":
        raise _FuncError("invalid type for comparison")
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
        raise _FuncError("len of nil pointer")
    raise _FuncError(f"len of type {go_type(item)}")


def _to_index(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None or value is NO_VALUE:
        raise _FuncError(f"cannot index {what} with nil")
    raise _FuncError(f"cannot index {what} with type {go_type(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise _FuncError("index of untyped nil")
    for key in indexes:
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise _FuncError(f"value has type {go_type(key)}; should be string")
            item = item.get(str(key))
        elif isinstance(item, (list, str)):
            i = _to_index(key, "slice/array" if isinstance(item, list) else "string")
            if i < 0 or i >= len(item):
                raise _FuncError(f"index out of range: {i}")
            item = item[i] if isinstance(item, list) else item.encode()[i]
        elif item is None:
            raise _FuncError("index of nil pointer")
        else:
            raise _FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (list, str)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    bounds = [_to_index(i, "slice/array") for i in indexes]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise _FuncError(f"index out of range: {end if end > len(item) else start}")
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


# --- execution ----------------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class _State:
    template: Template
    root: Any
    name: str
    vars: list[tuple[str, Any]] = field(default_factory=list)
    out: list[str] = field(default_factory=list)
    node: _Node | None = None
    depth: int = 0

    def at(self, node: _Node) -> None:
        self.node = node

    def error(self, message: str) -> TemplateExecError:
        name = self.template.name
        if self.node is None:
            return TemplateExecError(f"template: {name}: {message}")
        text = self.template.text[: self.node.pos]
        line = 1 + text.count("\n")
        col = self.node.pos - (text.rfind("\n") + 1) if "\n" in text else self.node.pos
        return TemplateExecError(
            f'template: {name}:{line}:{col}: executing "{self.name}" at <{self.node}>: {message}'
        )

    def lookup(self, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.error(f"undefined variable: {name}")

    def assign(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(f"undefined variable: {name}")


# Go stops a template that calls itself at depth 100000; Python's stack ends well before that.
MAX_EXEC_DEPTH = 200


class Template:
    def __init__(self, text: str, name: str = TEMPLATE_NAME) -> None:
        self.text = text
        self.name = name
        parser = _Parser(text, name)
        self.tree = parser.parse()
        self.defines = parser.defines

    def execute(self, data: Any) -> str:
        state = _State(self, root=data, name=self.name, vars=[("$", data)])
        self._walk_list(state, data, self.tree)
        return "".join(state.out)

    # Statements.

    def _walk_list(self, s: _State, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self._walk(s, dot, node)

    def _walk(self, s: _State, dot: Any, node: _Node) -> None:
        if isinstance(node, _Text):
            s.out.append(node.text)
        elif isinstance(node, _Action):
            s.at(node)
            value = self._pipeline(s, dot, node.pipe)
            if not node.pipe.decl:
                s.out.append(sprint_value(value))
        elif isinstance(node, _Branch):
            self._branch(s, dot, node)
        elif isinstance(node, _TemplateCall):
            self._template(s, dot, node)
        elif isinstance(node, _Loop):
            raise _Break() if node.kind == "break" else _Continue()

    def _template(self, s: _State, dot: Any, node: _TemplateCall) -> None:
        s.at(node)
        body = self.defines.get(node.name)
        if body is None:
            raise s.error(f"template {go_quote(node.name)} not defined")
        if s.depth >= MAX_EXEC_DEPTH:
            raise s.error(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        value = self._pipeline(s, dot, node.pipe) if node.pipe is not None else None
        inner = _State(self, s.root, node.name, [("$", value)], s.out, None, s.depth + 1)
        self._walk_list(inner, value, body)

    def _branch(self, s: _State, dot: Any, node: _Branch) -> None:
        mark = len(s.vars)
        s.at(node)
        if node.kind == "range":
            self._range(s, dot, node)
        else:
            value = self._pipeline(s, dot, node.pipe)
            if is_true(value):
                self._walk_list(s, value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self._walk_list(s, dot, node.else_body)
        del s.vars[mark:]

    def _range(self, s: _State, dot: Any, node: _Branch) -> None:
        pipe = node.pipe
        value = self._pipeline(s, dot, _Pipe(pipe.pos, [], False, pipe.cmds))
        items: Iterator[tuple[Any, Any]]
        if isinstance(value, list):
            items = iter(enumerate(value))
        elif isinstance(value, dict):
            items = iter((k, value[k]) for k in sorted(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(pipe.decl) > 1:
                raise s.error(f"can't use {value} to iterate over more than one variable")
            items = iter((i, i) for i in range(value))
        elif _is_nil(value):
            items = iter(())
        else:
            # Reported at the last node evaluated, as Go does.
            raise s.error(f"range can't iterate over {sprint_value(value, False)}")
        ran = False
        for key, elem in items:
            ran = True
            mark = len(s.vars)
            if len(pipe.decl) == 1:
                self._set_var(s, pipe, pipe.decl[0], elem)
            elif len(pipe.decl) == 2:
                self._set_var(s, pipe, pipe.decl[0], key)
                self._set_var(s, pipe, pipe.decl[1], elem)
            try:
                self._walk_list(s, elem, node.body)
            except _Continue:
                pass
            except _Break:
                del s.vars[mark:]
                break
            del s.vars[mark:]
        if not ran and node.else_body is not None:
            self._walk_list(s, dot, node.else_body)

    def _set_var(self, s: _State, pipe: _Pipe, name: str, value: Any) -> None:
        if pipe.is_assign:
            s.assign(name, value)
        else:
            s.vars.append((name, value))

    # Expressions.

    def _pipeline(self, s: _State, dot: Any, pipe: _Pipe) -> Any:
        value: Any = NO_VALUE
        final: Any = _NOTHING
        for cmd in pipe.cmds:
            value = self._command(s, dot, cmd, final)
            final = value
        for name in pipe.decl:
            self._set_var(s, pipe, name, value)
        return value

    def _command(self, s: _State, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        s.at(first)
        if isinstance(first, _Field):
            return self._field_chain(s, dot, first.names, cmd, final, first)
        if isinstance(first, _Chain):
            receiver = self._arg(s, dot, first.node)
            return self._field_chain(s, receiver, first.names, cmd, final, first)
        if isinstance(first, _Variable):
            value = s.lookup(first.names[0])
            if len(first.names) == 1:
                self._no_args(s, cmd, final, first)
                return value
            return self._field_chain(s, value, first.names[1:], cmd, final, first)
        if isinstance(first, _Ident):
            return self._call(s, dot, first, cmd, cmd.args[1:], final)
        if isinstance(first, _Pipe):
            self._no_args(s, cmd, final, first)
            return self._pipeline(s, dot, first)
        if isinstance(first, _Literal) and first.value is None:
            raise s.error("nil is not a command")
        self._no_args(s, cmd, final, first)
        return self._arg(s, dot, first)

    def _no_args(self, s: _State, cmd: _Command, final: Any, node: _Node) -> None:
        if len(cmd.args) > 1 or final is not _NOTHING:
            s.at(node)
            raise s.error(f"can't give argument to non-function {node}")

    def _field_chain(
        self, s: _State, receiver: Any, names: list[str], cmd: _Command | None, final: Any, node: _Node
    ) -> Any:
        has_args = (cmd is not None and len(cmd.args) > 1) or final is not _NOTHING
        for i, name in enumerate(names):
            s.at(node)
            receiver = self._field(s, receiver, name, has_args and i == len(names) - 1)
        return receiver

    def _field(self, s: _State, receiver: Any, name: str, has_args: bool) -> Any:
        if isinstance(receiver, dict):
            if has_args:
                raise s.error(f"{name} is not a method but has arguments")
            if name not in receiver:
                raise s.error(f"map has no entry for key {go_quote(name)}")
            return receiver[name]
        if _is_nil(receiver):
            raise s.error(f"nil pointer evaluating interface {{}}.{name}")
        # A value taken out of the decoded JSON is an interface{} to Go's reflection; only the
        # data handed to Execute has its own type.
        kind = go_type(receiver) if receiver is s.root else "interface {}"
        raise s.error(f"can't evaluate field {name} in type {kind}")

    def _arg(self, s: _State, dot: Any, node: _Node) -> Any:
        s.at(node)
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Field):
            return self._field_chain(s, dot, node.names, None, _NOTHING, node)
        if isinstance(node, _Variable):
            value = s.lookup(node.names[0])
            if len(node.names) > 1:
                value = self._field_chain(s, value, node.names[1:], None, _NOTHING, node)
            return value
        if isinstance(node, _Chain):
            receiver = self._arg(s, dot, node.node)
            return self._field_chain(s, receiver, node.names, None, _NOTHING, node)
        if isinstance(node, _Pipe):
            return self._pipeline(s, dot, node)
        if isinstance(node, _Ident):
            return self._call(s, dot, node, None, [], _NOTHING)
        raise s.error(f"can't handle {node}")

    def _string_arg(self, s: _State, dot: Any, node: _Node) -> str:
        """An argument for a Go parameter of type string (printf's format, upper...)."""
        s.at(node)
        if isinstance(node, _Literal):
            if isinstance(node.value, str):
                return node.value
            if node.value is None:
                raise s.error("cannot assign nil to string")
            raise s.error(f"expected string; found {node}")
        return self._as_string(s, self._arg(s, dot, node))

    def _as_string(self, s: _State, value: Any) -> str:
        if _is_nil(value):
            raise s.error("invalid value; expected string")
        if not isinstance(value, str) or isinstance(value, GoNumber):
            raise s.error(f"wrong type for value; expected string; got {go_type(value)}")
        return value

    def _call(
        self, s: _State, dot: Any, ident: _Ident, cmd: _Command | None, arg_nodes: list[_Node], final: Any
    ) -> Any:
        func = FUNCS[ident.name]
        s.at(ident)
        count = len(arg_nodes) + (final is not _NOTHING)
        if func.arity is not None and count != func.arity:
            raise s.error(f"wrong number of args for {ident.name}: want {func.arity} got {count}")
        if count < func.min_args:
            raise s.error(f"wrong number of args for {ident.name}: want at least {func.min_args} got {count}")
        if ident.name in ("and", "or"):
            # Short-circuit, as Go 1.18+: later arguments are not evaluated.
            value: Any = None
            thunks = [lambda n=n: self._arg(s, dot, n) for n in arg_nodes]
            if final is not _NOTHING:
                thunks.append(lambda: final)
            for thunk in thunks:
                value = thunk()
                if is_true(value) == (ident.name == "or"):
                    return value
            return value
        args = [
            self._string_arg(s, dot, n) if i < func.string_params else self._arg(s, dot, n)
            for i, n in enumerate(arg_nodes)
        ]
        if final is not _NOTHING:
            args.append(self._as_string(s, final) if len(args) < func.string_params else final)
        try:
            return func.call(*args)
        except (_FuncError, TemplateExecError) as exc:
            s.at(cmd if cmd is not None else ident)
            raise s.error(f"error calling {ident.name}: {exc}") from None


_NOTHING = object()


def parse(text: str, name: str = TEMPLATE_NAME) -> Template:
    return Template(text, name)


def validate(text: str) -> None:
    """crictl's validateTemplate: parse under the empty name."""
    Template(text, "")


def execute_raw_json(template: str, raw_json: str) -> str:
    """crictl's tmplExecuteRawJSON, with its error prefixes."""
    try:
        data = decode_json(raw_json)
    except ValueError as exc:
        raise TemplateError(f"failed to decode json: {exc}") from None
    try:
        tmpl = parse(template)
    except TemplateParseError as exc:
        raise TemplateError(f"failed to generate go-template: {exc}") from None
    try:
        return tmpl.execute(data)
    except TemplateExecError as exc:
        raise TemplateError(f"failed to template data: {exc}") from None
