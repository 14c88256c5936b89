"""The reference flow runtime: the process flow:latest runs (`python3 -m flow_runtime`, see __main__).

It keeps running until SIGTERM, dials the manager's Unix-socket link, answers
``ping`` itself and hands every other message to ``handle()`` in the user's
``main.py``. Control frames (``flow.*`` commands) let the manager swap the code
without recreating the container.
"""

import asyncio
import collections
import importlib.util
import inspect
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import flow_runtime
from flow_runtime.framing import DEFAULT_MAX_FRAME, FrameError, encode, read_frame
from flow_runtime.protocol import HELLO, LINK_ENV, PING, PONG, RELOAD, RELOADED
from flow_runtime.protocol import LINK_PATH as DEFAULT_LINK_PATH

LINK_PATH = os.environ.get(LINK_ENV, DEFAULT_LINK_PATH)
CODE_DIR = Path(os.environ.get("FLOW_CODE_DIR", "/opt/flow/code"))
REVISION_FILE = ".flow-revision"
OUTBOX_LIMIT = 10_000

log = logging.getLogger("flow_runtime")


class UserCode:
    """The user's code, (re)loaded on demand so updates need no restart.

    The manager deploys each revision into a fresh directory and switches the
    ``FLOW_CODE_DIR`` symlink to it, so a load reads one whole revision. Every
    module loaded from an earlier tree is dropped from ``sys.modules`` and its
    directory from ``sys.path`` first: ``import helper`` in the new ``main.py``
    then imports the new helper, and a module deleted from the revision is gone.
    """

    def __init__(self, code_dir: Path) -> None:
        self.code_dir = code_dir
        self.module: ModuleType | None = None
        self.revision: str | None = None
        self.load_error: str | None = None
        self.current: Path | None = None  # the directory the code was last loaded from (the symlink resolved)
        self.trees: set[str] = {str(code_dir)}  # every directory code was loaded from, for forgetting it
        self._pruning = threading.Lock()

    def _forget_old_trees(self) -> None:
        roots = tuple(tree.rstrip("/") + "/" for tree in self.trees)
        for name, module in list(sys.modules.items()):
            places = [getattr(module, "__file__", None) or "", *(getattr(module, "__path__", None) or [])]
            if any(isinstance(place, str) and place.startswith(roots) for place in places):
                del sys.modules[name]
        sys.path[:] = [entry for entry in sys.path if entry.rstrip("/") not in self.trees]
        importlib.invalidate_caches()

    def load(self) -> None:
        self._forget_old_trees()
        current = Path(os.path.realpath(self.code_dir))
        self.current = current
        self.trees.add(str(current))
        revision_file = current / REVISION_FILE
        self.revision = revision_file.read_text().strip() if revision_file.exists() else None
        entry = current / "main.py"
        self.module, self.load_error = None, None
        try:
            os.chdir(current)  # relative paths in user code mean this revision's files
        except OSError:
            pass
        if not entry.exists():
            return
        name = f"flow_user_main_{time.monotonic_ns()}"
        spec = importlib.util.spec_from_file_location(name, entry)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(current))
        try:
            spec.loader.exec_module(module)
        except Exception:  # user code: report, keep running
            self.load_error = traceback.format_exc(limit=5)
            return
        self.module = module

    def prune(self, older_than: float = 60.0) -> None:
        """Remove revision directories other than the current one, off the event loop. Kept: the
        directory the symlink points at now and the one the running code was loaded from, each read
        again before every removal (a deploy may switch meanwhile), and any directory changed within
        `older_than` seconds (Docker may still be extracting it; a finished extraction sets the
        directory's time from the archive, which is the epoch)."""
        with self._pruning:
            loaded = self.current
            if loaded is None or loaded.parent.name != "revisions":
                return  # code copied in by an older manager (one tree, no revisions): nothing to prune
            cutoff = time.time() - older_than
            for other in list(loaded.parent.iterdir()):
                try:
                    keep = {Path(os.path.realpath(self.code_dir)), self.current}
                    if other in keep or other.is_symlink() or not other.is_dir() or other.stat().st_mtime > cutoff:
                        continue
                    shutil.rmtree(other)
                except OSError as exc:
                    log.debug("could not remove %s: %s", other, exc)

    async def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self.load_error:
            raise RuntimeError(f"main.py failed to load:\n{self.load_error}")
        handler = getattr(self.module, "handle", None)
        if handler is None:
            return {"command": "unhandled", "data": {"received": message.get("command")}}
        if inspect.iscoroutinefunction(handler):
            result = await handler(message)
        else:
            result = await asyncio.to_thread(handler, message)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"handle() returned {type(result).__name__}, expected dict or None")
        return result


