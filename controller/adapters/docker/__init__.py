"""The Docker engine adapter: calls with retry and error classification, and the container index."""

from controller.adapters.docker.adapter import DockerAdapter
from controller.adapters.docker.failures import DockerFailure, classify, describe_host, failure_cause, is_transient
from controller.adapters.docker.index import ContainerIndex

__all__ = ["ContainerIndex", "DockerAdapter", "DockerFailure", "classify", "describe_host", "failure_cause", "is_transient"]
