"""Reconciliation: queue, planning, applying, Docker and link adapters, event diffs."""
