"""`flow-manager serve` and `flow-manager build-image`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import aiodocker

from flow_manager import __version__
from flow_manager.config import add_arguments, from_namespace


async def _ensure_image(tag: str, docker_host: str | None, force: bool = False) -> str:
    from flow_manager.image import ensure_flow_image

    async with aiodocker.Docker(url=docker_host) as docker:
        return await ensure_flow_image(docker, tag, force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow-manager", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Socket.IO server and the reconcile loop")
    add_arguments(serve)
    build = commands.add_parser("build-image", help="build the reference flow image locally (no registry needed)")
    build.add_argument("--tag", default="flow:latest")
    build.add_argument("--docker-host", default=None)
    build.add_argument("--force", action="store_true", help="rebuild the Debian base layer too")
    args = parser.parse_args(argv)

    level = getattr(args, "log_level", "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.command == "build-image":
        try:
            print(asyncio.run(_ensure_image(args.tag, args.docker_host, args.force)))
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

    telemetry.configure(settings.trace_exporter)
    if settings.build_image:
        try:
            logging.getLogger("flow_manager").info(asyncio.run(_ensure_image(settings.flow_image, settings.docker_host)))
        except Exception as exc:
            print(f"flow-manager: cannot prepare {settings.flow_image}: {exc}", file=sys.stderr)
            return 1
    import uvicorn

    from flow_manager import listener
    from flow_manager.app import create_app

    listener.keep_large_buffers_returnable()
    limits = listener.ConnectionLimits(
        total=listener.raise_file_limit(settings.max_connections, settings.reserved_fds),
        per_source=settings.max_connections_per_source,
        handshake_timeout=settings.handshake_timeout,
    )
    uvicorn.run(
        create_app(settings, security),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        http=listener.http_protocol(limits),
        ws=listener.websocket_protocol(limits),
        ws_max_size=security.transport_ceiling,
        ws_max_queue=8,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
