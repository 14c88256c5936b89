"""A request flood in its own process (so the measured client's event loop is not the attacker's):
`python -m tests.integration.request_flood PORT CONTAINER_ID CONNECTIONS RATE SECONDS` opens CONNECTIONS
websocket sessions from 127.0.0.2, each sending get_container_status RATE times per second and reading every
answer, and prints what came back as one JSON line (answered, and refusals by details.limit)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

from websockets.asyncio.client import ClientConnection

from tests.integration.abuse import raw_session
from tests.integration.harness import Server


async def one(ws: ClientConnection, request: str, rate: float, stop: asyncio.Event, answers: Counter[str]) -> None:
    async def read() -> None:
        async for frame in ws:
            text = str(frame)
            if text.startswith('42["error"'):
                answers[json.loads(text[2:])[1]["details"].get("limit") or "error"] += 1
            elif text.startswith('42["container_status"'):
                answers["answered"] += 1

    reader = asyncio.create_task(read())
    try:
        while not stop.is_set():
            await ws.send(request)
            await asyncio.sleep(1 / rate)
    finally:
        await ws.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def main(port: int, cid: str, connections: int, rate: float, seconds: float) -> None:
    server = Server.__new__(Server)
    server.port = port
    sessions = [await raw_session(server) for _ in range(connections)]
    print("ready", flush=True)
    stop, answers = asyncio.Event(), Counter[str]()
    request = "42" + json.dumps(["get_container_status", {"container_id": cid}])
    tasks = [asyncio.create_task(one(ws, request, rate, stop, answers)) for ws in sessions]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    port, cid, connections, rate, seconds = sys.argv[1:6]
    asyncio.run(main(int(port), cid, int(connections), float(rate), float(seconds)))
