"""`--log-format json`: every line one JSON object, request lines carrying the request's trace, nothing secret."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import socketio

from tests.integration.harness import Client, Server, unique_name, wait_until
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.test_links import wait_link

TOKEN = "tok-" + secrets.token_hex(12)
ENV_VALUE = "env-value-" + secrets.token_hex(8)
MESSAGE_CONTENT = "message-content-" + secrets.token_hex(8)


def lines(server: Server) -> list[dict]:
    text = server.log_path.read_text(errors="replace")
    parsed = []
    for line in text.splitlines():
        if line.strip():
            parsed.append(json.loads(line))  # a line that is not JSON fails the test here
    return parsed


async def test_json_lines_with_trace_ids_and_no_secrets(docker, tmp_path: Path) -> None:
    receiver = OtlpReceiver().start()
    server = Server(tmp_path, "--log-format", "json", "--log-level", "debug", "--trace-exporter", "otlp")
    server.env.update(FLOW_MANAGER_TOKEN=TOKEN, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    server.start()
    trace_id = secrets.token_hex(16)
    try:
        refused = socketio.AsyncClient(reconnection=False)
        try:
            await refused.connect(server.url, transports=["websocket"], auth={"token": "wrong-" + TOKEN}, wait_timeout=5)
            raise AssertionError("a wrong token was accepted")
        except socketio.exceptions.ConnectionError:
            pass
        client = await Client().connect(server.url, auth={"token": TOKEN})
        try:
            created = await client.call(
                "create_container",
                {
                    "image": "flow:latest",
                    "name": unique_name("json"),
                    "environment": {"SECRET": ENV_VALUE},
                    "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                },
            )
            cid = created["container_id"]
            await client.call("start_container", {"container_id": cid})
            await wait_link(client, cid, True)
            await client.call("send_message", {"container_id": cid, "message": {"command": "echo", "text": MESSAGE_CONTENT}})
            await client.wait_for("message_received", cid)
            await client.call("delete_container", {"container_id": cid})
        finally:
            await client.close()
        create_lines = await wait_until(
            lambda: [line for line in lines(server) if line.get("event") == "create_container"], 10, what="a log line of the create request"
        )
    finally:
        server.stop()
        receiver.stop()
    parsed = lines(server)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in parsed), parsed[:3]
    assert any(line["trace_id"] == trace_id and "span_id" in line for line in create_lines), create_lines
    started = [line for line in parsed if line.get("event") == "start_container"]
    assert started and all(line["container_id"] == cid and len(line["trace_id"]) == 32 for line in started), started
    assert any("refused a connection" in line["message"] for line in parsed)
    assert any(line["logger"].startswith("uvicorn") for line in parsed), "uvicorn's own lines are JSON too"
    text = server.log_path.read_text(errors="replace")
    for secret in (TOKEN, ENV_VALUE, MESSAGE_CONTENT):
        assert secret not in text
