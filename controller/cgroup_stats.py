"""Container resource usage read straight from cgroup files and /proc.

Docker's stats endpoint waits about a second for a second CPU sample; when the
manager shares the host's /sys and /proc (a workstation install) the same
numbers are a few file reads away. CPU percent is computed from the previous
reading of the same container, or from two readings 50 ms apart the first
time. Returns None when the files are not visible (e.g. in a sidecar), and
the caller falls back to Docker's API.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
FIRST_SAMPLE_GAP = 0.05


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            result[parts[0]] = int(parts[1])
    return result


def _network(pid: int) -> tuple[int, int]:
    rx = tx = 0
    for line in (_read(Path(f"/proc/{pid}/net/dev")) or "").splitlines()[2:]:
        name, _, fields = line.partition(":")
        values = fields.split()
        if name.strip() != "lo" and len(values) >= 9:
            rx, tx = rx + int(values[0]), tx + int(values[8])
    return rx, tx


def sample(docker_id: str, pid: int) -> dict[str, Any] | None:
    """One raw reading: cpu ns, memory, block I/O, network; None if not visible."""
    v1 = ROOT / "memory" / "docker" / docker_id
    if v1.exists():
        cpu = _read(ROOT / "cpuacct" / "docker" / docker_id / "cpuacct.usage")
        usage, limit = _read(v1 / "memory.usage_in_bytes"), _read(v1 / "memory.limit_in_bytes")
        if cpu is None or usage is None or limit is None:
            return None
        stat = _kv(_read(v1 / "memory.stat"))
        cache = stat.get("total_inactive_file", stat.get("cache", 0))
        read = write = 0
        for line in (_read(ROOT / "blkio" / "docker" / docker_id / "blkio.throttle.io_service_bytes") or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                read += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                write += int(parts[2])
        cpu_ns, memory, mem_limit = int(cpu), int(usage) - cache, int(limit)
    else:
        v2 = ROOT / "system.slice" / f"docker-{docker_id}.scope"
        if not (v2 / "cpu.stat").exists():
            return None
        cpu_ns = _kv(_read(v2 / "cpu.stat")).get("usage_usec", 0) * 1000
        current, maximum = _read(v2 / "memory.current"), (_read(v2 / "memory.max") or "max").strip()
        memory = int(current or 0) - _kv(_read(v2 / "memory.stat")).get("inactive_file", 0)
        mem_limit = int(maximum) if maximum.isdigit() else 0
        read = write = 0
        for line in (_read(v2 / "io.stat") or "").splitlines():
            fields = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            read, write = read + int(fields.get("rbytes", 0)), write + int(fields.get("wbytes", 0))
    if mem_limit <= 0 or mem_limit >= 1 << 60:  # "no limit": report the host's memory, as docker stats does
        mem_limit = _host_memory()
    rx, tx = _network(pid) if pid else (0, 0)
    return {"cpu_ns": cpu_ns, "at": time.monotonic(), "memory": max(memory, 0), "limit": mem_limit,
            "read": read, "write": write, "rx": rx, "tx": tx}


def _host_memory() -> int:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class CgroupStats:
    def __init__(self) -> None:
        self._previous: dict[str, dict[str, Any]] = {}

    async def usage(self, docker_id: str, pid: int, timestamp: str) -> dict[str, Any] | None:
        current = await asyncio.to_thread(sample, docker_id, pid)
        if current is None:
            return None
        previous = self._previous.get(docker_id)
        if previous is None or current["at"] - previous["at"] <= 0:
            await asyncio.sleep(FIRST_SAMPLE_GAP)
            previous, current = current, await asyncio.to_thread(sample, docker_id, pid)
            if current is None:
                return None
        self._previous[docker_id] = current
        elapsed_ns = (current["at"] - previous["at"]) * 1e9
        cpu = max(current["cpu_ns"] - previous["cpu_ns"], 0) / elapsed_ns * 100.0 if elapsed_ns > 0 else 0.0
        limit = current["limit"]
        return {
            "cpu_percent": round(cpu, 2), "memory_usage": current["memory"], "memory_limit": limit,
            "memory_percent": round(current["memory"] / limit * 100.0, 2) if limit else 0.0,
            "network_rx_bytes": current["rx"], "network_tx_bytes": current["tx"],
            "disk_read_bytes": current["read"], "disk_write_bytes": current["write"], "timestamp": timestamp,
        }

    def forget(self, live: set[str]) -> None:
        for docker_id in set(self._previous) - live:
            del self._previous[docker_id]
