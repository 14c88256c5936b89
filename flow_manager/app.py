"""Wiring: builds the store, controller and API and ties their lifetimes to the ASGI server."""
from __future__ import annotations

import logging
from typing import Any

import socketio

from api.broadcast import Broadcaster
from api.handlers import ApiSettings, Handlers
from controller.applier import Applier
from controller.container_config import ContainerDefaults
from controller.crashes import RestartBackoff
from controller.docker_adapter import DockerAdapter
from controller.reconciler import Reconciler
from controller.status import StatusLoop, StatusReader
from flow_manager.config import Settings
from store import MemoryStore

log = logging.getLogger("flow_manager")


class FlowManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False,
                                        engineio_logger=False)
        self.app = socketio.ASGIApp(self.sio, on_startup=self.startup, on_shutdown=self.shutdown)
        self.store = MemoryStore()
        self.docker: DockerAdapter | None = None
        self.reconciler: Reconciler | None = None
        self.status_loop: StatusLoop | None = None
        self.broadcaster: Broadcaster | None = None

    async def startup(self) -> None:
        s = self.settings
        self.docker = DockerAdapter(s.docker_host, stop_timeout=s.stop_timeout)
        self.broadcaster = Broadcaster(self.sio)
        applier = Applier(self.docker, ContainerDefaults(publish_host_ip=s.publish_host_ip,
                                                         stop_timeout=s.stop_timeout))
        self.reconciler = Reconciler(
            self.store, self.docker, applier, self.broadcaster,
            backoff=RestartBackoff(s.restart_backoff_initial, s.restart_backoff_max, s.restart_backoff_reset),
            workers=s.workers, resync_period=s.resync_period)
        reader = StatusReader(self.store, self.reconciler, self.docker)
        self.status_loop = StatusLoop(reader, self.store, self.broadcaster, s.status_interval,
                                      self.broadcaster.listening)
        Handlers(self.sio, self.store, reader, self.broadcaster,
                 ApiSettings(socket_dir=s.socket_dir, request_timeout=s.request_timeout)).register()
        self.broadcaster.start()
        self.reconciler.start()
        self.status_loop.start()
        log.info("flow-manager listening on %s:%s (docker: %s)", s.host, s.port, s.docker_host or "local socket")

    async def shutdown(self) -> None:
        for part in (self.status_loop, self.reconciler, self.broadcaster):
            if part is not None:
                await part.stop()
        if self.docker is not None:
            await self.docker.close()


def create_app(settings: Settings) -> Any:
    return FlowManager(settings).app
