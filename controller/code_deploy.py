"""Putting a code revision into a container without recreating it.

The archive goes in through Docker's archive API (the manager and the engine
need not share a filesystem), streamed from the code store's file. It holds a
fresh directory /opt/flow/revisions/<snapshot>/ and, last, the symlink
/opt/flow/code pointing at it, so the whole tree changes with the revision.
A running flow runtime is then told to reload over its link, and the deploy
completes only when the runtime reports it runs the new revision, so
`container_updated` means the new code answers.
"""

from __future__ import annotations

from opentelemetry import trace

from controller.adapters.docker import DockerAdapter, DockerFailure
from controller.adapters.links import LinkFailure, LinkManager
from store import Record
from store.code import CodeStore

tracer = trace.get_tracer("flow_manager.controller")


class CodeDeployer:
    def __init__(self, docker: DockerAdapter, codes: CodeStore, links: LinkManager, reload_timeout: float = 15.0) -> None:
        self.docker, self.codes, self.links, self.reload_timeout = docker, codes, links, reload_timeout
        self._copied: dict[str, str] = {}  # docker id -> revision last copied in by this manager

    def running_revision(self, record: Record, docker_id: str | None) -> str | None:
        """The runtime's own word when its link is up; otherwise what was copied in."""
        reported = self.links.revision(record.id)
        if reported is not None:
            return reported
        if self.links.connected(record.id):
            return None
        return self._copied.get(docker_id or "")

    async def deploy(self, record: Record, docker_id: str) -> None:
        attributes = {"flow.container_id": record.id, "flow.code_revision": record.code_revision or ""}
        with tracer.start_as_current_span("code.deploy", attributes=attributes):
            await self._deploy(record, docker_id)

    async def _deploy(self, record: Record, docker_id: str) -> None:
        revision = record.code_revision
        archive = await self.codes.open(revision) if revision else None
        if revision is None or archive is None:
            raise DockerFailure("system_error", f"code revision {revision} is not available", operation="update_container", permanent=True)
        try:  # streamed from disk: a fresh revision directory, then the /opt/flow/code symlink switched to it
            await self.docker.put_archive(docker_id, "/", archive)
        finally:
            archive.close()
        self._copied[docker_id] = revision
        if self.links.connected(record.id):
            try:
                await self.links.reload(record.id, revision, self.reload_timeout)
            except LinkFailure as failure:
                raise DockerFailure(failure.error_type, failure.message, operation="update_container") from None

    def forget(self, docker_id: str) -> None:
        self._copied.pop(docker_id, None)