class Runtime:
    def __init__(self) -> None:
        self.code = UserCode(CODE_DIR)
        self.outbox: collections.deque[dict[str, Any]] = collections.deque(maxlen=OUTBOX_LIMIT)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def enqueue(self, message: dict[str, Any]) -> None:
        """Thread-safe entry point behind flow_runtime.send()."""

        def put() -> None:
            self.outbox.append(message)
            self.wake.set()

        self.loop.call_soon_threadsafe(put)

    async def dispatch(self, message: dict[str, Any]) -> None:
        command = message.get("command")
        if command == "ping":
            self.enqueue({"command": "pong", "data": {"time": time.time(), "revision": self.code.revision}})
            return
        if command == PING:  # the manager's liveness probe; never shown to clients
            self.enqueue({"command": PONG, "seq": message.get("seq")})
            return
        if command == RELOAD:
            self.code.load()
            reply: dict[str, Any] = {"command": RELOADED, "revision": self.code.revision}
            if self.code.load_error:
                reply["error"] = self.code.load_error
            self.enqueue(reply)
            self.loop.run_in_executor(None, self.code.prune)
            return
        try:
            result = await self.code.handle(message)
        except Exception as exc:  # user code must never take the runtime down
            self.enqueue(
                {
                    "command": "error",
                    "data": {
                        "error": str(exc),
                        "type": type(exc).__name__,
                        "traceback": traceback.format_exc(limit=5),
                        "request": message.get("command"),
                    },
                }
            )
            return
        if result is not None:
            self.enqueue(result)

    async def writer(self, stream: asyncio.StreamWriter) -> None:
        while True:
            while self.outbox:
                message = self.outbox[0]
                try:
                    frame = encode(message, DEFAULT_MAX_FRAME)
                except (FrameError, TypeError, ValueError) as exc:
                    self.outbox[0] = {"command": "error", "data": {"error": f"unsendable message: {exc}"}}
                    continue
                stream.write(frame)
                await stream.drain()
                self.outbox.popleft()  # only dropped once written
            self.wake.clear()
            await self.wake.wait()

    async def session(self) -> None:
        reader, stream = await asyncio.open_unix_connection(LINK_PATH)
        log.info("link connected at %s", LINK_PATH)
        self.outbox.appendleft({"command": HELLO, "revision": self.code.revision, "pid": os.getpid()})
        self.wake.set()
        writer = asyncio.create_task(self.writer(stream))
        try:
            while True:
                reading = asyncio.ensure_future(read_frame(reader, DEFAULT_MAX_FRAME))
                done, _ = await asyncio.wait({reading, writer}, return_when=asyncio.FIRST_COMPLETED)
                if writer in done:
                    reading.cancel()
                    writer.result()
                message = reading.result()
                if message is None:
                    return
                await self.dispatch(message)  # one at a time: replies keep request order
        finally:
            writer.cancel()
            stream.close()

    async def link_forever(self) -> None:
        delay = 0.05
        while not self.stopping.is_set():
            try:
                await self.session()
                delay = 0.05
            except (OSError, FrameError, ConnectionError) as exc:
                log.debug("link unavailable: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.code.load()
        self.loop.run_in_executor(None, self.code.prune)
        flow_runtime._sender = self.enqueue
        link = asyncio.create_task(self.link_forever())
        await self.stopping.wait()
        link.cancel()


async def _serve() -> None:
    await Runtime().run()


def main() -> None:
    logging.basicConfig(level=os.environ.get("FLOW_LOG_LEVEL", "INFO"), format="%(asctime)s flow-runtime %(levelname)s %(message)s")
    print("flow runtime started", flush=True)
    asyncio.run(_serve())
    print("flow runtime stopped", flush=True)
