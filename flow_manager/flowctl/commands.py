"""flowctl's verbs (Click), each a thin layer over flow_manager.client.FlowClient.

A failed request exits with status 1 and `error: <error_type>: <message>` on stderr; a usage error exits 2
(Click's). Shell completion is Click's: `eval "$(flowctl completion bash)"` (or zsh, fish).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import click
from rich.live import Live

from flow_manager.client import DEFAULT_URL, FlowClient, FlowError
from flow_manager.flowctl import output
from flow_manager.flowctl.top import TOP_EVENTS, TopModel, render

T = TypeVar("T")
STATUS_COLUMNS = [("NAME", "name"), ("STATE", "state"), ("HEALTH", "health"), ("UPTIME", "uptime"), ("RESTARTS", "restart_count")]
STATUS_WIDE = [
    ("ID", "container_id"),
    ("DOCKER ID", "docker_id"),
    ("LINK", "socket_connected"),
    ("WAITING", "waiting_reason"),
    ("REVISION", "code_revision"),
]
CHANGE_COLUMNS = [("ID", "container_id"), ("STATUS", "status")]
fmt_option = click.option("-o", "--output", "fmt", type=click.Choice(output.FORMATS), default="table", show_default=True, help="output format")


def run(ctx: click.Context, work: Callable[[FlowClient], Awaitable[T]]) -> T:
    """Connect, do the work, close; a FlowError becomes exit status 1 with its type on stderr."""

    async def session() -> T:
        async with FlowClient(ctx.obj["url"], token=ctx.obj["token"]) as fm:
            return await work(fm)

    try:
        return asyncio.run(session())
    except FlowError as error:
        click.echo(f"error: {error.error_type}: {error.message}", err=True)
        if error.details:
            click.echo(f"details: {json.dumps(error.details)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def examples(*lines: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Append an Examples section to a verb's --help."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command.__doc__ = (command.__doc__ or "") + "\n\n\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
        return command

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="FLOW_MANAGER_URL", default=DEFAULT_URL, show_default=True, help="the manager (env FLOW_MANAGER_URL)")
@click.option(
    "--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="file holding the token (else env FLOW_MANAGER_TOKEN)"
)
@click.pass_context
def cli(ctx: click.Context, url: str, token_file: Path | None) -> None:
    """Operate a flow-manager from the command line."""
    token = token_file.read_text().strip() if token_file else os.environ.get("FLOW_MANAGER_TOKEN")
    ctx.obj = {"url": url, "token": token or None}


@cli.command("ls")
@fmt_option
@click.pass_context
@examples("flowctl ls", "flowctl ls -o wide", "flowctl ls -o json | jq '.containers[].name'")
def list_containers(ctx: click.Context, fmt: str) -> None:
    """List the managed containers."""
    listed = run(ctx, lambda fm: fm.list())
    output.emit(
        listed,
        fmt,
        [("NAME", "name"), ("STATUS", "status"), ("IMAGE", "image"), ("PORTS", "ports")],
        [("ID", "id"), ("DOCKER ID", "docker_id"), ("DESIRED", "desired_state"), ("CREATED", "created")],
        rows=listed.containers,
    )


def _pairs(values: tuple[str, ...], sep: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, found, item = value.partition(sep)
        if not found or not key:
            raise click.BadParameter(f"{value!r} is not {what}")
        pairs.append((key, item))
    return pairs


@cli.command()
@click.argument("name")
@click.option("--image", default="flow:latest", show_default=True)
@click.option("--env", "env", multiple=True, metavar="K=V", help="environment variable (repeatable)")
@click.option("--code", type=click.Path(exists=True, file_okay=False, path_type=Path), help="code directory for the runtime")
@click.option("--port", "ports", multiple=True, metavar="HOST:CONTAINER", help="publish a container port (repeatable)")
@click.option("--start", is_flag=True, help="start it right away")
@fmt_option
@click.pass_context
@examples("flowctl create demo", "flowctl create demo --code ./app --env MODE=dev --port 8080:80 --start")
def create(ctx: click.Context, name: str, image: str, env: tuple[str, ...], code: Path | None, ports: tuple[str, ...], start: bool, fmt: str) -> None:
    """Create a container (and start it with --start)."""
    environment = dict(_pairs(env, "=", "K=V"))
    published = {inside: int(host) for host, inside in _pairs(ports, ":", "HOST:CONTAINER") if host.isdigit()}

    async def work(fm: FlowClient) -> Any:
        created = await fm.create(image, name=name, environment=environment, ports=published, code_path=str(code.resolve()) if code else None)
        if start:
            await fm.start(created.container_id)
            return await fm.status(created.container_id)
        return created

    result = run(ctx, work)
    output.emit(result, fmt, [("ID", "container_id"), ("NAME", "name"), ("STATE" if start else "STATUS", "state" if start else "status")])


def _change_verb(verb: str, method: str, help_text: str) -> None:
    @cli.command(verb, help=help_text + f"\n\n\b\nExamples:\n  flowctl {verb} demo\n  flowctl {verb} demo other -o json")
    @click.argument("names", nargs=-1, required=True)
    @fmt_option
    @click.pass_context
    def command(ctx: click.Context, names: tuple[str, ...], fmt: str) -> None:
        async def work(fm: FlowClient) -> list[Any]:
            return [await getattr(fm, method)(name) for name in names]

        output.emit(run(ctx, work), fmt, CHANGE_COLUMNS)


_change_verb("start", "start", "Start containers.")
_change_verb("stop", "stop", "Stop containers.")
_change_verb("restart", "restart", "Restart containers.")
_change_verb("rm", "delete", "Delete containers.")


@cli.command()
@click.argument("name")
@fmt_option
@click.pass_context
@examples("flowctl status demo", "flowctl status demo -o yaml")
def status(ctx: click.Context, name: str, fmt: str) -> None:
    """One container's status."""
    output.emit(run(ctx, lambda fm: fm.status(name)), fmt, STATUS_COLUMNS, STATUS_WIDE)


