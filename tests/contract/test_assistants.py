"""The AssistantStore contract (runtime/assistants/protocol.py) on SQLite and PostgreSQL: CRUD,
versions (numbering, restore of every field, a failed change writes nothing), search (filters,
authorization filters, order, paging merged with in-memory rows), delete taking versions and
crons with it, and concurrent PATCHes getting distinct version numbers (PostgreSQL: two
stores on one database, as two processes)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import anyio
import pytest

from runtime.assistants.edit import AssistantChanges, new_record, patched
from runtime.assistants.types import AssistantRecord
from runtime.auth_filter import AuthFilter
from runtime.crons.types import Cron
from runtime.errors import (
    AssistantExists,
    AssistantNotFound,
    AssistantVersionNotFound,
    InvalidRequest,
)
from runtime.ids import now_iso, uuid7
from runtime.store.postgres import PostgresStore
from runtime.store.protocol import Store

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def record(graph_id: str = "g1", name: str = "Untitled", **changes: Any) -> AssistantRecord:
    made = new_record(str(uuid4()), graph_id, None, {"model": "m1"}, {"team": "a"}, name,
                      None)
    return made.replace(**changes) if changes else made


def cron_for(assistant_id: str) -> Cron:
    now = now_iso()
    return Cron(uuid7(), assistant_id, None, "", None, "@daily", None,
                {"assistant_id": assistant_id}, None, {}, "delete", True, now, now)


async def test_create_get_and_duplicates(store: Store) -> None:
    assistants = store.assistants
    made = await assistants.create_assistant(record(name="Tutor"))
    assert await assistants.get_assistant(made.assistant_id) == made
    assert made.version == 1 and made.config == {"configurable": {"model": "m1"}}
    with pytest.raises(AssistantExists):
        await assistants.create_assistant(record().replace(assistant_id=made.assistant_id))
    with pytest.raises(AssistantNotFound):
        await assistants.get_assistant(str(uuid4()))
    versions = await assistants.list_versions(made.assistant_id)
    assert [v.to_api() for v in versions] == [made.as_version().to_api()]


async def test_versions_append_and_restore_every_field(store: Store) -> None:
    assistants = store.assistants
    made = await assistants.create_assistant(record())
    v2 = await assistants.update_assistant(made.assistant_id, lambda a: patched(
        a, AssistantChanges(context={"model": "m2"}, metadata={"x": 1}, name="Two",
                            graph_id="g2", description="d2")))
    assert (v2.version, v2.graph_id, v2.context, v2.name) == (2, "g2", {"model": "m2"}, "Two")
    assert v2.metadata == {"team": "a", "x": 1} and v2.created_at == made.created_at
    v3 = await assistants.update_assistant(made.assistant_id,
                                           lambda a: patched(a, AssistantChanges()))
    assert v3.version == 3 and v3.context == v2.context

    def refuse(current: AssistantRecord) -> AssistantRecord:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await assistants.update_assistant(made.assistant_id, refuse)
    assert (await assistants.get_assistant(made.assistant_id)) == v3  # nothing written
    assert [v.version for v in await assistants.list_versions(made.assistant_id)] == [3, 2, 1]

    back = await assistants.set_version(made.assistant_id, 1)
    assert (back.version, back.graph_id, back.context, back.name, back.description) == (
        1, "g1", {"model": "m1"}, "Untitled", None)
    assert back.metadata == {"team": "a"} and back.config == made.config
    assert await assistants.get_assistant(made.assistant_id) == back
    v4 = await assistants.update_assistant(made.assistant_id, lambda a: patched(
        a, AssistantChanges(name="Four")))
    assert v4.version == 4 and v4.context == {"model": "m1"}  # built on the restored state
    with pytest.raises(AssistantVersionNotFound):
        await assistants.set_version(made.assistant_id, 99)
    with pytest.raises(AssistantNotFound):
        await assistants.set_version(str(uuid4()), 1)
    with pytest.raises(AssistantNotFound):
        await assistants.update_assistant(str(uuid4()), lambda a: a)

    page = await assistants.list_versions(made.assistant_id, limit=2, offset=1)
    assert [v.version for v in page] == [3, 2]
    tagged = await assistants.list_versions(made.assistant_id, metadata={"x": 1})
    assert [v.version for v in tagged] == [3, 2]
    with pytest.raises(AssistantNotFound):
        await assistants.list_versions(str(uuid4()))


async def test_search_filters_order_and_paging(store: Store) -> None:
    assistants = store.assistants
    made = []
    for i, (graph, name, meta) in enumerate([
            ("g1", "Alpha", {"team": "a", "tags": ["x", "y"]}), ("g1", "beta", {"team": "b"}),
            ("g2", "ALPHABET", {"team": "a", "n": 1}), ("g2", "Zed", {"owner": "bob"})]):
        made.append(await assistants.create_assistant(record(
            graph, name, metadata=meta, created_at=f"2026-01-0{i + 1}T00:00:00+00:00")))
    ids = [a.assistant_id for a in made]
    assert await assistants.count_assistants() == 4
    assert await assistants.count_assistants(graph_id="g2") == 2
    found = await assistants.search_assistants(name="alpha", sort_by="name", sort_order="asc")
    assert [a.name for a in found] == ["Alpha", "ALPHABET"]
    assert [a.assistant_id for a in await assistants.search_assistants(
        metadata={"tags": ["y"]})] == [ids[0]]
    assert [a.assistant_id for a in await assistants.search_assistants()] == ids[::-1]
    page = await assistants.search_assistants(limit=2, offset=1, sort_order="asc")
    assert [a.assistant_id for a in page] == ids[1:3]

    owner_a = AuthFilter(({"team": "a"}, {"owner": "bob"}))
    assert {a.assistant_id for a in await assistants.search_assistants(auth=owner_a)} == {
        ids[0], ids[2], ids[3]}
    assert await assistants.count_assistants(auth=owner_a, graph_id="g1") == 1
    assert await assistants.count_assistants(auth=AuthFilter(())) == 0
    assert await assistants.count_assistants(auth=AuthFilter(({},))) == 4
    assert await assistants.count_assistants(auth=AuthFilter(({"n": 1},)),
                                             metadata={"team": "a"}) == 1

    system = [record("g9", "echo", system=True, assistant_id=str(uuid4()),
                     created_at="2026-01-02T12:00:00+00:00", metadata={"created_by": "system"})]
    merged = await assistants.search_assistants(extra=system, sort_order="asc", limit=10)
    assert [a.assistant_id for a in merged] == [ids[0], ids[1], system[0].assistant_id,
                                                ids[2], ids[3]]
    assert merged[2].system and not merged[0].system
    assert merged[2].metadata == {"created_by": "system"}
    second = await assistants.search_assistants(extra=system, sort_order="asc", limit=2,
                                                offset=2)
    assert [a.assistant_id for a in second] == [system[0].assistant_id, ids[2]]
    by_name = await assistants.search_assistants(extra=system, sort_by="name", limit=10)
    assert [a.name for a in by_name] == ["Zed", "echo", "beta", "ALPHABET", "Alpha"]
    with pytest.raises(InvalidRequest):
        await assistants.search_assistants(metadata={f"k{i}": i for i in range(101)})


async def test_delete_takes_versions_and_crons(store: Store) -> None:
    assistants = store.assistants
    made = await assistants.create_assistant(record())
    other = await assistants.create_assistant(record())
    await assistants.update_assistant(made.assistant_id, lambda a: patched(a, AssistantChanges()))
    await store.crons.create_cron(cron_for(made.assistant_id))
    kept = await store.crons.create_cron(cron_for(other.assistant_id))
    assert await assistants.delete_assistant(made.assistant_id)
    assert not await assistants.delete_assistant(made.assistant_id)
    with pytest.raises(AssistantNotFound):
        await assistants.get_assistant(made.assistant_id)
    with pytest.raises(AssistantNotFound):
        await assistants.list_versions(made.assistant_id)
    assert [c.cron_id for c in (await store.crons.search_crons())[0]] == [kept.cron_id]
    # a new assistant with the old id starts again at version 1
    again = await assistants.create_assistant(record().replace(assistant_id=made.assistant_id))
    assert [v.version for v in await assistants.list_versions(again.assistant_id)] == [1]


async def test_concurrent_patches_get_distinct_versions(
        store: Store, store_target: tuple[str, str]) -> None:
    made = await store.assistants.create_assistant(record())
    engine, where = store_target
    results: list[int] = []

    async def patch_many(target: Store, n: int) -> None:
        for _ in range(n):
            new = await target.assistants.update_assistant(
                made.assistant_id, lambda a: patched(a, AssistantChanges(metadata={"k": 1})))
            results.append(new.version)

    if engine == "postgres":
        async with PostgresStore.open(where) as second:
            async with anyio.create_task_group() as tg:
                for target in (store, second, store, second):
                    tg.start_soon(patch_many, target, 5)
    else:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(patch_many, store, 5)
    assert sorted(results) == list(range(2, 22))
    versions = await store.assistants.list_versions(made.assistant_id, limit=100)
    assert [v.version for v in versions] == list(range(21, 0, -1))
    assert (await store.assistants.get_assistant(made.assistant_id)).version == 21


async def test_postgres_refuses_nul(store: Store, store_target: tuple[str, str]) -> None:
    if store_target[0] != "postgres":
        made = await store.assistants.create_assistant(record(name="a\x00b"))
        assert (await store.assistants.get_assistant(made.assistant_id)).name == "a\x00b"
        return
    with pytest.raises(InvalidRequest):
        await store.assistants.create_assistant(record(name="a\x00b"))
    with pytest.raises(InvalidRequest):
        await store.assistants.create_assistant(record(metadata={"k": "\x00"}))
    with pytest.raises(InvalidRequest):
        await store.assistants.search_assistants(name="\x00")
    assert await store.assistants.count_assistants() == 0
    made = await store.assistants.create_assistant(record())
    with pytest.raises(InvalidRequest):
        await store.assistants.update_assistant(made.assistant_id, lambda a: patched(
            a, AssistantChanges(description="\x00")))
    assert (await store.assistants.get_assistant(made.assistant_id)).version == 1
    assert await store.assistants.count_assistants(
        auth=AuthFilter(({"k": "\x00"}, {"team": "a"}))) == 1
