"""One benchmark run: baselines, then every phase against one manager, then cleanup.

Order matters for fairness and for the sweep: the message baselines run
before the manager exists; target 1 starts from an empty manager; the churn
runs at a low count; the fan-out's direct baseline runs just before the
manager's fan-out; the manager then grows to `scale` containers in steps,
taking a plot point at each, and the quiet window for targets 4 and 6 comes last.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiodocker

from bench import machine, phase_churn, phase_fanout, phase_intent, phase_messages, phase_scale, processes
from bench.client import BenchClient
from bench.docker_direct import DirectDocker
from bench.session import IMAGE, Session, Sizes
from bench.transport_baselines import runtime_echo, socketio_baselines, unix_echo
from controller import labels


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Run:
    def __init__(self, run_id: str, sizes: Sizes, workdir: Path, keep_log: Path | None = None) -> None:
        self.run_id, self.sizes, self.workdir, self.keep_log = run_id, sizes, workdir, keep_log
        self.instance = f"bench-{run_id}"
        self.direct_instance = f"bench-{run_id}-direct"
        self.manager: processes.Child | None = None
        self.results: dict[str, Any] = {"run_id": run_id, "sizes": asdict(sizes), "baselines": {}, "sweep": [], "errors": {}}

    async def phase(self, name: str, action: Callable[[], Awaitable[Any]], store: bool = True) -> Any:
        log(f"{name} ...")
        started = time.perf_counter()
        try:
            value = await action()
        except Exception as exc:  # one failed phase is recorded; the others still run and are reported
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            log(f"{name} FAILED after {time.perf_counter() - started:.1f} s: {exc}")
            return None
        if store:
            self.results[name] = value
        log(f"{name} done in {time.perf_counter() - started:.1f} s")
        return value

    async def execute(self) -> dict[str, Any]:
        self.results["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        docker = aiodocker.Docker()
        try:
            self.results.update(await machine.describe(docker, processes.ROOT))
            await docker.images.inspect(IMAGE)  # never pulled: there may be no registry
            await self._baselines()
            await self._with_manager(docker)
        finally:
            await self.cleanup(docker)
            await docker.close()
        self.results["machine"]["loadavg_end"] = machine.loadavg()
        self.results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self.results

    async def _baselines(self) -> None:
        sizes = self.sizes
        echo = await self.phase("unix_echo", lambda: unix_echo(self.workdir, sizes.pings), store=False)
        if echo:
            self.results["baselines"]["unix_echo_rtt_ms"] = echo["rtt_ms"]
        runtime = await self.phase("runtime_echo", lambda: runtime_echo(self.workdir, sizes.pings), store=False)
        if runtime:
            self.results["baselines"]["runtime_echo_rtt_ms"] = runtime["rtt_ms"]
        sio = await self.phase("socketio_echo", lambda: socketio_baselines(self.workdir, sizes.pings, sizes.clients, sizes.load_seconds), store=False)
        if sio:
            self.results["baselines"].update(sio)

    async def _with_manager(self, docker: aiodocker.Docker) -> None:
        self.manager = processes.manager(self.workdir, self.instance)
        self.manager.start()
        main = await BenchClient(f"http://127.0.0.1:{self.manager.port}").connect()
        session = Session(self.run_id, self.workdir, self.sizes, self.manager, docker, DirectDocker(docker, self.direct_instance, self.workdir), main)
        self.session = session
        sweep = self.results["sweep"]

        intent = await self.phase("intent", lambda: phase_intent.target(session))
        if intent:
            sweep.append(
                {"managed": 0, "managed_after": len(session.running), "intent_ms": intent["manager_ms"], "direct_ms": intent["direct_same_body_ms"]}
            )
        messages = await self.phase("messages", lambda: phase_messages.target(session))
        if messages:
            sweep.append({"managed": len(session.running), "rtt_ms": messages["rtt_ms"]})
        await self.phase("churn", lambda: phase_churn.target(session))
        await self.phase("fanout", lambda: phase_fanout.target(session))

        after_fanout, scale = len(session.running), self.sizes.scale
        for level in sorted({after_fanout, (after_fanout + scale) // 2, scale - self.sizes.level_sample}):
            if level < len(session.running):
                continue
            await self.phase(f"fill_{level}", lambda level=level: phase_scale.fill_to(session, level), store=False)
            before = len(session.running)
            point = await self.phase(f"level_{before}", lambda: phase_intent.level_point(session, before), store=False)
            if point:
                sweep.append({**point, "managed_after": len(session.running)})
            rtt = await self.phase(f"rtt_{len(session.running)}", lambda: phase_messages.rtt(session, max(200, self.sizes.pings // 2)), store=False)
            if rtt:
                sweep.append({"managed": len(session.running), "rtt_ms": rtt})
        await self.phase("fill_scale", lambda: phase_scale.fill_to(session, self.sizes.scale), store=False)
        await self.phase("status_scale", lambda: phase_scale.status_and_idle(session))
        await self.phase("memory", lambda: phase_scale.memory(session))
        metrics = await self.phase("manager_metrics", lambda: session.metrics(), store=False)
        if metrics:
            self.results["manager_metrics"] = metrics

    async def cleanup(self, docker: aiodocker.Docker) -> None:
        """Delete through the API (the manager's own path), then force-remove anything of this run left."""
        session = getattr(self, "session", None)
        if session is not None and self.manager is not None and self.manager.proc and self.manager.proc.poll() is None:
            slots = asyncio.Semaphore(20)

            async def delete(container_id: str) -> None:
                async with slots:
                    try:
                        await asyncio.wait_for(session.main.delete(container_id), 60)
                    except Exception:
                        pass  # the force-removal below catches anything left

            started = time.perf_counter()
            await asyncio.gather(*(delete(c) for c in session.running))
            self.results["delete_all_s"] = round(time.perf_counter() - started, 2)
            await session.main.close()
        if self.manager is not None:
            self.manager.stop()
        left = await force_cleanup(docker, [self.instance, self.direct_instance])
        if left:
            log(f"force-removed {left} leftover containers")
        if self.manager is not None and self.keep_log is not None and self.manager.log_path.exists():
            shutil.copy(self.manager.log_path, self.keep_log)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def force_cleanup(docker: aiodocker.Docker, instances: list[str]) -> int:
    """Remove every container of these instances, whatever state it is in. Returns how many."""
    removed = 0
    for instance in instances:
        for container in await docker.containers.list(all=True, filters=labels.managed_filter(instance)):
            try:
                await container.delete(force=True)
                removed += 1
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
    return removed
