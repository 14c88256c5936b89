"""An index of this instance's containers (managed id -> Docker ids), kept by lists, our calls and events."""

from __future__ import annotations

from typing import Any

from controller import labels


class ContainerIndex:
    """managed id -> Docker ids of this instance's containers: the informer pattern.

    Filled by every full list (the resync's), kept current by our own creates
    and removes and by the event stream's create/destroy events, so a
    reconcile inspects the containers it knows (one call) instead of listing
    by label first (two calls, and every list makes the engine walk all of its
    containers). Until the first full list, and from the moment the event
    stream drops until the next full list, lookup() answers None and callers
    list as before. A container created behind our back while the stream was
    down shows up at the next resync, as before.
    """

    def __init__(self) -> None:
        self._ids: dict[str, set[str]] = {}
        self._owner: dict[str, str] = {}
        self.valid = False
        self._following = False  # the event stream is open
        self._epoch = 0  # bumped whenever the stream drops
        self._listings = 0  # full lists in flight
        self._seq = 0
        self._log: list[tuple[int, str, str, str]] = []  # changes made while a full list was in flight

    def lookup(self, managed_id: str) -> list[str] | None:
        return sorted(self._ids.get(managed_id, ())) if self.valid else None

    def add(self, managed_id: str, docker_id: str) -> None:
        self._apply("add", managed_id, docker_id)

    def discard(self, docker_id: str) -> None:
        # Logged even when unknown here: a list in flight may still report it.
        self._apply("discard", self._owner.get(docker_id, ""), docker_id)

    def event(self, event: dict[str, Any]) -> None:
        action = event.get("Action") or event.get("status")
        actor = event.get("Actor") or {}
        docker_id = actor.get("ID") or event.get("id")
        managed_id = (actor.get("Attributes") or {}).get(labels.CONTAINER_ID)
        if docker_id and managed_id and action == "create":
            self.add(managed_id, docker_id)
        elif docker_id and action == "destroy":
            self.discard(docker_id)

    def follow(self) -> None:
        """The event stream is open: a full list completed from now on makes the index trustworthy."""
        self._following = True

    def invalidate(self) -> None:
        """The event stream dropped: untrusted until a list that starts after the next follow() completes."""
        self.valid, self._following = False, False
        self._epoch += 1

    def listing_started(self) -> tuple[int, int]:
        self._listings += 1
        return self._seq, self._epoch

    def listing_failed(self) -> None:
        self._listings -= 1

    def listing_done(self, mark: tuple[int, int], listed: dict[str, list[str]]) -> None:
        """Replace the index with a full list, replaying what changed while the list was in flight.

        Trusted only when the event stream was open for the whole list (same epoch, still following).
        """
        self._listings -= 1
        seq, epoch = mark
        changes = [c for c in self._log if c[0] > seq]
        if not self._listings:
            self._log.clear()
        self._ids, self._owner = {}, {}
        for managed_id, docker_ids in listed.items():
            for docker_id in docker_ids:
                self._put("add", managed_id, docker_id)
        for _, op, managed_id, docker_id in changes:
            self._put(op, managed_id, docker_id)
        self.valid = self._following and epoch == self._epoch

    def _apply(self, op: str, managed_id: str, docker_id: str) -> None:
        self._put(op, managed_id, docker_id)
        if self._listings:
            self._seq += 1
            self._log.append((self._seq, op, managed_id, docker_id))

    def _put(self, op: str, managed_id: str, docker_id: str) -> None:
        if op == "add":
            self._ids.setdefault(managed_id, set()).add(docker_id)
            self._owner[docker_id] = managed_id
            return
        owner = managed_id or self._owner.get(docker_id, "")
        ids = self._ids.get(owner)
        if ids is not None:
            ids.discard(docker_id)
            if not ids:
                del self._ids[owner]
        self._owner.pop(docker_id, None)
