"""flow-manager: composition root (CLI, configuration, wiring) and image builder."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flow-manager")  # the installed distribution's, so it never disagrees with pip
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
