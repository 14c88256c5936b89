"""Traces, end to end: the real manager exports OTLP/HTTP to a receiver the test runs (issue 13).

One `start_container` must read as one story: the client's span → the request's span (its child) → the
reconcile spans that converge the request's generation (linked to it) → the Docker calls they made (their
children), each with the attributes docs/tracing.md promises.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.integration.harness import Client, Server, unique_name, wait_until
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.integration.test_links import running_with_link, write_code

SERVER, ERROR = Span.SpanKind.SPAN_KIND_SERVER, Status.StatusCode.STATUS_CODE_ERROR


def client_span() -> tuple[str, str, str]:
    """A (trace id, span id, traceparent) as a traced client would make for its own span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def traced(docker, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("traced"), "--trace-exporter", "otlp")
    server.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="flow-manager-under-test")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(traced: Server) -> AsyncIterator[Client]:
    connected = await Client().connect(traced.url)
    yield connected
    await connected.close()


async def span(receiver: OtlpReceiver, name: str, what: str, where=lambda s: True) -> ReceivedSpan:
    found = await wait_until(lambda: [s for s in receiver.named(name) if where(s)], 15, what=what)
    return found[0]


async def test_a_start_is_one_story_from_client_to_docker(client: Client, receiver: OtlpReceiver):
    trace_id, parent_id, traceparent = client_span()
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("trace"), "traceparent": traceparent})
    cid = created["container_id"]
    _, start_parent, start_traceparent = client_span()
    start_traceparent = f"00-{trace_id}-{start_parent}-01"  # the client's next span, in the same trace
    assert (await client.call("start_container", {"container_id": cid, "traceparent": start_traceparent}))["status"] == "running"

    request = await span(receiver, "start_container", "the request's span", lambda s: s.attributes.get("flow.container_id") == cid)
    assert (request.trace_id, request.parent_span_id) == (trace_id, start_parent), "the client's span is the parent"
    assert request.kind == SERVER and request.attributes["rpc.method"] == "start_container" and request.attributes["flow.outcome"] == "ok"
    assert request.resource["service.name"] == "flow-manager-under-test"

    def converging(s: ReceivedSpan) -> bool:
        return s.attributes.get("flow.container_id") == cid and (request.trace_id, request.span_id) in s.links

    reconcile = await span(receiver, "reconcile", "a reconcile linked to the start request", converging)
    docker_calls = await wait_until(
        lambda: [s for s in receiver.spans if s.trace_id == reconcile.trace_id and s.parent_span_id == reconcile.span_id],
        15,
        what="Docker calls under that reconcile",
        until=lambda found: any(s.attributes.get("docker.operation") == "start_container" for s in found),
    )
    start = next(s for s in docker_calls if s.attributes["docker.operation"] == "start_container")
    assert start.name == "docker start_container" and start.attributes["http.method"] == "POST"
    assert start.attributes["http.status_code"] == 204 and created["docker_id"] in start.attributes["http.url"]
    assert reconcile.attributes["flow.outcome"] in ("ok", "requeue")

    creation = await span(receiver, "create_container", "the create request's span", lambda s: s.attributes.get("flow.container_id") is None)
    assert (creation.trace_id, creation.parent_span_id) == (trace_id, parent_id)
    created_by = await span(receiver, "reconcile", "the reconcile that created it", lambda s: (creation.trace_id, creation.span_id) in s.links)
    assert created_by.attributes["flow.container_id"] == cid
    await client.call("delete_container", {"container_id": cid})


async def test_failures_sends_deploys_and_the_connections_trace(traced: Server, receiver: OtlpReceiver, tmp_path: Path):
    trace_id, parent_id, traceparent = client_span()
    client = await Client().connect(traced.url, auth={"traceparent": traceparent})
    try:
        missing = await client.call("start_container", {"container_id": "nosuchcontainer"})
        assert missing["error_type"] == "container_not_found"
        failed = await span(receiver, "start_container", "the failed request", lambda s: s.attributes.get("flow.container_id") == "nosuchcontainer")
        assert (failed.trace_id, failed.parent_span_id) == (trace_id, parent_id), "the connection's traceparent is the parent"
        assert failed.attributes["flow.outcome"] == "error" and failed.attributes["error.type"] == "container_not_found"
        assert failed.status_code == ERROR

        created = await running_with_link(client, code_path=str(write_code(tmp_path / "v1", "v1")))
        cid = created["container_id"]
        await client.call("send_message", {"container_id": cid, "message": {"command": "write"}})
        sent = await span(receiver, "send_message", "the send request", lambda s: s.attributes.get("flow.container_id") == cid)
        await span(receiver, "link.send", "the link send under it", lambda s: s.parent_span_id == sent.span_id and s.trace_id == sent.trace_id)

        _, own_parent, own = client_span()  # a request's own traceparent wins over the connection's
        updated = await client.call(
            "update_container", {"container_id": cid, "code_path": str(write_code(tmp_path / "v2", "v2")), "traceparent": own}
        )
        assert updated["status"] == "updated"
        update = await span(receiver, "update_container", "the update request", lambda s: s.attributes.get("flow.container_id") == cid)
        assert update.parent_span_id == own_parent
        reconcile = await span(receiver, "reconcile", "the reconcile deploying it", lambda s: (update.trace_id, update.span_id) in s.links)
        deploy = await span(receiver, "code.deploy", "the deploy in that reconcile", lambda s: s.parent_span_id == reconcile.span_id)
        assert deploy.attributes["flow.code_revision"] == updated["code_revision"]
        await span(receiver, "docker put_archive", "the copy into the container", lambda s: s.parent_span_id == deploy.span_id)
        await client.call("delete_container", {"container_id": cid})
    finally:
        await client.close()


async def test_an_invalid_traceparent_is_a_validation_error(client: Client):
    answer = await client.call("list_containers", {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"})
    assert answer["error_type"] == "validation_error" and answer["details"]["field"] == "traceparent"


async def test_the_last_spans_are_sent_when_the_manager_stops(docker, receiver: OtlpReceiver, tmp_path: Path):
    """uvicorn ends the process with the SIGTERM it caught once it has shut down: the spans still
    batched (here all of them: a minute's schedule delay) must be sent before that."""
    server = Server(tmp_path, "--trace-exporter", "otlp")
    server.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000")
    server.start()
    trace_id, _, traceparent = client_span()
    try:
        client = await Client().connect(server.url)
        await client.call("list_containers", {"traceparent": traceparent})
        await client.close()
        assert not [s for s in receiver.named("list_containers") if s.trace_id == trace_id], "batched, not sent yet"
    finally:
        server.stop()
    assert [s for s in receiver.named("list_containers") if s.trace_id == trace_id], "sent at shutdown"


async def test_metrics_are_pushed_over_otlp_when_asked(docker, receiver: OtlpReceiver, tmp_path: Path):
    """OTEL_METRICS_EXPORTER=otlp: the instruments /metrics shows also reach an OTLP collector."""
    server = Server(tmp_path, "--metrics")
    server.env.update(OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL="300")
    server.start()
    client = await Client().connect(server.url)
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("otlpm")})
        await client.call("start_container", {"container_id": created["container_id"]})
        wanted = {"flow_manager.reconciles", "flow_manager.workqueue.adds", "flow_manager.containers"}
        await wait_until(lambda: wanted <= receiver.metric_names, 15, what=f"{sorted(wanted)} pushed over OTLP")
        await client.call("delete_container", {"container_id": created["container_id"]})
    finally:
        await client.close()
        server.stop()
