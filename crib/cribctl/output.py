"""Output in crictl's formats, so scripts written for crictl read cribctl alike.

protojson and Go's encoding/json of CRI messages, sigs.k8s.io/yaml's two YAML forms, the status
documents of info and the inspect commands, and `-o go-template` (docs/cribctl.md has the details).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from crib.cribctl import gotemplate
from crib.cribctl.client import CommandError
from crib.cribctl.golike import (
    go_format_float64,
    go_json_float,
    go_quote,
    go_sort,
    resolve_plain_scalar,
    v2_tag,
)


def proto_json(msg: Message) -> dict[str, Any]:
    """protojson.MarshalOptions{EmitDefaultValues: true}, as a dict."""
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def protojson_text(msg: Message) -> str:
    """protojson.MarshalOptions{EmitDefaultValues: true, Indent: "  "}: fields by number, maps sorted."""
    return json.dumps(_in_field_order(msg, proto_json(msg)), indent=2, ensure_ascii=False)


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


def _go_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return go_struct_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def go_struct_json(msg: Message) -> dict[str, Any]:
    """encoding/json of a generated Go struct: `json:"name,omitempty"` on every field."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if value:
                vfield = field.message_type.fields_by_name["value"]
                out[field.name] = {k: _go_value(vfield, v) for k, v in value.items()}
        elif field.is_repeated:
            if value:
                out[field.name] = [_go_value(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            # A set message is a non-nil pointer: kept even when empty.
            if msg.HasField(field.name):
                out[field.name] = go_struct_json(value)
        elif value:
            out[field.name] = _go_value(field, value)
    return out


def _go_numbers(obj: Any) -> Any:
    """Go decodes JSON numbers to float64 and prints 60.0 as 60."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: _go_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_go_numbers(v) for v in obj]
    return obj


def go_json_indent(obj: Any) -> str:
    """json.Marshal then json.Indent(.., "", "  ")."""
    text = json.dumps(_go_numbers(obj), indent=2, sort_keys=True, ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class _GoYamlDumper(yaml.SafeDumper):
    pass


_STR_TAG = "tag:yaml.org,2002:str"
_FLOAT_TAG = "tag:yaml.org,2002:float"


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # go-yaml double-quotes a string that would read back as something else
    # (empty, a number, a bool, null, a timestamp) where PyYAML single-quotes it.
    if value == "" or dumper.resolve(yaml.ScalarNode, value, (True, False)) != _STR_TAG:
        return dumper.represent_scalar(_STR_TAG, value, style='"')
    return dumper.represent_str(value)


_GoYamlDumper.add_representer(str, _represent_str)


def go_yaml(obj: Any) -> str:
    """sigs.k8s.io/yaml's JSONToYAML: block style, sorted keys."""
    return yaml.dump(
        _go_numbers(obj), Dumper=_GoYamlDumper, default_flow_style=False, sort_keys=True, allow_unicode=True
    )


# --- sigs.k8s.io/yaml's JSONToYAML with go-yaml v2's rules ----------------------------------------

_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


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
    elif v2_tag(value) != _STR_TAG or _BASE60_FLOAT.fullmatch(value):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar(_STR_TAG, value, style=style)


def _represent_v2_float(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    text = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(go_format_float64(value))
    return dumper.represent_scalar(_FLOAT_TAG, text or go_format_float64(value))


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


# --- status documents -----------------------------------------------------------------------------


def status_document(status: dict[str, Any] | None, info: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """One entry of crictl's status output (info, inspect, inspecti…).

    The status message goes under "status", then `extra`, then each info key:
    JSON objects parsed, anything else as a string without its quotes.
    """
    doc: dict[str, Any] = {}
    if status is not None:
        doc["status"] = status
    doc.update(extra)
    for key in sorted(info):
        value = info[key]
        doc[key] = json.loads(value) if value.startswith("{") else value.strip('"')
    return doc


def render_status_documents(docs: list[dict[str, Any]], fmt: str) -> str:
    """crictl prints a single entry bare and several as a list."""
    obj: Any = docs[0] if len(docs) == 1 else docs
    if fmt == "yaml":
        return go_yaml(obj)
    if fmt == "json":
        return go_json_indent(obj)
    raise ValueError(f"unsupported format: {fmt!r}")


def render_go_statuses(docs: list[dict[str, Any]], fmt: str, what: str) -> str:
    """inspect and inspectp's JSON, or YAML by sigs.k8s.io/yaml (inspecti's YAML is another)."""
    if fmt == "yaml":
        return go_yaml_v2(docs[0] if len(docs) == 1 else docs)
    if fmt != "json":
        raise CommandError(f"get the status of {what}: unsupported format: {go_quote(fmt)}")
    return render_status_documents(docs, fmt)


def show_statuses(
    ids: list[str],
    status_of: Callable[[str], Any],
    table_of: Callable[[Any], str],
    document_of: Callable[[Any], dict[str, Any]],
    fmt: str,
    render: Callable[[list[dict[str, Any]], str], str],
) -> None:
    """inspect, inspectp and inspecti: each status as a table, printed as it comes so earlier
    ones show before a later error, or all as one document by `render` (which refuses a format
    it does not know, as crictl does only once every status was fetched)."""
    docs = []
    for one in ids:
        response = status_of(one)
        if fmt == "table":
            sys.stdout.write(table_of(response))
            sys.stdout.flush()
        else:
            docs.append(document_of(response))
    if docs:
        print(render(docs, fmt))


# --- -o go-template -------------------------------------------------------------------------------


class _TemplateWriter(io.TextIOBase):
    """Stands in for stdout while a command prints JSON: each complete JSON value
    written is run through the template instead, as crictl feeds its JSON to
    tmplExecuteRawJSON. Values are found as they complete, so streamed events
    are rendered one by one."""

    def __init__(self, template: str, target: TextIO, per_value_errors: bool) -> None:
        super().__init__()
        self.template = template
        self.target = target
        self.per_value_errors = per_value_errors
        self.buffer_text = ""
        self._parsed: gotemplate.Template | None = None
        self.passthrough = False
        self._decoder = json.JSONDecoder(
            parse_int=gotemplate.GoNumber, parse_float=gotemplate.GoNumber, parse_constant=gotemplate.GoNumber
        )

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.passthrough:
            self.target.write(text)
            return len(text)
        self.buffer_text += text
        self._drain()
        return len(text)

    def _drain(self) -> None:
        while True:
            rest = self.buffer_text.lstrip()
            if not rest:
                self.buffer_text = ""
                return
            if rest[0] not in "{[":
                # Not JSON (a command's help, shown when nothing matched): that and the rest
                # are printed as they are.
                self.passthrough = True
                self.target.write(self.buffer_text)
                self.buffer_text = ""
                return
            try:
                value, end = self._decoder.raw_decode(rest)
            except json.JSONDecodeError:
                self.buffer_text = rest
                return
            self.buffer_text = rest[end:]
            self._render(value)

    def _render(self, value: Any) -> None:
        try:
            # Parsed at the first value, as crictl parses after its calls (a bad template and a
            # failed call report the call).
            if self._parsed is None:
                self._parsed = gotemplate.parse(self.template)
            text = self._parsed.execute(value)
        except gotemplate.TemplateParseError as exc:
            raise gotemplate.TemplateError(f"failed to generate go-template: {exc}") from None
        except gotemplate.TemplateExecError as exc:
            if self.per_value_errors:
                # crictl events: the error is printed in place of the event, and the stream goes on.
                self.target.write(
                    f"failed to format container event with the error: failed to template data: {exc}\n"
                )
                self.target.flush()
                return
            raise gotemplate.TemplateError(f"failed to template data: {exc}") from None
        # fmt.Println(output)
        self.target.write(text + "\n")
        self.target.flush()

    def finish(self) -> None:
        if self.buffer_text.strip():
            raise gotemplate.TemplateError("failed to decode json: unexpected end of JSON input")


def run_with_go_template(command: Callable[[Any, Any], None], args: Any, ep: Any, error_prefix: str) -> None:
    """Run `command` for `-o go-template`: it prints its JSON output, which the template renders.

    The commands keep one JSON code path; the data the template sees is the
    JSON crictl would print for -o json, decoded with numbers as json.Number.
    """
    template = getattr(args, "template", "") or ""
    streaming = args.command in ("events", "event")
    if streaming:
        # crictl checks an events template before it connects.
        try:
            gotemplate.validate(template)
        except gotemplate.TemplateParseError as exc:
            raise CommandError(f"failed to parse go-template: {exc}") from None
    args.output = "json"
    args.template = ""
    writer = _TemplateWriter(template, sys.stdout, per_value_errors=streaming)
    try:
        with contextlib.redirect_stdout(writer):
            command(args, ep)
        writer.finish()
    except gotemplate.TemplateError as exc:
        raise CommandError(f"{error_prefix}execute template: {exc}") from None
