"""Hypothesis strategies for CRI requests, built from the protobuf descriptors.

`requests(method, world)` draws a request message for any RPC: every field of every type
(scalars at their edges, open enums with unknown numbers, nested messages, repeated fields
and maps, oversized strings and lists) from the descriptor, and, for the fields where bad
input is dangerous, targeted values mixed in:

- IDs (`pod_sandbox_id`, `container_id`, `id`, `target_id`, image names): the real ones of
  the `World` (a running pod, a running container, an image), their prefixes, and bad ones
  (empty, huge, traversal, NUL, unicode);
- paths (log dirs and paths, mounts, devices, checkpoint locations, working dirs, cgroup
  parents, profiles): traversal into `world.outside` and the host's /etc and /tmp, every
  component carrying `MARKER` so an escape is found by name wherever it lands;
- annotations and labels: huge maps, long keys and values, deeply nested JSON values, and
  the keys crib reads (CDI devices, bandwidth).

The IDs are looked up when an example is drawn, so a World that re-creates its pod after a
fuzzed StopPodSandbox hands out the new ID.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from crib.proto.cri import api_pb2

# In every path component the fuzzer makes: whatever lands on disk is found by this name. Per
# process, as test workers fuzz side by side and each checks (and clears) only its own.
MARKER = f"fzq{os.getpid()}q"
MAX_DEPTH = 5

F = FieldDescriptor


@dataclass
class World:
    """The real objects requests may name, refreshed by the test between examples."""

    outside: Path
    log_dir: Path
    ids: dict[str, str] = field(default_factory=dict)  # "pod", "container", "image", "image_name"

    def id_of(self, kind: str) -> str:
        return self.ids.get(kind, "")


def methods() -> list[MethodDescriptor]:
    return [m for s in api_pb2.DESCRIPTOR.services_by_name.values() for m in s.methods]


# --- scalars ----------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


def _repeat(unit: st.SearchStrategy[Any], low: int, high: int) -> st.SearchStrategy[Any]:
    """An oversized value made by repetition (generating megabytes char by char is slow)."""
    return st.tuples(unit, st.integers(low, high)).map(lambda t: t[0] * t[1])


_STRINGS = st.one_of(
    _TEXT,
    st.sampled_from(["", " ", "\x00", "a\x00b", "\n", "%s%n", "../../..", "\u202e", "☃" * 3]),
    _repeat(st.text(min_size=1, max_size=4), 1_000, 100_000),
)
_BYTES = st.one_of(st.binary(max_size=64), _repeat(st.binary(min_size=1, max_size=4), 1_000, 100_000))
# Items of the huge lists: small, so 20 000 of them stay a message of a few hundred KiB.
_SMALL = {F.TYPE_STRING: st.text(max_size=8), F.TYPE_BYTES: st.binary(max_size=8)}


def _ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = sorted({low, high, 0, 1} | ({-1} if signed else set()))
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    F.TYPE_STRING: _STRINGS,
    F.TYPE_BYTES: _BYTES,
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_DOUBLE: st.floats(),
    F.TYPE_FLOAT: st.floats(width=32),
    F.TYPE_INT32: _ints(32, True),
    F.TYPE_SINT32: _ints(32, True),
    F.TYPE_SFIXED32: _ints(32, True),
    F.TYPE_INT64: _ints(64, True),
    F.TYPE_SINT64: _ints(64, True),
    F.TYPE_SFIXED64: _ints(64, True),
    F.TYPE_UINT32: _ints(32, False),
    F.TYPE_FIXED32: _ints(32, False),
    F.TYPE_UINT64: _ints(64, False),
    F.TYPE_FIXED64: _ints(64, False),
}


def _enum(fd: FieldDescriptor) -> st.SearchStrategy[int]:
    # CRI enums are proto3 (open): a number no value names must be handled too.
    return st.one_of(st.sampled_from([v.number for v in fd.enum_type.values]), _ints(32, True))


# --- targeted values ----------------------------------------------------------------------------


def _ids(world: World, kinds: tuple[str, ...]) -> st.SearchStrategy[str]:
    real = st.sampled_from(kinds).map(world.id_of)
    return st.one_of(
        real,
        st.tuples(real, st.integers(1, 63)).map(lambda t: t[0][: t[1]]),  # a prefix
        real.map(lambda i: i + "0"),
        real.map(str.upper),
        st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
        st.sampled_from(["", "0", "*", "..", "../" * 8 + "etc/passwd", "/", "a/b", "\x00", " ", "%"]),
        _repeat(st.sampled_from(["a", "0", "/"]), 65, 100_000),
    )


def _image_refs(world: World) -> st.SearchStrategy[str]:
    real = st.sampled_from(["image", "image_name"]).map(world.id_of)
    return st.one_of(
        real,
        st.tuples(real, st.integers(1, 20)).map(lambda t: t[0][: t[1]]),
        st.sampled_from(
            [
                "",
                "sha256:",
                "sha256:" + "0" * 64,
                "sha256:../../../etc",
                "busybox",
                "crib.e2e/busybox",
                "crib.e2e/busybox:2",
                "127.0.0.1:1/nothing:1",
                "UPPER/case:1",
                "a:b:c:d",
                "a@sha256:zz",
                "..",
                "/",
                f"127.0.0.1:1/{MARKER}/../../x:1",
            ]
        ),
        _TEXT,
    )


def _paths(world: World) -> st.SearchStrategy[str]:
    """Absolute and relative paths that try to leave where they belong."""
    component = st.one_of(
        st.just(".."),
        st.just("."),
        st.just(""),
        st.text(alphabet="abc-_.", max_size=6).map(lambda s: f"{MARKER}{s}"),
        _repeat(st.just("x"), 200, 300).map(lambda s: MARKER + s),  # NAME_MAX is 255
    )
    rel = st.lists(component, min_size=1, max_size=8).map("/".join)
    heads = st.sampled_from(
        [
            "",
            "/",
            "./",
            "../" * 6,
            "//",
            f"{world.outside}/",
            f"{world.outside}/../",
            f"{world.outside}/{MARKER}/../../",
            "/tmp/",
            "/etc/",
            "/proc/self/",
            "/dev/",
            "/sys/fs/cgroup/",
        ]
    )
    return st.one_of(
        st.tuples(heads, rel).map("".join),
        st.sampled_from(["/", "/etc", "/proc/self/root", "/dev/null", "/dev/mem", "-", "\x00", "a\x00/b"]),
        _repeat(st.just(f"/{MARKER}"), 100, 2000),  # longer than PATH_MAX
    )


def _commands() -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.sampled_from(
            [["true"], ["sh", "-c", "echo out; echo err >&2"], ["cat"], ["/bin/false"], ["sleep", "0.2"]]
        ),
        st.lists(_STRINGS, max_size=4),
        st.integers(1_000, 20_000).map(lambda n: ["true"] + ["a"] * n),
    )


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _maps(interpreted: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    key = st.one_of(_TEXT, st.sampled_from(interpreted))
    value = st.one_of(
        _TEXT,
        st.sampled_from(["1M", "-1", "1e400", "vendor.com/class=dev", "a=b,,c", "k8s.io/../x=y"]),
        st.integers(10, 100_000).map(_deep_json),
        _repeat(st.just("v"), 1_000, 200_000),
    )
    return st.one_of(
        st.dictionaries(key, value, max_size=6),
        st.integers(100, 20_000).map(lambda n: {f"k{i}": f"v{i}" for i in range(n)}),
        st.integers(1_000, 100_000).map(lambda n: {"k" * n: "v"}),
    )


_ANNOTATION_KEYS = (
    "cdi.k8s.io/" + MARKER,
    "kubernetes.io/ingress-bandwidth",
    "kubernetes.io/egress-bandwidth",
    "io.kubernetes.cri.sandbox-id",
    "seccomp.security.alpha.kubernetes.io/pod",
)


def _targeted(fd: FieldDescriptor, world: World) -> st.SearchStrategy[Any] | None:
    """A strategy for one value of `fd` where bad input is dangerous, else None."""
    name = fd.name
    owner = fd.containing_type.name
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        if name in ("annotations", "labels", "label_selector", "sysctls", "info", "extra_info"):
            return _maps(_ANNOTATION_KEYS)
        return None
    if fd.type != F.TYPE_STRING:
        return None
    if name in ("pod_sandbox_id", "target_id") or (name == "id" and "Sandbox" in owner):
        return _ids(world, ("pod", "container"))
    if name in ("container_id",) or (name == "id" and "Container" in owner):
        return _ids(world, ("container", "pod"))
    if name == "id":
        return _ids(world, ("pod", "container", "image"))
    if (
        name in ("image", "image_ref", "user_specified_image") and owner == "ImageSpec"
    ) or name == "image_ref":
        return _image_refs(world)
    if name in (
        "log_directory",
        "log_path",
        "host_path",
        "container_path",
        "working_dir",
        "location",
        "image_sub_path",
        "cgroup_parent",
        "localhost_ref",
        "seccomp_profile_path",
        "apparmor_profile",
        "masked_paths",
        "readonly_paths",
        "mountpoint",
    ):
        return _paths(world)
    if name == "runtime_handler":
        # Not "crun": configured, but unusable on these hosts' hybrid cgroups (a host fault, not
        # the request's: RunPodSandbox answers INTERNAL with crun's reason).
        return st.sampled_from(["", "runc", "nonexistent", "../runc", MARKER])
    if name == "pod_cidr":
        return st.sampled_from(["", "10.99.0.0/24", "10.99.0.0/33", "::/0", "garbage", "10.0.0.1"])
    if name == "name" and owner.endswith("Metadata"):
        return st.one_of(st.sampled_from(["fuzz", "a/b", "..", "a\x00b"]), _TEXT.map(lambda s: "fz" + s))
    return None


# --- messages -------------------------------------------------------------------------------------


def _value(fd: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any] | None:
    """A strategy for one element of `fd` (for a repeated field: one item)."""
    targeted = _targeted(fd, world)
    if fd.type == F.TYPE_MESSAGE:
        if fd.message_type.GetOptions().map_entry:
            key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            generic_keys = _value(key_fd, world, depth + 1)
            generic_values = _value(value_fd, world, depth + 1)
            if generic_keys is None or generic_values is None:
                return None
            generic = st.dictionaries(generic_keys, generic_values, max_size=4)
            return generic if targeted is None else st.one_of(targeted, generic)
        if depth >= MAX_DEPTH:
            return None
        return message(fd.message_type, world, depth + 1)
    if fd.type == F.TYPE_ENUM:
        return _enum(fd)
    generic = _SCALARS[fd.type]
    if fd.name in ("cmd", "command", "args"):
        return None  # handled as a whole list in _field
    return generic if targeted is None else st.one_of(targeted, targeted, generic)


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _field(fd: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any] | None:
    if fd.name in ("cmd", "command", "args") and _is_repeated(fd):
        return _commands()
    item = _value(fd, world, depth)
    if item is None:
        return None
    if _is_repeated(fd) and not (fd.message_type is not None and fd.message_type.GetOptions().map_entry):
        many = st.lists(item, max_size=4)
        if fd.type == F.TYPE_MESSAGE:
            return many
        small = _SMALL.get(fd.type, item)
        return st.one_of(many, st.tuples(small, st.integers(1_000, 20_000)).map(lambda t: [t[0]] * t[1]))
    return item


def _assign(msg: Message, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(msg, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        for k, v in value.items():
            if value_fd.type == F.TYPE_MESSAGE:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif _is_repeated(fd):
        target.extend(value)
    elif fd.type == F.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(msg, fd.name, value)


def _make(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        _assign(msg, cls.DESCRIPTOR.fields_by_name[name], value)
    return msg


def message(desc: Descriptor, world: World, depth: int = 0) -> st.SearchStrategy[Message]:
    return _message(desc.full_name, depth, _Ref(world))


class _Ref:
    """Hashable by identity, so the cache keys on the world without comparing it."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __hash__(self) -> int:
        return id(self.world)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ref) and other.world is self.world


