"""The content store: blobs addressed by their sha256 under `<root>/content`.

A blob becomes visible only complete and verified: it is written under
`ingest/`, its size and sha256 checked, fsynced, then renamed into
`blobs/sha256/<hex>`. A crash or a failed download leaves at most a file in
`ingest/`, which start-up clears.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from crib.errors import InvalidArgument

# Writes go to the worker thread in batches of this size.
WRITE_BATCH = 1 << 20


class DigestMismatch(InvalidArgument):
    pass


def sha256(data: bytes = b"") -> Any:
    """A sha256 hash object. hashlib is imported here, at the first digest (a pull, a load, a
    layer's chain ID): its OpenSSL digests cost an idle cribd 0.5 MB resident (issue 17)."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(data)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + sha256(data).hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise InvalidArgument(f"unsupported or malformed digest {digest!r}")
    return hexpart


class Ingest:
    """One blob being written. Blocking methods: call them from a worker thread."""

    def __init__(self, store: ContentStore, digest: str, expected_size: int | None) -> None:
        self.store = store
        self.digest = digest
        self.expected_size = expected_size
        self.tmp = store.ingest_dir / f"{_hex(digest)[:16]}-{uuid.uuid4().hex}"
        self._file = open(self.tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        self._hash = sha256()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.expected_size is not None and self.written > self.expected_size:
            raise DigestMismatch(f"blob {self.digest}: more than the {self.expected_size} bytes announced")
        self._hash.update(data)
        try:
            self._file.write(data)
        except OSError as exc:
            exc.filename = exc.filename or str(self.tmp)  # a full disk then says which
            raise

    def commit(self) -> Path:
        try:
            if self.expected_size is not None and self.written != self.expected_size:
                raise DigestMismatch(
                    f"blob {self.digest}: got {self.written} bytes, the descriptor says {self.expected_size}"
                )
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self.digest:
                raise DigestMismatch(f"blob {self.digest}: content hashes to {actual}")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final = self.store.path(self.digest)
            os.rename(self.tmp, final)
            return final
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and not exc.filename:
                exc.filename = str(self.tmp)
            raise

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a crash or of downloads cut short: never visible, never resumed.
        shutil.rmtree(self.ingest_dir, ignore_errors=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blob_dir / _hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        # Small blobs (manifests, configs) are checked on every read: cheap, and
        # a corrupted file on disk must not become a wrong container.
        if sha256_digest(data) != digest:
            raise DigestMismatch(f"blob {digest} on disk is corrupt")
        return data

    def ingest(self, digest: str, expected_size: int | None) -> Ingest:
        return Ingest(self, digest, expected_size)

    def write_bytes(self, digest: str, data: bytes) -> Path:
        if self.has(digest):
            return self.path(digest)
        ingest = self.ingest(digest, len(data))
        ingest.write(data)
        return ingest.commit()

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> list[str]:
        return ["sha256:" + p.name for p in self.blob_dir.iterdir()]
