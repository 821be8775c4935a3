"""Objects by ID, found by the full ID or a unique prefix, and the names reserved for them.

Pod sandboxes and containers both work this way: the CRI lets a client name one
by a prefix of its ID (as crictl does), and a (name, namespace, attempt)
reservation keeps a second one of the same name from being made while the
first exists ("name is reserved").

An index may also group its objects by a key (containers by their pod): the kubelet asks
for a pod's containers with every PodSandboxStatus, and a scan of all of them grew with
the node (5 µs at 220 containers).

`LISTED` moves after every change a list reply can show (an object added to or dropped from
an index, a listed record's `state` written), so PLEG's relist of an unchanged node is the
reply made before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Generation:
    """A count that moves after each change: a reply made from what was there when the count
    was read is current while the count still reads the same. Moved under a lock (`+=` on an
    attribute is not atomic between threads, and a lost move would keep a stale reply)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def move(self) -> None:
        with self._lock:
            self.value += 1


LISTED = Generation()


class ListedState:
    """A record whose list item shows its `state`: every write of it moves LISTED, after the
    write, so a reply made after the count was read shows it or the count has moved."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "state":
            LISTED.move()


class Index(Generic[T]):
    def __init__(self, kind: str, group: Callable[[T], str] | None = None) -> None:
        self.kind = kind  # "pod sandbox", "container": for messages
        self.by_id: dict[str, T] = {}
        self.names: dict[str, str] = {}
        self._group = group
        self._groups: dict[str, dict[str, T]] = {}

    def __iter__(self) -> Iterator[T]:
        return iter(list(self.by_id.values()))

    def __len__(self) -> int:
        return len(self.by_id)

    def find(self, object_id: str) -> T | None:
        """By full ID or a unique ID prefix; None when absent or ambiguous."""
        if not object_id:
            return None
        if object_id in self.by_id:
            return self.by_id[object_id]
        matches = [o for i, o in self.by_id.items() if i.startswith(object_id)]
        return matches[0] if len(matches) == 1 else None

    def holder(self, name: str) -> str | None:
        """The ID the name is reserved for, if it is."""
        return self.names.get(name)

    def reserve(self, name: str, object_id: str) -> None:
        self.names[name] = object_id

    def release(self, name: str, object_id: str) -> None:
        """Free `name` if `object_id` still holds it."""
        if self.names.get(name) == object_id:
            del self.names[name]

    def release_all(self, object_id: str) -> None:
        for name, holder in list(self.names.items()):
            if holder == object_id:
                del self.names[name]

    def add(self, object_id: str, obj: T) -> None:
        old = self.by_id.get(object_id)
        if old is not None and self._group is not None and self._group(old) != self._group(obj):
            self._ungroup(object_id, old)
        self.by_id[object_id] = obj
        if self._group is not None:
            self._groups.setdefault(self._group(obj), {})[object_id] = obj
        LISTED.move()

    def drop(self, object_id: str) -> None:
        obj = self.by_id.pop(object_id, None)
        if obj is not None and self._group is not None:
            self._ungroup(object_id, obj)
        LISTED.move()

    def _ungroup(self, object_id: str, obj: T) -> None:
        assert self._group is not None
        key = self._group(obj)
        members = self._groups.get(key)
        if members is not None:
            members.pop(object_id, None)
            if not members:
                del self._groups[key]

    def grouped(self, key: str) -> list[T]:
        """The objects whose group key is `key`, in the order they joined the group."""
        return list(self._groups.get(key, {}).values())
