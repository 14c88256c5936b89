"""`flowctl top`: every container's state, health, uptime, CPU, memory, restarts, link and last message.

The model starts from one list and one status per container, then changes only with the server's
events (container_status_update every status round, status_changed at once, message_received,
container_crashed): no per-container polling. `render()` is pure, so a recorded Rich console shows
exactly what a terminal would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.table import Table

from api import responses
from flow_manager.client import Event, FlowClient
from flow_manager.flowctl.output import size

TOP_EVENTS = {"container_status_update", "status_changed", "message_received", "container_crashed"}


@dataclass
class Row:
    container_id: str
    name: str = "?"
    state: str = "?"
    health: str = "-"
    uptime: str = "-"
    cpu: float | None = None
    memory: int | None = None
    restarts: int = 0
    link: bool = False
    last_message: float | None = None  # local time it arrived


@dataclass
class TopModel:
    rows: dict[str, Row] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)  # ids seen in events but never described: status asked once

    def apply_status(self, container_id: str, status: responses.StatusFields) -> None:
        row = self.rows.setdefault(container_id, Row(container_id))
        row.name, row.state, row.health, row.uptime = status.name, status.state, status.health, status.uptime
        row.cpu = status.resource_usage.get("cpu_percent")
        row.memory = status.resource_usage.get("memory_usage")
        row.restarts, row.link = status.restart_count, status.socket_connected
        if row.state == "deleted":
            del self.rows[container_id]

    def apply(self, event: Event) -> None:
        cid, data = event.container_id, event.data
        if cid is None:
            return
        if isinstance(data, responses.StatusUpdate):
            self.apply_status(cid, data.status)
            return
        row = self.rows.get(cid)
        if row is None:
            self.unknown.add(cid)
            return
        if isinstance(data, responses.StatusChanged):
            row.state = data.new_state
            if row.state == "deleted":
                del self.rows[cid]
        elif isinstance(data, responses.MessageReceived):
            row.last_message = time.time()
        elif isinstance(data, responses.ContainerCrashed):
            row.restarts += 1

    async def load(self, fm: FlowClient) -> None:
        for entry in (await fm.list()).containers:
            await self.describe(fm, entry.id)

    async def describe(self, fm: FlowClient, container_id: str) -> None:
        try:
            status = await fm.status(container_id)
        except Exception:
            return  # gone meanwhile
        self.apply_status(container_id, status)


def render(model: TopModel, now: float | None = None) -> Table:
    now = now or time.time()
    table = Table(box=None, header_style="bold", pad_edge=False, title=f"flowctl top: {len(model.rows)} containers")
    for title in ("NAME", "STATE", "HEALTH", "UPTIME", "CPU%", "MEM", "RESTARTS", "LINK", "LAST MESSAGE"):
        table.add_column(title)
    for row in sorted(model.rows.values(), key=lambda r: r.name):
        style = {"running": "green", "stopped": "yellow", "exited": "red", "unknown": "magenta"}.get(row.state, "")
        last = f"{now - row.last_message:.0f}s ago" if row.last_message else "-"
        cpu = f"{row.cpu:.1f}" if row.cpu is not None else "-"
        table.add_row(
            row.name,
            f"[{style}]{row.state}[/]" if style else row.state,
            row.health,
            row.uptime,
            cpu,
            size(row.memory),
            str(row.restarts),
            "up" if row.link else "down",
            last,
        )
    return table
