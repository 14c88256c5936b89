"""Resource usage from Docker's stats JSON, in the API reference's shape (pure)."""

from __future__ import annotations

from typing import Any


def resource_usage(stats: dict[str, Any] | None, timestamp: str) -> dict[str, Any]:
    """CPU the way `docker stats` computes it; memory without page cache."""
    usage: dict[str, Any] = {
        "cpu_percent": 0.0,
        "memory_usage": 0,
        "memory_limit": 0,
        "memory_percent": 0.0,
        "network_rx_bytes": 0,
        "network_tx_bytes": 0,
        "disk_read_bytes": 0,
        "disk_write_bytes": 0,
        "timestamp": timestamp,
    }
    if not stats:
        return usage
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if cpu_delta > 0 and system_delta > 0:
        usage["cpu_percent"] = round(cpu_delta / system_delta * cpus * 100.0, 2)

    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    used = max(int(memory.get("usage", 0)) - int(cache or 0), 0)
    limit = int(memory.get("limit", 0))
    usage["memory_usage"], usage["memory_limit"] = used, limit
    if limit:
        usage["memory_percent"] = round(used / limit * 100.0, 2)

    for net in (stats.get("networks") or {}).values():
        usage["network_rx_bytes"] += int(net.get("rx_bytes", 0))
        usage["network_tx_bytes"] += int(net.get("tx_bytes", 0))
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            usage["disk_read_bytes"] += int(entry.get("value", 0))
        elif op == "write":
            usage["disk_write_bytes"] += int(entry.get("value", 0))
    return usage


def format_uptime(seconds: float) -> str:
    """'H:MM:SS' as in the reference ('0:10:30'); days fold into hours."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
