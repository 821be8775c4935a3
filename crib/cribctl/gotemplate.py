"""A subset of Go's text/template, for crictl's `-o go-template --template '...'`: parse, execute
and crictl's tmplExecuteRawJSON, with Go's error texts (docs/cribctl.md lists what is supported).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from crib.cribctl.golike import go_quote
from crib.cribctl.gotemplate_funcs import (
    FUNCS,
    NO_VALUE,
    FuncError,
    GoNumber,
    TemplateError,
    TemplateExecError,
    TemplateParseError,
    go_type,
    is_nil,
    is_true,
    sprint_value,
)
from crib.cribctl.gotemplate_parse import (
    Action,
    Branch,
    Chain,
    Command,
    Dot,
    Field,
    Ident,
    Literal,
    Loop,
    Node,
    Parser,
    Pipe,
    TemplateCall,
    Text,
    Variable,
)

__all__ = [
    "GoNumber",
    "Template",
    "TemplateError",
    "TemplateExecError",
    "TemplateParseError",
    "decode_json",
    "execute_raw_json",
    "parse",
    "validate",
]

TEMPLATE_NAME = "tmplExecuteRawJSON"


def decode_json(text: str) -> Any:
    """json.Decoder with UseNumber: numbers keep their text."""
    return json.loads(text, parse_int=GoNumber, parse_float=GoNumber, parse_constant=GoNumber)


# --- execution ------------------------------------------------------------------------------------


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
    node: Node | None = None
    depth: int = 0

    def at(self, node: Node) -> None:
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
        parser = Parser(text, name)
        self.tree = parser.parse()
        self.defines = parser.defines

    def execute(self, data: Any) -> str:
        state = _State(self, root=data, name=self.name, vars=[("$", data)])
        self._walk_list(state, data, self.tree)
        return "".join(state.out)

    # Statements.

    def _walk_list(self, s: _State, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            self._walk(s, dot, node)

    def _walk(self, s: _State, dot: Any, node: Node) -> None:
        if isinstance(node, Text):
            s.out.append(node.text)
        elif isinstance(node, Action):
            s.at(node)
            value = self._pipeline(s, dot, node.pipe)
            if not node.pipe.decl:
                s.out.append(sprint_value(value))
        elif isinstance(node, Branch):
            self._branch(s, dot, node)
        elif isinstance(node, TemplateCall):
            self._template(s, dot, node)
        elif isinstance(node, Loop):
            raise _Break() if node.kind == "break" else _Continue()

    def _template(self, s: _State, dot: Any, node: TemplateCall) -> None:
        s.at(node)
        body = self.defines.get(node.name)
        if body is None:
            raise s.error(f"template {go_quote(node.name)} not defined")
        if s.depth >= MAX_EXEC_DEPTH:
            raise s.error(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        value = self._pipeline(s, dot, node.pipe) if node.pipe is not None else None
        inner = _State(self, s.root, node.name, [("$", value)], s.out, None, s.depth + 1)
        self._walk_list(inner, value, body)

    def _branch(self, s: _State, dot: Any, node: Branch) -> None:
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

    def _range(self, s: _State, dot: Any, node: Branch) -> None:
        pipe = node.pipe
        value = self._pipeline(s, dot, Pipe(pipe.pos, [], False, pipe.cmds))
        items: Iterator[tuple[Any, Any]]
        if isinstance(value, list):
            items = iter(enumerate(value))
        elif isinstance(value, dict):
            items = iter((k, value[k]) for k in sorted(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(pipe.decl) > 1:
                raise s.error(f"can't use {value} to iterate over more than one variable")
            items = iter((i, i) for i in range(value))
        elif is_nil(value):
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

    def _set_var(self, s: _State, pipe: Pipe, name: str, value: Any) -> None:
        if pipe.is_assign:
            s.assign(name, value)
        else:
            s.vars.append((name, value))

    # Expressions.

    def _pipeline(self, s: _State, dot: Any, pipe: Pipe) -> Any:
        value: Any = NO_VALUE
        final: Any = _NOTHING
        for cmd in pipe.cmds:
            value = self._command(s, dot, cmd, final)
            final = value
        for name in pipe.decl:
            self._set_var(s, pipe, name, value)
        return value

    def _command(self, s: _State, dot: Any, cmd: Command, final: Any) -> Any:
        first = cmd.args[0]
        s.at(first)
        if isinstance(first, Field):
            return self._field_chain(s, dot, first.names, cmd, final, first)
        if isinstance(first, Chain):
            receiver = self._arg(s, dot, first.node)
            return self._field_chain(s, receiver, first.names, cmd, final, first)
        if isinstance(first, Variable):
            value = s.lookup(first.names[0])
            if len(first.names) == 1:
                self._no_args(s, cmd, final, first)
                return value
            return self._field_chain(s, value, first.names[1:], cmd, final, first)
        if isinstance(first, Ident):
            return self._call(s, dot, first, cmd, cmd.args[1:], final)
        if isinstance(first, Pipe):
            self._no_args(s, cmd, final, first)
            return self._pipeline(s, dot, first)
        if isinstance(first, Literal) and first.value is None:
            raise s.error("nil is not a command")
        self._no_args(s, cmd, final, first)
        return self._arg(s, dot, first)

    def _no_args(self, s: _State, cmd: Command, final: Any, node: Node) -> None:
        if len(cmd.args) > 1 or final is not _NOTHING:
            s.at(node)
            raise s.error(f"can't give argument to non-function {node}")

    def _field_chain(
        self, s: _State, receiver: Any, names: list[str], cmd: Command | None, final: Any, node: Node
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
        if is_nil(receiver):
            raise s.error(f"nil pointer evaluating interface {{}}.{name}")
        # A value taken out of the decoded JSON is an interface{} to Go's reflection; only the
        # data handed to Execute has its own type.
        kind = go_type(receiver) if receiver is s.root else "interface {}"
        raise s.error(f"can't evaluate field {name} in type {kind}")

    def _arg(self, s: _State, dot: Any, node: Node) -> Any:
        s.at(node)
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Field):
            return self._field_chain(s, dot, node.names, None, _NOTHING, node)
        if isinstance(node, Variable):
            value = s.lookup(node.names[0])
            if len(node.names) > 1:
                value = self._field_chain(s, value, node.names[1:], None, _NOTHING, node)
            return value
        if isinstance(node, Chain):
            receiver = self._arg(s, dot, node.node)
            return self._field_chain(s, receiver, node.names, None, _NOTHING, node)
        if isinstance(node, Pipe):
            return self._pipeline(s, dot, node)
        if isinstance(node, Ident):
            return self._call(s, dot, node, None, [], _NOTHING)
        raise s.error(f"can't handle {node}")

    def _string_arg(self, s: _State, dot: Any, node: Node) -> str:
        """An argument for a Go parameter of type string (printf's format, upper...)."""
        s.at(node)
        if isinstance(node, Literal):
            if isinstance(node.value, str):
                return node.value
            if node.value is None:
                raise s.error("cannot assign nil to string")
            raise s.error(f"expected string; found {node}")
        return self._as_string(s, self._arg(s, dot, node))

    def _as_string(self, s: _State, value: Any) -> str:
        if is_nil(value):
            raise s.error("invalid value; expected string")
        if not isinstance(value, str) or isinstance(value, GoNumber):
            raise s.error(f"wrong type for value; expected string; got {go_type(value)}")
        return value

    def _call(
        self, s: _State, dot: Any, ident: Ident, cmd: Command | None, arg_nodes: list[Node], final: Any
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
        except (FuncError, TemplateExecError) as exc:
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
