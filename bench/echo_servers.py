"""Reference servers for the same-run baselines of target 3 (run as child processes).

`python -m bench.echo_servers socketio PORT`: python-socketio on uvicorn
configured exactly as `flow-manager serve` is (ASGI, websockets, uvloop when
installed): `echo` answers with its argument (acknowledgement), `broadcast`
emits `pong` with its argument to every client, like `message_received`;
`unicast` emits it to the sender only, like `message_received` to clients
that used the `subscribe_messages` extension.
`python -m bench.echo_servers unix PATH`: an AF_UNIX server speaking the
links' framing (4-byte length + JSON) that echoes every frame, standing in for
the runtime on the other end of a link.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from flow_runtime.framing import encode, read_frame


def serve_socketio(port: int) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False)

    @sio.on("echo")
    async def echo(sid: str, data: Any = None) -> Any:
        return data

    @sio.on("broadcast")
    async def broadcast(sid: str, data: Any = None) -> None:
        await sio.emit("pong", data)

    @sio.on("unicast")
    async def unicast(sid: str, data: Any = None) -> None:
        await sio.emit("pong", data, to=sid)

    uvicorn.run(socketio.ASGIApp(sio), host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="websockets")


async def _serve_unix(path: str) -> None:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (message := await read_frame(reader)) is not None:
            writer.write(encode(message))
        writer.close()

    server = await asyncio.start_unix_server(session, path=path)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    kind, where = argv[0], argv[1]
    if kind == "socketio":
        serve_socketio(int(where))
    elif kind == "unix":
        asyncio.run(_serve_unix(where))
    else:
        raise SystemExit(f"unknown server {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
