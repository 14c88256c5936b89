"""The reconcile side's private memory of each key: what it needs to judge the next look, never reported.

Lost with the process; what must survive it (the runs judged, the run a restart ends) is on the record.
What is reported (state, health, crash count, back-off) is the read side's (controller/view.py).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from store.records import RunKey


@dataclass
class KeyMemory:
    acknowledged: collections.deque[RunKey] = field(default_factory=lambda: collections.deque(maxlen=32))
    last_generation: int = 0  # the record generation the controller last took up (a new one is new intent)
    unreachable_strikes: int = 0  # passes in a row that failed as "engine unreachable"


class Memory:
    def __init__(self) -> None:
        self.keys: dict[str, KeyMemory] = {}

    def of(self, key: str) -> KeyMemory:
        return self.keys.setdefault(key, KeyMemory())

    def forget(self, key: str) -> None:
        self.keys.pop(key, None)

    def clear_strikes(self) -> None:
        for memory in self.keys.values():
            memory.unreachable_strikes = 0
