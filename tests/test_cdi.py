"""CDI: spec files, qualified names, the registry of spec directories, edits to an OCI spec."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from crib.container.cdi import (
    CDIRegistry,
    ContainerEdits,
    DeviceNode,
    Hook,
    Mount,
    annotation_devices,
    apply_edits,
    load_spec,
    parse_qualified_name,
    requested_devices,
)
from crib.errors import FailedPrecondition, InvalidArgument, NotFound

# The CDI repository's README example (/etc/cdi/vendor.json).
README_EXAMPLE = {
    "cdiVersion": "0.6.0",
    "kind": "vendor.com/device",
    "devices": [
        {
            "name": "myDevice",
            "containerEdits": {
                "deviceNodes": [
                    {"hostPath": "/vendor/dev/card1", "path": "/dev/card1", "type": "c", "major": 25,
                     "minor": 25, "fileMode": 384, "permissions": "rw", "uid": 1000, "gid": 1000},
                    {"path": "/dev/card-render1", "type": "c", "major": 25, "minor": 25, "fileMode": 384,
                     "permissions": "rwm", "uid": 1000, "gid": 1000},
                ]
            },
        }
    ],
    "containerEdits": {
        "env": ["FOO=VALID_SPEC", "BAR=BARVALUE1"],
        "deviceNodes": [
            {"path": "/dev/vendorctl", "type": "b", "major": 25, "minor": 25, "fileMode": 384,
             "permissions": "rw", "uid": 1000, "gid": 1000}
        ],
        "mounts": [
            {"hostPath": "/bin/vendorBin", "containerPath": "/bin/vendorBin"},
            {"hostPath": "/usr/lib/libVendor.so.0", "containerPath": "/usr/lib/libVendor.so.0"},
            {"hostPath": "tmpfs", "containerPath": "/tmp/data", "type": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "hooks": [
            {"hookName": "createContainer", "path": "/bin/vendor-hook"},
            {"hookName": "startContainer", "path": "/usr/bin/ldconfig"},
        ],
    },
}  # fmt: skip

# The repository's schema/testdata/good/minimal.json.
MINIMAL_EXAMPLE = """{
  "cdiVersion": "0.3.0",
  "kind": "vendor.com/device",
  "devices": [
    {"name": "myDevice", "containerEdits": {"deviceNodes": [{"path": "/dev/card1"}]}}
  ]
}"""

# The repository's TUTORIAL.md spec (/etc/cdi/tutorial.yaml).
TUTORIAL_YAML = """\
---
cdiVersion: "1.1.0"
kind: "tutorial.cdi.cncf.io/sensor"
devices:
  - name: "read-write"
    containerEdits:
      deviceNodes:
        - path: "/dev/cdi-tutorial-sensor"
          hostPath: "/dev/cdi-tutorial-sensor"
          type: "c"
          major: 10
          minor: 200
          fileMode: 432  # 0660 in decimal
          permissions: "rw"
  - name: "read-only"
    containerEdits:
      deviceNodes:
        - path: "/dev/cdi-tutorial-sensor"
          hostPath: "/dev/cdi-tutorial-sensor"
          type: "c"
          major: 10
          minor: 200
          fileMode: 292  # 0444 in decimal
          permissions: "r"
containerEdits:
  env:
    - "CDI_TUTORIAL=enabled"
    - "SENSOR_VENDOR=tutorial.cdi.cncf.io"
    - "SENSOR_VERSION=1.0"
  mounts:
    - hostPath: "/opt/cdi-tutorial/device-info.txt"
      containerPath: "/etc/sensor/device-info.txt"
      options:
        - "ro"
        - "nosuid"
        - "nodev"
        - "bind"
  hooks:
    - hookName: "createRuntime"
      path: "/usr/local/bin/cdi-tutorial-hook.sh"
      args:
        - "cdi-tutorial-hook.sh"
        - "--device"
        - "tutorial-sensor"
