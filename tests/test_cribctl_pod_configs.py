"""cribctl's pod configs, read as crictl runp reads them (sigs.k8s.io/yaml, encoding/json).

Expected values marked "Go" were produced by Go 1.27 with cri-tools 1.36's
vendored packages (go-units, sigs.k8s.io/yaml over go-yaml v2, encoding/json,
strconv, time) or by crictl 1.36 itself, and are pasted here: these tests need
no Go toolchain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crib.cribctl.cri_config import ConfigError, load_pod_config, parse_pod_config
from crib.proto.cri import api_pb2
from tests.cribctl_samples import FULL_CONFIG, FULL_YAML

ID_A = "d82b52a133b069c0134c03a4b2a3543ce741369c90b29ab4a28aecc82ba90315"
ID_B = "09db77a116fb118d46bc75ffaaf9cf5bef5a17a3d798929e04e202265855c47d"
ID_C = "c4ea4ad0bde5cb4dc1075c70853d6d563e3785295b0b8c2c701c83b3bf40abe4"
CREATED = 1795845934228241862  # 2026-11-28T06:05:34.228241862Z
JSON_ERR = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "


pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- pod configs ---------------------------------------------------------------------------------


def test_yaml_config_with_crictls_field_names_and_scalars() -> None:
    assert parse_pod_config(FULL_YAML) == FULL_CONFIG


def test_json_config_including_tab_indentation() -> None:
    doc = {
        "metadata": {"name": "web", "namespace": "e2e", "uid": "u-1", "attempt": 2},
        "hostname": "web-host",
        "log_directory": "/var/log/pods/web",
        "dns_config": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
        "port_mappings": [{"protocol": 1, "container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1"}],
        "labels": {"app": "web", "replicas": 3, "canary": True},
        "annotations": {"ratio": 1.5e6},
        "linux": {
            "cgroup_parent": "/kubepods",
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0"},
            "security_context": {
                "namespace_options": {"network": 0, "pid": 1, "ipc": 2},
                "run_as_user": {"value": 1000},
                "supplemental_groups": [1, 2],
            },
        },
    }
    assert parse_pod_config(json.dumps(doc)) == FULL_CONFIG
    # go-yaml takes tabs between JSON tokens, which PyYAML alone would refuse.
    assert parse_pod_config(json.dumps(doc, indent="\t").encode()) == FULL_CONFIG


def test_field_names_snake_case_any_case_and_camel_case() -> None:
    # crictl: the proto (snake_case) names, case-insensitively (encoding/json).
    config = parse_pod_config("METADATA: {Name: a, NAMESPACE: b}\nPort_Mappings: [{Container_Port: 80}]\n")
    assert config.metadata.name == "a" and config.port_mappings[0].container_port == 80
    # cribctl's extension: protojson's lowerCamelCase names (crictl silently ignores them)...
    config = parse_pod_config("logDirectory: /x\nportMappings: [{containerPort: 81, hostPort: 8081}]\n")
    assert config.log_directory == "/x" and config.port_mappings[0].host_port == 8081
    assert parse_pod_config('{"dnsConfig": {"servers": [1]}}').dns_config.servers == ["1"]
    # ...unless the snake_case name is there too: then the file means what it means to crictl.
    config = parse_pod_config("portMappings: [{container_port: 1}]\nport_mappings: [{container_port: 2}]\n")
    assert [p.container_port for p in config.port_mappings] == [2]
    # Unknown keys are ignored.
    assert parse_pod_config("bogus: 1\nmetadata: {name: a, flavour: x}\n").metadata.name == "a"


def test_enum_names_are_an_extension_numbers_are_crictls() -> None:
    config = parse_pod_config("linux: {security_context: {namespace_options: {network: NODE, ipc: 2}}}")
    options = config.linux.security_context.namespace_options
    assert (options.network, options.ipc) == (api_pb2.NODE, api_pb2.NODE)
    assert parse_pod_config("port_mappings: [{protocol: SCTP}]").port_mappings[0].protocol == api_pb2.SCTP


def test_repeated_keys_merge_as_encoding_json_does() -> None:
    # Go: the same text through sigs.k8s.io/yaml into crictl's struct, printed with protojson.
    text = (
        "metadata: {name: a, namespace: b}\nMetadata: {uid: u, name: z}\n"
        'Labels: {a: "1", b: "2"}\nlabels: {b: "3"}\n'
        "Port_Mappings: [{container_port: 1, host_port: 2}, {container_port: 3}]\n"
        "port_mappings: [{host_port: 9}]\nhostname: null\n"
        "linux: {security_context: {namespace_options: {network: 2, pid: 7}, run_as_user: {value: 5}}, "
        "sysctls: {a: null}}\ndns_config: {servers: [null, x]}\nwindows: null\nannotations: {}\n"
    )
    assert parse_pod_config(text) == api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="a", uid="u", namespace="b"),
        dns_config=api_pb2.DNSConfig(servers=["", "x"]),
        port_mappings=[api_pb2.PortMapping(container_port=1, host_port=9)],
        labels={"a": "1", "b": "3"},
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE, pid=7),  # type: ignore[arg-type]
                run_as_user=api_pb2.Int64Value(value=5),
            ),
            sysctls={"a": ""},
        ),
    )


def test_go_yaml_v2_scalars_for_strings() -> None:
    # Go: sigs.k8s.io/yaml into crictl's struct.
    config = parse_pod_config(
        "metadata: {name: 1.5, namespace: 1e6, uid: 0x1F, attempt: 08}\nhostname: y\n"
        "labels: {a: 1_000, b: 017, c: 0o17, d: 1e999, e: 123456789012, f: 12345678901234567890123, g: .5,"
        " h: -0b11, i: 2001-12-14, j: +.INF, k: 1234567, l: 0.1, m: 1:30, n: 08.5}\n"
    )
    assert config.metadata == api_pb2.PodSandboxMetadata(name="1.5", uid="31", namespace="1e+06", attempt=8)
    assert config.hostname == "true"
    assert dict(config.labels) == {
        "a": "1000", "b": "15", "c": "15", "d": "1e999", "e": "123456789012", "f": "1.2345679e+22",
        "false": "8.5",  # the key n is a boolean too
        "g": "0.5", "h": "-3", "i": "2001-12-14", "j": "+Inf", "k": "1234567", "l": "0.1", "m": "1:30",
    }  # fmt: skip


def test_anchors_merge_keys_and_only_the_first_document() -> None:
    config = parse_pod_config(
        "base: &b {name: a, namespace: b}\nmetadata:\n  <<: *b\n  uid: x\n---\nhostname: h\n"
    )
    assert config == api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="a", namespace="b", uid="x")
    )
    for empty in ("", "---\n", "null", "# just a comment\n"):
        assert parse_pod_config(empty) == api_pb2.PodSandboxConfig()


# Go (crictl 1.36 runp and sigs.k8s.io/yaml): the error after "load podSandboxConfig: ".
CONFIG_ERRORS = [
    ("hostname: [1]", JSON_ERR + "array into Go struct field PodSandboxConfig.hostname of type string"),
    ("HOSTNAME: [1]", JSON_ERR + "array into Go struct field PodSandboxConfig.hostname of type string"),
    ("linux: {security_context: {namespace_options: {network: HOST}}}",
     JSON_ERR + "string into Go struct field NamespaceOption.linux.security_context.namespace_options.network"
     " of type v1.NamespaceMode"),
    ("labels: {a: [1]}", JSON_ERR + "array into Go struct field PodSandboxConfig.labels of type string"),
    ("port_mappings: [{container_port: 1.5}]",
     JSON_ERR + "number 1.5 into Go struct field PortMapping.port_mappings.container_port of type int32"),
    ("port_mappings: [{container_port: 99999999999}]",
     JSON_ERR + "number 99999999999 into Go struct field "
     "PortMapping.port_mappings.container_port of type int32"),
    ("port_mappings: [{container_port: 1e21}]",
     JSON_ERR + "number 1e+21 into Go struct field PortMapping.port_mappings.container_port of type int32"),
    ('port_mappings: [{container_port: "80"}]',
     JSON_ERR + "string into Go struct field PortMapping.port_mappings.container_port of type int32"),
    ("port_mappings: [{protocol: true}]",
     JSON_ERR + "bool into Go struct field PortMapping.port_mappings.protocol of type v1.Protocol"),
    ("port_mappings: {a: 1}",
     JSON_ERR + "object into Go struct field PodSandboxConfig.port_mappings of type []*v1.PortMapping"),
    ("metadata: x", JSON_ERR + "string into Go struct field "
     "PodSandboxConfig.metadata of type v1.PodSandboxMetadata"),
    ("metadata: {attempt: -1}", JSON_ERR + "number -1 into Go struct field "
     "PodSandboxMetadata.metadata.attempt of type uint32"),
    ("dns_config: [1]", JSON_ERR + "array into Go struct field "
     "PodSandboxConfig.dns_config of type v1.DNSConfig"),
    ("DNS_Config: {servers: [x, [1]]}", JSON_ERR + "array into Go struct field "
     "DNSConfig.dns_config.servers of type string"),
    ("labels: 5", JSON_ERR + "number into Go struct field PodSandboxConfig.labels of type map[string]string"),
    ('linux: {security_context: {privileged: "yes"}}',
     JSON_ERR + "string into Go struct field "
     "LinuxSandboxSecurityContext.linux.security_context.privileged of type bool"),
    ("linux: {security_context: {run_as_user: 5}}",
     JSON_ERR + "number into Go struct field "
     "LinuxSandboxSecurityContext.linux.security_context.run_as_user of type v1.Int64Value"),
    ("linux: {resources: {cpu_period: 99999999999999999999}}",
     JSON_ERR + "number 100000000000000000000 into Go struct field "
     "LinuxContainerResources.linux.resources.cpu_period"
     " of type int64"),
    ("- a", JSON_ERR + "array into Go value of type v1.PodSandboxConfig"),
    ("x", JSON_ERR + "string into Go value of type v1.PodSandboxConfig"),
    # The first error in sorted key order wins.
    ('port_mappings: [{container_port: "80"}]\nhostname: [1]\n',
     JSON_ERR + "array into Go struct field PodSandboxConfig.hostname of type string"),
    ("port_mappings: [{host_port: .nan}]", "error converting YAML to JSON: json: unsupported value: NaN"),
    ("~: 1", "error converting YAML to JSON: unsupported map key of type: %!s(<nil>), key: <nil>, value: 1"),
    ("labels: {18446744073709551615: v}",
     "error converting YAML to JSON: unsupported map key of type: uint64, key: 0xffffffffffffffff,"
     ' value: "v"'),
    ('{"hostname": "a\\/b"}', "error converting YAML to JSON: yaml: found unknown escape character"),
    ('{"hostname": "\\ud83d\\ude00"}',
     "error converting YAML to JSON: yaml: found invalid Unicode character escape code"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "error"), CONFIG_ERRORS)
def test_config_errors_have_crictls_text(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_pod_config(text)
    assert str(exc.value) == error


def test_yaml_syntax_errors_keep_gos_form() -> None:
    # go-yaml words these its own way ("did not find expected ',' or '}'"): the form stays.
    with pytest.raises(ConfigError, match=r"^error converting YAML to JSON: yaml: line 1: "):
        parse_pod_config("metadata: {name: a, namespace: b, uid: c\n")
    with pytest.raises(ConfigError, match=r"^error converting YAML to JSON: yaml: \S"):
        parse_pod_config("a: b: c")


def test_load_pod_config(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("metadata: {name: a, namespace: b}\nlinux: {}\n")
    config, warnings = load_pod_config(str(path))
    assert len(config.metadata.uid) == 36  # a UUID, as crictl makes one
    assert warnings == ["cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver"]
    path.write_text("metadata: {name: a, namespace: b, uid: u}\nlinux: {cgroup_parent: /x}\n")
    assert load_pod_config(str(path))[1] == []
    for text, error in (
        ("", "metadata is not set"),
        ("hostname: x", "metadata is not set"),
        ("metadata: {name: a, uid: c, attempt: 3}",
         'name or namespace is not in metadata "name:\\"a\\" uid:\\"c\\" attempt:3"'),
    ):  # fmt: skip
        path.write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_pod_config(str(path))
        assert str(exc.value) == error
    with pytest.raises(ConfigError, match=f"^config at {tmp_path}/absent.json not found$"):
        load_pod_config(f"{tmp_path}/absent.json")
    with pytest.raises(ConfigError, match=f"^read {tmp_path}: is a directory$"):
        load_pod_config(str(tmp_path))
