"""`flow-manager serve`, `flow-manager build-image` and `flow-manager healthcheck`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

import aiodocker

from flow_manager import __version__
from flow_manager.config import Settings, add_arguments, from_namespace

if TYPE_CHECKING:
    from flow_manager.security import Security


async def _ensure_image(tag: str, docker_host: str | None, force: bool = False) -> str:
    from flow_manager.image import ensure_flow_image

    async with aiodocker.Docker(url=docker_host) as docker:
        return await ensure_flow_image(docker, tag, force=force)


async def _ensure_manager_image(tag: str | None, docker_host: str | None, force: bool = False) -> str:
    from flow_manager.manager_image import ensure_manager_image

    async with aiodocker.Docker(url=docker_host) as docker:
        return await ensure_manager_image(docker, tag, force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow-manager", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Socket.IO server and the reconcile loop")
    add_arguments(serve)
    build = commands.add_parser("build-image", help="build the reference flow image locally (no registry needed)")
    build.add_argument("--tag", default=None, help="default flow:latest, or flow-manager:<version> with --manager")
    build.add_argument("--manager", action="store_true", help="build the image of the manager itself (docs/deployment.md)")
    build.add_argument("--docker-host", default=None)
    build.add_argument("--force", action="store_true", help="rebuild the Debian base layer too (with --manager: the dependency layer)")
    check = commands.add_parser("healthcheck", help="ask a running manager's /healthz (or /readyz); exit 0 when it answers 200")
    check.add_argument("--url", default=None, help="the endpoint (default: /healthz on FLOW_MANAGER_HOST:FLOW_MANAGER_PORT, else 127.0.0.1:8000)")
    check.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    check.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)

    if args.command == "healthcheck":
        from flow_manager.healthcheck import check_url, default_url

        return check_url(args.url or default_url(ready=args.ready), args.timeout)

    from flow_manager import logs

    log_format = getattr(args, "log_format", "text")
    if log_format not in logs.FORMATS:
        print(f"flow-manager: unknown --log-format {log_format!r}: one of {', '.join(logs.FORMATS)}", file=sys.stderr)
        return 2
    logs.configure(getattr(args, "log_level", "info"), log_format)

    if args.command == "build-image":
        try:
            if args.manager:
                print(asyncio.run(_ensure_manager_image(args.tag, args.docker_host, args.force)))
            else:
                print(asyncio.run(_ensure_image(args.tag or "flow:latest", args.docker_host, args.force)))
        except Exception as exc:
            print(f"flow-manager: {exc}", file=sys.stderr)
            return 1
        return 0

    settings = from_namespace(args)
    from flow_manager.security import SecurityConfigError, configure

    try:
        security = configure(settings)  # before anything else: an unsafe configuration never listens
    except SecurityConfigError as exc:
        print(f"flow-manager: {exc}", file=sys.stderr)
        return 2
    from flow_manager import telemetry

    try:
        telemetry.configure(settings.trace_exporter)
    except telemetry.TelemetryConfigError as exc:
        print(f"flow-manager: {exc}", file=sys.stderr)
        return 2
    if settings.build_image:
        try:
            logging.getLogger("flow_manager").info(asyncio.run(_ensure_image(settings.flow_image, settings.docker_host)))
        except Exception as exc:
            print(f"flow-manager: cannot prepare {settings.flow_image}: {exc}", file=sys.stderr)
            return 1
    return _serve(settings, security)  # the last spans are sent by the app's shutdown (telemetry.flush)


def _serve(settings: Settings, security: Security) -> int:
    import uvicorn

    from flow_manager import listener
    from flow_manager.app import create_app
    from store.durability import StateDirError

    try:
        app = create_app(settings, security)
    except StateDirError as exc:  # read-only or not ours: a clear line, not a traceback
        print(f"flow-manager: {exc}", file=sys.stderr)
        return 2
    listener.keep_large_buffers_returnable()
    limits = listener.ConnectionLimits(
        total=listener.raise_file_limit(settings.max_connections, settings.reserved_fds),
        per_source=settings.max_connections_per_source,
        handshake_timeout=settings.handshake_timeout,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,  # json: uvicorn's lines too
        lifespan="on",
        http=listener.http_protocol(limits),
        ws=listener.websocket_protocol(limits),
        ws_max_size=security.transport_ceiling,
        ws_max_queue=8,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
