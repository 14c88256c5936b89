"""Adapters to the outside world, apart from the reconcile loop: Docker, cgroup files and stats, the link server."""
