"""The lexer and parser of Go's text/template (its parse package), for gotemplate.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crib.cribctl.golike import go_quote
from crib.cribctl.gotemplate_funcs import FUNCS, TemplateParseError

# --- lexer ----------------------------------------------------------------------------------------


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


# --- parse tree -----------------------------------------------------------------------------------


@dataclass
class Node:
    pos: int


@dataclass
class Text(Node):
    text: str


@dataclass
class Field(Node):
    names: list[str]

    def __str__(self) -> str:
        return "".join("." + n for n in self.names)


@dataclass
class Variable(Node):
    names: list[str]  # "$x", then fields

    def __str__(self) -> str:
        return ".".join(self.names)


@dataclass
class Dot(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class Ident(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Literal(Node):
    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Chain(Node):
    node: Node
    names: list[str]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, Pipe) else str(self.node)
        return inner + "".join("." + n for n in self.names)


@dataclass
class Command(Node):
    args: list[Node]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, Pipe) else str(a) for a in self.args)


@dataclass
class Pipe(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass
class Action(Node):
    pipe: Pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class Branch(Node):
    kind: str  # if, range, with
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] | None = None

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


@dataclass
class TemplateCall(Node):
    name: str
    pipe: Pipe | None

    def __str__(self) -> str:
        return "{{template " + go_quote(self.name) + (f" {self.pipe}" if self.pipe else "") + "}}"


@dataclass
class Loop(Node):
    kind: str  # break, continue


# The data is decoded JSON: it holds no functions, so `call` could never succeed.
_UNSUPPORTED_FUNCS = ("call",)


class Parser:
    def __init__(self, text: str, name: str) -> None:
        self.lexer = _Lexer(text, name)
        self.toks = self.lexer.tokens()
        self.i = 0
        self.range_depth = 0
        self.vars: list[str] = ["$"]
        self.defines: dict[str, list[Node]] = {}

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

    def parse(self) -> list[Node]:
        body, stop = self.list_until(())
        assert stop is None
        return body

    def list_until(self, stops: tuple[str, ...]) -> tuple[list[Node], str | None]:
        """Nodes up to an {{end}} or {{else}} (consumed); which one ended it."""
        body: list[Node] = []
        while True:
            tok = self.next()
            if tok is None:
                if stops:
                    raise self.error(None, "unexpected EOF")
                return body, None
            if tok.kind == "text":
                body.append(Text(tok.pos, tok.value))
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
                    body.append(Loop(word.pos, kw))
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
            body.append(Action(tok.pos, pipe))

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

    def template_call(self, kw: str, word: _Tok) -> Node:
        name = self.template_name(kw)
        pipe: Pipe | None = None
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
        return TemplateCall(name.pos, name.value, pipe)

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

    def branch(self, kind: str, word: _Tok) -> Branch:
        mark = len(self.vars)
        pipe = self.pipeline(kind, allow_decl=True, allow_two=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self.list_until(("end", "else"))
        if kind == "range":
            self.range_depth -= 1
        node = Branch(word.pos, kind, pipe, body)
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

    def pipeline(self, context: str, allow_decl: bool, allow_two: bool = False) -> Pipe:
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
        cmds: list[Command] = []
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
        return Pipe(pos, decl, is_assign, cmds)

    def check_pipeline(self, cmds: list[Command], context: str, tok: _Tok | None) -> None:
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (Literal, Dot)):
                raise self.error(tok, f"non executable command in pipeline stage {stage}")

    def command(self) -> Command:
        args: list[Node] = []
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
        return Command(args[0].pos, args)

    def operand(self) -> Node:
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
        if isinstance(node, Field):
            return Field(chain_pos, node.names + fields)
        if isinstance(node, Variable):
            return Variable(chain_pos, node.names + fields)
        if isinstance(node, (Literal, Dot)):
            raise self.error(self.peek(-1), f"unexpected . after term {go_quote(str(node))}")
        return Chain(chain_pos, node, fields)

    def term(self) -> Node:
        tok = self.next()
        if tok is None:
            raise self.error(None, "unclosed action")
        kind, value = tok.kind, tok.value
        if kind == "field":
            return Field(tok.pos, [value])
        if kind == "dot":
            return Dot(tok.pos)
        if kind == "var":
            if value not in self.vars:
                raise self.error(tok, f"undefined variable {go_quote(value)}")
            return Variable(tok.pos, [value])
        if kind == "string":
            return Literal(tok.pos, value, go_quote(value))
        if kind == "char":
            return Literal(tok.pos, ord(value[0]) if value else 0, f"'{value}'")
        if kind == "number":
            return Literal(tok.pos, _number_value(value, self, tok), value)
        if kind == "(":
            pipe = self.paren_pipeline(tok)
            return pipe
        if kind == "ident":
            if value in ("true", "false"):
                return Literal(tok.pos, value == "true", value)
            if value == "nil":
                return Literal(tok.pos, None, "nil")
            if value in _KEYWORDS:
                raise self.error(tok, f"unexpected <{value}> in command")
            if value in _UNSUPPORTED_FUNCS:
                raise self.error(
                    tok, f"cribctl's go-template does not support the function {go_quote(value)}"
                )
            if value not in FUNCS:
                raise self.error(tok, f"function {go_quote(value)} not defined")
            return Ident(tok.pos, value)
        raise self.error(tok, f"unexpected {self.describe(tok)} in operand")

    def paren_pipeline(self, open_tok: _Tok) -> Pipe:
        cmds: list[Command] = []
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
        return Pipe(open_tok.pos, decl, is_assign, cmds)


def _number_value(text: str, parser: Parser, tok: _Tok) -> int | float:
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
