"""Cached list replies are byte-for-byte what protobuf itself would send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crib.cri_server import wire
from crib.proto.cri import api_pb2


@given(st.integers(min_value=0, max_value=2**63))
def test_varint_decodes_back(n: int) -> None:
    encoded = wire.varint(n)
    value, shift = 0, 0
    for byte in encoded:
        value |= (byte & 0x7F) << shift
        shift += 7
    assert value == n
    assert all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80


@given(st.lists(st.text(max_size=300), max_size=20))
def test_repeated_items_equal_protobufs_own_encoding(ids: list[str]) -> None:
    items = [api_pb2.Container(id=i, labels={"k": i}) for i in ids]
    expected = api_pb2.ListContainersResponse(containers=items).SerializeToString()
    assert wire.repeated_field(1, (i.SerializeToString() for i in items)) == expected
    pods = [api_pb2.PodSandbox(id=i, annotations={"a": i * 3}) for i in ids]
    expected = api_pb2.ListPodSandboxResponse(items=pods).SerializeToString()
    assert wire.repeated_field(1, (p.SerializeToString() for p in pods)) == expected


@given(st.integers(min_value=0, max_value=2**63 - 1), st.text(max_size=300))
def test_framed_fields_equal_protobufs_own_encoding(timestamp: int, name: str) -> None:
    # The status replies are framed by hand: field 1 a message, 4 an int64 (left out at 0).
    status = api_pb2.PodSandboxStatus(id=name, metadata=api_pb2.PodSandboxMetadata(name=name))
    expected = api_pb2.PodSandboxStatusResponse(status=status, timestamp=timestamp).SerializeToString()
    assert wire.field(1, status.SerializeToString()) + wire.int_field(4, timestamp) == expected
    image = api_pb2.Image(id=name, repo_tags=[name, name])
    expected = api_pb2.ImageStatusResponse(image=image).SerializeToString()
    assert wire.field(1, image.SerializeToString()) == expected