@cli.command()
@click.argument("name")
@click.option("--code", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="the new code directory")
@fmt_option
@click.pass_context
@examples("flowctl update demo --code ./app")
def update(ctx: click.Context, name: str, code: Path, fmt: str) -> None:
    """Deploy new code into a container."""
    result = run(ctx, lambda fm: fm.update(name, str(code.resolve())))
    output.emit(result, fmt, [("ID", "container_id"), ("STATUS", "status"), ("REVISION", "code_revision"), ("FILES", "files")])


@cli.command()
@click.argument("name")
@click.argument("message")
@click.option("--wait-reply", is_flag=True, help="wait for the container's next message and print it")
@click.option("--timeout", default=10.0, show_default=True, help="seconds to wait for the reply")
@fmt_option
@click.pass_context
@examples('flowctl send demo \'{"command": "ping"}\'', 'flowctl send demo \'{"command": "ping"}\' --wait-reply -o json')
def send(ctx: click.Context, name: str, message: str, wait_reply: bool, timeout: float, fmt: str) -> None:
    """Send a JSON message to a container."""
    try:
        body = json.loads(message)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="MESSAGE") from None
    if not isinstance(body, dict):
        raise click.BadParameter("must be a JSON object", param_hint="MESSAGE")
    if wait_reply:
        output.emit(run(ctx, lambda fm: fm.request(name, body, timeout)), fmt, [("CONTAINER", "container_id"), ("MESSAGE", "message")])
    else:
        output.emit(run(ctx, lambda fm: fm.send(name, body)), fmt, [("ID", "container_id"), ("STATUS", "status")])


def _print_lines(lines: list[Any], fmt: str) -> None:
    for line in lines:
        if fmt == "json":
            print(json.dumps(line.model_dump(mode="json")), flush=True)
        else:
            stamp = f"{line.timestamp} " if fmt == "wide" and line.timestamp else ""
            print(f"{stamp}{line.text}", file=sys.stderr if line.stream == "stderr" else sys.stdout, flush=True)


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (across restarts) until the container is deleted")
@click.option("--tail", default=100, show_default=True, help="lines to show first")
@click.option("--since", help="only lines since this moment (ISO 8601, or seconds since the epoch)")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["table", "wide", "json"]),
    default="table",
    help="table: the text; wide: with timestamps; json: one object per line",
)
@click.pass_context
@examples("flowctl logs demo", "flowctl logs demo -f --tail 10", "flowctl logs demo --since 2025-01-01T00:00:00Z -o json")
def logs(ctx: click.Context, name: str, follow: bool, tail: int, since: str | None, fmt: str) -> None:
    """Print a container's output (stderr lines go to stderr)."""
    moment: float | str | None = float(since) if since and since.replace(".", "", 1).isdigit() else since

    async def work(fm: FlowClient) -> None:
        if not follow:
            _print_lines((await fm.logs(name, tail=tail, since=moment)).lines, fmt)
            return
        async for batch in fm.follow_logs(name, tail=tail):
            _print_lines(batch.lines, fmt)
            if batch.dropped:
                print(f"flowctl: {batch.dropped} lines dropped (this terminal read too slowly)", file=sys.stderr)

    run(ctx, work)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="(the default) print events as they come until interrupted")
@click.option("--container", help="only this container's events (id or name)")
@click.option("--kind", "kinds", multiple=True, help="only events of this kind (repeatable), e.g. status_changed")
@click.option("--count", type=int, help="stop after this many events")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", help="json: one object per line")
@click.pass_context
@examples("flowctl events -f", "flowctl events --container demo --kind status_changed -o json --count 1")
def events(ctx: click.Context, follow: bool, container: str | None, kinds: tuple[str, ...], count: int | None, fmt: str) -> None:
    """Print the server's events as they happen."""

    async def work(fm: FlowClient) -> None:
        container_id = (await fm.status(container)).container_id if container else None
        printed = 0
        async for event in fm.events(kinds or None, container_id):
            data = event.data.model_dump(mode="json")
            if fmt == "json":
                print(json.dumps({"event": event.kind, **data}), flush=True)
            else:
                print(f"{time.strftime('%H:%M:%S')} {event.kind} {event.container_id or '-'} {json.dumps(data)}", flush=True)
            printed += 1
            if count is not None and printed >= count:
                return

    run(ctx, work)


@cli.command()
@click.option("--refresh", default=4.0, show_default=True, help="redraws per second")
@click.pass_context
@examples("flowctl top")
def top(ctx: click.Context, refresh: float) -> None:
    """A live table of every container, updated from the server's events (Ctrl-C to leave)."""

    async def work(fm: FlowClient) -> None:
        model = TopModel()
        updates = fm.subscribe(TOP_EVENTS)
        await model.load(fm)
        with Live(render(model), console=output.console(), refresh_per_second=refresh) as live:
            while True:
                model.apply(await updates.queue.get())
                for container_id in list(model.unknown):
                    model.unknown.discard(container_id)
                    await model.describe(fm, container_id)
                live.update(render(model))

    run(ctx, work)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@examples('eval "$(flowctl completion bash)"')
def completion(shell: str) -> None:
    """Print the shell completion script (Click's)."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(cli, {}, "flowctl", "_FLOWCTL_COMPLETE").source())


def main() -> None:
    cli(prog_name="flowctl")
