"""Desired-state records and their changes."""

from store.memory import MemoryStore, NameInUse, UnknownContainer
from store.records import ContainerSpec, ConvergeError, DesiredState, Record, RecordStatus

__all__ = ["MemoryStore", "NameInUse", "UnknownContainer", "ContainerSpec", "ConvergeError", "DesiredState", "Record", "RecordStatus"]
