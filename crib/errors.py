"""Errors every layer raises and the gRPC status each one becomes.

Domain code raises these; only the CRI server turns them into gRPC statuses, so
the domain never imports grpc: `code` names a grpc.StatusCode. Anything else
that escapes a handler is a bug and becomes INTERNAL with its cause, never
UNKNOWN.
"""

from __future__ import annotations

import errno


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


# A full file system or an exhausted quota: the node's trouble, not the caller's, and one an
# operator fixes by freeing space. SQLite reports it as SQLITE_FULL (13); the OCI runtime,
# conmon and mount(8) only in their messages.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13
_NO_SPACE_TEXTS = ("no space left on device", "disk quota exceeded", "database or disk is full")


def out_of_space(exc: BaseException | None) -> str | None:
    """What ran out, when `exc` or any error that led to it is a full disk; None otherwise.

    Follows __cause__ and __context__: domain code often re-raises a CribError `from None`,
    which hides the OSError from the traceback but keeps it as the context."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            where = f": {exc.filename}" if exc.filename else ""
            return f"{exc.strerror or errno.errorcode[exc.errno]}{where}"
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return f"the state store: {exc}"
        text = exc.message if isinstance(exc, CribError) else ""
        if any(t in text.lower() for t in _NO_SPACE_TEXTS):
            return text
        exc = exc.__cause__ or exc.__context__
    return None
