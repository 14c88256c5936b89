"""The generic reconcile loop: workers taking keys from the queue, and what happens after each pass.

It knows nothing of containers (controller-runtime's controller, apart from its Reconcile): a worker
takes a key (the queue hands a key to one worker at a time), calls the reconciler, and then
- on success forgets the key's error back-off and requeues it if the result asks (`requeue_after`);
- on a failure asks the reconciler what to do (`Retry`): nothing, a fixed delay, or the key's
  exponential error back-off (ErrorBackoff, controller-runtime's per-item failure rate limiter).
The sources that feed the queue from outside (an event stream, a periodic resync) run beside the
workers and stop with them. Each pass is counted and timed by result, and each retry counted
(controller/metrics.py: controller-runtime's reconcile_total, reconcile_time_seconds, workqueue_retries_total).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Mapping, Protocol

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from controller import metrics
from controller.queue import WorkQueue
from controller.tracing import log_fields

log = logging.getLogger("flow_manager.controller")
tracer = trace.get_tracer("flow_manager.controller")


@dataclass(frozen=True)
class Result:
    """A successful pass. `requeue_after`: look at the key again after this many seconds (not an error)."""

    requeue_after: float | None = None


@dataclass(frozen=True)
class Retry:
    """What the loop does with a key whose pass failed: retry after `after` s, or after the key's error
    back-off (`backoff`), or not at all (neither: the next wake-up will do)."""

    after: float | None = None
    backoff: bool = False


NO_RETRY = Retry()
BACKOFF = Retry(backoff=True)


class Reconciler(Protocol):
    async def reconcile(self, key: str) -> Result: ...
    def failed(self, key: str, error: Exception) -> Retry: ...
    def succeeded(self, key: str) -> None: ...


class ErrorBackoff:
    """Per-key exponential back-off of failing passes: `initial`, doubling up to `maximum`; forgotten on
    the key's next success (or all at once, when the cause of every failure is known to be gone)."""

    def __init__(self, initial: float = 0.5, maximum: float = 60.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._delays: dict[str, float] = {}

    def when(self, key: str) -> float:
        """The delay before the key's next try, one step longer than the last one."""
        delay = min(max(self.initial, self._delays.get(key, 0.0) * 2), self.maximum)
        self._delays[key] = delay
        return delay

    def forget(self, key: str) -> None:
        self._delays.pop(key, None)

    def forget_all(self) -> None:
        self._delays.clear()

    def failures(self, key: str) -> float:
        """The key's current delay (0: no failure since its last success)."""
        return self._delays.get(key, 0.0)


class Loop:
    def __init__(
        self,
        queue: WorkQueue,
        reconciler: Reconciler,
        *,
        backoff: ErrorBackoff,
        workers: int = 32,
        sources: Mapping[str, Callable[[], Coroutine[Any, Any, None]]] | None = None,
        span: str = "reconcile",
        key_attribute: str = "key",
    ) -> None:
        self.queue, self.reconciler, self.backoff, self.workers = queue, reconciler, backoff, workers
        self.sources = dict(sources or {})  # name -> a coroutine that runs until cancelled, feeding the queue
        self.span, self.key_attribute = span, key_attribute
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.span}-worker-{i}") for i in range(self.workers)]
        self._tasks += [asyncio.create_task(run(), name=name) for name, run in self.sources.items()]

    def stopped(self) -> list[str]:
        """The names of workers and sources that have ended: none should while the loop runs (liveness)."""
        return [task.get_name() for task in self._tasks if task.done()]

    async def stop(self) -> None:
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: str) -> None:
        """One pass over one key and what follows it (the caller holds the key: see WorkQueue.get).

        The pass has a span (`self.span`, the key as `flow.<key_attribute>`), and its log lines carry the
        key; what the reconciler decides after a failure belongs to the same span. Its result and duration
        are counted (controller/metrics.py)."""
        started = time.perf_counter()
        attributes = {f"flow.{self.key_attribute}": key}
        with (
            tracer.start_as_current_span(self.span, attributes=attributes, record_exception=False) as span,
            log_fields(event=self.span, **{self.key_attribute: key}),
        ):
            try:
                result = await self.reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _count(metrics.RESULT_ERROR, started)
                if span.is_recording():
                    span.record_exception(exc)
                    span.set_attributes({"flow.outcome": "error", "error.type": str(getattr(exc, "error_type", type(exc).__name__))})
                    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                retry = self.reconciler.failed(key, exc)
                if retry.backoff:
                    self.queue.add_after(key, self.backoff.when(key))
                elif retry.after is not None:
                    self.queue.add_after(key, retry.after)
                if retry.backoff or retry.after is not None:
                    metrics.WORKQUEUE_RETRIES.add(1)
                return
            _count(metrics.RESULT_SUCCESS if result.requeue_after is None else metrics.RESULT_REQUEUE, started)
            if span.is_recording():
                span.set_attribute("flow.outcome", "ok" if result.requeue_after is None else "requeue")
            self.backoff.forget(key)
            self.reconciler.succeeded(key)
            if result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)


def _count(result: dict[str, str], started: float) -> None:
    metrics.RECONCILES.add(1, result)
    metrics.RECONCILE_DURATION.record(time.perf_counter() - started, result)
