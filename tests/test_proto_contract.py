"""The CRI contract: crib's api.proto against a fresh generation and a published copy."""

from __future__ import annotations

import ast
import filecmp
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from crib.proto import generate
from crib.proto.cri import api_pb2

PROTO_DIR = Path(generate.REPO_ROOT) / "crib" / "proto" / "cri"
# An independently generated copy of the v1 CRI (cri-api of about 1.33).
PUBLISHED = "container-runtime-interface-api==2.0.1"
CACHE = Path(generate.REPO_ROOT) / ".cache" / "wheels"
# Changes cri-api made after the published copy was generated; each must still
# show, so this list cannot silently outlive them.
UPSTREAM_CHANGES_SINCE_PUBLISHED = {
    # cri-api d3d9c71 (v0.36): env values may carry binary data; same wire type.
    "KeyValue.value: type 12 != 9",
}


def _ours() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(fdp)
    return fdp


def test_generated_modules_match_a_fresh_generation(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert [str(p) for p in fresh] == [
        "crib/proto/cri/api_pb2.py",
        "crib/proto/cri/api_pb2.pyi",
        "crib/proto/cri/api_pb2_grpc.py",
        "crib/proto/crib/v1/crib_pb2.py",
        "crib/proto/crib/v1/crib_pb2.pyi",
        "crib/proto/crib/v1/crib_pb2_grpc.py",
    ]
    root = Path(generate.REPO_ROOT)
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, root / p, shallow=False)]
    assert not stale, f"{stale} differ from a fresh generation: run `python -m crib.proto.generate`"


def test_package_and_rpc_counts_are_those_of_cri_api_v0_36() -> None:
    fdp = _ours()
    assert fdp.package == "runtime.v1"
    services = {s.name: [m.name for m in s.method] for s in fdp.service}
    assert len(services["RuntimeService"]) == 35
    assert len(services["ImageService"]) == 6
    assert (PROTO_DIR / "CRI_API_VERSION").read_text().strip() == "v0.36.3"


def _published_descriptor() -> descriptor_pb2.FileDescriptorProto:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob("container_runtime_interface_api-2.0.1-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(CACHE),
                PUBLISHED,
            ],
            check=True,
            timeout=120,
        )
        wheels = list(CACHE.glob("container_runtime_interface_api-2.0.1-*.whl"))
    assert wheels, f"pip did not download {PUBLISHED}"
    with zipfile.ZipFile(wheels[0]) as whl:
        source = whl.read("cri_api/v1/api_pb2.py").decode()
    # Read the serialized descriptor without importing the module: it pins an
    # older protobuf runtime than crib's.
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            blob = ast.literal_eval(node.args[0])
            fdp = descriptor_pb2.FileDescriptorProto()
            fdp.ParseFromString(blob)
            return fdp
    raise AssertionError("no AddSerializedFile call in the published api_pb2.py")


def _messages(fdp: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            out[prefix + m.name] = m
            walk(prefix + m.name + ".", list(m.nested_type))

    walk("", list(fdp.message_type))
    return out


def _enums(fdp: descriptor_pb2.FileDescriptorProto) -> dict[str, dict[str, int]]:
    out = {e.name: {v.name: v.number for v in e.value} for e in fdp.enum_type}
    for name, m in _messages(fdp).items():
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = {v.name: v.number for v in e.value}
    return out


def test_contract_agrees_with_the_published_copy() -> None:
    ours, theirs = _ours(), _published_descriptor()
    assert theirs.package == ours.package == "runtime.v1"
    problems: list[str] = []

    our_services = {s.name: {m.name: m for m in s.method} for s in ours.service}
    compared_methods = 0
    for service in theirs.service:
        assert service.name in our_services, f"service {service.name} missing"
        for m in service.method:
            mine = our_services[service.name].get(m.name)
            if mine is None:
                problems.append(f"rpc {service.name}.{m.name} missing")
                continue
            compared_methods += 1
            for attr in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(m, attr) != getattr(mine, attr):
                    problems.append(f"rpc {service.name}.{m.name}: {attr} differs")

    our_msgs, their_msgs = _messages(ours), _messages(theirs)
    compared_fields = 0
    for name, theirs_m in their_msgs.items():
        if name not in our_msgs:
            # Dropped upstream since the published copy (none are expected).
            problems.append(f"message {name} missing")
            continue
        our_fields = {f.name: f for f in our_msgs[name].field}
        our_numbers = {f.number: f.name for f in our_msgs[name].field}
        for f in theirs_m.field:
            mine_f = our_fields.get(f.name)
            if mine_f is None:
                if f.number in our_numbers:
                    problems.append(f"{name}: field {f.number} is {our_numbers[f.number]!r}, not {f.name!r}")
                continue
            compared_fields += 1
            for attr in ("number", "type", "label", "type_name"):
                if getattr(f, attr) != getattr(mine_f, attr):
                    problems.append(f"{name}.{f.name}: {attr} {getattr(mine_f, attr)} != {getattr(f, attr)}")

    our_enums, their_enums = _enums(ours), _enums(theirs)
    for name, values in their_enums.items():
        if name not in our_enums:
            problems.append(f"enum {name} missing")
            continue
        for v, number in values.items():
            if our_enums[name].get(v, number) != number:
                problems.append(f"enum {name}.{v}: {our_enums[name][v]} != {number}")

    unexpected = sorted(set(problems) - UPSTREAM_CHANGES_SINCE_PUBLISHED)
    assert not unexpected, "\n".join(unexpected)
    assert set(problems) == UPSTREAM_CHANGES_SINCE_PUBLISHED
    # The published copy covers most of the contract; make sure it was compared.
    assert compared_methods >= 30
    assert compared_fields >= 500


@pytest.mark.parametrize("field", ["password", "auth", "identity_token", "registry_token"])
def test_auth_secrets_are_marked_for_redaction(field: str) -> None:
    f = api_pb2.AuthConfig.DESCRIPTOR.fields_by_name[field]
    assert f.GetOptions().debug_redact
