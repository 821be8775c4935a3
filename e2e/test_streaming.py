"""Exec, attach and port-forward through the streaming server, with SPDY and WebSocket clients.

Each test gets a URL from the real cribd over its socket and streams through
crib's own client (crib/streaming/client.py), which speaks what client-go
does: SPDY/3.1 with the v4..v1 remotecommand protocols, WebSocket v5/v4
channels, the v4 port-forward channels and SPDY tunnelled in WebSocket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import select
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest

from crib.proto.cri import api_pb2
from crib.streaming import client
from crib.streaming.client import CommandStreams, StreamingError
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv, crictl, crictl_bin
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.terminal import on_a_terminal, set_size
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    grpc_code,
    import_busybox,
    pod_config,
    pod_status,
    remove_pod,
    run_container,
    run_pod,
    start_in_netns,
)

URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/(exec|attach|portforward)/([A-Za-z0-9]{8})$")
MB = 1 << 20
TRANSPORTS = ["spdy", "websocket"]
SESSION_TIMEOUT_S = 120


class Pod:
    def __init__(self, daemon: Cribd, pod_id: str, sleeper: str) -> None:
        self.daemon = daemon
        self.id = pod_id
        self.sleeper = sleeper  # a running container to exec in

    def exec_url(self, cmd: list[str], container: str = "", **kw: bool) -> str:
        req = api_pb2.ExecRequest(container_id=container or self.sleeper, cmd=cmd, **kw)
        url = self.daemon.runtime.Exec(req, timeout=10).url
        assert URL.match(url), url
        return url

    def attach_url(self, container: str, **kw: bool) -> str:
        url = self.daemon.runtime.Attach(api_pb2.AttachRequest(container_id=container, **kw), timeout=10).url
        assert URL.match(url), url
        return url

    def port_forward_url(self, *ports: int) -> str:
        req = api_pb2.PortForwardRequest(pod_sandbox_id=self.id, port=list(ports))
        url = self.daemon.runtime.PortForward(req, timeout=10).url
        assert URL.match(url), url
        return url

    @property
    def netns(self) -> str:
        return pod_status(self.daemon, self.id)[1]["netns"]


@pytest.fixture
def pod(net_cribd: Cribd) -> Iterator[Pod]:
    import_busybox(net_cribd)
    config = pod_config("stream-pod")
    config.linux.security_context.namespace_options.pid = api_pb2.POD
    pod_id = run_pod(net_cribd, config)
    sleeper = run_container(net_cribd, pod_id, container_config("sleeper", ["sleep", "3600"]))
    yield Pod(net_cribd, pod_id, sleeper)
    remove_pod(net_cribd, pod_id)


def run(coro: object) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(SESSION_TIMEOUT_S):
            return await coro  # type: ignore[misc]

    return asyncio.run(bounded())


class Collector:
    """A sink that keeps a running hash (for large output) and the first bytes (for messages)."""

    def __init__(self, keep: int = 1 << 16) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        self.keep = keep
        self.changed = asyncio.Event()

    async def __call__(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.changed.set()

    async def wait_for(self, needle: bytes, nudge: object = None) -> None:
        """Until `needle` shows in what was kept; `nudge()` is called whenever nothing comes."""
        while needle not in self.head:
            self.changed.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self.changed.wait()
            except TimeoutError:
                if nudge is not None:
                    await nudge()  # type: ignore[operator]


def expected_digest(pattern: bytes, size: int) -> str:
    h = hashlib.sha256()
    whole, rest = divmod(size, len(pattern))
    block = pattern * (MB // len(pattern))
    remaining = whole * len(pattern)
    while remaining >= len(block):
        h.update(block)
        remaining -= len(block)
    h.update(pattern * (remaining // len(pattern)) + pattern[:rest])
    return h.hexdigest()


def queue_source(queue: asyncio.Queue[bytes]) -> client.Source:
    async def read() -> bytes:
        return await queue.get()

    return read


def bytes_source(data: bytes, chunk: int = 256 * 1024) -> client.Source:
    view = memoryview(data)
    offset = 0

    async def read() -> bytes:
        nonlocal offset
        piece = bytes(view[offset : offset + chunk])
        offset += len(piece)
        return piece

    return read


async def _one_size(width: int, height: int) -> AsyncIterator[tuple[int, int]]:
    yield width, height
    await asyncio.Event().wait()  # the resize stream stays open with the session


# --- exec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_keeps_50mb_stdout_and_stderr_apart_and_returns_the_exit_code(pod: Pod, transport: str) -> None:
    out_size, err_size = 50 * MB, 5 * MB
    cmd = ["sh", "-c", f"yes | head -c {out_size}; yes e | head -c {err_size} >&2; exit 3"]
    url = pod.exec_url(cmd, stdout=True, stderr=True)
    out, err = Collector(), Collector()

    async def session() -> client.CommandResult:
        return await client.stream(url, CommandStreams(stdout=out, stderr=err), transport=transport)

    result = run(session())
    assert (result.exit_code, result.error) == (3, "")
    assert (out.size, out.hash.hexdigest()) == (out_size, expected_digest(b"y\n", out_size))
    assert (err.size, err.hash.hexdigest()) == (err_size, expected_digest(b"e\n", err_size))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_stdin_of_10mb_reaches_the_process_and_its_end_ends_it(pod: Pod, transport: str) -> None:
    data = os.urandom(10 * MB)
    url = pod.exec_url(["md5sum"], stdin=True, stdout=True, stderr=True)
    out, err = Collector(), Collector()
    streams = CommandStreams(stdin=bytes_source(data), stdout=out, stderr=err)
    # v4 WebSocket cannot end stdin on its own: v5 is what carries its close.
    result = run(client.stream(url, streams, transport=transport))
    assert (result.exit_code, bytes(err.head)) == (0, b"")
    assert bytes(out.head).split()[0].decode() == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tty_exec_follows_a_resize_and_exits_with_the_shell(pod: Pod, transport: str) -> None:
    url = pod.exec_url(["sh"], stdin=True, stdout=True, tty=True)

    async def session() -> client.CommandResult:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        out = Collector()
        streams = CommandStreams(stdin=queue_source(queue), stdout=out, tty=True, resizes=_one_size(100, 40))
        task = asyncio.create_task(client.stream(url, streams, transport=transport))

        async def ask() -> None:
            await queue.put(b"stty size\n")

        await ask()
        await out.wait_for(b"40 100", nudge=ask)
        await queue.put(b"exit 7\n")
        return await task

    result = run(session())
    assert (result.exit_code, result.error) == (7, "")


def _attach_until(url: str, transport: str, line: bytes, expect: bytes) -> bytes:
    async def session() -> bytes:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        out = Collector()
        task = asyncio.create_task(
            client.stream(url, CommandStreams(stdin=queue_source(queue), stdout=out), transport=transport)
        )
        await queue.put(line)
        await out.wait_for(expect)
        task.cancel()  # the attacher goes away; the container must not notice
        with pytest.raises(asyncio.CancelledError):
            await task
        return bytes(out.head)

    return run(session())  # type: ignore[return-value]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_attachers_in_turn_reach_a_container_reading_stdin(pod: Pod, transport: str) -> None:
    echo = container_config("echoer", ["sh", "-c", 'while read l; do echo "got:$l"; done'], stdin=True)
    cid = run_container(pod.daemon, pod.id, echo)
    first = _attach_until(pod.attach_url(cid, stdin=True, stdout=True), transport, b"one\n", b"got:one\n")
    second = _attach_until(pod.attach_url(cid, stdin=True, stdout=True), transport, b"two\n", b"got:two\n")
    assert first == b"got:one\n" and second == b"got:two\n"
    status = pod.daemon.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
    assert status.status.state == api_pb2.CONTAINER_RUNNING


@pytest.mark.parametrize(
    ("transport", "protocol"),
    [
        ("spdy", "v4.channel.k8s.io"),
        ("spdy", "v3.channel.k8s.io"),
        ("spdy", "v2.channel.k8s.io"),
        ("spdy", "channel.k8s.io"),
        ("websocket", "v5.channel.k8s.io"),
        ("websocket", "v4.channel.k8s.io"),
        ("websocket", "v4.base64.channel.k8s.io"),
        ("websocket", "base64.channel.k8s.io"),
        ("websocket", "channel.k8s.io"),
    ],
)
def test_each_protocol_version_carries_output_and_the_exit(pod: Pod, transport: str, protocol: str) -> None:
    url = pod.exec_url(["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=True, stderr=True)
    out, err = Collector(), Collector()
    result = run(
        client.stream(url, CommandStreams(stdout=out, stderr=err), transport=transport, protocols=[protocol])
    )
    assert (bytes(out.head), bytes(err.head)) == (b"out\n", b"err\n")
    if protocol.startswith(("v4.", "v5.")):
        assert (result.exit_code, result.error) == (3, "")  # a Status with the exit code
    else:
        assert result.exit_code != 0 and "exit code 3" in result.error  # only the error's text


# --- port-forward -------------------------------------------------------------------------------

ECHO_LOOP = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen(16)
print("listening", flush=True)
def serve(c):
    with c:
        while data := c.recv(1 << 18):
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture
def echo_in_pod(pod: Pod) -> Iterator[int]:
    """A TCP echo server on the pod's loopback: only reachable inside its network namespace."""
    port = 7070
    proc = start_in_netns(pod.netns, ECHO_LOOP.format(port=port))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "listening", proc.stderr.read() if proc.stderr else line
        yield port
    finally:
        proc.kill()
        proc.wait(10)


