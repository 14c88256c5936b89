"""What the metrics cost: manager CPU per message round trip with `--no-metrics` and with `--metrics`.

`python -m bench.metrics_cost [--round-trips N] [--pairs P]`: starts a manager, one flow container, and one
client sending `send_message` pings back to back until each `message_received` pong (the round trip of
target 3a); the manager's CPU time over the round trips is divided by their number. With metrics on,
/metrics is scraped every second meanwhile, as Prometheus would, so the scrape's own cost is in the figure.
The two settings alternate (off, on, off, on, ...) with a fresh manager each time, so a machine whose
speed drifts affects both alike; the medians are compared. Written for docs/performance.md ("Metrics").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import urllib.request
import uuid
from pathlib import Path

from bench.client import BenchClient
from bench.load import sequential
from bench.processes import cpu_seconds, manager


async def _scrape_forever(url: str) -> None:
    while True:
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        await asyncio.sleep(1.0)


async def _first_pong(client: BenchClient, container_id: str, attempts: int = 60) -> None:
    """Until the container's link is up: a ping sent before that is answered by an error, not a pong."""
    for _ in range(attempts):
        try:
            await client.ping(container_id, timeout=0.5)
            return
        except TimeoutError:
            continue
    raise RuntimeError("the container never answered a ping")


async def one_run(metrics_on: bool, round_trips: int, workdir: Path) -> float:
    """Manager CPU milliseconds per round trip for one fresh manager."""
    child = manager(workdir, f"bench-metrics-{uuid.uuid4().hex[:6]}")
    child.args.append("--metrics" if metrics_on else "--no-metrics")
    child.start()
    client = await BenchClient().connect(f"http://127.0.0.1:{child.port}")
    scraper: asyncio.Task[None] | None = None
    container_id = ""
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": f"bench-metrics-{uuid.uuid4().hex[:6]}"})
        container_id = created["container_id"]
        await client.call("start_container", {"container_id": container_id})
        await _first_pong(client, container_id)
        await sequential(lambda: client.ping(container_id), 0, warmup=300)  # caches warm
        if metrics_on:
            scraper = asyncio.create_task(_scrape_forever(f"http://127.0.0.1:{child.port}/metrics"))
        before = cpu_seconds([child.pid])
        await sequential(lambda: client.ping(container_id), round_trips)
        after = cpu_seconds([child.pid])
        return (after.seconds[child.pid] - before.seconds[child.pid]) * 1000 / round_trips
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
        if container_id:
            with contextlib.suppress(Exception):
                await client.call("delete_container", {"container_id": container_id})
        await client.close()
        child.stop()


async def measure(round_trips: int, pairs: int) -> dict[str, object]:
    runs: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        for pair in range(pairs):
            for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
                workdir = Path(tmp) / f"{pair}-{mode}"
                workdir.mkdir()
                runs[mode].append(round(await one_run(mode == "on", round_trips, workdir), 4))
                print(f"pair {pair + 1}/{pairs}, metrics {mode}: {runs[mode][-1]:.4f} ms manager CPU per round trip", flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    return {"round_trips": round_trips, "runs": runs, "median_off_ms": off, "median_on_ms": on, "extra_percent": round((on / off - 1) * 100, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--round-trips", type=int, default=3000)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(measure(args.round_trips, args.pairs))
    print(result)


if __name__ == "__main__":
    main()
