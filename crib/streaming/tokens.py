"""Streaming tokens: the Exec/Attach/PortForward request behind a URL, single use, short lived.

As the kubelet's own reference server does: an 8-character random token per
request, valid for one minute, usable once, at most 1000 waiting. The stream's
options come from the cached request, never from the URL.
"""

from __future__ import annotations

import string
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from crib.errors import ResourceExhausted

TTL_S = 60.0
MAX_PENDING = 1000
TOKEN_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Pending:
    kind: str  # exec, attach, portforward
    request: Any  # the CRI request message
    expires: float


class TokenCache:
    def __init__(self, ttl: float = TTL_S, max_pending: int = MAX_PENDING) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._pending:
            token, entry = next(iter(self._pending.items()))
            if entry.expires > now:
                break
            del self._pending[token]

    def put(self, kind: str, request: Any) -> str:
        now = time.monotonic()
        self._expire(now)
        if len(self._pending) >= self.max_pending:
            raise ResourceExhausted(
                f"{self.max_pending} streaming requests are already waiting; try again later"
            )
        # Imported at the first Exec, Attach or PortForward, with hashlib and hmac (issue 17).
        import secrets  # noqa: PLC0415

        token = "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))
        while token in self._pending:
            token = "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))
        self._pending[token] = Pending(kind, request, now + self.ttl)
        return token

    def take(self, kind: str, token: str) -> Pending | None:
        """The request behind `token`, once; None if unknown, used, expired or of another kind."""
        self._expire(time.monotonic())
        entry = self._pending.get(token)
        if entry is None or entry.kind != kind:
            return None
        del self._pending[token]
        return entry

    def __len__(self) -> int:
        return len(self._pending)
