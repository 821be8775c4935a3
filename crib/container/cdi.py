"""Container Device Interface (CDI): vendors' device spec files → edits to a container's OCI spec.

The kubelet asks for CDI devices by qualified name, `vendor.com/class=name`, in
ContainerConfig.CDI_devices; containerd and CRI-O also take them from annotations
`cdi.k8s.io/<key>: vendor/class=a,vendor/class=b` (`annotation_devices`). A driver installs
spec files (JSON or YAML) naming one kind (`vendor/class`), its devices and edits to the OCI
spec: spec-level edits apply once when any of its devices is requested, device-level ones
for that device only.

The rules are the CDI specification's (github.com/cncf-tags/container-device-interface,
SPEC.md v1.1.0) and its reference Go code's (pkg/cdi, pkg/parser, specs-go), which
containerd and CRI-O use: unknown fields fail a file (names match case-insensitively, as
Go's JSON decoder does: SPEC.md itself spells `additionalGIDs`), null means absent, and
cdiVersion must be known and new enough for the features used. A broken file is recorded
and skipped, never hiding the others; later directories take priority, and a device
defined twice at one priority is a conflict that resolves to neither. crib is stricter
where the spec says MUST or a path goes into the OCI spec: container paths, device host
paths, bind-mount sources and hook paths must be absolute, hook timeouts positive. crib
cannot honour `intelRdt` or `netDevices`, so a device needing them is refused by name.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crib.container.cdi_devices import ANNOTATION_PREFIX
from crib.errors import FailedPrecondition, InvalidArgument, NotFound

DEFAULT_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# The Go code reads .json and .yaml; .yml is accepted too since it is plainly YAML.
SPEC_EXTENSIONS = (".json", ".yaml", ".yml")
HOOK_NAMES = frozenset(
    {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
)
DEVICE_TYPES = frozenset({"", "b", "c", "u", "p"})
NO_PERMISSIONS = "none"  # explicit empty cgroup access, where "" means the default "rwm"
# Oldest to newest; the spec's "Released versions" table plus the pre-release ones Go accepts.
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
EARLIEST_REQUIRED = "0.3.0"
UINT32_MAX = 2**32 - 1
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class DeviceNode:
    path: str
    host_path: str = ""
    type: str = ""
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    permissions: str = ""
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    type: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hook:
    hook_name: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@dataclass
class ContainerEdits:
    """Edits to an OCI spec; `resolve` returns the merge of every requested device's."""

    env: list[str] = field(default_factory=list)
    device_nodes: list[DeviceNode] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    additional_gids: list[int] = field(default_factory=list)
    # Kept (validated, as read) only to refuse them by name: crib cannot apply them.
    intel_rdt: dict[str, Any] | None = None
    net_devices: list[dict[str, str]] = field(default_factory=list)

    def extend(self, other: ContainerEdits) -> None:
        self.env += other.env
        self.device_nodes += other.device_nodes
        self.mounts += other.mounts
        self.hooks += other.hooks
        self.additional_gids += other.additional_gids
        if other.intel_rdt is not None:
            self.intel_rdt = other.intel_rdt
        self.net_devices += other.net_devices

    def is_empty(self) -> bool:
        lists = (self.env, self.device_nodes, self.mounts, self.hooks, self.additional_gids, self.net_devices)
        return self.intel_rdt is None and not any(lists)


@dataclass(frozen=True)
class CDISpec:
    """One loaded spec file."""

    path: Path
    priority: int
    version: str
    vendor: str
    device_class: str
    annotations: dict[str, str]
    edits: ContainerEdits
    devices: dict[str, ContainerEdits]

    @property
    def kind(self) -> str:
        return f"{self.vendor}/{self.device_class}"


# -- names --------------------------------------------------------------------------------


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _name_error(name: str, first_ok: bool, inner: str, max_len: int | None) -> str | None:
    """Why `name` is not a CDI name (None if it is): `first_ok` for its first character,
    alphanumerics or `inner` in the middle, and an alphanumeric at the end."""
    if not name:
        return "empty name"
    if max_len is not None and len(name) > max_len:
        return f"{name!r} is longer than {max_len} characters"
    if not first_ok:
        return f"{name!r} starts with {name[0]!r}"
    for c in name[1:-1]:
        if not (_alnum(c) or c in inner):
            return f"invalid character {c!r} in {name!r}"
    if not _alnum(name[-1]):
        return f"{name!r} should end with a letter or digit"
    return None


