"""A full disk is RESOURCE_EXHAUSTED, whichever layer it surfaced in."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from crib.cri_server.rpc import _status_for
from crib.errors import Internal, InvalidArgument, Unavailable, out_of_space


def _raised_from_none(inner: BaseException) -> Exception:
    """A domain error re-raised `from None`, as crib's layers do: the cause survives as context."""
    try:
        try:
            raise inner
        except BaseException:
            raise Unavailable("pull x: writing a blob failed") from None
    except Unavailable as exc:
        return exc


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_oserrors_of_a_full_disk_or_quota_and_what_wraps_them(code: int) -> None:
    exc = OSError(code, "No space left on device", "/var/lib/crib/content/ingest/x")
    assert out_of_space(exc) == "No space left on device: /var/lib/crib/content/ingest/x"
    assert out_of_space(_raised_from_none(exc)) is not None
    wrapped = Internal("unpack failed")
    wrapped.__cause__ = exc
    code_name, message = _status_for(wrapped, "PullImage")
    assert code_name == "RESOURCE_EXHAUSTED"
    assert message.startswith("PullImage: out of disk space: ") and "/var/lib/crib" in message


def test_the_runtimes_messages_and_sqlite_full() -> None:
    runc = Unavailable("runc create: write /run/crib/x: no space left on device")
    assert _status_for(runc, "StartContainer")[0] == "RESOURCE_EXHAUSTED"
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    assert _status_for(full, "RunPodSandbox")[0] == "RESOURCE_EXHAUSTED"


def test_other_errors_keep_their_codes() -> None:
    assert _status_for(InvalidArgument("bad"), "X") == ("INVALID_ARGUMENT", "bad")
    assert _status_for(OSError(errno.EIO, "I/O error"), "X")[0] == "INTERNAL"
    assert out_of_space(PermissionError(errno.EACCES, "denied")) is None
