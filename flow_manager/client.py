"""The Python client: one typed method per request, typed server events, reconnection (docs/client.md).

    async with FlowClient("http://127.0.0.1:8000", token=...) as fm:
        created = await fm.create("flow:latest", name="demo")
        await fm.start("demo")
        async for event in fm.events(kinds={"status_changed"}, container=created.container_id): ...

Answers are parsed with api/responses.py, the models the server's payloads are checked against; every
failure raises FlowError (error_type, message, details as the server sent them). The transport is a
websocket (python-socketio's AsyncClient), which reconnects by itself: the client then says so with a
`reconnected` event and renews what belonged to the old connection (message subscription, log follows).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Collection, Self, TypeVar

import socketio

from api import responses
from api.responses import Payload

DEFAULT_URL = "http://127.0.0.1:8000"
EVENT_QUEUE = 10_000  # events waiting per iterator; beyond, the oldest are dropped (a `dropped` count says so)
P = TypeVar("P", bound=Payload)
Listener = Callable[[str, Any], None]  # (event name, payload as it arrived)


class FlowError(Exception):
    """A request failed: the server's `error` payload, or the connection (error_type `connection_error`)."""

    def __init__(self, error_type: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message, self.details = error_type, message, details or {}


class ConnectionChange(Payload):
    """The client's own events: `disconnected` (with python-socketio's reason) and `reconnected`."""

    connections: int
    reason: str | None = None


@dataclass(frozen=True)
class Event:
    """A server event (`kind` is its name, `data` its model), or the client's own `disconnected`/`reconnected`."""

    kind: str
    container_id: str | None
    data: Payload


class _Subscriber:
    def __init__(self, kinds: Collection[str] | None, container: str | None) -> None:
        self.kinds, self.container = (frozenset(kinds) if kinds else None), container
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if (self.kinds is None or event.kind in self.kinds) and (self.container is None or event.container_id == self.container):
            if self.queue.qsize() >= EVENT_QUEUE:
                self.queue.get_nowait()
                self.dropped += 1
            self.queue.put_nowait(event)


class FlowClient:
    def __init__(
        self, url: str | None = None, *, token: str | None = None, timeout: float = 90.0, reconnect: bool = True, traceparent: str | None = None
    ) -> None:
        self.url = url or os.environ.get("FLOW_MANAGER_URL") or DEFAULT_URL
        self.token = token if token is not None else os.environ.get("FLOW_MANAGER_TOKEN")
        self.traceparent = traceparent  # W3C trace context the manager continues for every request (docs/tracing.md)
        self.timeout = timeout
        self.sio = socketio.AsyncClient(reconnection=reconnect, reconnection_delay=0.5, reconnection_delay_max=5)
        self._subscribers: list[_Subscriber] = []
        self._listeners: list[Listener] = []
        self._connections = 0
        self._subscription: Collection[str] | None = None  # renewed after a reconnection
        self._follows: set[str] = set()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)

    # -- connection --------------------------------------------------------------------------------
    async def connect(self) -> Self:
        try:
            auth = {key: value for key, value in (("token", self.token), ("traceparent", self.traceparent)) if value}
            await self.sio.connect(self.url, transports=["websocket"], auth=auth or None, wait_timeout=10)
        except socketio.exceptions.ConnectionError as exc:
            raise FlowError("connection_error", f"cannot connect to {self.url}: {exc}") from None
        return self

    async def close(self) -> None:
        await self.sio.disconnect()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_connect(self) -> None:
        self._connections += 1
        if self._connections > 1:
            self._publish("reconnected", None, ConnectionChange(connections=self._connections))
            asyncio.get_running_loop().create_task(self._renew())

    async def _on_disconnect(self, *reason: Any) -> None:
        self._publish("disconnected", None, ConnectionChange(connections=self._connections, reason=str(reason[0]) if reason else None))

    async def _renew(self) -> None:
        """What the old connection had: the message subscription and the log follows (from now on)."""
        if self._subscription is not None:
            await self.sio.emit("subscribe_messages", {"container_ids": self._subscription})
        for container_id in sorted(self._follows):
            await self.sio.emit("follow_logs", {"container_id": container_id})

    async def _on_event(self, kind: str, data: Any = None) -> None:
        for listener in self._listeners:
            listener(kind, data)
        if not self._subscribers:
            return  # nobody iterates: parsing every broadcast would only cost CPU
        model = responses.EVENTS.get(kind)
        if model is None or not isinstance(data, dict):
            return  # a request's response event: its answer arrives as the acknowledgement
        container_id = data.get("container_id")
        self._publish(kind, container_id if isinstance(container_id, str) else None, model.model_validate(data))

    def _publish(self, kind: str, container_id: str | None, data: Payload) -> None:
        event = Event(kind, container_id, data)
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def listen(self, listener: Listener) -> None:
        """Call `listener(name, payload)` synchronously for every server event as it arrived, unparsed.

        For recorders and measurements (the test harness, the bench) that need every payload verbatim or
        cannot afford a model per broadcast; everyone else wants events().
        """
        self._listeners.append(listener)

    def subscribe(self, kinds: Collection[str] | None = None, container: str | None = None) -> _Subscriber:
        """A queue of the events from now on (used by events(); open it before the request it should see)."""
        subscriber = _Subscriber(kinds, container)
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    async def events(self, kinds: Collection[str] | None = None, container: str | None = None) -> AsyncIterator[Event]:
        """Server events from now on, optionally only some kinds and one container id (names are not resolved)."""
        subscriber = self.subscribe(kinds, container)
        try:
            while True:
                yield await subscriber.queue.get()
        finally:
            self.unsubscribe(subscriber)

    # -- requests ----------------------------------------------------------------------------------
    async def call_raw(self, operation: str, data: Any, timeout: float | None = None) -> Any:
        """One request and its acknowledgement exactly as sent, `error` payloads included (for tests of the
        wire's answers); no answer in time or no connection raises FlowError."""
        wait = self.timeout if timeout is None else timeout
        try:
            return await self.sio.call(operation, data, timeout=wait)
        except socketio.exceptions.TimeoutError:
            raise FlowError("timeout", f"{operation}: no answer within {wait:g} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise FlowError("connection_error", f"{operation}: not connected to {self.url}") from None

    async def call(self, operation: str, data: dict[str, Any] | None, model: type[P]) -> P:
        """One request and its answer; an `error` answer (or none in time) raises FlowError."""
        answer = await self.call_raw(operation, data)
        if isinstance(answer, dict) and answer.get("error") is True:
            raise FlowError(str(answer.get("error_type")), str(answer.get("message")), answer.get("details") or {})
        return model.model_validate(answer)

    async def create(self, image: str, name: str | None = None, **fields: Any) -> responses.ContainerCreated:
        """`fields`: environment, volumes, ports, command, code_path, memory_limit, pids_limit."""
        body = {"image": image, **({"name": name} if name else {}), **{k: v for k, v in fields.items() if v is not None}}
        return await self.call("create_container", body, responses.ContainerCreated)

    async def start(self, container: str) -> responses.ContainerChanged:
        return await self.call("start_container", {"container_id": container}, responses.ContainerChanged)

    async def stop(self, container: str) -> responses.ContainerChanged:
        return await self.call("stop_container", {"container_id": container}, responses.ContainerChanged)

    async def restart(self, container: str) -> responses.ContainerChanged:
        return await self.call("restart_container", {"container_id": container}, responses.ContainerChanged)

    async def update(self, container: str, code_path: str) -> responses.ContainerUpdated:
        return await self.call("update_container", {"container_id": container, "code_path": code_path}, responses.ContainerUpdated)

    async def delete(self, container: str) -> responses.ContainerChanged:
        return await self.call("delete_container", {"container_id": container}, responses.ContainerChanged)

    async def send(self, container: str, message: dict[str, Any]) -> responses.MessageSent:
        return await self.call("send_message", {"container_id": container, "message": message}, responses.MessageSent)

    async def request(self, container: str, message: dict[str, Any], timeout: float = 10.0) -> responses.MessageReceived:
        """Send a message and wait for the container's next message (its reply)."""
        status = await self.status(container)  # the id: message_received names containers by id
        replies = self.subscribe({"message_received"}, status.container_id)
        try:
            await self.send(status.container_id, message)
            event = await asyncio.wait_for(replies.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise FlowError("timeout", f"no message from {container} within {timeout:g} s") from None
        finally:
            self.unsubscribe(replies)
        return event.data  # type: ignore[return-value]

    async def status(self, container: str) -> responses.ContainerStatus:
        return await self.call("get_container_status", {"container_id": container}, responses.ContainerStatus)

    async def list(self) -> responses.ContainerList:
        return await self.call("list_containers", {}, responses.ContainerList)

    async def subscribe_messages(self, containers: Collection[str] | None) -> responses.MessagesSubscribed:
        body = {"container_ids": None if containers is None else [*containers]}
        answer = await self.call("subscribe_messages", body, responses.MessagesSubscribed)
        self._subscription = answer.container_ids
        return answer

    async def metrics(self, reset: bool = False) -> responses.Metrics:
        return await self.call("get_metrics", {"reset": reset}, responses.Metrics)

    async def logs(
        self, container: str, *, tail: int = 100, since: float | str | None = None, stdout: bool = True, stderr: bool = True, timestamps: bool = True
    ) -> responses.ContainerLogs:
        body: dict[str, Any] = {"container_id": container, "tail": tail, "stdout": stdout, "stderr": stderr, "timestamps": timestamps}
        if since is not None:
            body["since"] = since
        return await self.call("get_container_logs", body, responses.ContainerLogs)

    async def follow_logs(self, container: str, tail: int = 0) -> AsyncIterator[responses.ContainerLog]:
        """The container's new lines as batches until it is deleted (the last batch has `ended`); leaving the
        loop stops the follow. Survives restarts and recreations of the container, and reconnections."""
        batches = self.subscribe({"container_log"})
        followed: str | None = None
        try:
            followed = (await self.call("follow_logs", {"container_id": container, "tail": tail}, responses.LogsFollowed)).container_id
            self._follows.add(followed)
            while True:
                event = await batches.queue.get()
                if event.container_id != followed:
                    continue
                batch: responses.ContainerLog = event.data  # type: ignore[assignment]
                yield batch
                if batch.ended:
                    self._follows.discard(followed)
                    return
        finally:
            self.unsubscribe(batches)
            if followed in self._follows:
                self._follows.discard(followed)
                if self.sio.connected:
                    await self.sio.emit("unfollow_logs", {"container_id": followed})