def vendor_error(vendor: str, max_len: int = 253) -> str | None:
    """Also for a class (max_len 63). Go's parser: a letter first; the spec's length caps."""
    first = bool(vendor) and vendor[0].isascii() and vendor[0].isalpha()
    return _name_error(vendor, first, "_-.", max_len)


def device_name_error(name: str) -> str | None:
    # Digits may lead since v0.5.0; ':' is allowed inside (Go's parser).
    return _name_error(name, bool(name) and _alnum(name[0]), "_-.:", None)


def parse_qualified_name(device: str) -> tuple[str, str, str]:
    """`vendor/class=name` → (vendor, class, name); InvalidArgument naming it otherwise."""
    qualifier, sep, name = device.partition("=")
    vendor, slash, device_class = qualifier.partition("/")
    if device.startswith("/") or not (sep and slash and vendor and device_class and name):
        raise InvalidArgument(f"CDI device {device!r} is not a qualified name vendor/class=name")
    for what, err in (
        ("vendor", vendor_error(vendor)),
        ("class", vendor_error(device_class, 63)),
        ("device name", device_name_error(name)),
    ):
        if err:
            raise InvalidArgument(f"CDI device {device!r}: invalid {what}: {err}")
    return vendor, device_class, name


def annotation_devices(annotations: Mapping[str, str]) -> list[str]:
    """The devices the `cdi.k8s.io/` annotations ask for (containerd's and CRI-O's form)."""
    out = []
    for key in sorted(annotations):  # Go walks a map; sorted keeps crib deterministic
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        for device in annotations[key].split(","):
            try:
                parse_qualified_name(device)
            except InvalidArgument as e:
                raise InvalidArgument(f"annotation {key}: {e.message}") from None
            out.append(device)
    return out


def requested_devices(cdi_devices: Sequence[str], annotations: Mapping[str, str]) -> list[str]:
    """ContainerConfig.CDI_devices then the annotations' devices (containerd's order), once each."""
    return list(dict.fromkeys([*cdi_devices, *annotation_devices(annotations)]))


# -- parsing one spec file ----------------------------------------------------------------


class _Bad(Exception):
    """A spec file is invalid; the message says where."""


def _fields(obj: Any, where: str, known: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """obj's non-null fields by canonical name (matched case-insensitively, as Go does)."""
    if not isinstance(obj, dict):
        raise _Bad(f"{where}: not an object")
    canonical = {k.lower(): k for k in known}
    out = {}
    for key, value in obj.items():
        name = canonical.get(key.lower()) if isinstance(key, str) else None
        if name is None:
            raise _Bad(f"{where}: unknown field {key!r}")
        if value is not None:
            out[name] = value
    for name in required:
        if name not in out:
            raise _Bad(f"{where}: {name} is required")
    return out


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where}: not a string")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: not a list")
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(value))


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    # bool is an int in Python, never in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _Bad(f"{where}: not an integer in [{lo}, {hi}]")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    # Go's validation of annotation keys never runs (a failed type assertion), so only
    # the types are checked: map[string]string.
    if not isinstance(value, dict):
        raise _Bad(f"{where}: not an object")
    return {_str(k, f"{where} key"): _str(v, f"{where}.{k}") for k, v in value.items()}


def _env(value: Any, where: str) -> tuple[str, ...]:
    env = _strs(value, where)
    for i, var in enumerate(env):
        if var.find("=") <= 0:
            raise _Bad(f"{where}[{i}]: {var!r} is not NAME=VALUE")
    return env


def _absolute(path: str, where: str) -> str:
    if not path.startswith("/"):
        raise _Bad(f"{where}: {path!r} is not an absolute path")
    return path


