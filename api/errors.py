"""The error event: the one shape every failure reaches a client in."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from controller.clock import iso_now

ERROR_TYPES = frozenset(
    {
        "image_not_found",
        "container_not_found",
        "docker_api_error",
        "socket_error",
        "socket_timeout_error",
        "socket_connection_error",
        "validation_error",
        "system_error",
    }
)


class ApiError(Exception):
    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        assert error_type in ERROR_TYPES, error_type
        super().__init__(message)
        self.error_type, self.message, self.details = error_type, message, details

    def payload(self, operation: str, container_id: str | None = None) -> dict[str, Any]:
        details = {"operation": operation, **self.details}
        if container_id is not None:
            details.setdefault("container_id", container_id)
        return error_payload(self.error_type, self.message, details)


def error_payload(error_type: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"error": True, "error_type": error_type, "message": message, "details": details, "timestamp": iso_now()}


def from_validation(exc: ValidationError) -> ApiError:
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "(request)", "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = problems[0]
    return ApiError("validation_error", f"invalid request: {first['field']}: {first['problem']}", field=first["field"], errors=problems)
