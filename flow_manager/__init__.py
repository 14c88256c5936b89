"""flow-manager: composition root (CLI, configuration, wiring) and image builder."""

__version__ = "0.1.0"
