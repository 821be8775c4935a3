"""Building replies from cached, already serialized items and statuses.

PLEG lists every pod and container every second; the items rarely change
between two lists. Each item's serialized form is cached on the record, keyed
by what can change (its state), and a reply is the concatenation of its
items, each prefixed with the repeated field's tag and length: the protobuf
wire format of `repeated Item items = 1`.

The status calls the kubelet makes after each relist (ContainerStatus,
PodSandboxStatus, ImageStatus) are served the same way: a status is cached
serialized with the values of every field it shows that can change, and made
again when one differs. A reply is its fields framed in field-number order, as
protobuf itself serializes a message, so it parses as the message it stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

# Items per message of a Stream* RPC: far below the kubelet's 16 MiB cap.
STREAM_CHUNK = 500

T = TypeVar("T")


def chunks(items: list[T], size: int = STREAM_CHUNK) -> Iterator[list[T]]:
    """The items of a Stream* reply, a message's worth at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    # Tags and most lengths fit one or two bytes, and every status reply frames a 9-byte
    # timestamp: each size its own path (a byte at a time costs a timestamp 1.8 µs, this 1.1).
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = []
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def repeated_field(field_number: int, items: Iterable[bytes]) -> bytes:
    tag = varint(field_number << 3 | 2)  # wire type 2: length-delimited
    return b"".join(tag + varint(len(item)) + item for item in items)


def field(field_number: int, data: bytes) -> bytes:
    """`data` (a serialized message or a string) as length-delimited field `field_number`."""
    return varint(field_number << 3 | 2) + varint(len(data)) + data


def int_field(field_number: int, value: int) -> bytes:
    """A non-negative integer field (wire type 0); proto3 leaves out a zero."""
    return varint(field_number << 3) + varint(value) if value else b""


class Stated(Protocol):
    """A record whose status is cached: (the values it was made from, serialized status)."""

    _status: tuple[tuple[Any, ...], bytes] | None


S = TypeVar("S", bound=Stated)


def status_bytes(record: S, key: tuple[Any, ...], build: Callable[[S], Message]) -> bytes:
    """The record's status, serialized, made again only when `key` differs from the one it was
    made with. `key` must hold every value the status shows that can change; it is taken
    before the status is built, so a change made meanwhile makes the next call build again."""
    cached = record._status
    if cached is None or cached[0] != key:
        cached = (key, build(record).SerializeToString())
        record._status = cached
    return cached[1]


class Listed(Protocol):
    """A pod or container record: its state, and its cached (state, serialized item)."""

    state: str
    _item: tuple[str, bytes] | None


R = TypeVar("R", bound=Listed)


def item_bytes(record: R, build: Callable[[R], Message]) -> bytes:
    """The record's list item framed as field 1 of the reply (tag, length, bytes), rebuilt
    only when its state changed: an unchanged item costs a reply one lookup and a copy."""
    cached = record._item
    if cached is None or cached[0] != record.state:
        item = build(record).SerializeToString()
        cached = (record.state, _ITEMS_TAG + varint(len(item)) + item)
        record._item = cached
    return cached[1]


def list_reply(
    records: list[R], list_filter: Any, keep: Callable[[R], bool], build: Callable[[R], Message]
) -> bytes:
    """A serialized List*Response whose field 1 is the items: those `keep` passes, or all
    when the filter is empty."""
    listed = records if not list_filter.ByteSize() else [r for r in records if keep(r)]
    # item_bytes inlined: a call per item was a third of a 110-pod relist's Python.
    parts = []
    for r in listed:
        cached = r._item
        parts.append(cached[1] if cached is not None and cached[0] == r.state else item_bytes(r, build))
    return b"".join(parts)


class ListCache:
    """The last unfiltered list reply and the generation it was made at: the kubelet relists
    every pod and container every second, and on a quiet node nothing has changed since."""

    def __init__(self) -> None:
        self._at: int | None = None
        self._reply = b""

    def reply(self, generation: int, make: Callable[[], bytes]) -> bytes:
        """The reply made before if `generation` (read before this call) has not moved since."""
        if self._at != generation:
            self._reply = make()
            self._at = generation
        return self._reply


_ITEMS_TAG = varint(1 << 3 | 2)  # field 1, wire type 2 (length-delimited)
