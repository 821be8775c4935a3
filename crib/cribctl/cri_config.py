"""Pod sandbox and container config files, read as crictl reads them: sigs.k8s.io/yaml (go-yaml v2
into JSON), then encoding/json into the Go structs, with crictl's error texts (docs/cribctl.md).
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from crib.cribctl.golike import (
    INT64_MAX,
    INT64_MIN,
    go_format_float32,
    go_format_float64,
    go_json_float,
    go_parse_int,
    go_parse_uint,
    go_path_error,
    go_quote,
    proto_text,
    resolve_plain_scalar,
    to_float32,
)
from crib.proto.cri import api_pb2

CGROUP_PARENT_WARNING = "cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver"


class ConfigError(Exception):
    """A pod config that does not load; the message is crictl's, without "load podSandboxConfig: "."""


_JSON_ERROR = "error unmarshaling JSON: while decoding JSON: "
_YAML_ERROR = "error converting YAML to JSON: "
_PLAIN_TAG = "tag:crib.cribctl,2025:go-yaml-v2-plain"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# --- go-yaml v2: the first document ---------------------------------------------------------------


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


# --- sigs.k8s.io/yaml: YAML values as JSON --------------------------------------------------------

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
    if isinstance(key, int) and INT64_MIN <= key <= INT64_MAX:
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
        return str(value) if value <= INT64_MAX else f"{value:#x}"
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


# --- encoding/json: JSON into the Go structs ------------------------------------------------------


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
    if go_type == "float32" and math.isinf(to_float32(parsed)):
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


# --- the configs ----------------------------------------------------------------------------------


def _decode_document(data: bytes | str, msg: Message) -> None:
    """YAML or JSON text into `msg` as sigs.k8s.io/yaml.Unmarshal fills crictl's struct."""
    obj = _to_jsonable(_first_document(data), ("msg", msg.DESCRIPTOR))
    _check_marshalable(obj)
    if obj is not None:  # JSON null into a struct changes nothing
        _decode_message(msg, obj)


def parse_pod_config(data: bytes | str) -> api_pb2.PodSandboxConfig:
    """A PodSandboxConfig from YAML or JSON text as sigs.k8s.io/yaml.Unmarshal fills crictl's struct."""
    config = api_pb2.PodSandboxConfig()
    _decode_document(data, config)
    return config


def _upstream_message_class(name: str) -> type[Message]:
    """`name` from crib's api.proto with KeyValue.value as cri-api's `string`.

    crib's proto declares KeyValue.value as bytes; crictl's struct has a
    string there, so `value: 1` must read as "1", not as base64. The wire
    format of the two is the same, so a message decoded against this copy
    parses into crib's own class unchanged.
    """
    fdp = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(fdp)
    for msg in fdp.message_type:
        if msg.name == "KeyValue":
            for field in msg.field:
                if field.name == "value":
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fdp.package}.{name}"))


_UPSTREAM_CONTAINER_CONFIG = _upstream_message_class("ContainerConfig")


def parse_container_config(data: bytes | str) -> api_pb2.ContainerConfig:
    """A ContainerConfig from YAML or JSON text as sigs.k8s.io/yaml.Unmarshal fills crictl's struct."""
    upstream = _UPSTREAM_CONTAINER_CONFIG()
    _decode_document(data, upstream)
    return api_pb2.ContainerConfig.FromString(upstream.SerializeToString())


def _read_config(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config at {path} not found") from None
    except IsADirectoryError as exc:
        # Go opens a directory fine; reading it fails.
        raise ConfigError(go_path_error("read", path, exc)) from None
    except OSError as exc:
        raise ConfigError(go_path_error("open", path, exc)) from None


def load_pod_config(path: str) -> tuple[api_pb2.PodSandboxConfig, list[str]]:
    """crictl's loadPodSandboxConfig: the config and the warnings to print; ConfigError on failure."""
    config = parse_pod_config(_read_config(path))
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


def load_container_config(path: str) -> api_pb2.ContainerConfig:
    """crictl's loadContainerConfig; ConfigError with its text."""
    config = parse_container_config(_read_config(path))
    if not config.HasField("metadata"):
        raise ConfigError("metadata is not set")
    if not config.metadata.name:
        raise ConfigError(f"name is not in metadata {go_quote(proto_text(config.metadata))}")
    if not config.HasField("image"):
        raise ConfigError("image is not set")
    if not config.image.image:
        raise ConfigError(f"image field is not set in image {go_quote(proto_text(config.image))}")
    return config