"""


def write(path: Path, spec: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def simple_spec(kind: str, devices: dict[str, list[str]], version: str = "0.6.0") -> dict[str, Any]:
    """A spec whose devices only set env."""
    return {
        "cdiVersion": version,
        "kind": kind,
        "devices": [{"name": n, "containerEdits": {"env": env}} for n, env in devices.items()],
    }


def minimal_oci_spec() -> dict[str, Any]:
    return {
        "process": {"user": {"uid": 0, "gid": 0, "additionalGids": [0]}, "env": ["PATH=/bin", "FOO=image"]},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/etc/hosts", "type": "bind", "source": "/pod/hosts", "options": ["rbind"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "mount"}, {"type": "pid"}],
        },
    }


# -- spec files ---------------------------------------------------------------------------


def test_readme_example_json(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "vendor.json", README_EXAMPLE), priority=1)
    assert (spec.kind, spec.vendor, spec.device_class, spec.version) == (
        "vendor.com/device",
        "vendor.com",
        "device",
        "0.6.0",
    )
    assert spec.priority == 1
    assert list(spec.devices) == ["myDevice"]
    card = spec.devices["myDevice"].device_nodes[0]
    assert card == DeviceNode(
        path="/dev/card1", host_path="/vendor/dev/card1", type="c", major=25, minor=25,
        file_mode=384, permissions="rw", uid=1000, gid=1000,
    )  # fmt: skip
    assert spec.edits.env == ["FOO=VALID_SPEC", "BAR=BARVALUE1"]
    assert spec.edits.mounts[2] == Mount(
        "tmpfs", "/tmp/data", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")
    )
    assert [h.hook_name for h in spec.edits.hooks] == ["createContainer", "startContainer"]


def test_minimal_example_json(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "minimal.json", MINIMAL_EXAMPLE))
    assert spec.devices["myDevice"].device_nodes == [DeviceNode(path="/dev/card1")]
    assert spec.edits.is_empty()


def test_tutorial_example_yaml(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "tutorial.yaml", TUTORIAL_YAML))
    assert spec.kind == "tutorial.cdi.cncf.io/sensor"
    assert sorted(spec.devices) == ["read-only", "read-write"]
    assert spec.devices["read-only"].device_nodes[0].file_mode == 0o444
    hook = spec.edits.hooks[0]
    assert hook == Hook("createRuntime", "/usr/local/bin/cdi-tutorial-hook.sh",
                        ("cdi-tutorial-hook.sh", "--device", "tutorial-sensor"))  # fmt: skip
    assert spec.edits.mounts[0].options == ("ro", "nosuid", "nodev", "bind")


def test_yml_extension_and_go_style_field_case(tmp_path: Path) -> None:
    # SPEC.md spells additionalGIDs; Go's decoder matches it to additionalGids.
    text = (
        'cdiVersion: v0.7.0\nkind: a.com/b\ndevices:\n- name: "0"\n  containerEdits: {additionalGIDs: [5]}\n'
    )
    spec = load_spec(write(tmp_path / "x.yml", text))
    assert spec.devices["0"].additional_gids == [5]


def edit_spec(edits: dict[str, Any], version: str = "1.1.0") -> dict[str, Any]:
    return {"cdiVersion": version, "kind": "v.com/c", "devices": [{"name": "d", "containerEdits": edits}]}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (simple_spec("v.com/c", {"d": ["A=1"]}, version="0.9.0"), "unsupported cdiVersion"),
        ({**simple_spec("v.com/c", {"d": ["A=1"]}), "extra": 1}, "unknown field 'extra'"),
        (simple_spec("vendor.com", {"d": ["A=1"]}), "not vendor/class"),
        (simple_spec("1v.com/c", {"d": ["A=1"]}), "invalid vendor"),
        (simple_spec("v.com/c/d", {"d": ["A=1"]}), "invalid class"),
        (simple_spec("v.com/" + "c" * 64, {"d": ["A=1"]}), "longer than 63"),
        (simple_spec("v.com/c", {"-d": ["A=1"]}), "invalid device name"),
        (simple_spec("v.com/c", {}), "at least one device"),
        (simple_spec("v.com/c", {"d": []}), "empty containerEdits"),
        (
            {
                **simple_spec("v.com/c", {"d": ["A=1"]}),
                "devices": [{"name": "d", "containerEdits": {"env": ["A=1"]}}] * 2,
            },
            "defined twice",
        ),
        # Features newer than the declared version.
        (simple_spec("v.com/c.x", {"d": ["A=1"]}, version="0.5.0"), "needs at least 0.6.0"),
        (simple_spec("v.com/c", {"0d": ["A=1"]}, version="0.4.0"), "needs at least 0.5.0"),
        (edit_spec({"additionalGids": [1]}, "0.6.0"), "needs at least 0.7.0"),
        (
            edit_spec({"netDevices": [{"hostInterfaceName": "eth1", "name": "net1"}]}, "1.0.0"),
            "at least 1.1.0",
        ),
        (
            edit_spec({"mounts": [{"hostPath": "t", "containerPath": "/t", "type": "tmpfs"}]}, "0.3.0"),
            "0.4.0",
        ),
        # Edits.
        (edit_spec({"env": ["=x"]}), "not NAME=VALUE"),
        (edit_spec({"deviceNodes": [{"path": "dev/x"}]}), "not an absolute path"),
        (edit_spec({"deviceNodes": [{"path": "/dev/x", "type": "x"}]}), "invalid type"),
        (edit_spec({"deviceNodes": [{"path": "/dev/x", "permissions": "rwx"}]}), "invalid permissions"),
        (edit_spec({"deviceNodes": [{"path": "/dev/x", "major": "1"}]}), "major: not an integer"),
        (edit_spec({"deviceNodes": [{"path": "/dev/x", "uid": -1}]}), "uid: not an integer"),
        (
            edit_spec({"mounts": [{"hostPath": "lib", "containerPath": "/lib", "options": ["bind"]}]}),
            "hostPath",
        ),
        (edit_spec({"mounts": [{"hostPath": "/lib", "containerPath": "lib"}]}), "containerPath"),
        (edit_spec({"hooks": [{"hookName": "prestop", "path": "/bin/h"}]}), "invalid hookName"),
        (edit_spec({"hooks": [{"hookName": "poststop", "path": "h"}]}), "not an absolute path"),
        (edit_spec({"hooks": [{"hookName": "poststop", "path": "/h", "timeout": 0}]}), "timeout"),
        (edit_spec({"additionalGids": [True]}), "not an integer"),
        (edit_spec({"intelRdt": {"closID": ".."}}), "closID"),
        (
            edit_spec(
                {
                    "netDevices": [
                        {"hostInterfaceName": "a", "name": "x"},
                        {"hostInterfaceName": "b", "name": "x"},
                    ]
                }
            ),
            "duplicate name",
        ),
    ],
)
def test_invalid_spec_files(tmp_path: Path, spec: dict[str, Any], reason: str) -> None:
    path = write(tmp_path / "bad.json", spec)
    with pytest.raises(InvalidArgument, match=reason) as e:
        load_spec(path)
    assert str(path) in e.value.message


def test_syntax_error_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"bad\.json"):
        load_spec(write(tmp_path / "bad.json", "{"))
    with pytest.raises(InvalidArgument, match="no spec data"):
        load_spec(write(tmp_path / "empty.yaml", ""))


# -- names --------------------------------------------------------------------------------


def test_parse_qualified_name() -> None:
    assert parse_qualified_name("nvidia.com/gpu=0") == ("nvidia.com", "gpu", "0")
    assert parse_qualified_name("v.com/c.x=MIG-1:2") == ("v.com", "c.x", "MIG-1:2")


@pytest.mark.parametrize(
    "name",
    [
        "gpu0",
        "/dev/nvidia0",
        "nvidia.com/gpu",
        "nvidia.com=0",
        "nvidia.com/=0",
        "/gpu=0",
        "nvidia.com/gpu=",
        "1nvidia.com/gpu=0",
        "nvidia.com/gpu-=0",
        "nvidia.com/g/pu=0",
        "nvidia.com/gpu=-0",
        "nvidia.com/gpu=a b",
    ],
)
def test_malformed_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_qualified_name(name)
    assert repr(name) in e.value.message
    with pytest.raises(InvalidArgument, match="CDI device"):
        CDIRegistry([tmp_path]).resolve([name])


def test_annotation_devices() -> None:
    annotations = {
        "cdi.k8s.io/b": "v.com/c=x,v.com/c=y",
        "cdi.k8s.io/a": "v.com/c=z",
        "other/key": "not a device",
    }
    assert annotation_devices(annotations) == ["v.com/c=z", "v.com/c=x", "v.com/c=y"]
    assert requested_devices(["v.com/c=x", "v.com/c=w"], annotations) == [
        "v.com/c=x",
        "v.com/c=w",
        "v.com/c=z",
        "v.com/c=y",
    ]
    with pytest.raises(InvalidArgument, match=r"annotation cdi\.k8s\.io/bad.*'gpu0'"):
        annotation_devices({"cdi.k8s.io/bad": "v.com/c=x,gpu0"})


# -- the registry -------------------------------------------------------------------------


def test_resolve_merges_spec_and_device_edits_once_per_spec(tmp_path: Path) -> None:
    spec = simple_spec("v.com/c", {"a": ["A=1"], "b": ["B=1"]})
    spec["containerEdits"] = {"env": ["SPEC=1"]}
    write(tmp_path / "v.json", spec)
    write(tmp_path / "w.yaml", simple_spec("w.com/c", {"a": ["W=1"]}))
    registry = CDIRegistry([tmp_path])
    assert registry.devices() == ["v.com/c=a", "v.com/c=b", "w.com/c=a"]
    edits = registry.resolve(["v.com/c=b", "w.com/c=a", "v.com/c=a", "v.com/c=b"])
    assert edits.env == ["SPEC=1", "B=1", "W=1", "A=1"]
    assert registry.resolve([]) == ContainerEdits()


def test_unknown_device_is_named(tmp_path: Path) -> None:
    write(tmp_path / "v.json", simple_spec("v.com/c", {"a": ["A=1"]}))
    registry = CDIRegistry([tmp_path, tmp_path / "missing"])
    with pytest.raises(NotFound) as e:
        registry.resolve(["v.com/c=a", "v.com/c=nope"])
    assert e.value.message == "CDI device v.com/c=nope is unknown"
    with pytest.raises(NotFound, match=r"CDI device x\.com/c=a is unknown; CDI device v\.com/c=b is unknown"):
        registry.resolve(["x.com/c=a", "v.com/c=b"])


def test_later_directories_take_priority(tmp_path: Path) -> None:
    static, dynamic = tmp_path / "etc", tmp_path / "run"
    write(static / "v.json", simple_spec("v.com/c", {"a": ["FROM=etc"], "b": ["B=etc"]}))
    write(dynamic / "v.yaml", simple_spec("v.com/c", {"a": ["FROM=run"]}))
    registry = CDIRegistry([static, dynamic])
    assert registry.resolve(["v.com/c=a"]).env == ["FROM=run"]
    assert registry.resolve(["v.com/c=b"]).env == ["B=etc"]
    assert CDIRegistry([dynamic, static]).resolve(["v.com/c=a"]).env == ["FROM=etc"]
    assert registry.errors() == {}


def test_equal_priority_conflict_resolves_to_neither(tmp_path: Path) -> None:
    static, dynamic = tmp_path / "etc", tmp_path / "run"
    write(static / "one.json", simple_spec("v.com/c", {"a": ["ONE=1"], "b": ["B=1"]}))
    write(static / "two.json", simple_spec("v.com/c", {"a": ["TWO=1"]}))
    registry = CDIRegistry([static, dynamic])
    with pytest.raises(NotFound, match=r"c=a is unknown: it is defined at equal priority in .*one\.json"):
        registry.resolve(["v.com/c=a"])
    assert registry.resolve(["v.com/c=b"]).env == ["B=1"]
    assert set(registry.errors()) == {str(static / "one.json"), str(static / "two.json")}
    # A higher-priority directory settles it.
    write(dynamic / "three.json", simple_spec("v.com/c", {"a": ["THREE=1"]}))
    assert registry.resolve(["v.com/c=a"]).env == ["THREE=1"]


def test_broken_file_does_not_hide_others_and_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "good.json", simple_spec("v.com/c", {"a": ["A=1"]}))
    write(tmp_path / "bad.json", simple_spec("v.com/c", {"b": ["B=1"]}, version="7.0.0"))
    write(tmp_path / "other.json", simple_spec("o.com/c", {"b": ["no equals sign"]}))
    registry = CDIRegistry([tmp_path])
    assert registry.resolve(["v.com/c=a"]).env == ["A=1"]
    errors = registry.errors()
    assert set(errors) == {str(tmp_path / "bad.json"), str(tmp_path / "other.json")}
    with pytest.raises(NotFound) as e:
        registry.resolve(["v.com/c=b"])
    message = e.value.message
    assert message.startswith("CDI device v.com/c=b is unknown (spec files that failed to load: ")
    assert "bad.json: unsupported cdiVersion '7.0.0'" in message
    assert "other.json" not in message  # another kind's file is not blamed
    # A file too broken to tell its kind may be where the device was.
    write(tmp_path / "garbage.yaml", "devices: [")
    with pytest.raises(NotFound, match=r"garbage\.yaml"):
        registry.resolve(["v.com/c=b"])


def test_new_and_changed_files_are_seen(tmp_path: Path) -> None:
    registry = CDIRegistry([tmp_path])
    with pytest.raises(NotFound):
        registry.resolve(["v.com/c=a"])
    path = write(tmp_path / "v.json", simple_spec("v.com/c", {"a": ["A=1"]}))
    assert registry.resolve(["v.com/c=a"]).env == ["A=1"]
    write(tmp_path / "v.json", simple_spec("v.com/c", {"a": ["A=22"]}))
    assert registry.resolve(["v.com/c=a"]).env == ["A=22"]
    path.unlink()
    with pytest.raises(NotFound):
        registry.resolve(["v.com/c=a"])
    (tmp_path / "notes.txt").write_text("not a spec")
    registry.refresh()
    assert registry.devices() == [] and registry.errors() == {}


def test_unsupported_edits_are_refused_by_name(tmp_path: Path) -> None:
    write(tmp_path / "rdt.json", edit_spec({"intelRdt": {"closID": "gold"}}))
    spec = edit_spec({"env": ["A=1"]})
    spec["kind"] = "n.com/c"
    spec["containerEdits"] = {"netDevices": [{"hostInterfaceName": "eth1", "name": "net1"}]}
    write(tmp_path / "net.json", spec)
    registry = CDIRegistry([tmp_path])
    with pytest.raises(InvalidArgument, match=r"CDI device v.com/c=d needs intelRdt, which crib does not"):
        registry.resolve(["v.com/c=d"])
    with pytest.raises(InvalidArgument, match=r"CDI device n.com/c=d needs netDevices"):
        registry.resolve(["n.com/c=d"])
    with pytest.raises(InvalidArgument, match="netDevices"):
        apply_edits({}, ContainerEdits(net_devices=[{"hostInterfaceName": "eth1", "name": "net1"}]))
    with pytest.raises(InvalidArgument, match="intelRdt"):
        apply_edits({}, ContainerEdits(intel_rdt={"closID": "gold"}))


# -- applying edits -----------------------------------------------------------------------


def test_apply_edits(tmp_path: Path) -> None:
    null = os.stat("/dev/null")
    write(
        tmp_path / "test.yaml",
        {
            "cdiVersion": "0.7.0",
            "kind": "crib.test/dev",
            "containerEdits": {
                "env": ["FOO=cdi", "VENDOR=1"],
                "mounts": [
                    {
                        "hostPath": "/usr/lib/libv.so",
                        "containerPath": "/usr/lib/x/libv.so",
                        "options": ["ro", "rbind"],
                    },
                    {"hostPath": "tmpfs", "containerPath": "/data", "type": "tmpfs"},
                    {
                        "hostPath": "/srv/new-hosts",
                        "containerPath": "/etc/hosts",
                        "type": "bind",
                        "options": ["ro"],
                    },
                ],
                "hooks": [
                    {"hookName": "createRuntime", "path": "/usr/bin/h", "args": ["h", "x"], "timeout": 5}
                ],
            },
            "devices": [
                {
                    "name": "null",
                    "containerEdits": {
                        "deviceNodes": [
                            {"path": "/dev/cdi-test", "hostPath": "/dev/null", "permissions": "rw"},
                            {
                                "path": "/dev/fixed",
                                "type": "b",
                                "major": 259,
                                "minor": 7,
                                "fileMode": 0o600,
                                "uid": 5,
                                "permissions": "none",
                            },
                        ],
                        "additionalGids": [0, 44, 44, 45],
                        "hooks": [{"hookName": "poststop", "path": "/usr/bin/cleanup", "env": ["X=1"]}],
                    },
                }
            ],
        },
    )
    spec = minimal_oci_spec()
    spec["linux"]["devices"] = [{"path": "/dev/cdi-test", "type": "c", "major": 9, "minor": 9}]
    apply_edits(spec, CDIRegistry([tmp_path]).resolve(["crib.test/dev=null"]))

    assert spec["process"]["env"] == ["PATH=/bin", "FOO=cdi", "VENDOR=1"]
    assert spec["process"]["user"]["additionalGids"] == [0, 44, 45]
    assert spec["linux"]["devices"] == [
        {
            "path": "/dev/cdi-test",
            "type": "c",
            "major": 1,
            "minor": 3,
            "fileMode": stat.S_IMODE(null.st_mode),
        },
        {"path": "/dev/fixed", "type": "b", "major": 259, "minor": 7, "fileMode": 0o600, "uid": 5},
    ]
    assert os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert spec["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": True, "type": "b", "major": 259, "minor": 7, "access": ""},
    ]
    # The CDI mount replaces crib's /etc/hosts; all are sorted by depth, stably.
    assert [(m["destination"], m["source"]) for m in spec["mounts"]] == [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/data", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/etc/hosts", "/srv/new-hosts"),
        ("/usr/lib/x/libv.so", "/usr/lib/libv.so"),
    ]
    assert spec["mounts"][2] == {"destination": "/data", "source": "tmpfs", "type": "tmpfs"}
    assert spec["mounts"][5]["options"] == ["ro", "rbind"]
    assert spec["hooks"] == {
        "createRuntime": [{"path": "/usr/bin/h", "args": ["h", "x"], "timeout": 5}],
        "poststop": [{"path": "/usr/bin/cleanup", "env": ["X=1"]}],
    }


def test_device_owner_defaults_to_the_container_user_and_pipes_get_no_cgroup_rule() -> None:
    spec = minimal_oci_spec()
    spec["process"]["user"].update(uid=1000, gid=2000)
    edits = ContainerEdits(
        device_nodes=[
            DeviceNode(path="/dev/cdi-test", host_path="/dev/null", gid=7),
            DeviceNode("/dev/p", type="p"),
        ]
    )
    apply_edits(spec, edits)
    assert spec["linux"]["devices"][0]["uid"] == 1000 and spec["linux"]["devices"][0]["gid"] == 7
    assert spec["linux"]["devices"][1] == {"path": "/dev/p", "type": "p", "major": 0, "minor": 0, "uid": 1000,
                                           "gid": 2000}  # fmt: skip
    assert len(spec["linux"]["resources"]["devices"]) == 2


def test_host_device_problems(tmp_path: Path) -> None:
    spec = minimal_oci_spec()
    before = json.dumps(spec)
    missing = ContainerEdits(env=["A=1"], device_nodes=[DeviceNode(path="/dev/cdi-missing-device")])
    with pytest.raises(FailedPrecondition, match="/dev/cdi-missing-device"):
        apply_edits(spec, missing)
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(FailedPrecondition, match="not a device node"):
        apply_edits(spec, ContainerEdits(device_nodes=[DeviceNode(path="/dev/x", host_path=str(regular))]))
    with pytest.raises(FailedPrecondition, match="type b but host device /dev/null is of type c"):
        apply_edits(spec, ContainerEdits(device_nodes=[DeviceNode(path="/dev/null", type="b")]))
    assert json.dumps(spec) == before  # nothing was half-applied


def test_user_namespace_bind_mounts_are_idmapped() -> None:
    spec = {"linux": {"namespaces": [{"type": "user"}]}}
    edits = ContainerEdits(
        mounts=[
            Mount("/a", "/a", options=("rbind",)),
            Mount("/b", "/b", type="bind"),
            Mount("/c", "/c", options=("bind", "idmap")),
            Mount("tmpfs", "/t", type="tmpfs"),
        ]
    )
    apply_edits(spec, edits)
    assert [m.get("options") for m in spec["mounts"]] == [
        ["rbind", "ridmap"],
        ["idmap"],
        ["bind", "idmap"],
        None,
    ]
