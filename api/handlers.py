"""Socket.IO request handlers: validate, write intent, await the outcome, answer.

A handler never calls Docker. It changes the desired-state record and waits
until the controller reports that generation converged (or failed), so a
response always describes what Docker really did. Reads answer from what the
controller last observed; the one exception is `get_container_status`'s
resource usage when the cgroup files are not visible (Docker's stats API, see
controller/status.py). Every handler answers twice in the same shape: the
reference's response event to the caller, and the Socket.IO acknowledgement
(for `call()` / `emitWithAck()`).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import socketio
from pydantic import BaseModel, ValidationError

from api import payloads
from api.auth import ConnectAuth
from api.broadcast import Broadcaster
from api.errors import ApiError, from_validation
from api.limits import RateLimiter
from api.metrics import RequestTimings
from api.packet_gate import REJECTED_EVENT
from api.policy import PolicyViolation, RequestPolicy
from api.schemas import ContainerRef, CreateContainer, ListContainers, SendMessage, SubscribeMessages, UpdateContainer
from controller.adapters.links import DEFAULT_SOCKET_DIR, LinkFailure, LinkManager
from controller.events import Activity
from controller.observed import ABSENT
from controller.reconciler import UNKNOWN, NotObserved
from controller.status import StatusReader
from store import ContainerSpec, DesiredState, MemoryStore, NameInUse, Record, UnknownContainer
from store.code import CodeError, CodeSnapshot, CodeStore
from store.durability import NotDurable
from store.records import new_container_id

log = logging.getLogger("flow_manager.api")
DEPARTED_REMEMBERED = 4096  # sids that left recently, with their Engine.IO session (for requests still in flight)


@dataclass(frozen=True)
class Route:
    """One request event: its response event, its schema, and the operation that answers it."""

    response: str
    model: type[BaseModel]
    action: Callable[..., Awaitable[dict[str, Any]]]  # action(request), or action(request, sid) when per_client
    per_client: bool = False  # the answer depends on which connection asked (its sid)
    body_optional: bool = False  # no argument at all means an empty request


@dataclass(frozen=True)
class ApiSettings:
    socket_dir: str = DEFAULT_SOCKET_DIR
    request_timeout: float = 60.0
    max_containers: int = 100


class Handlers:
    def __init__(self, sio: socketio.AsyncServer, store: MemoryStore, reader: StatusReader,
                 broadcaster: Broadcaster, settings: ApiSettings, links: LinkManager, codes: CodeStore, *,
                 policy: RequestPolicy | None = None, auth: ConnectAuth | None = None,
                 limiter: RateLimiter | None = None, timings: RequestTimings | None = None,
                 extensions: dict[str, Route] | None = None) -> None:
        self.sio, self.store, self.reader, self.broadcaster, self.settings = sio, store, reader, broadcaster, settings
        self.links, self.codes = links, codes
        self.policy = policy or RequestPolicy.build()
        self.auth = auth or ConnectAuth()
        self.limiter = limiter or RateLimiter(rate=0, burst=1)
        self.timings = timings or RequestTimings()
        self.extensions = extensions or {}  # further request events served by other parts (get_metrics)
        self.operations: frozenset[str] = frozenset()
        self._departed: collections.OrderedDict[str, str] = collections.OrderedDict()  # sid -> its session

    def register(self) -> None:
        self.sio.on("connect", self.connect)
        self.sio.on("disconnect", self.disconnect)
        routes = {
            "create_container": Route("container_created", CreateContainer, self.create),
            "start_container": Route("container_started", ContainerRef, self.start),
            "stop_container": Route("container_stopped", ContainerRef, self.stop),
            "restart_container": Route("container_restarted", ContainerRef, self.restart),
            "update_container": Route("container_updated", UpdateContainer, self.update),
            "delete_container": Route("container_deleted", ContainerRef, self.delete),
            "send_message": Route("message_sent", SendMessage, self.send_message),
            "get_container_status": Route("container_status", ContainerRef, self.status),
            "list_containers": Route("container_list", ListContainers, self.list, body_optional=True),
            # extension: narrow this client's message_received to some containers
            "subscribe_messages": Route("messages_subscribed", SubscribeMessages, self.subscribe_messages,
                                        per_client=True),
            **self.extensions,
        }
        for operation, route in routes.items():
            self.sio.on(operation, self._route(operation, route))
        self.operations = frozenset(routes)
        self.sio.on(REJECTED_EVENT, self.rejected)
        self.sio.on("*", self.unknown_event)

    # -- connection --------------------------------------------------------------
    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if not self.sio.always_connect and not self.sio.manager.is_pre_connected(sid, "/"):
            # python-socketio calls this while the sid is joining; anything else is an event a client forged
            # (the packet gate refuses those: this is the second line)
            log.warning("ignored a connect event for %s that python-socketio did not send", sid)
            return
        refusal = self.auth.refusal(environ, auth)
        if refusal is not None:
            client = (environ.get("asgi.scope") or {}).get("client") or ("?", 0)
            log.warning("refused a connection from %s: %s", client[0], refusal)
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        self.broadcaster.clients.add(sid)
        engine = payloads.engine_status(self.reader.reconciler.engine.status())
        await self.sio.emit("connected", {"message": "Connected to Flow Manager", "sid": sid, "engine": engine}, to=sid)

    async def disconnect(self, sid: str, *args: Any) -> None:
        """The sid left the namespace: its subscriptions go; its rate-limit bucket goes with the connection only."""
        if self.sio.manager.is_connected(sid, "/"):
            # python-socketio marks the sid as leaving before it calls this: still connected means forged
            log.warning("ignored a disconnect event for %s that python-socketio did not send", sid)
            return
        self.broadcaster.forget(sid)
        session = self._session(sid)
        self._departed[sid] = session  # its requests already dispatched still count against that connection
        while len(self._departed) > DEPARTED_REMEMBERED:
            self._departed.popitem(last=False)
        if not self._session_open(session):  # after a Socket.IO "41" the client may join again ("40")
            self.limiter.forget(session)

    def _session(self, sid: str) -> str:
        """The Engine.IO session under a Socket.IO sid: the key of per-connection state such as the rate limit,
        since a client can leave the namespace and join it again (a new sid) on the same connection. A request
        python-socketio dispatched just before its sid left runs after python-socketio forgot the sid: the
        sids that left recently are remembered, or such requests would each start a fresh bucket."""
        return self.sio.manager.eio_sid_from_sid(sid, "/") or self._departed.get(sid) or sid

    def _session_open(self, session: str) -> bool:
        """False once python-engineio is closing the session (it marks it before the disconnect handlers run)."""
        socket = self.sio.eio.sockets.get(session)
        return socket is not None and not (socket.closing or socket.closed)

    # -- requests that never reach a model ----------------------------------------
    async def rejected(self, sid: str, info: Any = None, *extra: Any) -> dict[str, Any]:
        """A packet the gate replaced before parsing: too large, or binary."""
        info = info if isinstance(info, dict) else {}
        event = info.get("event")
        operation = event if event in self.operations or info.get("reason") == "reserved" else "(unknown)"
        limit = info.get("limit") if isinstance(info.get("limit"), int) else None
        if info.get("reason") == "binary":
            error = ApiError("validation_error", "binary payloads are not accepted: the API is JSON",
                             field="(request)")
        elif info.get("reason") == "reserved":
            error = ApiError("validation_error", "connect and disconnect are not events a client may send",
                             field="(event)")
        else:
            size = info.get("bytes") if isinstance(info.get("bytes"), int) else "?"
            error = ApiError("validation_error", f"request of {size} bytes is larger than the limit "
                             f"of {limit} bytes (--max-request-bytes)", field="(request)", limit="max_request_bytes",
                             max=limit)
        return await self._fail(sid, operation, error)

    async def unknown_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        return await self._fail(sid, str(event)[:64], ApiError(
            "validation_error", f"unknown event; the events are {', '.join(sorted(self.operations))}",
            field="(event)"))

    async def _fail(self, sid: str, operation: str, error: ApiError, reference: str | None = None) -> dict[str, Any]:
        throttled = self._throttled(sid)
        failure = (throttled or error).payload(operation, reference)
        await self.sio.emit("error", failure, to=sid)
        return failure

    def _throttled(self, sid: str) -> ApiError | None:
        wait = self.limiter.take(self._session(sid))
        if not wait:
            return None
        return ApiError("system_error", f"too many requests: this client may send {self.limiter.rate:g} per second "
                        f"(bursts of {self.limiter.burst}); retry in {wait:.2f} s", limit="client_rate_limit",
                        retry_after=math.ceil(wait * 1000) / 1000)

    # -- the one path every request takes ------------------------------------------
    def _route(self, operation: str, route: Route) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def handler(sid: str, *args: Any) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                return await answer(sid, *args)
            finally:
                self.timings.record(operation, time.perf_counter() - started)

        async def answer(sid: str, *args: Any) -> dict[str, Any]:
            data = args[0] if args else None
            reference = data.get("container_id") if isinstance(data, dict) else None
            reference = reference if isinstance(reference, str) and len(reference) <= 128 else None
            try:
                throttled = self._throttled(sid)
                if throttled is not None:
                    raise throttled
                if len(args) > 1:
                    raise ApiError("validation_error", f"one argument expected, got {len(args)}", field="(request)")
                request = route.model.model_validate({} if data is None and route.body_optional else data)
                payload = await (route.action(request, sid) if route.per_client else route.action(request))
            except ValidationError as exc:
                error = from_validation(exc)
            except PolicyViolation as exc:
                error = ApiError("validation_error", exc.message, field=exc.field)
            except ApiError as exc:
                error = exc
            except Exception as exc:  # a bug must cost one request, never the server
                log.exception("%s failed", operation)
                error = ApiError("system_error", f"internal error: {type(exc).__name__}")
            else:
                await self.broadcaster.emitter.emit(route.response, payload, to=sid)
                return payload
            failure = error.payload(operation, reference)
            await self.broadcaster.emitter.emit("error", failure, to=sid)
            return failure
        return handler

    def _record(self, reference: str) -> Record:
        try:
            return self.store.resolve(reference)
        except UnknownContainer:
            raise ApiError("container_not_found", f"no managed container {reference!r}",
                           container_id=reference) from None

    async def _converge(self, record: Record, operation: str) -> Record | None:
        """Wait for the controller's verdict on this generation of the record."""
        generation = record.generation
        deadline = time.monotonic() + self.settings.request_timeout
        try:  # an intent we answer for must survive a crash of the manager; the controller acts only then
            await self.store.durable(record.id, generation, self.settings.request_timeout)
        except NotDurable as exc:  # withdrawn: nothing was applied
            raise ApiError("system_error", f"{operation}: {exc.message}",
                           **{**exc.details, "container_id": record.id, "retrying": False}) from None

        def settled(current: Record | None) -> bool:
            return (current is None or current.status.observed_generation >= generation
                    or (current.status.error is not None and current.status.error_generation >= generation))
        try:
            current = await self.store.wait_for(record.id, settled, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise ApiError("system_error", f"{operation} did not converge within {self.settings.request_timeout:g} s;"
                           " the controller keeps trying", container_id=record.id, retrying=True) from None
        if current is not None and current.status.observed_generation < generation and current.status.error:
            failure = current.status.error
            details = {k: v for k, v in failure.details.items() if k != "operation"}
            raise ApiError(failure.error_type, failure.message, **{**details, "container_id": record.id,
                                                                   "retrying": not failure.permanent})
        return current

    def _intent(self, record: Record, **changes: Any) -> Record:
        try:
            return self.store.update(record.id, **changes)
        except UnknownContainer:  # removed since it was resolved (a handler that awaited in between)
            raise ApiError("container_not_found", f"no managed container {record.id!r}",
                           container_id=record.id) from None

    @staticmethod
    def _unless_superseded(current: Record | None, wanted: DesiredState, container_id: str) -> None:
        if current is None or current.desired is not wanted:
            raise ApiError("system_error", "superseded by a later request for the same container",
                           container_id=container_id, superseded=True)

    def _state(self, container_id: str, default: str) -> tuple[str, str | None]:
        """(state, docker id) from the controller's last observation; `unknown` while the engine is
        unreachable, decided as the status reader decides it."""
        known = self.reader.reconciler.known(container_id)
        observed = known.observed if known is not None else None
        docker_id = observed.docker_id if observed is not None else None
        if not self.reader.reconciler.engine.available:
            return UNKNOWN, docker_id
        return (observed.api_state if observed is not None else default), docker_id

    async def _snapshot(self, code_path: str) -> CodeSnapshot:
        """Read code from a path the policy admitted (already resolved)."""
        try:
            return await self.codes.snapshot(code_path)
        except CodeError as exc:
            raise ApiError("validation_error", str(exc), field="code_path") from None

    async def _prune_code(self) -> None:
        """Drop code archives no live record refers to (a deleted record's code is never deployed again)."""
        # an intent not yet on disk keeps its code too
        await self.codes.retain(lambda: {r.code_revision for r in (*self.store.records(), *self.store.intents())
                                         if r.code_revision and r.desired is not DesiredState.DELETED})

    def _room_for_one_more(self) -> None:
        active = sum(1 for r in self.store.intents() if r.desired is not DesiredState.DELETED)
        if active >= self.settings.max_containers:
            raise ApiError("system_error", f"this manager already manages {active} containers, its limit "
                           "(--max-containers); delete one first", limit="max_containers",
                           max=self.settings.max_containers)

    # -- operations ----------------------------------------------------------------
    def _bind_sources(self) -> dict[str, str]:
        """Every managed container's bind sources (real path -> container id); a tombstone's too, as its
        container may still run."""
        return {real: record.id for record in self.store.records() for real in record.spec.volumes}

    async def create(self, request: CreateContainer) -> dict[str, Any]:
        if request.volumes or request.code_path:  # resolving host paths touches the filesystem
            admitted = await asyncio.to_thread(self.policy.admit_create, request, self._bind_sources())
        else:
            admitted = self.policy.admit_create(request)  # nothing is written unless every rule passes
        self._room_for_one_more()
        code = await self._snapshot(admitted.code_path) if admitted.code_path else None
        container_id = new_container_id()
        spec = ContainerSpec(
            image=request.image, name=request.name or f"flow-{container_id}",
            environment=dict(request.environment), volumes=admitted.volumes, ports=dict(request.ports),
            command=tuple(request.command) if request.command else None,
            memory_limit=request.memory_limit, pids_limit=request.pids_limit)
        try:
            self._room_for_one_more()  # again: others may have created while the code was read
            self.policy.no_nesting(admitted.requested, self._bind_sources())  # and their bind sources
            record = self.store.create(spec, DesiredState.CREATED, container_id=container_id,
                                       code_path=request.code_path, code_revision=code.revision if code else None)
        except NameInUse as exc:
            await self._prune_code()
            raise ApiError("validation_error", f"name {spec.name!r} is already in use", field="name",
                           container_id=exc.container_id) from None
        except Exception:  # refused after the snapshot: nothing refers to it
            await self._prune_code()
            raise
        try:
            await self._converge(record, "create_container")
        except ApiError:
            if self.store.get(record.id) is not None:
                self._intent(record, desired=DesiredState.DELETED)  # withdraw: the client was told it failed
            if code is not None:
                await self._prune_code()
            raise
        state, docker_id = self._state(record.id, "created")
        return {"container_id": record.id, "name": spec.name, "image": spec.image, "status": state,
                "socket_path": payloads.socket_path(self.settings.socket_dir, spec.name),
                "ports": dict(spec.ports), "docker_id": docker_id, "code_revision": record.code_revision}

    async def start(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.RUNNING)
        self._unless_superseded(await self._converge(record, "start_container"), DesiredState.RUNNING, record.id)
        return {"container_id": record.id, "status": self._state(record.id, "running")[0]}

    async def stop(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.STOPPED)
        self._unless_superseded(await self._converge(record, "stop_container"), DesiredState.STOPPED, record.id)
        return {"container_id": record.id, "status": "stopped"}

    async def restart(self, request: ContainerRef) -> dict[str, Any]:
        current = self._record(request.container_id)  # the controller binds it to the run Docker has then
        record = self._intent(current, desired=DesiredState.RUNNING, restart_requests=current.restart_requests + 1)
        self._unless_superseded(await self._converge(record, "restart_container"), DesiredState.RUNNING, record.id)
        return {"container_id": record.id, "status": self._state(record.id, "running")[0]}

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
            raise ApiError("system_error", "superseded by a later request for the same container",
                           container_id=record.id, superseded=True)
        await self._prune_code()
        return {"container_id": record.id, "code_path": request.code_path, "status": "updated",
                "code_revision": code.revision, "files": code.files}

    async def send_message(self, request: SendMessage) -> dict[str, Any]:
        record = self._record(request.container_id)
        try:
            await self.links.send(record.id, request.message)
        except LinkFailure as failure:
            raise ApiError(failure.error_type, failure.message, container_id=record.id, **failure.details) from None
        command = request.message.get("command")
        self.broadcaster.publish(Activity("message_sent", record.id, f"Message sent to container {record.spec.name}",
                                          {"command": command if isinstance(command, str) else None}))
        return {"container_id": record.id, "message": request.message, "status": "sent"}

    async def subscribe_messages(self, request: SubscribeMessages, sid: str) -> dict[str, Any]:
        """Every reference must name a managed container (ids or names); the answer lists their ids."""
        if request.container_ids is None:
            self.broadcaster.subscribe(sid, None)
            return {"container_ids": None}
        ids = sorted({self._record(reference).id for reference in request.container_ids})
        self.broadcaster.subscribe(sid, frozenset(ids))
        return {"container_ids": ids}

    async def delete(self, request: ContainerRef) -> dict[str, Any]:
        record = self._intent(self._record(request.container_id), desired=DesiredState.DELETED)
        try:
            await self._converge(record, "delete_container")
        finally:
            if record.code_revision:
                await self._prune_code()  # the intent is written: its code is never deployed again
        return {"container_id": record.id, "status": "deleted"}

    async def status(self, request: ContainerRef) -> dict[str, Any]:
        record = self._record(request.container_id)
        try:
            status = await self.reader.status(record, wait=self.settings.request_timeout)
        except NotObserved as exc:  # only right after the manager started, before the controller could look
            raise ApiError("system_error", str(exc), container_id=record.id, retrying=True) from None
        return payloads.container_status(status)

    async def list(self, request: ListContainers) -> dict[str, Any]:
        entries = []
        for record in self.store.records():
            if record.desired is DesiredState.DELETED:
                continue
            # No container observed for the record (not created in Docker yet, or removed behind the
            # manager's back): `deleted`, the documented state of a container that does not exist, as
            # get_container_status reports it.
            state, docker_id = self._state(record.id, ABSENT)
            entries.append({
                "id": record.id, "name": record.spec.name, "status": state, "image": record.spec.image,
                "created": payloads.iso(record.created_at),
                "socket_path": payloads.socket_path(self.settings.socket_dir, record.spec.name),
                "ports": dict(record.spec.ports), "docker_id": docker_id, "desired_state": record.desired.value,
            })
        return {"containers": entries, "count": len(entries)}
