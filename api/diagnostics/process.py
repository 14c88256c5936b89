"""The process's CPU time and memory, as get_metrics reports them."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def process_figures(started: float) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pid": os.getpid(),
        "rss_bytes": rss_bytes(),
        "max_rss_bytes": usage.ru_maxrss * 1024,
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "uptime_s": time.time() - started,
    }
