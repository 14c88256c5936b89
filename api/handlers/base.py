"""What every request handler shares: its collaborators, the one path a request takes, and lookups.

The path (`_route`): rate limit, one argument, validate against the event's model, run the operation,
answer twice in the same shape (the response event to the caller and the Socket.IO acknowledgement);
any failure becomes the documented `error` event. The handlers of each concern (connection.py,
lifecycle.py, messaging.py, reads.py) build on this class.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import socketio
from pydantic import BaseModel, ValidationError

from api.admission import SessionGuard
from api.auth import ConnectAuth
from api.broadcast import Broadcaster
from api.container_logs import ContainerLogs
from api.errors import ApiError, from_validation
from api.inflight import InFlight
from api.limits import RateLimiter
from api.metrics import RequestTimings
from api.policy import PolicyViolation, RequestPolicy
from api.tracing import RequestSpan
from controller.adapters.links import LinkManager
from controller.status import StatusReader
from controller.view import Observations
from store import MemoryStore, Record, UnknownContainer
from store.code import CodeStore

log = logging.getLogger("flow_manager.api")


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
    socket_dir: str = "/tmp/kawaflow/sockets"
    request_timeout: float = 60.0
    max_containers: int = 100


class HandlerBase:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: MemoryStore,
        reader: StatusReader,
        view: Observations,
        broadcaster: Broadcaster,
        settings: ApiSettings,
        links: LinkManager,
        codes: CodeStore,
        *,
        policy: RequestPolicy | None = None,
        auth: ConnectAuth | None = None,
        limiter: RateLimiter | None = None,
        timings: RequestTimings | None = None,
        extensions: dict[str, Route] | None = None,
        logs: ContainerLogs | None = None,
        admission: SessionGuard | None = None,
        source_limiter: RateLimiter | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.sio, self.store, self.reader, self.broadcaster, self.settings = sio, store, reader, broadcaster, settings
        self.view = view  # what the controller last observed: the only part of the controller requests read
        self.links, self.codes = links, codes
        self.policy = policy or RequestPolicy.build()
        self.auth = auth or ConnectAuth()
        self.limiter = limiter or RateLimiter(rate=0, burst=1)
        self.timings = timings or RequestTimings()
        self.admission = admission  # sessions waiting to authenticate, and every session's source address
        self.source_limiter = source_limiter or RateLimiter(rate=0, burst=1)  # keyed by source address
        self.in_flight = in_flight or InFlight(0, 0)
        self.extensions = extensions or {}  # further request events served by other parts (get_metrics)
        self._logs = logs  # container logs (reads through the Docker adapter, follows per connection)
        self.operations: frozenset[str] = frozenset()
        self._departed: collections.OrderedDict[str, str] = collections.OrderedDict()  # sid -> its session
        self._client_traces: dict[str, str] = {}  # sid -> the traceparent it connected with (api/tracing.py)

    @property
    def logs(self) -> ContainerLogs:
        if self._logs is None:
            raise ApiError("system_error", "container logs are not available in this server")
        return self._logs

    def _session(self, sid: str) -> str:
        """The Engine.IO session under a Socket.IO sid: the key of per-connection state such as the rate limit,
        since a client can leave the namespace and join it again (a new sid) on the same connection. A request
        python-socketio dispatched just before its sid left runs after python-socketio forgot the sid: the
        sids that left recently are remembered, or such requests would each start a fresh bucket."""
        return self.sio.manager.eio_sid_from_sid(sid, "/") or self._departed.get(sid) or sid

    async def _fail(self, sid: str, operation: str, error: ApiError, reference: str | None = None) -> dict[str, Any]:
        throttled = self._throttled(sid)
        failure = (throttled or error).payload(operation, reference)
        await self.sio.emit("error", failure, to=sid)
        return failure

    def _throttled(self, sid: str) -> ApiError | None:
        session = self._session(sid)
        wait = self.limiter.take(session)
        if not wait:
            return self._source_throttled(session)
        return ApiError(
            "system_error",
            f"too many requests: this client may send {self.limiter.rate:g} per second (bursts of {self.limiter.burst}); retry in {wait:.2f} s",
            limit="client_rate_limit",
            retry_after=math.ceil(wait * 1000) / 1000,
        )

    def _source_throttled(self, session: str) -> ApiError | None:
        """The limit shared by every connection from one address (many connections, one attacker)."""
        source = self.admission.source(session) if self.admission is not None else "?"
        wait = self.source_limiter.take(source)
        if not wait:
            return None
        return ApiError(
            "system_error",
            f"too many requests from this address: {self.source_limiter.rate:g} per second over all its connections; retry in {wait:.2f} s",
            limit="source_rate_limit",
            retry_after=math.ceil(wait * 1000) / 1000,
        )

    def _busy(self, limit: str) -> ApiError:
        maximum = self.in_flight.total if limit == "max_requests_in_flight" else self.in_flight.per_connection
        scope = "in all" if limit == "max_requests_in_flight" else "on this connection"
        return ApiError(
            "system_error", f"too many requests in flight {scope} (at most {maximum}); retry once one is answered", limit=limit, max=maximum
        )

    # -- the one path every request takes ------------------------------------------
    def _route(self, operation: str, route: Route) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def handler(sid: str, *args: Any) -> dict[str, Any]:
            started, outcome = time.perf_counter(), "cancelled"
            session = self._session(sid)
            refused = self.in_flight.enter(session)  # past the bound: refused at once, never queued
            data = args[0] if args else None
            reference = data.get("container_id") if isinstance(data, dict) else None
            reference = reference if isinstance(reference, str) and len(reference) <= 128 else None
            traceparent = data.get("traceparent") if isinstance(data, dict) else None
            try:
                with RequestSpan(operation, reference, traceparent, self._client_traces.get(sid)) as span:
                    result = await answer(sid, span, reference, *args, busy=refused)
                outcome = result["error_type"] if result.get("error") is True else "ok"
                return result
            finally:
                if refused is None:
                    self.in_flight.leave(session)
                self.timings.record(operation, time.perf_counter() - started, outcome)

        async def answer(sid: str, span: RequestSpan, reference: str | None, *args: Any, busy: str | None = None) -> dict[str, Any]:
            data = args[0] if args else None
            try:
                if busy is not None:
                    raise self._busy(busy)
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
                span.succeeded()
                log.debug("%s answered", operation)
                await self.broadcaster.emitter.emit(route.response, payload, to=sid)
                return payload
            span.failed(error.error_type, error.message)
            log.debug("%s answered %s", operation, error.error_type)
            failure = error.payload(operation, reference)
            await self.broadcaster.emitter.emit("error", failure, to=sid)
            return failure

        return handler

    def _record(self, reference: str) -> Record:
        try:
            return self.store.resolve(reference)
        except UnknownContainer:
            raise ApiError("container_not_found", f"no managed container {reference!r}", container_id=reference) from None
