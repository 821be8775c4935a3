"""The floor servers the benchmarks measure crib against, run as a program of their own:

    python bench/floor_server.py aio|sync SOCKET REPLIES [--libraries]

A bare grpcio server (grpc.aio, or grpc.server with a thread pool) on a unix socket with
crib's server options, answering each full method path in the REPLIES file (JSON, base64
bytes) with its bytes whatever the request, and Version with VERSION_REPLY
where the file has none. Nothing but grpcio, protobuf and the CRI descriptors is imported,
so its memory is the floor of a Python CRI server: the benchmarks' own modules stay out.

--libraries loads what crib's design adds to any Python CRI server first (structlog
configured, an SQLite database in WAL mode): the "design floor" of bench/daemon_idle.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crib.proto.cri import api_pb2  # noqa: E402

VERSION_REPLY = api_pb2.VersionResponse(
    version="0.1.0", runtime_name="floor", runtime_version="0", runtime_api_version="v1"
).SerializeToString()
METHOD = "/runtime.v1.RuntimeService/Version"
# crib's own server options (crib/cri_server/daemon.py), so a floor differs from crib only
# in the code between grpcio and the reply. A copy, not an import: importing cribd's daemon
# would load crib's modules into every floor (tests/test_bench_replay.py keeps them equal).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def write_replies(path: Path, replies: Mapping[str, bytes]) -> None:
    path.write_text(json.dumps({m: base64.b64encode(b).decode() for m, b in replies.items()}))


def read_replies(path: Path) -> dict[str, bytes]:
    return {m: base64.b64decode(b) for m, b in json.loads(path.read_text()).items()}


def replay_handlers(replies: Mapping[str, bytes], kind: str) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, as crib has, each method answering its fixed bytes;
    coroutines for grpc.aio, plain functions for the thread-pool server."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, reply in replies.items():
        service, _, method = path.lstrip("/").partition("/")
        if not service or not method:
            raise ValueError(f"not a full method path: {path!r}")
        by_service.setdefault(service, {})[method] = _fixed_reply(reply, kind)
    return [grpc.method_handlers_generic_handler(s, methods) for s, methods in by_service.items()]


def _fixed_reply(reply: bytes, kind: str) -> grpc.RpcMethodHandler:
    # No (de)serializers: the request stays bytes and the reply is bytes already.
    if kind == "aio":

        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(answer)  # type: ignore[arg-type]
    if kind == "sync":
        return grpc.unary_unary_rpc_method_handler(lambda request, context: reply)
    raise ValueError(f"unknown server kind {kind!r}")


# --- the servers -------------------------------------------------------------------------------------


def serve_sync(socket: str, replies: Mapping[str, bytes]) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(replay_handlers(replies, "sync"))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    server.wait_for_termination()


def load_design_libraries(state_dir: Path) -> Any:
    """What crib's design adds to every Python CRI server, done as cribd does it at start-up:
    structlog configured by crib's own log_setup (JSON lines, as the project's rules ask) with
    one event logged, and an SQLite database in WAL mode (DESIGN's state store). Returned, so
    it stays open as crib's does."""
    # Imported here only: the other floors must not hold them. log_setup imports structlog
    # and the standard library alone.
    import sqlite3  # noqa: PLC0415

    from crib import log_setup  # noqa: PLC0415

    log_setup.configure("info")
    db = sqlite3.connect(state_dir / "state.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS records (kind TEXT, id TEXT, body TEXT, PRIMARY KEY (kind, id))")
    log_setup.get_logger("floor").info("floor.started", libraries=["structlog", "sqlite3"])
    return db


def serve_aio(socket: str, replies: Mapping[str, bytes]) -> None:
    async def run() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers(replay_handlers(replies, "aio"))
        server.add_insecure_port(f"unix://{socket}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


def main(argv: list[str]) -> int:
    # No argparse: the floor imports nothing a bare server would not.
    libraries = "--libraries" in argv
    args = [a for a in argv if a != "--libraries"]
    if len(args) != 3 or args[0] not in ("aio", "sync"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, socket, replies = args
    held = load_design_libraries(Path(socket).parent) if libraries else None
    answers = {METHOD: VERSION_REPLY, **read_replies(Path(replies))}
    (serve_sync if kind == "sync" else serve_aio)(socket, answers)
    del held
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
