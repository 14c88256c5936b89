"""Per-container Unix-socket links between the manager and the process inside.

The manager listens; the container dials. Each container's socket lives in a
directory of its own, `<socket-dir>/.links/<id>/link.sock`, and only that
directory is mounted into the container (at /run/flow), so a container never
sees another container's link. `<socket-dir>/<name>.sock` is a symlink to it
for processes on the host. Because the mount is the directory, not the socket
file, a manager restart that binds a fresh socket is visible to the
container at once: the runtime simply dials again.

The directory is mounted read-only (connect() works on a read-only mount), and
the manager never follows a path inside it: a socket is bound and given its
mode in `.links`, which only the manager can write, and renamed into place
already listening. The manager never changes the mode of a directory it did
not create (`--socket-dir` may be a shared one such as /tmp).

Frames are flow_runtime.framing's: 4-byte big-endian length + UTF-8 JSON
object. A bad or oversized frame resets that link only.

A misbehaving container costs only its own link: its frames are rate-limited
and stop being read while too many of them (by count or bytes) wait for
clients, its reconnections are rate-limited (so a reset loop cannot flood
clients with events), and a peer that stops reading is cut off.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from controller.events import Activity, EventSink, MessageReceived
from controller.health import LinkProbe, link_health
from flow_runtime.framing import DEFAULT_MAX_FRAME, HEADER, FrameError, decode, encode

log = logging.getLogger("flow_manager.links")

LINK_DIR_IN_CONTAINER = "/run/flow"
LINK_PATH_IN_CONTAINER = f"{LINK_DIR_IN_CONTAINER}/link.sock"
CONTROL_PREFIX = "flow."
WRITE_BUFFER_LIMIT = 8 << 20  # a peer that stops reading is cut off past this
IN_FLIGHT_LIMIT = 256  # messages of one link queued for clients; past it that link (only) stops being read
IN_FLIGHT_BYTES = 4 << 20  # the same in bytes: a flood of large frames queues little ahead of other links' messages
# A runtime dials once per start. A container that reconnects in a loop (each bad frame resets its link)
# would otherwise turn every reconnection into events for all clients and a reconcile of itself.
CONNECT_RATE, CONNECT_BURST = 2.0, 10  # connections per second one link accepts, and bursts of
MAX_CONNECTIONS = 4  # connections of one link open at once (waiting their turn or served); more are closed
LINKS_DIR = ".links"  # in --socket-dir: the manager's own (0700), one directory per container in it
LINK_DIR_MODE = 0o755  # a container whose user is not the manager's must reach the socket
SOCKET_MODE = 0o666  # the container's user may not be root


class LinkFailure(Exception):
    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_type, self.message, self.details = error_type, message, details


@dataclass
class Link:
    container_id: str
    name: str
    server: asyncio.AbstractServer | None = None
    writer: asyncio.StreamWriter | None = None
    written: int = 0  # bytes handed to `writer` (its transport's buffer or the kernel) since it connected
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    revision: str | None = None
    last_communication: float | None = None
    reload_waiters: list[tuple[str, asyncio.Future[str | None]]] = field(default_factory=list)
    in_flight: int = 0
    in_flight_bytes: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    tokens: float = 0.0
    refilled_at: float = 0.0
    ever_connected: bool = False
    ping_seq: int = 0
    waiting_since: float | None = None  # oldest unanswered flow.ping
    answered_at: float | None = None
    disconnected_at: float | None = None
    run_started_at: float | None = None  # the container's current run, as the reconciler last observed it
    reported_health: str | None = None  # the link-only verdict the reconciler was last woken for
    connections: int = 0
    connect_tokens: float = CONNECT_BURST
    connect_refilled_at: float = field(default_factory=lambda: time.monotonic())

    def wait_for_token(self, rate: float) -> float:
        """Token bucket (burst = one second's worth): seconds to wait before the next frame."""
        now = time.monotonic()
        self.tokens = min(rate, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate

    def wait_for_connect_slot(self) -> float:
        """Token bucket for new connections, reserving: seconds this connection waits before it is served."""
        now = time.monotonic()
        self.connect_tokens = min(CONNECT_BURST, self.connect_tokens + (now - self.connect_refilled_at) * CONNECT_RATE)
        self.connect_refilled_at = now
        self.connect_tokens -= 1
        return 0.0 if self.connect_tokens >= 0 else -self.connect_tokens / CONNECT_RATE

    def busy(self) -> bool:
        return self.in_flight >= IN_FLIGHT_LIMIT or self.in_flight_bytes >= IN_FLIGHT_BYTES

    def delivered(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        if self.in_flight < IN_FLIGHT_LIMIT // 2 and self.in_flight_bytes < IN_FLIGHT_BYTES // 2:
            self.drained.set()


class LinkManager:
    def __init__(self, socket_dir: str, sink: EventSink, *, host_socket_dir: str | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME, send_timeout: float = 5.0, rate_limit: float = 2000.0,
                 ping_interval: float = 5.0, ping_timeout: float = 15.0,
                 wake: Callable[[str], None] = lambda key: None) -> None:
        self.socket_dir = Path(socket_dir)
        self.host_socket_dir = Path(host_socket_dir or socket_dir)  # the same directory as Docker sees it
        self.sink = sink
        self.max_frame = max_frame
        self.send_timeout = send_timeout
        self.rate_limit = rate_limit  # messages per second one container may send; excess waits in its socket
        self.wake = wake  # tells the reconciler a link came or went (code revisions and health are checked then)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.links: dict[str, Link] = {}
        self._prober: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.ping_interval > 0:
            self._prober = asyncio.create_task(self._probe_forever(), name="link-pings")

    # -- paths -------------------------------------------------------------------
    def link_dir(self, container_id: str) -> Path:
        return self.socket_dir / LINKS_DIR / container_id

    def public_path(self, name: str) -> Path:
        return self.socket_dir / f"{name}.sock"

    def mount(self, container_id: str) -> str:
        """Read-only: the container can connect() to its socket but write nothing on the host."""
        return f"{self.host_socket_dir / LINKS_DIR / container_id}:{LINK_DIR_IN_CONTAINER}:ro"

    # -- lifecycle (called by the reconciler) --------------------------------------
    async def ensure(self, record: Any) -> None:
        """Listen on this container's link if not already (idempotent, cheap)."""
        link = self.links.get(record.id)
        if link is not None and link.server is not None:
            return
        link = link or Link(record.id, record.spec.name)
        self.links[record.id] = link
        listening = await asyncio.to_thread(_prepare, self.socket_dir, record.id, self.public_path(record.spec.name))
        try:
            link.server = await asyncio.start_unix_server(
                lambda r, w: self._serve(link, r, w), sock=listening, limit=self.max_frame + 64)
        except BaseException:
            listening.close()
            raise

    async def discard(self, container_id: str, name: str) -> None:
        link = self.links.pop(container_id, None)
        if link is not None:
            if link.server is not None:
                link.server.close()
            if link.writer is not None:
                link.writer.close()
            for _, waiter in link.reload_waiters:
                if not waiter.done():
                    waiter.cancel()
        await asyncio.to_thread(_cleanup, self.link_dir(container_id), self.public_path(name))

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            if link.writer is not None:
                link.writer.close()

    def inputs(self, prepare_for: Any) -> tuple[tuple[str, ...], dict[str, str]]:
        """Mounts and environment a new container needs to reach its link."""
        return (self.mount(prepare_for.id),), {"FLOW_LINK": LINK_PATH_IN_CONTAINER}

    # -- state for status ------------------------------------------------------------
    def connected(self, container_id: str) -> bool:
        link = self.links.get(container_id)
        return link is not None and link.writer is not None and not link.writer.is_closing()

    def last_communication(self, container_id: str) -> float | None:
        link = self.links.get(container_id)
        return link.last_communication if link else None

    def probe(self, container_id: str) -> LinkProbe | None:
        link = self.links.get(container_id)
        if link is None:
            return None
        return LinkProbe(link.ever_connected, self.connected(container_id), link.waiting_since, link.answered_at,
                         link.disconnected_at, link.run_started_at)

    def observe_run(self, container_id: str, started_at: float | None) -> None:
        """The container's current run began at `started_at`: a link dropped before it is not an outage,
        for the prober and the reconciler alike."""
        link = self.links.get(container_id)
        if link is not None:
            link.run_started_at = started_at

    def revision(self, container_id: str) -> str | None:
        link = self.links.get(container_id)
        return link.revision if link is not None and self.connected(container_id) else None

    # -- traffic -------------------------------------------------------------------
    async def send(self, container_id: str, message: dict[str, Any]) -> None:
        """Hand one frame to the container's link.

        Returning means the whole frame reached the kernel's socket buffer (the transport buffers nothing
        ahead of it, see _take_over), so it is delivered unless the container goes away. A frame the
        container does not take within the send timeout is cancelled: the link is reset while part of the
        frame is still unsent, so the container never reads it as a message (a truncated frame is discarded
        by the framing) and a client may retry without duplicates; the runtime dials again.
        """
        link = self.links.get(container_id)
        if link is None or link.writer is None or link.writer.is_closing():
            raise LinkFailure("socket_connection_error", "the container's link is not connected")
        try:
            frame = encode(message, self.max_frame)
        except (FrameError, TypeError, ValueError) as exc:
            raise LinkFailure("socket_error", f"message cannot be framed: {exc}") from None
        async with link.write_lock:  # frames from concurrent senders never interleave
            writer = link.writer
            if writer is None or writer.is_closing():
                raise LinkFailure("socket_connection_error", "the container's link is not connected")
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                writer.close()
                raise LinkFailure("socket_error", "the container is not reading its link; link reset")
            try:
                writer.write(frame)
                link.written += len(frame)
                end = link.written
                if writer.transport.get_write_buffer_size() or writer.transport.is_closing():
                    # Only a frame the kernel did not take at once needs waiting for (wait_for costs a task).
                    await asyncio.wait_for(writer.drain(), self.send_timeout)
            except TimeoutError:
                current = writer is link.writer and not writer.transport.is_closing()
                if current and link.written - writer.transport.get_write_buffer_size() >= end:
                    pass  # the frame is in the kernel; only a ping written after it is waiting
                else:
                    writer.transport.abort()  # drops the frame's unsent rest: never delivered
                    raise LinkFailure(
                        "socket_timeout_error",
                        f"the container did not read the message within {self.send_timeout:g} s; the message was "
                        "cancelled and the link reset (the container may dial again)",
                        delivery="not_delivered" if current else "unknown", link_reset=True) from None
            except (ConnectionError, OSError) as exc:
                raise LinkFailure("socket_error", f"link write failed: {exc}", delivery="unknown") from None
        command = message.get("command")
        if not (isinstance(command, str) and command.startswith(CONTROL_PREFIX)):
            link.last_communication = time.time()

    async def reload(self, container_id: str, revision: str, timeout: float) -> None:
        """Ask the runtime to load new code and wait until it runs `revision`."""
        link = self.links.get(container_id)
        if link is None:
            raise LinkFailure("socket_connection_error", "the container's link is not connected")
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        entry = (revision, waiter)
        link.reload_waiters.append(entry)
        try:
            await self.send(container_id, {"command": "flow.reload", "revision": revision})
            try:
                error = await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise LinkFailure("socket_timeout_error",
                                  f"the runtime did not confirm revision {revision} within {timeout:g} s") from None
            if error:
                raise LinkFailure("socket_error", f"the runtime could not load revision {revision}: {error}")
        finally:
            if entry in link.reload_waiters:
                link.reload_waiters.remove(entry)

    # -- liveness -------------------------------------------------------------------
    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            now = time.time()
            for link in list(self.links.values()):
                self._ping(link, now)
                verdict = link_health(self.probe(link.container_id), now=now, timeout=self.ping_timeout)
                if verdict != link.reported_health:
                    link.reported_health = verdict
                    self.wake(link.container_id)

    def _ping(self, link: Link, now: float) -> None:
        """Never waits: a ping that cannot be written at once is just an unanswered ping."""
        writer = link.writer
        if writer is None or writer.is_closing() or link.waiting_since is not None:
            return
        link.ping_seq += 1
        link.waiting_since = now
        if writer.transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT:
            frame = encode({"command": "flow.ping", "seq": link.ping_seq}, self.max_frame)
            writer.write(frame)
            link.written += len(frame)

    async def _serve(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if link.connections >= MAX_CONNECTIONS:
            writer.close()
            return
        link.connections += 1
        try:
            delay = link.wait_for_connect_slot()
            if delay:
                await asyncio.sleep(delay)
            if self.links.get(link.container_id) is link:
                await self._take_over(link, reader, writer)
        finally:
            link.connections -= 1
            writer.close()

    async def _take_over(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if link.writer is not None:  # the newest connection wins (a restarted runtime)
            link.writer.close()
        # drain() returns only once the kernel took every byte: a send answered "sent" is never still in
        # the transport's buffer, so resetting a link (a cancelled send) loses no frame already answered.
        writer.transport.set_write_buffer_limits(high=0)
        link.writer, link.written = writer, 0
        link.ever_connected, link.waiting_since, link.answered_at, link.disconnected_at = True, None, None, None
        self.wake(link.container_id)
        try:
            while True:
                while link.busy():  # backpressure: a flood slows only its own link
                    link.drained.clear()
                    await link.drained.wait()
                delay = link.wait_for_token(self.rate_limit)
                if delay:
                    await asyncio.sleep(delay)
                frame = await read_sized_frame(reader, self.max_frame)
                if frame is None:
                    break
                self._received(link, *frame)
        except FrameError as exc:
            log.warning("link of %s reset: %s", link.container_id, exc)
            self.sink.publish(Activity("container_error", link.container_id, f"link reset: {exc}",
                                       {"error_type": "socket_error"}))
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            if link.writer is writer:
                link.writer = None
                link.revision = None
                link.waiting_since, link.disconnected_at = None, time.time()
                self.wake(link.container_id)

    def _received(self, link: Link, message: dict[str, Any], size: int = 0) -> None:
        command = message.get("command")
        if isinstance(command, str) and command.startswith(CONTROL_PREFIX):
            if command == "flow.pong":
                link.waiting_since, link.answered_at = None, time.time()
                if link.reported_health != "healthy":
                    link.reported_health = "healthy"
                    self.wake(link.container_id)
                return
            if command in ("flow.hello", "flow.reloaded"):
                revision = message.get("revision")
                link.revision = revision if isinstance(revision, str) else None
                for wanted, waiter in list(link.reload_waiters):
                    if not waiter.done() and (wanted == link.revision or message.get("error")):
                        waiter.set_result(message.get("error"))
                if command == "flow.hello":
                    self.wake(link.container_id)
            return
        link.last_communication = time.time()
        if self.sink.publish(MessageReceived(link.container_id, message, link.last_communication),
                             lambda: link.delivered(size)):
            link.in_flight += 1
            link.in_flight_bytes += size
        self.sink.publish(Activity("message_received", link.container_id,
                                   f"Message received from container {link.name}",
                                   {"command": command if isinstance(command, str) else None}))


async def read_sized_frame(reader: asyncio.StreamReader, max_size: int) -> tuple[dict[str, Any], int] | None:
    """framing.read_frame that also says how large the frame was (for the in-flight byte budget)."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from None
        return None
    (length,) = HEADER.unpack(header)
    if length > max_size:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_size}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame body") from None
    return decode(body), length


def _prepare(socket_dir: Path, container_id: str, public: Path) -> socket.socket:
    """Bind and listen on the container's link, and return the listening socket.

    The link directory is the container's (mounted at /run/flow; read-only, but a container created by an
    older manager had it writable), so nothing here follows a path inside it: the socket is bound and
    given its mode in `.links`, which only the manager can write, then renamed over whatever the link
    directory holds under link.sock (rename replaces a symlink, it never follows one). Every step is
    relative to a descriptor of `.links`, so no path is resolved twice.
    """
    socket_dir.mkdir(parents=True, exist_ok=True)  # created with the default mode when missing; never chmodded
    links = _own_directory(socket_dir, LINKS_DIR, 0o700)  # other local users could take over a link
    staged = f".{container_id}.sock"
    target = f"{container_id}/link.sock"
    try:
        os.close(_own_directory(links, container_id, LINK_DIR_MODE))
        _unlink(staged, links)  # left over by a manager that died here
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(f"/proc/self/fd/{links}/{staged}")  # short, and not resolved through socket_dir again
            os.chmod(staged, SOCKET_MODE, dir_fd=links)
            listening.listen(100)
            try:
                os.rename(staged, target, src_dir_fd=links, dst_dir_fd=links)
            except IsADirectoryError:  # planted by a container of an older manager (a writable mount)
                shutil.rmtree(target, dir_fd=links)  # descriptor-based: follows no symlink inside
                os.rename(staged, target, src_dir_fd=links, dst_dir_fd=links)
        except BaseException:
            listening.close()
            _unlink(staged, links)
            raise
    finally:
        os.close(links)
    relative = os.path.relpath(socket_dir / LINKS_DIR / target, public.parent)
    try:
        if public.is_symlink() and os.readlink(public) == relative:
            return listening
        if public.is_symlink() or public.exists():
            public.unlink()
        public.symlink_to(relative)
    except BaseException:
        listening.close()
        raise
    return listening


def _own_directory(parent: Path | int, name: str, mode: int) -> int:
    """Open (creating it with `mode` if missing) a directory the manager owns, and return its descriptor.

    A symlink or anything else in its place, or a directory of another user, is refused; a mode that
    differs from `mode` is fixed on the descriptor (the directory is the manager's own).
    """
    parent_fd = parent if isinstance(parent, int) else os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    where = LINKS_DIR if isinstance(parent, int) else parent
    try:
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
        except OSError as exc:
            raise PermissionError(f"refusing {name} in {where}: not a directory of its own ({exc.strerror})") from None
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            os.close(fd)
            raise PermissionError(f"refusing {name} in {where}: owned by uid {info.st_uid}, not the manager's")
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
        return fd
    finally:
        if not isinstance(parent, int):
            os.close(parent_fd)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _cleanup(directory: Path, public: Path) -> None:
    if public.is_symlink():
        public.unlink()
    shutil.rmtree(directory, ignore_errors=True)