@functools.cache
def _message(full_name: str, depth: int, ref: _Ref) -> st.SearchStrategy[Message]:
    desc = api_pb2.DESCRIPTOR.message_types_by_name.get(full_name.rsplit(".", 1)[-1])
    if desc is None:  # a nested type
        desc = _nested(full_name)
    cls: type[Message] = _class_of(desc)
    optional = {}
    for fd in desc.fields:
        strategy = _field(fd, ref.world, depth)
        if strategy is not None:
            optional[fd.name] = strategy
    return st.fixed_dictionaries({}, optional=optional).map(functools.partial(_make, cls))


def _nested(full_name: str) -> Descriptor:
    parts = full_name.split(".")[2:]  # runtime.v1.Outer.Inner
    desc = api_pb2.DESCRIPTOR.message_types_by_name[parts[0]]
    for part in parts[1:]:
        desc = desc.nested_types_by_name[part]
    return desc


def _class_of(desc: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


def requests(method: MethodDescriptor, world: World) -> st.SearchStrategy[Message]:
    return message(method.input_type, world)


# --- what a request names on the host -----------------------------------------------------------

_WRITABLE_FIELDS = ("log_directory", "host_path", "location")


def string_fields(msg: Message) -> Iterator[tuple[str, str]]:
    """(field name, value) of every string set anywhere in the request, map entries left out."""
    for fd, value in msg.ListFields():
        if fd.type == F.TYPE_MESSAGE:
            if not fd.message_type.GetOptions().map_entry:
                for v in value if _is_repeated(fd) else [value]:
                    yield from string_fields(v)
        elif fd.type == F.TYPE_STRING:
            for v in value if _is_repeated(fd) else [value]:
                yield fd.name, v


def named_paths(msg: Message) -> list[str]:
    """Paths a request legitimately asks cribd to create: the pod's log dir, a mount's host
    path (missing ones are made, as the kubelet expects), a checkpoint's archive."""
    return [v for name, v in string_fields(msg) if name in _WRITABLE_FIELDS and v.startswith("/")]


def allowed(path: str, named: list[str]) -> bool:
    """Whether `path` (found on disk) is a named path, inside one, or a dir made on the way to one
    (os.makedirs makes each component, `..` ones included, before resolving them)."""
    real = os.path.normpath(path)
    for p in named:
        parts = p.split("/")
        prefixes = {os.path.normpath("/".join(parts[: i + 1]) or "/") for i in range(1, len(parts))}
        target = os.path.normpath(p)
        if real in prefixes or real == target or real.startswith(target.rstrip("/") + "/"):
            return True
        # A checkpoint's staging file sits next to its archive.
        if os.path.dirname(real) == os.path.dirname(target) and os.path.basename(real).startswith(
            f".{os.path.basename(target)}."
        ):
            return True
    return False


def dump(msg: Message, limit: int = 600) -> str:
    """A request, short enough for a failure message."""
    text = str(msg)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# --- valid requests, for fuzzing one field at a time ------------------------------------------


def _valid(name: str, world: World, u: str) -> Message:
    """A request for `name` that cribd would accept, naming the World's objects as they are now."""
    pod, ctr = world.id_of("pod"), world.id_of("container")
    image = api_pb2.ImageSpec(image=world.id_of("image_name"))
    match name:
        case "RunPodSandbox":
            return api_pb2.RunPodSandboxRequest(
                config=api_pb2.PodSandboxConfig(
                    metadata=api_pb2.PodSandboxMetadata(name=f"fz-{u}", namespace="fuzz", uid=u),
                    hostname=f"fz-{u}",
                    log_directory=str(world.log_dir / u),
                )
            )
        case "CreateContainer":
            return api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod,
                config=api_pb2.ContainerConfig(
                    metadata=api_pb2.ContainerMetadata(name=f"fz-{u}"),
                    image=image,
                    command=["sleep", "1"],
                    log_path=f"fz-{u}/0.log",
                ),
            )
        case "ExecSync":
            return api_pb2.ExecSyncRequest(container_id=ctr, cmd=["true"], timeout=5)
        case "Exec":
            return api_pb2.ExecRequest(container_id=ctr, cmd=["true"], stdout=True)
        case "Attach":
            return api_pb2.AttachRequest(container_id=ctr, stdout=True)
        case "PortForward":
            return api_pb2.PortForwardRequest(pod_sandbox_id=pod, port=[80])
        case "CheckpointContainer":
            return api_pb2.CheckpointContainerRequest(
                container_id=ctr, location=f"{world.outside}/{MARKER}-{u}.tar", timeout=30
            )
        case "PullImage":
            return api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=f"127.0.0.1:1/{MARKER}:1"))
        case "ImageStatus" | "RemoveImage":
            return getattr(api_pb2, f"{name}Request")(image=image)
    cls = getattr(api_pb2, f"{name}Request", None) or api_pb2.GetEventsRequest
    fields = cls.DESCRIPTOR.fields_by_name
    msg = cls()
    if "pod_sandbox_id" in fields:
        msg.pod_sandbox_id = pod
    if "container_id" in fields:
        msg.container_id = ctr
    return msg


def _merged(base: Message, fuzz: Message) -> Message:
    out = type(base)()
    out.CopyFrom(base)
    out.MergeFrom(fuzz)
    return out


def fuzzed_requests(method: MethodDescriptor, world: World) -> st.SearchStrategy[Message]:
    """Wholly generated requests, and valid ones with generated fields merged in."""
    generated = requests(method, world)
    valid = st.uuids().map(lambda u: _valid(method.name, world, u.hex[:12]))
    return st.one_of(
        generated,
        st.tuples(valid, generated).map(lambda t: _merged(*t)),
        valid,
    )


__all__ = ["MARKER", "World", "allowed", "dump", "fuzzed_requests", "message", "methods", "named_paths"]
