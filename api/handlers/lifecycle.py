"""Requests that change a container's lifecycle: create, start, stop, restart, update (code), delete.

Each writes intent on the record and waits for the controller's verdict on that generation
(`_converge`), so an answer always describes what Docker really did; the state it reports is the read
side's (controller/view.py), never a guess of its own. A handler never calls Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from api import payloads
from api.errors import ApiError
from api.handlers.base import HandlerBase
from api.schemas import ContainerRef, CreateContainer, UpdateContainer
from controller.tracing import current_traceparent
from store import ContainerSpec, DesiredState, NameInUse, Record, UnknownContainer
from store.code import CodeError, CodeSnapshot
from store.durability import NotDurable
from store.records import new_container_id


class LifecycleHandlers(HandlerBase):
    async def _converge(self, record: Record, operation: str) -> Record | None:
        """Wait for the controller's verdict on this generation of the record."""
        generation = record.generation
        deadline = time.monotonic() + self.settings.request_timeout
        try:  # an intent we answer for must survive a crash of the manager; the controller acts only then
            await self.store.durable(record.id, generation, self.settings.request_timeout)
        except NotDurable as exc:  # withdrawn: nothing was applied
            raise ApiError("system_error", f"{operation}: {exc.message}", **{**exc.details, "container_id": record.id, "retrying": False}) from None

        def settled(current: Record | None) -> bool:
            return (
                current is None
                or current.status.observed_generation >= generation
                or (current.status.error is not None and current.status.error_generation >= generation)
            )

        try:
            current = await self.store.wait_for(record.id, settled, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise ApiError(
                "system_error",
                f"{operation} did not converge within {self.settings.request_timeout:g} s; the controller keeps trying",
                container_id=record.id,
                retrying=True,
            ) from None
        if current is not None and current.status.observed_generation < generation and current.status.error:
            failure = current.status.error
            details = {k: v for k, v in failure.details.items() if k != "operation"}
            raise ApiError(failure.error_type, failure.message, **{**details, "container_id": record.id, "retrying": not failure.permanent})
        return current

    def _intent(self, record: Record, **changes: Any) -> Record:
        """A new generation of intent, carrying this request's trace context (or none: an older one must go)."""
        try:
            return self.store.update(record.id, trace_context=current_traceparent(), **changes)
        except UnknownContainer:  # removed since it was resolved (a handler that awaited in between)
            raise ApiError("container_not_found", f"no managed container {record.id!r}", container_id=record.id) from None

    @staticmethod
    def _unless_superseded(current: Record | None, wanted: DesiredState, container_id: str) -> None:
        if current is None or current.desired is not wanted:
            raise ApiError("system_error", "superseded by a later request for the same container", container_id=container_id, superseded=True)

    async def _snapshot(self, code_path: str) -> CodeSnapshot:
        """Read code from a path the policy admitted (already resolved)."""
        try:
            return await self.codes.snapshot(code_path)
        except CodeError as exc:
            raise ApiError("validation_error", str(exc), field="code_path") from None

    async def _prune_code(self) -> None:
        """Drop code archives no live record refers to (a deleted record's code is never deployed again)."""
        # an intent not yet on disk keeps its code too
        await self.codes.retain(
            lambda: {
                r.code_revision for r in (*self.store.records(), *self.store.intents()) if r.code_revision and r.desired is not DesiredState.DELETED
            }
        )

    def _room_for_one_more(self) -> None:
        active = sum(1 for r in self.store.intents() if r.desired is not DesiredState.DELETED)
        if active >= self.settings.max_containers:
            raise ApiError(
                "system_error",
                f"this manager already manages {active} containers, its limit (--max-containers); delete one first",
                limit="max_containers",
                max=self.settings.max_containers,
            )

    def _bind_sources(self) -> dict[str, str]:
        """Every managed container's bind sources (real path -> container id); a tombstone's too, as its
        container may still run, and a create not on disk yet (two concurrent creates must not nest)."""
        return {real: record.id for record in (*self.store.records(), *self.store.intents()) for real in record.spec.volumes}

    def _published(self) -> dict[int, str]:
        """Every host port a managed container publishes (-> its id): intents not yet on disk and
        tombstones too (a container being deleted may still hold its ports)."""
        return {port: record.id for record in (*self.store.records(), *self.store.intents()) for port in record.spec.ports.values()}

    async def create(self, request: CreateContainer) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout  # the whole request's bound
        if request.volumes or request.code_path:  # resolving host paths touches the filesystem
            admitted = await asyncio.to_thread(self.policy.admit_create, request, self._bind_sources())
        else:
            admitted = self.policy.admit_create(request)  # nothing is written unless every rule passes
        self.policy.ports_free(request.ports, self._published())
        self._room_for_one_more()
        code = await self._snapshot(admitted.code_path) if admitted.code_path else None
        container_id = new_container_id()
        spec = ContainerSpec(
            image=request.image,
            name=request.name or f"flow-{container_id}",
            environment=dict(request.environment),
            volumes=admitted.volumes,
            ports=dict(request.ports),
            command=tuple(request.command) if request.command else None,
            memory_limit=request.memory_limit,
            pids_limit=request.pids_limit,
        )
        try:
            self._room_for_one_more()  # again: others may have created while the code was read
            self.policy.no_nesting(admitted.requested, self._bind_sources())  # and their bind sources
            self.policy.ports_free(request.ports, self._published())  # and their ports
            record = self.store.create(
                spec,
                DesiredState.CREATED,
                container_id=container_id,
                code_path=request.code_path,
                code_revision=code.revision if code else None,
                trace_context=current_traceparent(),
            )
        except NameInUse as exc:
            await self._prune_code()
            raise ApiError("validation_error", f"name {spec.name!r} is already in use", field="name", container_id=exc.container_id) from None
        except Exception:  # refused after the snapshot: nothing refers to it
            await self._prune_code()
            raise
        try:
            await self._converge(record, "create_container")
        except ApiError:
            if self.store.get(record.id) is not None:
                withdrawn = self._intent(record, desired=DesiredState.DELETED)  # the client was told it failed
                if code is not None:  # its code goes once the withdrawal is on disk (a refused one keeps it)
                    with contextlib.suppress(NotDurable):
                        # within what is left of the request's bound (a second at least: a shorter wait would
                        # read as a stalled disk)
                        remaining = max(deadline - asyncio.get_running_loop().time(), min(1.0, self.settings.request_timeout))
                        await self.store.durable(record.id, withdrawn.generation, timeout=remaining)
            if code is not None:
                await self._prune_code()
            raise
        state, docker_id = self.view.current(record.id, "created")
        return {
            "container_id": record.id,
            "name": spec.name,
            "image": spec.image,
            "status": state,
            "socket_path": payloads.socket_path(self.settings.socket_dir, spec.name),
            "ports": dict(spec.ports),
            "docker_id": docker_id,
            "code_revision": record.code_revision,
        }

    async def start(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.RUNNING)
        self._unless_superseded(await self._converge(record, "start_container"), DesiredState.RUNNING, record.id)
        return {"container_id": record.id, "status": self.view.current(record.id, "running")[0]}

    async def stop(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.STOPPED)
        self._unless_superseded(await self._converge(record, "stop_container"), DesiredState.STOPPED, record.id)
        return {"container_id": record.id, "status": "stopped"}

    async def restart(self, request: ContainerRef) -> dict[str, Any]:
        current = self._record(request.container_id)  # the controller binds it to the run Docker has then
        record = self._intent(current, desired=DesiredState.RUNNING, restart_requests=current.restart_requests + 1)
        self._unless_superseded(await self._converge(record, "restart_container"), DesiredState.RUNNING, record.id)
        return {"container_id": record.id, "status": self.view.current(record.id, "running")[0]}

    async def update(self, request: UpdateContainer) -> dict[str, Any]:
        code_path = self.policy.code_path(request.code_path)  # a refused field is a validation_error, found or not
        record = self._record(request.container_id)
        code = await self._snapshot(code_path)  # unreadable: validation_error, nothing changes
        try:
            # Deleted (or being deleted) while the code was read: as if the request had come after the delete.
            record = self._intent(self._record(record.id), code_revision=code.revision, code_path=request.code_path)
        except Exception:
            await self._prune_code()  # nothing refers to the snapshot just taken
            raise
        current = await self._converge(record, "update_container")
        if current is None or current.code_revision != code.revision:
            raise ApiError("system_error", "superseded by a later request for the same container", container_id=record.id, superseded=True)
        await self._prune_code()
        return {"container_id": record.id, "code_path": request.code_path, "status": "updated", "code_revision": code.revision, "files": code.files}

    async def delete(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.DELETED)
        try:
            await self._converge(record, "delete_container")
        finally:
            if record.code_revision:
                await self._prune_code()  # the intent is written: its code is never deployed again
        return {"container_id": record.id, "status": "deleted"}
