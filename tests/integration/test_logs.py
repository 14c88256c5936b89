"""Container logs through the API: a bounded read, and a follow across a restart and a deletion."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import Client, expect_quiet, unique_name, wait_until

# prints a numbered line every 0.1 s to stdout and every tenth to stderr, with a run marker
TICKER = (
    "import sys, time, os\n"
    "run = str(time.time())\n"
    "for i in range(100000):\n"
    "    print(f'tick {i} run {run}', flush=True)\n"
    "    if i % 10 == 0: print(f'err {i}', file=sys.stderr, flush=True)\n"
    "    time.sleep(0.1)\n"
)


async def make_ticker(client: Client) -> str:
    name = unique_name("logs")
    created = await client.call("create_container", {"image": "flow:latest", "name": name, "command": ["python3", "-c", TICKER]})
    assert created.get("error") is not True, created
    started = await client.call("start_container", {"container_id": created["container_id"]})
    assert started.get("error") is not True, started
    return created["container_id"]


def lines_of(client: Client, cid: str) -> list[dict[str, Any]]:
    return [line for event in client.of("container_log", cid) for line in event["lines"]]


async def test_get_container_logs_reads_both_streams_bounded(client: Client) -> None:
    cid = await make_ticker(client)
    answer = await wait_until(
        lambda: client.call("get_container_logs", {"container_id": cid, "tail": 12}),
        30,
        what="12 lines, one of them on stderr",
        until=lambda a: len(a["lines"]) == 12 and any(line["stream"] == "stderr" for line in a["lines"]),
    )
    assert answer["container_id"] == cid and answer["truncated"] is False
    assert len(answer["lines"]) == 12
    stamps = [line["timestamp"] for line in answer["lines"]]
    assert stamps == sorted(stamps) and all(stamp.endswith("Z") for stamp in stamps)
    assert {line["stream"] for line in answer["lines"]} == {"stdout", "stderr"}
    only_err = await client.call("get_container_logs", {"container_id": cid, "stdout": False, "timestamps": False})
    assert only_err["lines"] and all(line["stream"] == "stderr" and line["timestamp"] is None for line in only_err["lines"])
    refused = await client.call("get_container_logs", {"container_id": cid, "tail": 10**6})
    assert refused["error_type"] == "validation_error" and refused["details"]["field"] == "tail"
    missing = await client.call("get_container_logs", {"container_id": "no-such-container"})
    assert missing["error_type"] == "container_not_found"
    await client.call("delete_container", {"container_id": cid})


async def test_follow_logs_continues_across_a_restart_and_ends_on_delete(client: Client) -> None:
    cid = await make_ticker(client)
    answer = await client.call("follow_logs", {"container_id": cid})
    assert answer == {"container_id": cid, "following": True}
    await client.wait_for("container_log", cid, where=lambda e: any(line["text"].startswith("tick") for line in e["lines"]))
    first_run = {line["text"].split(" run ")[1] for line in lines_of(client, cid) if " run " in line["text"]}
    assert len(first_run) == 1
    restarted = await client.call("restart_container", {"container_id": cid})
    assert restarted.get("error") is not True, restarted

    def new_run(event: dict[str, Any]) -> bool:
        return any(" run " in line["text"] and line["text"].split(" run ")[1] not in first_run for line in event["lines"])

    await client.wait_for("container_log", cid, where=new_run, timeout=30)
    texts = [line["text"] for line in lines_of(client, cid)]
    # the same line of one run is never delivered twice (a reattach starts after the last line seen)
    stdout_lines = [t for t in texts if t.startswith("tick")]
    assert len(stdout_lines) == len(set(stdout_lines)), stdout_lines
    await client.call("delete_container", {"container_id": cid})
    final = await client.wait_for("container_log", cid, where=lambda e: e["ended"], timeout=30)
    assert final["reason"] == "deleted"


async def test_unfollow_stops_the_events(client: Client) -> None:
    cid = await make_ticker(client)
    await client.call("follow_logs", {"container_id": cid})
    await client.wait_for("container_log", cid)
    assert await client.call("unfollow_logs", {"container_id": cid}) == {"container_id": cid, "following": False}
    count = len(client.of("container_log", cid))
    # a marker: a status round trip after the unfollow, then at most one batch already in flight
    await client.call("get_container_status", {"container_id": cid})
    settled = len(client.of("container_log", cid))
    assert settled - count <= 1
    await expect_quiet(client, "container_log", 1.0, what="no lines after unfollow_logs", container_id=cid)
    await client.call("delete_container", {"container_id": cid})
