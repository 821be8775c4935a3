"""Index: objects by ID or unique prefix, reserved names, and objects grouped by a key."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from crib.store.index import Index


@dataclass
class Member:
    id: str
    pod: str


def test_members_are_found_by_their_group_in_the_order_added() -> None:
    index: Index[Member] = Index("container", group=lambda m: m.pod)
    for m in (Member("a1", "p"), Member("b1", "q"), Member("a2", "p")):
        index.add(m.id, m)
    assert [m.id for m in index.grouped("p")] == ["a1", "a2"]
    assert [m.id for m in index.grouped("q")] == ["b1"]
    assert index.grouped("none") == []
    index.drop("a1")
    index.drop("a1")  # twice: nothing happens
    assert [m.id for m in index.grouped("p")] == ["a2"]
    index.drop("b1")
    assert index.grouped("q") == [] and "q" not in index._groups  # no empty group kept


def test_an_index_without_groups_has_none() -> None:
    index: Index[Member] = Index("pod sandbox")
    index.add("a", Member("a", "p"))
    assert index.grouped("p") == []


ops = st.lists(
    st.tuples(st.booleans(), st.sampled_from("abcdef"), st.sampled_from("xyz")),
    max_size=40,
)


@given(ops)
def test_groups_always_match_a_scan_of_all(steps: list[tuple[bool, str, str]]) -> None:
    index: Index[Member] = Index("container", group=lambda m: m.pod)
    for add, object_id, pod in steps:
        if add:
            index.add(object_id, Member(object_id, pod))  # a re-add may move it to another group
        else:
            index.drop(object_id)
    for pod in "xyz":
        # The same members; their order is the group's own (a container never changes pod).
        assert sorted(m.id for m in index.grouped(pod)) == sorted(m.id for m in index if m.pod == pod)