async def _echo_through(conn: client.PortConnection, data: bytes, half_close: bool) -> bytes:
    received = bytearray()

    async def send() -> None:
        view = memoryview(data)
        for offset in range(0, len(view), 256 * 1024):
            await conn.write(bytes(view[offset : offset + 256 * 1024]))
        if half_close:
            await conn.close_write()

    async def receive() -> None:
        while len(received) < len(data):
            chunk = await conn.read()
            if not chunk:
                break
            received.extend(chunk)

    await asyncio.gather(send(), receive())
    return bytes(received)


def _payloads(n: int, size: int) -> list[bytes]:
    block = os.urandom(MB)
    return [bytes([i]) + (block * (size // MB + 1))[: size - 1] for i in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward_carries_100mb_each_way_over_5_connections(
    pod: Pod, echo_in_pod: int, transport: str
) -> None:
    """SPDY, and SPDY in WebSocket (crictl's --transport websocket): one session, 5 connections."""
    payloads = _payloads(5, 20 * MB)
    # Not on the host: the echo server listens on the pod's own loopback.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", echo_in_pod), timeout=2).close()

    async def session() -> list[bytes]:
        forwarder = await client.SpdyPortForwarder.connect(pod.port_forward_url(), transport=transport)
        try:
            conns = [await forwarder.open(echo_in_pod) for _ in payloads]
            got = await asyncio.gather(
                *(_echo_through(c, p, True) for c, p in zip(conns, payloads, strict=True))
            )
            assert [await c.error() for c in conns] == [""] * len(conns)
            return list(got)
        finally:
            await forwarder.close()

    got = run(session())
    assert [hashlib.sha256(g).hexdigest() for g in got] == [hashlib.sha256(p).hexdigest() for p in payloads]


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_port_forward_over_websocket_channels(pod: Pod, echo_in_pod: int, protocol: str) -> None:
    """The v4 channel protocol: one connection per port and WebSocket, so 5 sockets at once."""
    size = 20 * MB if protocol == "v4.channel.k8s.io" else 2 * MB
    payloads = _payloads(5, size)

    async def one(payload: bytes) -> bytes:
        forward = await client.WebSocketPortForward.connect(
            pod.port_forward_url(), [echo_in_pod], protocols=[protocol]
        )
        try:
            return await _echo_through(forward.connection(0), payload, False)
        finally:
            await forward.close()

    async def session() -> list[bytes]:
        return list(await asyncio.gather(*(one(p) for p in payloads)))

    got = run(session())
    assert [hashlib.sha256(g).hexdigest() for g in got] == [hashlib.sha256(p).hexdigest() for p in payloads]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_port_is_reported_and_the_others_go_on(pod: Pod, echo_in_pod: int, transport: str) -> None:
    async def session() -> tuple[str, bytes]:
        forwarder = await client.SpdyPortForwarder.connect(pod.port_forward_url(), transport=transport)
        try:
            refused = await forwarder.open(echo_in_pod + 1)
            error = await refused.error()
            fine = await forwarder.open(echo_in_pod)
            echoed = await _echo_through(fine, b"still here", True)
            return error, echoed
        finally:
            await forwarder.close()

    error, echoed = run(session())  # type: ignore[misc]
    assert "refused" in error.lower() and str(echo_in_pod + 1) in error
    assert echoed == b"still here"


# --- the server's refusals and its hygiene ------------------------------------------------------


def _raw_http(url: str, headers: list[str], method: str = "POST") -> tuple[int, dict[str, str], str]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        request = [f"{method} {parts.path} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]
        s.sendall("\r\n".join(request).encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), fields, body


def test_a_used_or_unknown_token_gets_404(pod: Pod) -> None:
    url = pod.exec_url(["true"], stdout=True)
    out = Collector()
    assert run(client.stream(url, CommandStreams(stdout=out))).exit_code == 0  # type: ignore[attr-defined]
    for transport in TRANSPORTS:
        with pytest.raises(StreamingError) as info:
            run(client.stream(url, CommandStreams(stdout=out), transport=transport))
        assert info.value.status == 404
    unknown = url.rsplit("/", 1)[0] + "/AAAAAAAA"
    assert _raw_http(unknown, ["Connection: Upgrade", "Upgrade: SPDY/3.1"])[0] == 404
    # A token is for its own kind of session only.
    attach_kind = pod.exec_url(["true"], stdout=True).replace("/exec/", "/attach/")
    assert _raw_http(attach_kind, ["Connection: Upgrade", "Upgrade: SPDY/3.1"])[0] == 404
    assert _raw_http(url.rsplit("/", 2)[0] + "/nothing/here", [])[0] == 404
    assert "streaming.unknown_token" in pod.daemon.log_text()


def test_no_common_protocol_gets_403_with_the_accepted_list(pod: Pod) -> None:
    url = pod.exec_url(["true"], stdout=True)
    status, headers, body = _raw_http(
        url, ["Connection: Upgrade", "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v9.channel.k8s.io"]
    )
    assert status == 403
    accepted = [p.strip() for p in headers["x-accepted-stream-protocol-versions"].split(",")]
    assert accepted == ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
    assert "v9.channel.k8s.io" in body
    # WebSocket: an unknown subprotocol is refused the same way.
    with pytest.raises(StreamingError) as info:
        run(
            client.stream(
                pod.exec_url(["true"], stdout=True),
                CommandStreams(stdout=Collector()),
                transport="websocket",
                protocols=["v9.channel.k8s.io"],
            )
        )
    assert info.value.status == 403
    # No upgrade at all: a plain 400.
    assert _raw_http(pod.exec_url(["true"], stdout=True), [])[0] == 400


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _processes_with(cmdline: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.joinpath("cmdline").read_bytes() == cmdline:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_client_leaving_mid_stream_leaves_no_process_or_fd(
    pod: Pod, echo_in_pod: int, transport: str
) -> None:
    assert pod.daemon.proc is not None
    cribd_pid = pod.daemon.proc.pid
    marker = b"sleep\x004321987\x00"
    # Warm up (first exec and first forward open what stays open), then measure.
    run(
        client.stream(
            pod.exec_url(["true"], stdout=True), CommandStreams(stdout=Collector()), transport=transport
        )
    )
    baseline = _open_fds(cribd_pid)

    async def leave_exec() -> None:
        out = Collector()
        url = pod.exec_url(["sh", "-c", "echo started; exec sleep 4321987"], stdout=True, stdin=True)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        task = asyncio.create_task(
            client.stream(url, CommandStreams(stdin=queue_source(queue), stdout=out), transport=transport)
        )
        await out.wait_for(b"started")
        assert _processes_with(marker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def leave_forward() -> None:
        forwarder = await client.SpdyPortForwarder.connect(pod.port_forward_url(), transport=transport)
        conn = await forwarder.open(echo_in_pod)
        await conn.write(b"ping")
        assert await conn.read() == b"ping"
        await forwarder.close()  # with the connection still open both ways

    run(leave_exec())
    run(leave_forward())
    wait_until(lambda: not _processes_with(marker), timeout=20, what="the exec's process to go")
    wait_until(lambda: _open_fds(cribd_pid) <= baseline, timeout=20, what="cribd's fds to return")
    assert "exec.client_gone" in pod.daemon.log_text()


# --- the RPCs -----------------------------------------------------------------------------------


def test_requests_are_checked_before_a_url_is_given(pod: Pod) -> None:
    rt = pod.daemon.runtime
    cases = [
        (rt.Exec, api_pb2.ExecRequest(container_id=pod.sleeper, cmd=["true"]), "INVALID_ARGUMENT"),
        (rt.Exec, api_pb2.ExecRequest(container_id=pod.sleeper, stdout=True), "INVALID_ARGUMENT"),
        (
            rt.Exec,
            api_pb2.ExecRequest(container_id=pod.sleeper, cmd=["sh"], tty=True, stdout=True, stderr=True),
            "INVALID_ARGUMENT",
        ),
        (rt.Exec, api_pb2.ExecRequest(container_id="nope", cmd=["true"], stdout=True), "NOT_FOUND"),
        (rt.Attach, api_pb2.AttachRequest(container_id=pod.sleeper), "INVALID_ARGUMENT"),
        (rt.Attach, api_pb2.AttachRequest(container_id="nope", stdout=True), "NOT_FOUND"),
        (rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id="nope"), "NOT_FOUND"),
        (rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id=pod.id, port=[70000]), "INVALID_ARGUMENT"),
    ]
    for method, request, code in cases:
        assert grpc_code(lambda m=method, r=request: m(r, timeout=10)).name == code, request
    # A stopped container: no exec, no attach.
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=pod.sleeper, timeout=10), timeout=30)
    for method, request in (
        (rt.Exec, api_pb2.ExecRequest(container_id=pod.sleeper, cmd=["true"], stdout=True)),
        (rt.Attach, api_pb2.AttachRequest(container_id=pod.sleeper, stdout=True)),
    ):
        assert grpc_code(lambda m=method, r=request: m(r, timeout=10)) == grpc.StatusCode.FAILED_PRECONDITION
    # Each URL has its own token.
    urls = {pod.port_forward_url() for _ in range(20)}
    assert len(urls) == 20


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crictl_exec_attach_and_port_forward(pod: Pod, echo_in_pod: int, transport: str) -> None:
    """crictl's own client-go code (an independent client) against crib's streaming server."""
    r = crictl(pod.daemon, "exec", "--transport", transport, pod.sleeper, "sh", "-c", "echo hi; exit 4")
    # crictl reports a non-zero exit as an error of its own (exit 1), with the code in the text.
    assert (r.returncode, r.stdout) == (1, "hi\n") and "exit code 4" in r.stderr, r.stderr
    # exec -it on a terminal: the size reaches the shell and follows a resize.
    argv = [crictl_bin(), "--config", "/dev/null", "-r", f"unix://{pod.daemon.socket}", "exec", "-it",
            "--transport", transport, pod.sleeper, "sh"]  # fmt: skip
    with on_a_terminal(argv, client_env(), columns=90, lines=30) as (proc, master):
        _ask_until(master, b"stty size\n", b"30 90")
        set_size(master, 110, 45)
        _ask_until(master, b"stty size\n", b"45 110")
        os.write(master, b"exit\n")
        assert proc.wait(CALL_TIMEOUT_S) == 0
    # attach -i to a container reading its stdin once.
    once = container_config(
        f"once-{transport}", ["sh", "-c", 'read l; echo "got:$l"'], stdin=True, stdin_once=True
    )
    cid = run_container(pod.daemon, pod.id, once)
    r = subprocess.run(
        [crictl_bin(), "--config", "/dev/null", "-r", f"unix://{pod.daemon.socket}", "attach", "-i",
         "--transport", transport, cid],
        input="hi\n", capture_output=True, text=True, timeout=CALL_TIMEOUT_S,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "got:hi\n"), r.stderr
    # port-forward: a connection's bytes there and back.
    local = _free_port()
    proc = subprocess.Popen(
        [crictl_bin(), "--config", "/dev/null", "-r", f"unix://{pod.daemon.socket}", "port-forward",  # type: ignore[list-item]
         "--transport", transport, pod.id, f"{local}:{echo_in_pod}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "Forwarding from" in proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
            s.sendall(b"via crictl")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b"via crictl"
    finally:
        proc.terminate()
        proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- cribctl ------------------------------------------------------------------------------------


def _ask_until(fd: int, question: bytes, needle: bytes, timeout: float = 30) -> None:
    """Write `question` until `needle` comes back (ash eats early input answering its own ESC[6n)."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    os.write(fd, question)
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            os.write(fd, question)
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            chunk = b""
        assert chunk, f"EOF before {needle!r} in {bytes(seen)!r}"
        seen += chunk


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cribctl_exec_it_in_a_terminal_follows_its_size(pod: Pod, transport: str) -> None:
    argv = cribctl_argv(pod.daemon, "exec", "-it", "-r", transport, pod.sleeper, "sh")
    with on_a_terminal(argv, client_env(), columns=100, lines=40) as (proc, master):
        _ask_until(master, b"stty size\n", b"40 100")
        set_size(master, 120, 50)  # the kernel tells cribctl with SIGWINCH
        _ask_until(master, b"stty size\n", b"50 120")
        os.write(master, b"exit 3\n")
        assert proc.wait(CALL_TIMEOUT_S) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cribctl_attach_and_port_forward(pod: Pod, echo_in_pod: int, transport: str) -> None:
    once = container_config("once", ["sh", "-c", 'read l; echo "got:$l"'], stdin=True, stdin_once=True)
    cid = run_container(pod.daemon, pod.id, once)
    r = subprocess.run(
        cribctl_argv(pod.daemon, "attach", "-i", "-r", transport, cid),
        input=b"hi\n", capture_output=True, timeout=CALL_TIMEOUT_S, env=client_env(),
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, b"got:hi\n"), r.stderr

    proc = subprocess.Popen(
        cribctl_argv(pod.daemon, "port-forward", "-r", transport, pod.id, f":{echo_in_pod}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        m = re.fullmatch(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {echo_in_pod}\n", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.stderr else ""
        for payload in (b"first", b"second"):
            with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
                assert got == payload
        proc.terminate()
        assert proc.wait(CALL_TIMEOUT_S) == 0
        assert f"Handling connection for {m.group(1)}" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_streaming_over_tls(cribd_factory: Any, pod_network: PodNetwork, tmp_path: Path) -> None:
    """tls_cert and tls_key: https URLs; a client that checks the certificate accepts it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    daemon = cribd_factory(f'[streaming]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    pod_network.install(daemon.cni_conf_dir)
    daemon.start()
    import_busybox(daemon)
    pod_id = run_pod(daemon, pod_config("tls-pod"))
    try:
        cid = run_container(daemon, pod_id, container_config("sleeper", ["sleep", "3600"]))
        verified = ssl.create_default_context(cafile=str(cert))
        for transport, context in (("spdy", verified), ("websocket", verified), ("spdy", None)):
            req = api_pb2.ExecRequest(container_id=cid, cmd=["echo", "sealed"], stdout=True)
            url = daemon.runtime.Exec(req, timeout=10).url
            assert url.startswith("https://127.0.0.1:"), url
            out = Collector()
            result = run(client.stream(url, CommandStreams(stdout=out), transport=transport, ssl=context))
            assert (result.exit_code, bytes(out.head)) == (0, b"sealed\n")  # type: ignore[attr-defined]
        # Plain HTTP to the TLS port is no session.
        url = daemon.runtime.Exec(req, timeout=10).url.replace("https://", "http://")
        with pytest.raises((StreamingError, ConnectionError, OSError)):
            run(client.stream(url, CommandStreams(stdout=Collector())))
    finally:
        remove_pod(daemon, pod_id)
