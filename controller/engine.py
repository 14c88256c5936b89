"""Is the Docker engine there? Watching it, and telling everyone once when that changes.

Docker's event stream ends when the daemon goes away, and any call can fail
with "unreachable"; either makes the watch ping the engine. A failed ping
marks the engine unavailable in its EngineState (one `error` event and one
`engine_status` event for clients, `on_lost` for controller/outage.py), then pings again with exponential
back-off. The first answer marks it available again (`on_back`: the
controller relists everything and converges), and the event stream is
subscribed anew. Events are only hints; the relist is what makes it correct.
The watch is the only writer of EngineState; the reconcile and the read side
(controller/view.py) read that, never the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from controller.adapters.docker.failures import describe_host
from controller.clock import iso
from controller.events import ControllerError, EventSink

log = logging.getLogger("flow_manager.engine")


STREAM_MIN_LIFE = 1.0  # seconds: an event stream that ends sooner is retried with back-off
STREAM_RETRY_INITIAL, STREAM_RETRY_MAX = 0.5, 30.0


@dataclass(frozen=True)
class EngineStatus:
    """Extension event `engine_status`: the engine became unreachable, or answers again."""

    available: bool
    docker_host: str
    since: float
    message: str


@dataclass(frozen=True)
class Outage:
    started: float
    ended: float | None = None

    def covers(self, moment: float, slack: float = 1.0) -> bool:
        """Did `moment` fall inside the outage? An engine restarted without live-restore stops its
        containers before its API answers, so such exits fall between the first failed and the first
        good ping; the slack absorbs clock rounding, not real time after the engine is back."""
        return self.started - slack <= moment <= (self.ended if self.ended is not None else time.time()) + slack


class EngineApi(Protocol):
    async def ping(self) -> None: ...
    def events(self) -> AsyncIterator[dict[str, Any]]: ...


class EngineState:
    """What is known of the engine right now: written by the watch only, read by everyone else.

    Created before the watch and handed to the readers (the reconcile, the read side), so nothing but
    the watch holds the watch.
    """

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self.available = True
        self.since = time.time()
        self.last_outage: Outage | None = None
        self.last_error = ""

    def status(self) -> EngineStatus:
        message = "Docker engine available" if self.available else f"Docker engine unreachable: {self.last_error}"
        return EngineStatus(self.available, self.docker_host, self.since, message)


class Suspicion:
    """The port through which a failed Docker call wakes the watch: created first and given to both the
    Docker adapter (which raises it) and the watch (which waits for it), so neither needs the other."""

    def __init__(self) -> None:
        self._raised = asyncio.Event()

    def suspect(self) -> None:
        """A call just failed as if the engine were gone: the watch checks now rather than at the next event."""
        self._raised.set()

    def clear(self) -> None:
        self._raised.clear()

    async def wait(self) -> None:
        await self._raised.wait()


class EngineWatch:
    def __init__(
        self,
        docker: EngineApi,
        sink: EventSink,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_lost: Callable[[], None],
        on_back: Callable[[], Awaitable[None]],
        on_resubscribed: Callable[[], Awaitable[None]] | None = None,
        state: EngineState | None = None,
        docker_host: str = "",
        suspicion: Suspicion | None = None,
        retry_initial: float = 0.25,
        retry_max: float = 5.0,
        ping_timeout: float = 3.0,
    ) -> None:
        self.docker, self.sink = docker, sink
        self.state = state or EngineState(describe_host(docker_host))
        self.on_event, self.on_lost, self.on_back = on_event, on_lost, on_back
        self.on_resubscribed = on_resubscribed
        self.retry_initial, self.retry_max, self.ping_timeout = retry_initial, retry_max, ping_timeout
        self._suspect = suspicion or Suspicion()

    @property
    def available(self) -> bool:
        return self.state.available

    @property
    def since(self) -> float:
        return self.state.since

    @property
    def docker_host(self) -> str:
        return self.state.docker_host

    def suspect(self) -> None:
        """A call just failed as if the engine were gone: check now rather than at the next event."""
        self._suspect.suspect()

    def status(self) -> EngineStatus:
        return self.state.status()

    async def run(self) -> None:
        delay = self.retry_initial
        stream_delay = 0.0  # back-off for an event stream that keeps ending while the engine answers pings
        resubscribing = False
        while True:
            self._suspect.clear()
            error = await self._ping()
            if error is not None:
                self._lost(error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_initial
            if not self.available:
                await self._back()  # relists everything itself
                resubscribing, stream_delay = False, 0.0
            started = time.monotonic()
            suspected = await self._follow_events(relist=resubscribing)
            resubscribing = True
            if suspected or time.monotonic() - started >= STREAM_MIN_LIFE:
                stream_delay = 0.0
                continue
            # A stream refused or cut at once (a socket proxy without /events, say) while pings succeed:
            # no hot loop against the engine; a failing call still wakes the watch at once.
            stream_delay = min(max(STREAM_RETRY_INITIAL, stream_delay * 2), STREAM_RETRY_MAX)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._suspect.wait(), stream_delay)

    async def _ping(self) -> str | None:
        try:
            await asyncio.wait_for(self.docker.ping(), self.ping_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return getattr(exc, "message", None) or repr(exc)
        return None

    async def _follow_events(self, relist: bool) -> bool:
        """Feed events to the reconciler until the stream ends or a call suggests the engine is gone.

        With `relist`, the reconciler relists once the new stream is open: events of the gap between two
        streams are otherwise only caught by the periodic resync. True when it ended on a suspicion.
        """

        async def pump() -> None:
            async for event in self.docker.events():
                self.on_event(event)

        stream = asyncio.create_task(pump(), name="docker-events")
        suspected = asyncio.create_task(self._suspect.wait(), name="docker-suspect")
        try:
            if relist and self.on_resubscribed is not None:
                await asyncio.sleep(0)  # let the stream's request go out first
                await self.on_resubscribed()
            await asyncio.wait({stream, suspected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, suspected):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if stream.done() and not stream.cancelled() and stream.exception() is not None:
            log.warning("Docker event stream failed: %r", stream.exception())
        return suspected.done() and not suspected.cancelled()

    def _lost(self, error: str) -> None:
        state = self.state
        if not state.available:
            return
        state.available, state.since, state.last_error = False, time.time(), error
        state.last_outage = Outage(state.since)
        log.warning("Docker engine %s unreachable: %s", self.docker_host, error)
        self.sink.publish(
            ControllerError(
                "docker_api_error",
                f"Docker engine unreachable: {error}",
                {"operation": "docker_engine", "reason": "docker_unreachable", "docker_host": self.docker_host, "since": iso(self.since)},
            )
        )
        self.sink.publish(self.status())
        self.on_lost()

    async def _back(self) -> None:
        state, now = self.state, time.time()
        if state.last_outage is not None:
            state.last_outage = Outage(state.last_outage.started, now)
        log.warning("Docker engine %s available again after %.1f s", self.docker_host, now - state.since)
        state.available, state.since, state.last_error = True, now, ""
        self.sink.publish(self.status())
        await self.on_back()
