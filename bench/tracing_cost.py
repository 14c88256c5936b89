"""`python -m bench.tracing_cost`: the manager's CPU per request with tracing off and with OTLP export on.

Alternates managers started with `--trace-exporter none` and `--trace-exporter otlp` (to an OTLP/HTTP
sink in this process that answers 200 and decodes nothing, so the collector costs the manager nothing),
each over the same container and the same work: message round trips (send_message → pong: a request
span and a link.send span), list_containers requests (a request span), and stop/start cycles (request,
reconcile and Docker call spans); with --baseline, also a checkout without the tracing code.
Prints the manager's CPU milliseconds per operation, median of the runs of each mode (docs/performance.md, "Tracing cost").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.client import BenchClient
from bench.processes import cpu_seconds, manager

MODES = ("none", "otlp")


class Sink:
    """An OTLP/HTTP endpoint that takes every export and throws it away."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def _per_op(pid: int, count: int, operation: Any) -> float:
    """Manager CPU milliseconds per call of `operation`, over `count` calls."""
    before = cpu_seconds([pid]).seconds[pid]
    for _ in range(count):
        await operation()
    return round((cpu_seconds([pid]).seconds[pid] - before) * 1000 / count, 4)


async def one_run(mode: str, sink: Sink, workdir: Path, run_id: str, sizes: dict[str, int], baseline: Path | None) -> dict[str, float]:
    child = manager(workdir, f"bench-{run_id}-{mode}")
    child.args += ["--trace-exporter", "none" if mode == "baseline" else mode]
    if mode == "baseline" and baseline is not None:
        child.root = baseline
    child.extra_env.update(OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint)
    child.start()
    client = await BenchClient().connect(f"http://127.0.0.1:{child.port}")
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": f"fmbench-{run_id}-trace-{mode}-{secrets.token_hex(2)}"})
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        while not (await client.call("get_container_status", {"container_id": cid}))["socket_connected"]:
            await asyncio.sleep(0.05)
        for _ in range(100):  # warm-up: imports, caches, the first export
            await client.ping(cid)

        async def cycle() -> None:
            await client.call("stop_container", {"container_id": cid})
            await client.call("start_container", {"container_id": cid})

        result = {
            "message_rt_cpu_ms": await _per_op(child.pid, sizes["pings"], lambda: client.ping(cid)),
            "list_request_cpu_ms": await _per_op(child.pid, sizes["lists"], lambda: client.call("list_containers", {})),
            "stop_start_cycle_cpu_ms": await _per_op(child.pid, sizes["cycles"], cycle),
        }
        await client.call("delete_container", {"container_id": cid})
        return result
    finally:
        await client.close()
        child.stop()


async def measure(runs: int, sizes: dict[str, int], baseline: Path | None, only: tuple[str, ...] = ()) -> dict[str, Any]:
    sink, run_id = Sink(), secrets.token_hex(3)
    modes = ("baseline", *MODES) if baseline is not None else MODES
    modes = tuple(m for m in modes if m in only) if only else modes
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for i in range(runs):
        for mode in modes if i % 2 == 0 else tuple(reversed(modes)):  # alternate the order: drift on a shared machine cancels
            workdir = Path(tempfile.mkdtemp(prefix=f"fmbench-{run_id}-"))
            samples[mode].append(await one_run(mode, sink, workdir, run_id, sizes, baseline))
            print(f"run {i + 1} {mode}: {samples[mode][-1]}", file=sys.stderr)
    medians = {mode: {key: round(statistics.median(s[key] for s in samples[mode]), 4) for key in samples[mode][0]} for mode in modes}
    return {"sizes": sizes, "runs": runs, "samples": samples, "median": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="managers per mode (default 3)")
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="a checkout without tracing (e.g. `git archive` of an older commit): a third mode")
    parser.add_argument("--only", default="", help="comma-separated modes to run (baseline, none, otlp); default all")
    args = parser.parse_args(argv)
    only = tuple(filter(None, args.only.split(",")))
    result = asyncio.run(measure(args.runs, {"pings": args.pings, "lists": args.lists, "cycles": args.cycles}, args.baseline, only))
    print(json.dumps(result["median"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
