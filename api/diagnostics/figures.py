"""The figures the process already keeps, read in one place for both `get_metrics` and /metrics.

Queue depth, links connected, messages to and from containers, Socket.IO clients, containers by
observed and by desired state, the Docker engine's availability: each is read from the one object that
keeps it (no second count). `register()` names them as the sources of the observed instruments of
controller/metrics.py; api/metrics.py reads the same methods for `get_metrics`.
"""

from __future__ import annotations

import collections

from api.broadcast import Broadcaster
from controller import metrics
from controller.adapters.links import LinkManager
from controller.observed import ABSENT, API_STATES
from controller.queue import WorkQueue
from controller.view import UNKNOWN, Observations
from store import DesiredState, MemoryStore

# Every state a status can report: each is reported, 0 included, so a dashboard's series never vanish.
STATES = tuple(dict.fromkeys((*API_STATES.values(), "dead", ABSENT, UNKNOWN)))
DESIRED_STATES = tuple(d.value for d in DesiredState)
TO_CONTAINER, FROM_CONTAINER = {"direction": "to_container"}, {"direction": "from_container"}


class Figures:
    def __init__(self, store: MemoryStore, view: Observations, queue: WorkQueue, links: LinkManager, broadcaster: Broadcaster) -> None:
        self.store, self.view, self.queue, self.links, self.broadcaster = store, view, queue, links, broadcaster

    def queue_depth(self) -> int:
        return self.queue.pending()

    def links_connected(self) -> int:
        return sum(1 for key in self.links.links if self.links.connected(key))

    def clients(self) -> int:
        return len(self.broadcaster.clients)

    def containers_by_state(self) -> dict[str, int]:
        """Managed containers (records) by the state a status read reports now (controller/view.py's rule)."""
        counts = collections.Counter(self.view.current(record.id)[0] for record in self.store.records())
        return {state: counts.get(state, 0) for state in (*STATES, *(s for s in counts if s not in STATES))}

    def containers_by_desired_state(self) -> dict[str, int]:
        counts = collections.Counter(record.desired.value for record in self.store.records())
        return {state: counts.get(state, 0) for state in DESIRED_STATES}

    def register(self) -> None:
        """Make these figures the sources of controller/metrics.py's observed instruments."""
        metrics.observe(metrics.WORKQUEUE_DEPTH, lambda: [(self.queue_depth(), {})])
        metrics.observe(metrics.LINKS_CONNECTED, lambda: [(self.links_connected(), {})])
        metrics.observe(metrics.API_CLIENTS, lambda: [(self.clients(), {})])
        metrics.observe(metrics.ENGINE_AVAILABLE, lambda: [(1 if self.view.engine_available() else 0, {})])
        metrics.observe(metrics.LINK_MESSAGES, lambda: [(self.links.messages_sent, TO_CONTAINER), (self.links.messages_received, FROM_CONTAINER)])
        metrics.observe(metrics.CONTAINERS, lambda: [(n, {"state": s}) for s, n in self.containers_by_state().items()])
        metrics.observe(metrics.CONTAINERS_DESIRED, lambda: [(n, {"desired_state": s}) for s, n in self.containers_by_desired_state().items()])
