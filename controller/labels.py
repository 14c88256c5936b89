"""Labels that mark and describe the Docker containers this manager owns."""

MANAGED = "io.kawaflow.flow-manager.managed"
INSTANCE = "io.kawaflow.flow-manager.instance"  # several managers can share one engine
CONTAINER_ID = "io.kawaflow.flow-manager.container-id"
SPEC_HASH = "io.kawaflow.flow-manager.spec-hash"
NAME = "io.kawaflow.flow-manager.name"


def managed_filter(instance: str | None = None, container_id: str | None = None) -> dict[str, list[str]]:
    """A Docker `filters` value selecting one manager instance's containers (or one of them)."""
    labels = [f"{MANAGED}=true"]
    if instance is not None:
        labels.append(f"{INSTANCE}={instance}")
    if container_id is not None:
        labels.append(f"{CONTAINER_ID}={container_id}")
    return {"label": labels}
