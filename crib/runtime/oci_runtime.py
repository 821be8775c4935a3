"""The OCI runtime (runc, crun) as a command line: state, start, kill, delete, update, exec.

Each handler has its own `--root` under crib's state dir, so crib's
containers never mix with another runtime's. Every call is bounded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib import spawn, tracing
from crib.errors import DeadlineExceeded, Internal, NotFound

CALL_TIMEOUT_S = 60.0


class RuntimeCallFailed(Internal):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class OCIRuntime:
    handler: str
    binary: str  # absolute path
    root: Path  # --root: the runtime's own state

    def global_args(self) -> list[str]:
        return [f"--root={self.root}"]

    async def run(self, *args: str, timeout: float = CALL_TIMEOUT_S, stdin: bytes | None = None) -> bytes:
        # args: the command first (state, start, kill, delete, update…), the container ID among the rest.
        attributes = {"crib.runtime_handler": self.handler, "process.command_args": args}
        with tracing.span(f"{self.handler} {args[0]}", **attributes):
            return await self._run(args, timeout, stdin)

    async def _run(self, args: tuple[str, ...], timeout: float, stdin: bytes | None) -> bytes:
        try:
            code, out, err = await spawn.run(
                [self.binary, *self.global_args(), *args], timeout=timeout, input=stdin
            )
        except TimeoutError:
            raise DeadlineExceeded(f"{self.handler} {args[0]} did not finish within {timeout:g}s") from None
        if code != 0:
            text = err.decode(errors="replace").strip()
            raise RuntimeCallFailed(f"{self.handler} {' '.join(args[:1])} failed: {_last_line(text)}", text)
        return out

    async def run_detached(self, container_id: str, bundle: Path, pid_file: Path, log_file: Path) -> int:
        """Create and start a container with no monitor (the pause container); returns its pid.

        The container inherits runc's stdio, so that is /dev/null, and runc's
        own errors go to `log_file` (JSON lines) to be read on failure.
        """
        with tracing.span(
            f"{self.handler} run", **{"crib.runtime_handler": self.handler, "crib.container_id": container_id}
        ):
            return await self._run_detached(container_id, bundle, pid_file, log_file)

    async def _run_detached(self, container_id: str, bundle: Path, pid_file: Path, log_file: Path) -> int:
        argv = [
            self.binary,
            *self.global_args(),
            f"--log={log_file}",
            "--log-format=json",
            "run",
            "--detach",
            f"--bundle={bundle}",
            f"--pid-file={pid_file}",
            container_id,
        ]
        try:
            code, _, _ = await spawn.run(
                argv, timeout=CALL_TIMEOUT_S, stdout=spawn.DEVNULL, stderr=spawn.DEVNULL
            )
        except TimeoutError:
            raise DeadlineExceeded(f"{self.handler} run did not finish within {CALL_TIMEOUT_S:g}s") from None
        if code != 0:
            error = await asyncio.to_thread(_log_error, log_file)
            raise RuntimeCallFailed(f"{self.handler} run failed: {error}", error)
        return int((await asyncio.to_thread(pid_file.read_text)).strip())

    async def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's view of a container, None if it does not know it."""
        try:
            out = await self.run("state", container_id)
        except RuntimeCallFailed as exc:
            if "does not exist" in exc.stderr or "not found" in exc.stderr.lower():
                return None
            raise
        return json.loads(out)

    async def start(self, container_id: str) -> None:
        await self.run("start", container_id)

    async def kill(self, container_id: str, signal: str | int, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), container_id, str(signal)]
        try:
            await self.run(*args)
        except RuntimeCallFailed as exc:
            text = exc.stderr.lower()
            # Already gone: killing it is done.
            if "not running" in text or "does not exist" in text or "process already finished" in text:
                return
            if "not found" in text:
                raise NotFound(f"container {container_id} is not known to {self.handler}") from None
            raise

    async def delete(self, container_id: str, force: bool = False) -> None:
        try:
            await self.run("delete", *(["--force"] if force else []), container_id)
        except RuntimeCallFailed as exc:
            if "does not exist" in exc.stderr or "not found" in exc.stderr.lower():
                return
            raise

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        await self.run("update", "--resources", "-", container_id, stdin=json.dumps(resources).encode())


def _log_error(log_file: Path) -> str:
    """The last error message in a runc JSON log."""
    try:
        lines = log_file.read_text().splitlines()
    except OSError:
        return "no error output"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", line))
    return _last_line("\n".join(lines))


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "no error output"
    line = lines[-1]
    # runc logs as logfmt: keep the msg.
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rsplit('"', 1)[0]
    return line
