"""Wiring: builds the store, controller and API and ties their lifetimes to the ASGI server."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

import socketio

from api import engineio_tuning
from api.admission import SessionGuard
from api.broadcast import Broadcaster
from api.client_queue import QueueBudget
from api.container_logs import ContainerLogs
from api.diagnostics import GcMonitor, LoopMonitor
from api.diagnostics.figures import Figures
from api.handlers import ApiSettings, Handlers, Route
from api.health import Liveness, Readiness
from api.http_routes import HttpRoutes
from api.inflight import InFlight
from api.limits import RateLimiter
from api.metrics import Metrics, RequestTimings
from api.packet_gate import PacketGate
from api.packets import JsonFirstPacket
from api.schemas import GetMetrics
from controller import metrics as controller_metrics
from controller.adapters.docker import DockerAdapter, describe_host, storage
from controller.adapters.links import LinkManager
from controller.applier import Applier
from controller.bind_sources import BindGuard
from controller.code_deploy import CodeDeployer
from controller.container_config import ContainerDefaults
from controller.crashes import RestartBackoff
from controller.diffs import Diffs
from controller.engine import EngineState, EngineWatch, Suspicion
from controller.loop import ErrorBackoff, Loop
from controller.memory import Memory
from controller.orphans import Orphans
from controller.outage import OutageReactions
from controller.queue import WorkQueue
from controller.reconcile import ContainerReconciler
from controller.status import StatusLoop, StatusReader
from controller.view import Observations
from controller.wakeups import Wakeups
from flow_manager import telemetry
from flow_manager.config import Settings, default_state_dir
from flow_manager.observability import enable_metrics
from flow_manager.security import Security, configure
from store import DesiredState, MemoryStore
from store.code import CodeStore
from store.durability import StateDirError
from store.journal import Journal

log = logging.getLogger("flow_manager")


class FlowManager:
    def __init__(self, settings: Settings, security: Security | None = None) -> None:
        self.settings = settings
        self.security = security or configure(settings)
        engineio_tuning.apply()  # before the server exists: every client socket then uses the cheaper poll
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=self.security.cors,
            logger=False,
            engineio_logger=False,
            serializer=JsonFirstPacket,
            max_http_buffer_size=self.security.transport_ceiling,
            transports=["polling", "websocket"] if settings.allow_polling else ["websocket"],
        )
        self.queues = QueueBudget(self.sio.eio, settings.client_queue_bytes)
        self.queues.install()
        self.admission = SessionGuard(
            self.sio.eio,
            timeout=settings.auth_timeout,
            max_unauthenticated=settings.max_unauthenticated,
            max_per_source=settings.max_unauthenticated_per_source,
        )
        self.admission.install()
        gate = PacketGate(
            socketio.ASGIApp(self.sio, on_startup=self.startup, on_shutdown=self.shutdown),
            limit=settings.max_request_bytes,
            ceiling=self.security.transport_ceiling,
            open_session=lambda sid: sid in self.sio.eio.sockets,
        )
        self.app = HttpRoutes(gate)  # /healthz, /readyz, /metrics beside Socket.IO (routes added at start-up)
        self.serving = False
        if settings.store == "memory":
            self.store, self.codes = MemoryStore(), CodeStore()
        else:
            state = Path(settings.state_dir or default_state_dir()) / settings.instance
            try:
                state.mkdir(parents=True, exist_ok=True)
                os.chmod(state, 0o700)  # the journal holds environment values: readable by the manager's user only
                journal = Journal(state, on_write=controller_metrics.journal_written)
                self.store, self.codes = MemoryStore(journal.load(), journal), CodeStore(state / "code")
            except OSError as exc:  # read-only, not ours: cli.py says so in one line (rc 2)
                raise StateDirError(state, exc) from exc
        self.links: LinkManager | None = None
        self.docker: DockerAdapter | None = None
        self.queue: WorkQueue | None = None
        self.loop: Loop | None = None
        self.status_loop: StatusLoop | None = None
        self.orphans: Orphans | None = None
        self.broadcaster: Broadcaster | None = None
        self.logs: ContainerLogs | None = None
        self.loop_monitor, self.gc_monitor = LoopMonitor(settings.loop_monitor_interval), GcMonitor()
        self.figures: Figures | None = None

    def _bind_sources(self) -> dict[str, str]:
        """Every record's bind sources (real path -> container id), for the check before each start."""
        return {real: record.id for record in self.store.records() for real in record.spec.volumes}

    async def startup(self) -> None:
        """Every long-lived object, built once, in an order that needs no wiring after construction: the
        ports (engine state, the suspicion a failed call raises, the queue) come first, so the engine watch,
        the Docker adapter, the link manager and the read side can each be handed what they talk to."""
        s = self.settings
        engine = EngineState(describe_host(s.docker_host))
        suspicion = Suspicion()
        self.queue = queue = WorkQueue()
        self.docker = DockerAdapter(
            s.docker_host, instance=s.instance, stop_timeout=s.stop_timeout, on_unreachable=suspicion.suspect, pull_missing=s.pull_images
        )
        self.broadcaster = Broadcaster(self.sio)
        self.links = LinkManager(
            s.socket_dir,
            self.broadcaster,
            host_socket_dir=s.socket_host_dir or None,
            max_frame=s.max_frame_bytes,
            send_timeout=s.send_timeout,
            rate_limit=s.link_rate_limit,
            byte_rate_limit=s.link_byte_rate_limit,
            ping_interval=s.link_ping_interval,
            ping_timeout=s.link_ping_timeout,
            wake=queue.add,
        )
        view = Observations(engine, queue.add, self.links)
        deployer = CodeDeployer(self.docker, self.codes, self.links)
        applier = Applier(
            self.docker,
            ContainerDefaults(
                instance=s.instance,
                publish_host_ip=s.publish_host_ip,
                stop_timeout=s.stop_timeout,
                memory_limit=s.default_memory_limit,
                pids_limit=s.default_pids_limit,
                log_max_size=s.container_log_max_size,
                log_max_files=s.container_log_max_files,
                storage_size=await storage.enforced_bound(self.docker.docker, s.flow_image, s.container_disk_limit),
            ),
            self.links,
            deployer,
            binds=BindGuard(self.security.policy.volume_roots, self.security.policy.forbidden, bound=self._bind_sources),
        )
        memory, errors = Memory(), ErrorBackoff()
        diffs = Diffs(
            self.store,
            self.broadcaster,
            view,
            memory,
            engine,
            self.docker,
            links=self.links,
            backoff=RestartBackoff(s.restart_backoff_initial, s.restart_backoff_max, s.restart_backoff_reset),
        )
        orphans = self.orphans = Orphans(self.docker, self.broadcaster, s.orphan_grace)
        reconciler = ContainerReconciler(
            self.store,
            self.docker,
            applier,
            self.broadcaster,
            engine=engine,
            view=view,
            memory=memory,
            diffs=diffs,
            orphans=orphans,
            links=self.links,
            deployer=deployer,
        )
        wakeups = Wakeups(self.store, self.docker, engine, queue.add, resync_period=s.resync_period)
        outage = OutageReactions(self.store, self.broadcaster, view, memory, errors, wakeups.resync)
        watch = EngineWatch(
            self.docker,
            self.broadcaster,
            state=engine,
            suspicion=suspicion,
            on_event=wakeups.docker_event,
            on_lost=outage.lost,
            on_back=outage.back,
            on_resubscribed=wakeups.resync,
            retry_max=s.engine_retry_max,
        )
        self.loop = Loop(
            queue,
            reconciler,
            backoff=errors,
            workers=s.workers,
            key_attribute="container_id",
            sources={"docker-engine": watch.run, "resync": wakeups.resync_forever},
        )
        reader = StatusReader(self.store, view, self.docker, applier.desired_hash, self.links)
        self.status_loop = StatusLoop(reader, self.store, self.broadcaster, s.status_interval, self.broadcaster.listening)
        self.figures = Figures(self.store, view, queue, self.links, self.broadcaster)
        self._serve_health(engine, wakeups)
        timings = RequestTimings()
        self.logs = ContainerLogs(self.docker, self.store, view, self.broadcaster.emitter)
        rounds = self.status_loop.timings  # the status rounds' timing, for get_metrics
        metrics = Metrics(self.loop_monitor, self.gc_monitor, self._counters, lambda: [t.as_dict() for t in rounds], timings)
        Handlers(
            self.sio,
            self.store,
            reader,
            view,
            self.broadcaster,
            ApiSettings(socket_dir=s.socket_dir, request_timeout=s.request_timeout, max_containers=s.max_containers),
            self.links,
            self.codes,
            policy=self.security.policy,
            auth=self.security.auth,
            limiter=self.security.limiter(s),
            timings=timings,
            extensions={"get_metrics": Route("metrics", GetMetrics, metrics.get_metrics, body_optional=True)},
            logs=self.logs,
            admission=self.admission,
            source_limiter=RateLimiter(s.source_rate_limit, s.source_rate_burst),
            in_flight=InFlight(s.max_requests_in_flight_per_connection, s.max_requests_in_flight),
        ).register()
        self.admission.start()
        self.loop_monitor.start()
        self.gc_monitor.start()
        if self.store.journal is not None:
            self.store.journal.start()
        # archives a previous run kept for records that are gone (deleted, or a crash before the prune)
        await self.codes.retain(lambda: {r.code_revision for r in self.store.records() if r.code_revision and r.desired is not DesiredState.DELETED})
        self.broadcaster.start()
        self.loop.start()
        self.links.start()
        self.status_loop.start()
        # Everything that exists now (modules, classes, the wiring: about 60,000 objects) lives as long as
        # the process. Frozen, it is no longer walked by every full garbage collection, which otherwise
        # holds the event loop for about 30 ms each time on a small VM.
        gc.collect()
        gc.freeze()
        self.serving = True
        log.info(
            "flow-manager listening on %s:%s (docker: %s, %s)",
            s.host,
            s.port,
            describe_host(s.docker_host),
            "token required" if self.security.auth.token else "no token: loopback only",
        )
        for warning in self.security.warnings:
            log.warning("%s", warning)

    def _serve_health(self, engine: EngineState, wakeups: Wakeups) -> None:
        """The probes (and the metrics, unless --no-metrics) join Socket.IO on the manager's port."""
        assert self.loop is not None
        liveness = Liveness(self.loop_monitor, stopped=self.loop.stopped)
        journal = self.store.journal.health if self.store.journal is not None else None
        readiness = Readiness(engine=engine, relisted=lambda: wakeups.relisted, listening=lambda: self.serving, journal=journal)
        self.app.serve("/healthz", liveness.respond)
        self.app.serve("/readyz", readiness.respond)
        if self.settings.metrics:
            self.figures.register()
            self.app.serve("/metrics", enable_metrics().render)

    def _counters(self) -> dict[str, object]:
        figures = self.figures
        assert figures is not None  # built at start-up, before any request
        return {
            "containers": {
                "records": len(self.store),
                "links": len(figures.links.links),
                "links_connected": figures.links_connected(),
            },
            "messages": {"to_containers": figures.links.messages_sent, "from_containers": figures.links.messages_received},
            "queue": {"pending": figures.queue_depth()},
            "docker_calls": dict(self.docker.calls) if self.docker else {},
            "clients": figures.clients(),
            # what the availability limits refused or dropped (README "Limitations")
            "sessions": {
                "unauthenticated": len(self.admission.pending),
                "refused": self.admission.refused,
                "expired": self.admission.expired,
                "dropped_slow": self.queues.drops,
                "queued_bytes": self.queues.queued_bytes(),
            },
            # whether intent can be made durable; null with --store memory
            "journal": self.store.journal.health.snapshot() if self.store.journal is not None else None,
            # the orphan reports, also for clients that were not connected when they were made (start-up)
            "orphans": self.orphans.reports() if self.orphans is not None else [],
        }

    async def shutdown(self) -> None:
        self.serving = False  # /readyz says so at once
        await self.admission.stop()
        self.loop_monitor.stop()
        self.gc_monitor.stop()
        if self.logs is not None:
            await self.logs.close()
        for part in (self.status_loop, self.loop, self.broadcaster):
            if part is not None:
                await part.stop()
        if self.links is not None:
            await self.links.close()
        if self.store.journal is not None:
            await self.store.journal.stop()
        if self.docker is not None:
            await self.docker.close()
        self.codes.close()  # removes the temporary directory of --store memory; a state directory stays
        await telemetry.flush()  # the last spans, the shutdown's included


def create_app(settings: Settings, security: Security | None = None) -> Any:
    return FlowManager(settings, security).app