def _device_node(obj: Any, where: str) -> DeviceNode:
    f = _fields(
        obj,
        where,
        ("path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"),
        ("path",),
    )
    node = DeviceNode(
        path=_absolute(_str(f["path"], f"{where}.path"), f"{where}.path"),
        host_path=_str(f.get("hostPath", ""), f"{where}.hostPath"),
        type=_str(f.get("type", ""), f"{where}.type"),
        major=_int(f.get("major", 0), f"{where}.major", *INT64),
        minor=_int(f.get("minor", 0), f"{where}.minor", *INT64),
        file_mode=_int(f["fileMode"], f"{where}.fileMode", 0, UINT32_MAX) if "fileMode" in f else None,
        permissions=_str(f.get("permissions", ""), f"{where}.permissions"),
        uid=_int(f["uid"], f"{where}.uid", 0, UINT32_MAX) if "uid" in f else None,
        gid=_int(f["gid"], f"{where}.gid", 0, UINT32_MAX) if "gid" in f else None,
    )
    if node.host_path:
        _absolute(node.host_path, f"{where}.hostPath")
    if node.type not in DEVICE_TYPES:
        raise _Bad(f"{where}: device {node.path}: invalid type {node.type!r} (b, c, u or p)")
    if node.permissions not in ("", NO_PERMISSIONS) and node.permissions.strip("rwm"):
        raise _Bad(f"{where}: device {node.path}: invalid permissions {node.permissions!r}")
    return node


def _is_bind(mount_type: str, options: Sequence[str]) -> bool:
    return mount_type == "bind" or "bind" in options or "rbind" in options


def _mount(obj: Any, where: str) -> Mount:
    f = _fields(obj, where, ("hostPath", "containerPath", "options", "type"), ("hostPath", "containerPath"))
    mount = Mount(
        host_path=_str(f["hostPath"], f"{where}.hostPath"),
        container_path=_str(f["containerPath"], f"{where}.containerPath"),
        type=_str(f.get("type", ""), f"{where}.type"),
        options=_strs(f.get("options", []), f"{where}.options"),
    )
    if not mount.host_path:
        raise _Bad(f"{where}: empty hostPath")
    _absolute(mount.container_path, f"{where}.containerPath")
    # A tmpfs (or other filesystem) mount's source is a label such as "tmpfs".
    if _is_bind(mount.type, mount.options):
        _absolute(mount.host_path, f"{where}.hostPath")
    return mount


def _hook(obj: Any, where: str) -> Hook:
    f = _fields(obj, where, ("hookName", "path", "args", "env", "timeout"), ("hookName", "path"))
    hook = Hook(
        hook_name=_str(f["hookName"], f"{where}.hookName"),
        path=_str(f["path"], f"{where}.path"),
        args=_strs(f.get("args", []), f"{where}.args"),
        env=_env(f.get("env", []), f"{where}.env"),
        timeout=_int(f["timeout"], f"{where}.timeout", 1, 2**31 - 1) if "timeout" in f else None,
    )
    if hook.hook_name not in HOOK_NAMES:
        raise _Bad(f"{where}: invalid hookName {hook.hook_name!r} (one of {', '.join(sorted(HOOK_NAMES))})")
    _absolute(hook.path, f"{where}.path")  # SPEC.md: "path MUST be absolute"
    return hook


