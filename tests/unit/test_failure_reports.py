"""A failure that repeats with every retry is reported once per change of its cause, not once per retry."""

from __future__ import annotations

from controller.adapters.docker import DockerFailure, failure_cause
from controller.events import Activity, ControllerError
from tests.unit.fake_docker import FakeDocker
from tests.unit.test_reconciler import Manager


def port_taken(endpoint: str, port: int = 18080) -> DockerFailure:
    """Docker's own message: it names the endpoint (a new id on every try) of the container it failed for."""
    return DockerFailure(
        "docker_api_error",
        f"driver failed programming external connectivity on endpoint fmtest-b ({endpoint}): "
        f"Bind for 127.0.0.1:{port} failed: port is already allocated",
        operation="start_container",
        status=500,
    )


def test_the_cause_leaves_out_dockers_volatile_ids() -> None:
    first, second = port_taken("a" * 64), port_taken("0123456789ab" * 5 + "cdef")
    assert failure_cause(first.error_type, first.message) == failure_cause(second.error_type, second.message)
    other = port_taken("a" * 64, port=18081)
    assert failure_cause(first.error_type, first.message) != failure_cause(other.error_type, other.message)
    assert failure_cause("docker_api_error", "x") != failure_cause("system_error", "x")


async def test_retries_of_the_same_cause_report_once_and_a_new_cause_again() -> None:
    manager = Manager(FakeDocker())
    key = "0123456789ab"
    for attempt in range(5):
        manager.reconciler.failed(key, port_taken(f"{attempt:064x}"))
    manager.reconciler.failed(key, port_taken("f" * 64, port=18081))  # another port: another cause
    errors = manager.sink.of(Activity, lambda a: a.activity_type == "container_error")
    assert [e.message[-40:] for e in errors] == [port_taken("", 18080).message[-40:], port_taken("", 18081).message[-40:]]
    assert len(manager.sink.of(ControllerError)) == 2
    manager.reconciler.succeeded(key)
    manager.reconciler.failed(key, port_taken("e" * 64))  # after a success, the same cause is news again
    assert len(manager.sink.of(ControllerError)) == 3
