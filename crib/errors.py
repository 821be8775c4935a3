"""Errors every layer raises and the gRPC status each one becomes.

Domain code raises these; only the CRI server turns them into gRPC statuses, so
the domain never imports grpc: `code` names a grpc.StatusCode. Anything else
that escapes a handler is a bug and becomes INTERNAL with its cause, never
UNKNOWN.
"""

from __future__ import annotations


class CribError(Exception):
    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CribError):
    code = "INVALID_ARGUMENT"


class NotFound(CribError):
    code = "NOT_FOUND"


class AlreadyExists(CribError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(CribError):
    code = "FAILED_PRECONDITION"


class Unavailable(CribError):
    code = "UNAVAILABLE"


class DeadlineExceeded(CribError):
    code = "DEADLINE_EXCEEDED"


class Unauthenticated(CribError):
    code = "UNAUTHENTICATED"


class PermissionDenied(CribError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(CribError):
    code = "RESOURCE_EXHAUSTED"


class Unimplemented(CribError):
    code = "UNIMPLEMENTED"


class Internal(CribError):
    code = "INTERNAL"