def _intel_rdt(obj: Any, where: str) -> dict[str, Any]:
    f = _fields(obj, where, ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring"))
    for key in ("closID", "l3CacheSchema", "memBwSchema"):
        if key in f:
            _str(f[key], f"{where}.{key}")
    if "schemata" in f:
        _strs(f["schemata"], f"{where}.schemata")
    if "enableMonitoring" in f and not isinstance(f["enableMonitoring"], bool):
        raise _Bad(f"{where}.enableMonitoring: not a boolean")
    # The CLOS is a directory name under /sys/fs/resctrl; "/" is the root CLOS.
    clos = f.get("closID", "")
    if clos != "/" and (len(clos) >= 4096 or clos in (".", "..") or "/" in clos or "\n" in clos):
        raise _Bad(f"{where}.closID: invalid {clos!r}")
    return f


def _net_devices(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: not a list")
    out: list[dict[str, str]] = []
    for i, obj in enumerate(value):
        at = f"{where}[{i}]"
        f = _fields(obj, at, ("hostInterfaceName", "name"), ("hostInterfaceName", "name"))
        dev = {k: _str(f[k], f"{at}.{k}") for k in ("hostInterfaceName", "name")}
        if not all(dev.values()):
            raise _Bad(f"{at}: empty hostInterfaceName or name")
        for key, name in dev.items():
            if any(o[key] == name for o in out):
                raise _Bad(f"{at}: duplicate {key} {name!r}")
        out.append(dev)
    return out


def _container_edits(obj: Any, where: str) -> ContainerEdits:
    f = _fields(
        obj,
        where,
        ("env", "deviceNodes", "netDevices", "hooks", "mounts", "intelRdt", "additionalGids"),
    )

    def each(key: str, parse: Any) -> list[Any]:
        items = f.get(key, [])
        if not isinstance(items, list):
            raise _Bad(f"{where}.{key}: not a list")
        return [parse(item, f"{where}.{key}[{i}]") for i, item in enumerate(items)]

    return ContainerEdits(
        env=list(_env(f.get("env", []), f"{where}.env")),
        device_nodes=each("deviceNodes", _device_node),
        mounts=each("mounts", _mount),
        hooks=each("hooks", _hook),
        additional_gids=each("additionalGids", lambda v, at: _int(v, at, 0, UINT32_MAX)),
        intel_rdt=_intel_rdt(f["intelRdt"], f"{where}.intelRdt") if "intelRdt" in f else None,
        net_devices=_net_devices(f.get("netDevices", []), f"{where}.netDevices"),
    )


def _required_version(
    device_class: str,
    annotations: Mapping[str, str],
    devices: Sequence[tuple[str, Mapping[str, str], ContainerEdits]],
    spec_edits: ContainerEdits,
) -> str:
    """The oldest cdiVersion that has every feature the spec uses (specs-go/version.go)."""
    all_edits = [spec_edits, *(edits for _, _, edits in devices)]
    v110 = {"schemata", "enableMonitoring"}
    if any(e.net_devices or v110 & set(e.intel_rdt or ()) for e in all_edits):
        return "1.1.0"
    if any(e.intel_rdt is not None or e.additional_gids for e in all_edits):
        return "0.7.0"
    if annotations or any(a for _, a, _ in devices) or "." in device_class:
        return "0.6.0"
    if any(name[:1].isdigit() for name, _, _ in devices) or any(
        n.host_path for e in all_edits for n in e.device_nodes
    ):
        return "0.5.0"
    if any(m.type for e in all_edits for m in e.mounts):
        return "0.4.0"
    return EARLIEST_REQUIRED


def _parse_spec(raw: Any, path: Path, priority: int) -> CDISpec:
    if raw is None:
        raise _Bad("no spec data")
    f = _fields(
        raw,
        "spec",
        ("cdiVersion", "kind", "annotations", "devices", "containerEdits"),
        ("cdiVersion", "kind", "devices"),
    )
    version = _str(f["cdiVersion"], "cdiVersion").removeprefix("v")
    if version not in VERSIONS:
        raise _Bad(f"unsupported cdiVersion {f['cdiVersion']!r} (known: {', '.join(VERSIONS)})")
    kind = _str(f["kind"], "kind")
    vendor, slash, device_class = kind.partition("/")
    if not slash:
        raise _Bad(f"kind {kind!r} is not vendor/class")
    for what, err in (("vendor", vendor_error(vendor)), ("class", vendor_error(device_class, 63))):
        if err:
            raise _Bad(f"kind {kind!r}: invalid {what}: {err}")
    annotations = _str_map(f.get("annotations", {}), "annotations")
    spec_edits = _container_edits(f.get("containerEdits", {}), "containerEdits")

    if not isinstance(f["devices"], list) or not f["devices"]:
        raise _Bad("devices: must list at least one device")
    parsed: list[tuple[str, Mapping[str, str], ContainerEdits]] = []
    for i, obj in enumerate(f["devices"]):
        at = f"devices[{i}]"
        d = _fields(obj, at, ("name", "annotations", "containerEdits"), ("name",))
        name = _str(d["name"], f"{at}.name")
        if err := device_name_error(name):
            raise _Bad(f"{at}.name: invalid device name: {err}")
        edits = _container_edits(d.get("containerEdits", {}), f"{at}.containerEdits")
        if edits.is_empty():
            raise _Bad(f"device {name!r}: empty containerEdits")
        if any(name == other for other, _, _ in parsed):
            raise _Bad(f"device {name!r} is defined twice")
        parsed.append((name, _str_map(d.get("annotations", {}), f"{at}.annotations"), edits))

    needed = _required_version(device_class, annotations, parsed, spec_edits)
    if VERSIONS.index(needed) > VERSIONS.index(version):
        raise _Bad(f"cdiVersion {version} is too old for the features used: needs at least {needed}")
    return CDISpec(
        path=path,
        priority=priority,
        version=version,
        vendor=vendor,
        device_class=device_class,
        annotations=annotations,
        edits=spec_edits,
        devices={name: edits for name, _, edits in parsed},
    )


def _yaml() -> Any:
    """PyYAML, imported at the first YAML spec (or a spec that fails to load): most nodes
    have no CDI specs, or JSON ones, and an idle cribd does without its ~0.8 MB resident
    (issue 17)."""
    import yaml  # noqa: PLC0415

    return yaml


def _decode(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        return json.loads(text)
    return _yaml().safe_load(text)


def load_spec(path: Path, priority: int = 0) -> CDISpec:
    """Read and validate one spec file; InvalidArgument naming it and the field if it is broken."""
    try:
        return _parse_spec(_decode(path, path.read_text()), path, priority)
    except (OSError, UnicodeDecodeError, ValueError, _yaml().YAMLError, _Bad) as e:
        raise InvalidArgument(f"CDI spec {path}: {e}") from None


def _kind_of(path: Path) -> str | None:
    """A broken file's kind, when it is readable enough to say (to blame it in errors)."""
    try:
        raw = _decode(path, path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, _yaml().YAMLError):
        return None
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(key, str) and key.lower() == "kind" and isinstance(value, str):
                return value
    return None


# -- the registry of spec directories -----------------------------------------------------


@dataclass(frozen=True)
class _FileError:
    path: Path
    kind: str | None  # None: the file is too broken to tell
    message: str


class CDIRegistry:
    """The devices of every spec file in `spec_dirs`; later directories take priority.

    `resolve` re-reads the directories only when a spec file was added, removed or
    changed (by name, size, inode and change time), so new vendor files are seen
    without a daemon restart and a steady state costs one stat per file.
    """

    def __init__(self, spec_dirs: Sequence[Path] = DEFAULT_SPEC_DIRS) -> None:
        self.spec_dirs = tuple(Path(d) for d in spec_dirs)
        self._lock = threading.Lock()
        self._stamp: Any = None
        self._devices: dict[str, tuple[CDISpec, ContainerEdits]] = {}
        self._conflicts: dict[str, list[Path]] = {}
        self._errors: list[_FileError] = []

    def refresh(self) -> None:
        """Re-read every spec file, whatever changed."""
        with self._lock:
            self._load(*self._scan())

    def devices(self) -> list[str]:
        """The qualified names of the devices that resolve."""
        with self._lock:
            self._refresh_if_changed()
            return sorted(self._devices)

    def errors(self) -> dict[str, list[str]]:
        """Per spec file (or unreadable directory): why it is broken or conflicts."""
        with self._lock:
            self._refresh_if_changed()
            out: dict[str, list[str]] = {}
            for err in self._errors:
                out.setdefault(str(err.path), []).append(err.message)
            return out

    def resolve(self, names: Sequence[str]) -> ContainerEdits:
        """The merged edits for `names` (qualified CDI names, each applied once).

        Raises InvalidArgument for a malformed name or for a device needing a feature crib
        lacks (intelRdt, netDevices), NotFound for an unknown device (with the errors of
        the spec files that may have defined it).
        """
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            parse_qualified_name(name)
        with self._lock:
            self._refresh_if_changed()
            devices, conflicts, errors = self._devices, self._conflicts, self._errors
        unknown = [n for n in wanted if n not in devices]
        if unknown:
            raise NotFound("; ".join(_unknown_message(n, conflicts, errors) for n in unknown))
        merged = ContainerEdits()
        specs_seen: set[Path] = set()
        for name in wanted:
            spec, edits = devices[name]
            _refuse_unsupported(f"CDI device {name}", spec.edits, edits)
            # Spec-level edits once, however many of its devices are requested (Go's InjectDevices).
            if spec.path not in specs_seen:
                specs_seen.add(spec.path)
                merged.extend(spec.edits)
            merged.extend(edits)
        return merged

    def _scan(self) -> tuple[list[tuple[int, Path, Any]], list[_FileError]]:
        """(priority, path, identity) of each spec file, and the unreadable directories."""
        files: list[tuple[int, Path, Any]] = []
        dir_errors = []
        for priority, directory in enumerate(self.spec_dirs):
            try:
                names = sorted(e.name for e in os.scandir(directory) if not e.is_dir())
            except FileNotFoundError:
                continue
            except OSError as e:
                dir_errors.append(_FileError(directory, None, f"cannot read spec directory: {e.strerror}"))
                continue
            for name in names:
                path = directory / name
                if path.suffix not in SPEC_EXTENSIONS:
                    continue
                try:
                    st = path.stat()
                    ident: Any = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                except OSError:
                    ident = None
                files.append((priority, path, ident))
        return files, dir_errors

    def _refresh_if_changed(self) -> None:
        files, dir_errors = self._scan()
        if (files, dir_errors) != self._stamp:
            self._load(files, dir_errors)

    def _load(self, files: list[tuple[int, Path, Any]], dir_errors: list[_FileError]) -> None:
        self._stamp = (files, dir_errors)
        errors = list(dir_errors)
        candidates: dict[str, list[CDISpec]] = {}
        for priority, path, _ in files:
            try:
                spec = load_spec(path, priority)
            except InvalidArgument as e:
                errors.append(_FileError(path, _kind_of(path), e.message))
                continue
            for name in spec.devices:
                candidates.setdefault(f"{spec.kind}={name}", []).append(spec)
        devices: dict[str, tuple[CDISpec, ContainerEdits]] = {}
        conflicts: dict[str, list[Path]] = {}
        for qualified, specs in candidates.items():
            top = max(s.priority for s in specs)
            winners = [s for s in specs if s.priority == top]
            if len(winners) > 1:
                # Neither definition is trusted (as in Go); a higher priority directory can still win.
                paths = [s.path for s in winners]
                conflicts[qualified] = paths
                for s in winners:
                    msg = f"conflicting device {qualified} (in {', '.join(map(str, paths))})"
                    errors.append(_FileError(s.path, s.kind, msg))
                continue
            spec = winners[0]
            devices[qualified] = (spec, spec.devices[qualified.partition("=")[2]])
        self._devices, self._conflicts, self._errors = devices, conflicts, errors


def _unknown_message(name: str, conflicts: Mapping[str, list[Path]], errors: Sequence[_FileError]) -> str:
    msg = f"CDI device {name} is unknown"
    if name in conflicts:
        return f"{msg}: it is defined at equal priority in {' and '.join(map(str, conflicts[name]))}"
    kind = name.partition("=")[0]
    # A file of that kind, or one too broken to tell its kind, may be where it was defined.
    related = [e for e in errors if e.kind in (kind, None) and "conflicting device" not in e.message]
    if related:
        msg += f" (spec files that failed to load: {'; '.join(e.message for e in related)})"
    return msg


def _refuse_unsupported(what: str, *edits: ContainerEdits) -> None:
    for e in edits:
        if e.intel_rdt is not None:
            raise InvalidArgument(f"{what} needs intelRdt, which crib does not support")
        if e.net_devices:
            raise InvalidArgument(f"{what} needs netDevices, which crib does not support")


# -- applying edits to an OCI spec --------------------------------------------------------


def apply_edits(spec: dict[str, Any], edits: ContainerEdits) -> None:
    """Apply `edits` to an OCI runtime spec dict in place, as the Go ContainerEdits.Apply does.

    Raises InvalidArgument for intelRdt / netDevices, FailedPrecondition when a device
    node's host path is missing or is not the device the spec says (checked before any
    change, so a failure leaves `spec` untouched).
    """
    _refuse_unsupported("CDI container edits", edits)
    user = spec.get("process", {}).get("user", {})
    nodes = [_fill_from_host(node) for node in edits.device_nodes]
    if edits.env:
        _apply_env(spec.setdefault("process", {}).setdefault("env", []), edits.env)
    for node in nodes:
        _apply_device_node(spec, node, user)
    if edits.mounts:
        _apply_mounts(spec, edits.mounts)
    for hook in edits.hooks:
        entry: dict[str, Any] = {"path": hook.path}
        if hook.args:
            entry["args"] = list(hook.args)
        if hook.env:
            entry["env"] = list(hook.env)
        if hook.timeout is not None:
            entry["timeout"] = hook.timeout
        spec.setdefault("hooks", {}).setdefault(hook.hook_name, []).append(entry)
    gids = [g for g in edits.additional_gids if g != 0]  # the spec: 0 is ignored
    if gids:
        have = spec.setdefault("process", {}).setdefault("user", {}).setdefault("additionalGids", [])
        for gid in gids:
            if gid not in have:
                have.append(gid)


def _apply_env(env: list[str], new: Sequence[str]) -> None:
    """Set each NAME=VALUE, replacing an existing NAME in place, else appending."""
    index = {var.partition("=")[0]: i for i, var in enumerate(env)}
    for var in new:
        key = var.partition("=")[0]
        if key in index:
            env[index[key]] = var
        else:
            index[key] = len(env)
            env.append(var)


def _fill_from_host(node: DeviceNode) -> DeviceNode:
    """Fill type, major/minor and fileMode from the host's node (Go's fillMissingInfo).

    A vendor may fully specify a node (type, and major unless a fifo) that is absent
    here; otherwise the host node must exist and be of the stated type.
    """
    host = node.host_path or node.path
    minimal = bool(node.type) and (node.major != 0 or node.type == "p")
    try:
        st = os.lstat(host)
        kind = {stat.S_IFBLK: "b", stat.S_IFCHR: "c", stat.S_IFIFO: "p"}.get(stat.S_IFMT(st.st_mode))
        problem = None if kind else "not a device node"
    except OSError as e:
        st, kind, problem = None, None, e.strerror
    if st is None or kind is None:
        if minimal:
            return replace(node, host_path=host)
        raise FailedPrecondition(f"CDI device node {node.path}: host device {host}: {problem}")
    # Even a fully specified node takes the host's mode (for rootless bind-mounted nodes, in Go).
    node = replace(
        node, host_path=host, file_mode=stat.S_IMODE(st.st_mode) if node.file_mode is None else node.file_mode
    )
    if minimal:
        return node
    node_type = node.type or kind
    if node_type != kind:
        raise FailedPrecondition(
            f"CDI device node {node.path}: type {node_type} but host device {host} is of type {kind}"
        )
    if node_type == "p" or node.major != 0:
        return replace(node, type=node_type)
    return replace(node, type=node_type, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))


def _apply_device_node(spec: dict[str, Any], node: DeviceNode, user: Mapping[str, Any]) -> None:
    dev: dict[str, Any] = {"path": node.path, "type": node.type, "major": node.major, "minor": node.minor}
    if node.file_mode is not None:
        dev["fileMode"] = node.file_mode
    # A node without an owner belongs to the container's user, when that is not root.
    uid = node.uid if node.uid is not None else (user.get("uid") or None)
    gid = node.gid if node.gid is not None else (user.get("gid") or None)
    if uid is not None:
        dev["uid"] = uid
    if gid is not None:
        dev["gid"] = gid
    linux = spec.setdefault("linux", {})
    devices = [d for d in linux.get("devices", []) if d.get("path") != node.path]
    linux["devices"] = [*devices, dev]
    if node.type in ("b", "c"):
        access = {"": "rwm", NO_PERMISSIONS: ""}.get(node.permissions, node.permissions)
        rule = {"allow": True, "type": node.type, "major": node.major, "minor": node.minor, "access": access}
        linux.setdefault("resources", {}).setdefault("devices", []).append(rule)


def _depth(destination: str) -> int:
    # Go's filepath.Clean then a count of '/'; normpath keeps a leading '//', Clean does not.
    clean = posixpath.normpath(destination)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    return clean.count("/")


def _apply_mounts(spec: dict[str, Any], mounts: Sequence[Mount]) -> None:
    namespaces = spec.get("linux", {}).get("namespaces", [])
    userns = any(ns.get("type") == "user" for ns in namespaces)
    out = spec.setdefault("mounts", [])
    for m in mounts:
        # A CDI mount replaces one already at its destination.
        for i, old in enumerate(out):
            if old.get("destination") == m.container_path:
                del out[i]
                break
        entry: dict[str, Any] = {"destination": m.container_path, "source": m.host_path}
        if m.type:
            entry["type"] = m.type
        options = list(m.options)
        if userns:
            options += _idmap_option(m.type, options)
        if options:
            entry["options"] = options
        out.append(entry)
    # Parents before children, otherwise in order (stable), as CDI, CRI-O and Docker sort.
    out.sort(key=lambda mount: _depth(mount.get("destination", "")))


def _idmap_option(mount_type: str, options: Sequence[str]) -> list[str]:
    """With a user namespace a bind mount is id-mapped (Go's withIDMapForBindMount)."""
    option = "idmap" if mount_type == "bind" else ""
    for o in options:
        if o in ("idmap", "ridmap"):
            return []
        if o == "bind":
            option = "idmap"
        elif o == "rbind":
            option = "ridmap"
    return [option] if option else []
