from __future__ import annotations

import asyncio

import pytest

from controller.queue import WorkQueue
from store import ContainerSpec, ConvergeError, DesiredState, MemoryStore, NameInUse, UnknownContainer


def spec(name: str = "a") -> ContainerSpec:
    return ContainerSpec(image="flow:latest", name=name)


async def test_generation_rises_with_every_change_of_intent():
    store = MemoryStore()
    r = store.create(spec())
    assert r.generation == 1 and len(r.id) == 12 and all(c in "0123456789abcdef" for c in r.id)
    r = store.update(r.id, desired=DesiredState.RUNNING)
    assert r.generation == 2
    store.report(r.id, 2, None)
    assert store.get(r.id).generation == 2 and store.get(r.id).converged


async def test_names_are_unique_and_resolvable():
    store = MemoryStore()
    r = store.create(spec("x"))
    assert store.resolve("x").id == r.id == store.resolve(r.id).id
    with pytest.raises(NameInUse):
        store.create(spec("x"))
    store.update(r.id, desired=DesiredState.DELETED)
    with pytest.raises(UnknownContainer):
        store.resolve("x")
    store.remove(r.id)
    store.create(spec("x"))


async def test_waiters_see_convergence_errors_and_removal():
    store = MemoryStore()
    r = store.create(spec())
    waiting = asyncio.create_task(store.wait_for(r.id, lambda c: c is None or c.status.error is not None, 1))
    await asyncio.sleep(0)
    assert store.has_waiters(r.id)
    store.report(r.id, 1, ConvergeError("image_not_found", "nope"))
    assert (await waiting).status.error.error_type == "image_not_found"
    gone = asyncio.create_task(store.wait_for(r.id, lambda c: c is None, 1))
    await asyncio.sleep(0)
    store.remove(r.id)
    assert await gone is None and not store.has_waiters(r.id)


async def test_watchers_hear_every_change():
    store, heard = MemoryStore(), []
    store.watch(heard.append)
    r = store.create(spec())
    store.update(r.id, desired=DesiredState.RUNNING)
    store.report(r.id, 2, None)  # status write-back is not a change of intent
    assert heard == [r.id, r.id]


async def test_queue_collapses_wakeups_and_holds_a_key_for_one_worker():
    q = WorkQueue()
    for _ in range(5):
        q.add("k")
    q.add("j")
    assert await q.get() == "k"
    q.add("k")  # while k is being processed: dirty, not handed out twice
    assert await q.get() == "j"
    assert q.pending() == 0
    q.done("k")
    assert await q.get() == "k"
    q.done("k")
    q.done("j")
    assert q.pending() == 0


async def test_queue_add_after_fires_once_at_the_earliest_time():
    q = WorkQueue()
    q.add_after("k", 0.05)
    q.add_after("k", 0.5)
    assert await asyncio.wait_for(q.get(), 0.3) == "k"
    q.done("k")
    q.close()
