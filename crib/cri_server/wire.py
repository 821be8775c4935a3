"""Building list replies from cached, already serialized items.

PLEG lists every pod and container every second; the items rarely change
between two lists. Each item's serialized form is cached on the record, keyed
by what can change (its state), and a reply is the concatenation of its
items, each prefixed with the repeated field's tag and length: the protobuf
wire format of `repeated Item items = 1`.
"""

from __future__ import annotations

from collections.abc import Iterable


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def repeated_field(field_number: int, items: Iterable[bytes]) -> bytes:
    tag = varint(field_number << 3 | 2)  # wire type 2: length-delimited
    return b"".join(tag + varint(len(item)) + item for item in items)
