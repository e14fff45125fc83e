"""AuthFilter (runtime/auth_filter.py): the filter forms an authorization handler may return,
normalised to ORed containment documents, and the ones refused (fail closed)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.auth_filter import AuthFilter, AuthFilterError


@pytest.mark.parametrize(("raw", "alternatives"), [
    ({}, ({},)),
    ({"owner": "alice"}, ({"owner": "alice"},)),
    ({"owner": {"$eq": "alice"}, "org": 7}, ({"owner": "alice", "org": 7},)),
    ({"tags": {"$contains": "x"}}, ({"tags": ["x"]},)),
    ({"tags": {"$contains": ["x", "y"]}}, ({"tags": ["x", "y"]},)),
    ({"$or": [{"owner": "a"}, {"shared": {"$contains": "a"}}]},
     ({"owner": "a"}, {"shared": ["a"]})),
    ({"org": 1, "$or": [{"owner": "a"}, {"owner": "b"}]},
     ({"org": 1, "owner": "a"}, {"org": 1, "owner": "b"})),
    ({"$and": [{"owner": "a"}, {"owner": "b"}]}, ()),  # one key, two values: nothing
    ({"$and": [{"t": {"$contains": "x"}}, {"t": {"$contains": "y"}}]}, ({"t": ["x", "y"]},)),
])
def test_forms_normalise(raw: dict[str, Any], alternatives: tuple[dict[str, Any], ...]) -> None:
    assert AuthFilter.parse(raw).alternatives == alternatives


def test_matching_follows_containment() -> None:
    owner = AuthFilter.parse({"owner": "alice"})
    assert owner.matches({"owner": "alice", "x": 1})
    assert not owner.matches({"owner": "bob"}) and not owner.matches({}) and not owner.matches(None)
    assert not AuthFilter.parse({"n": 1}).matches({"n": True})  # JSON types stay apart
    shared = AuthFilter.parse({"$or": [{"owner": "bob"},
                                       {"participants": {"$contains": "bob"}}]})
    assert shared.matches({"owner": "alice", "participants": ["carol", "bob"]})
    assert not shared.matches({"owner": "alice", "participants": "bob"})  # not a list
    assert not AuthFilter.parse({"$and": [{"o": "a"}, {"o": "b"}]}).matches({"o": "a"})
    assert AuthFilter.parse({}).matches({})


@pytest.mark.parametrize("raw", [
    {"owner": {"$ne": "x"}}, {"owner": {"$in": ["x"]}}, {"$not": {"owner": "x"}},
    {"owner": {"$eq": 1, "$contains": 2}}, {"$or": [{"a": 1}]}, {"$or": {"a": 1}},
    {"$and": [{"a": 1}, "b"]},
    {"$or": [{"$or": [{"$or": [{"$or": [{"a": 1}, {"a": 2}]}, {"b": 1}]}, {"c": 1}]}, {"d": 1}]},
])
def test_what_cannot_be_enforced_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(AuthFilterError):
        AuthFilter.parse(raw)
