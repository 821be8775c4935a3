"""Raw bytes at the streaming port: fuzzed SPDY/3.1 and WebSocket framing on real sessions.

Each example gets a fresh exec, attach or port-forward URL from the RPC, upgrades to SPDY or
WebSocket (or sends a mangled upgrade request), then sends frames drawn by Hypothesis:
well-formed ones (SYN_STREAM with the stream types kubectl opens, DATA, PING, SETTINGS,
WINDOW_UPDATE, RST_STREAM, GOAWAY, HEADERS; WebSocket data, v5 CLOSE, ping, close), raw
ones with any version, type, flags, opcode, reserved bits and a length that lies, and
byte-level mutations of the whole stream (flips, cuts, insertions). Afterwards:

- cribd still serves (Version) and logged no failed session, dead task or event-loop block
  over 100 ms (e2e/harness/loop_watch.py, as in test_fuzz_rpc.py);
- a connection whose first frame is certainly invalid (a SPDY control frame of version 2, an
  unmasked or reserved-bit WebSocket frame) is closed by cribd on its own;
- once the client is gone: no streaming session open (metrics), cribd's fds back to the
  baseline, and no exec'd command left running in the container.

`CRIB_FUZZ_EXAMPLES` multiplies the examples (default: the CI profile).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crib.proto.cri import api_pb2
from crib.streaming import spdy_frames as sf
from e2e.harness.cribd import Cribd
from e2e.harness.loop_watch import LOOP_ENV, LoopWatch
from e2e.harness.network import PodNetwork, new_network
from e2e.harness.scrape import metrics_url, total
from e2e.pods import container_config, exec_sync, import_busybox, pod_config, run_container, run_pod

EXAMPLES = int(os.environ.get("CRIB_FUZZ_EXAMPLES", "6")) * 5
MARKER = "4343"  # the exec'd command's argument, to find it in the container
READ_S = 1.0  # how long cribd gets to answer or close, per example
CERTAIN_CLOSE_S = 5.0
LEAK_WAIT_S = 15.0
TALLY: Counter[str] = Counter()


@dataclass
class StreamBed:
    daemon: Cribd
    net: PodNetwork
    pod: str
    container: str
    metrics: str
    fd_baseline: int
    watch: LoopWatch

    def fds(self) -> int:
        assert self.daemon.proc is not None
        return len(os.listdir(f"/proc/{self.daemon.proc.pid}/fd"))

    def exec_left(self) -> bool:
        ps = exec_sync(self.daemon, self.container, ["ps", "-o", "args"]).stdout.decode()
        return f"sleep {MARKER}" in ps


@pytest.fixture(scope="module")
def sbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamBed]:
    net = new_network(tmp_path_factory.mktemp("net"))
    daemon = Cribd('[metrics]\naddress = "127.0.0.1:0"\n')
    try:
        net.install(daemon.cni_conf_dir)
        daemon.start(env=LOOP_ENV)
        import_busybox(daemon)
        pod = run_pod(daemon, pod_config("stream-fuzz"))
        ctr = run_container(daemon, pod, container_config("target", ["sleep", "3600"], stdin=True))
        exec_sync(daemon, ctr, ["true"])  # the exec path's lazy set-up is not a leak
        bed = StreamBed(daemon, net, pod, ctr, metrics_url(daemon), 0, LoopWatch(daemon))
        bed.fd_baseline = bed.fds()
        bed.watch.new_log()
        yield bed
    finally:
        daemon.destroy()
        net.destroy()


# --- what the client sends --------------------------------------------------------------------

STREAM_TYPES = ["error", "stdin", "stdout", "stderr", "resize", "data", "", "x" * 300]


def _spdy_headers() -> st.SearchStrategy[dict[str, str]]:
    known = st.fixed_dictionaries(
        {"streamtype": st.sampled_from(STREAM_TYPES)},
        optional={
            "port": st.sampled_from(["80", "0", "-1", "65536", "http", "1" * 50]),
            "requestid": st.sampled_from(["0", "1", "", "x" * 100]),
        },
    )
    other = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=2)
    return st.tuples(other, known).map(lambda t: {**t[0], **t[1]})


_IDS = st.one_of(st.integers(1, 15), st.integers(0, 2**31 - 1))
_VALID_SPDY = st.one_of(
    st.builds(sf.SynStreamFrame, st.integers(0, 7).map(lambda i: 2 * i + 1), _spdy_headers(), st.booleans()),
    st.builds(sf.DataFrame, st.integers(1, 15), st.binary(max_size=300), st.booleans()),
    st.builds(sf.PingFrame, st.integers(0, 2**32 - 1)),
    st.builds(
        sf.SettingsFrame,
        st.lists(st.builds(sf.Setting, st.integers(0, 0xFFFFFF), st.integers(0, 2**32 - 1)), max_size=4).map(
            tuple
        ),
        st.booleans(),
    ),
    st.builds(sf.WindowUpdateFrame, st.integers(0, 15), st.integers(1, sf.MAX_WINDOW)),
    st.builds(sf.RstStreamFrame, st.integers(1, 15), st.integers(1, 12)),
    st.builds(sf.GoAwayFrame, st.integers(0, 15), st.integers(0, 3)),
    st.builds(sf.HeadersFrame, st.integers(1, 15), _spdy_headers(), st.booleans()),
    st.builds(sf.SynReplyFrame, st.integers(1, 15), _spdy_headers()),
)


def _raw_control(version: int, kind: int, flags: int, payload: bytes, length: int | None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">HHI", 0x8000 | version, kind, (flags << 24) | (n & 0xFFFFFF)) + payload


_RAW_SPDY = st.one_of(
    st.builds(
        _raw_control,
        st.one_of(st.just(3), st.integers(0, 0x7FFF)),
        st.integers(0, 12),
        st.integers(0, 255),
        st.binary(max_size=64),
        st.one_of(st.none(), st.integers(0, 0xFFFFFF)),
    ),
    st.builds(
        lambda sid, flags, data, n: (
            struct.pack(">II", sid, (flags << 24) | (n if n is not None else len(data))) + data
        ),
        _IDS,
        st.integers(0, 255),
        st.binary(max_size=64),
        st.one_of(st.none(), st.integers(0, 0xFFFFFF)),
    ),
    st.binary(min_size=1, max_size=64),
)
SPDY_FRAMES = st.lists(st.one_of(_VALID_SPDY, _VALID_SPDY, _RAW_SPDY), max_size=12)


def ws_frame(
    fin: bool, rsv: int, opcode: int, masked: bool, payload: bytes, length: int | None = None
) -> bytes:
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


_CHANNEL_DATA = st.one_of(
    st.tuples(st.integers(0, 255), st.binary(max_size=200)).map(lambda t: bytes([t[0]]) + t[1]),
    st.integers(0, 255).map(lambda c: bytes([255, c])),  # v5 CLOSE of a channel
    st.just(b'\x04{"Width":80,"Height":24}'),
    st.just(b""),
)
_VALID_WS = st.one_of(
    st.builds(ws_frame, st.just(True), st.just(0), st.sampled_from([1, 2]), st.just(True), _CHANNEL_DATA),
    st.builds(ws_frame, st.just(True), st.just(0), st.just(9), st.just(True), st.binary(max_size=125)),
    st.builds(
        ws_frame,
        st.just(True),
        st.just(0),
        st.just(8),
        st.just(True),
        st.tuples(st.integers(0, 5000), st.binary(max_size=20)).map(lambda t: struct.pack(">H", t[0]) + t[1]),
    ),
)
_RAW_WS = st.one_of(
    st.builds(
        ws_frame,
        st.booleans(),
        st.integers(0, 7),
        st.integers(0, 15),
        st.booleans(),
        st.binary(max_size=200),
        st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    ),
    st.binary(min_size=1, max_size=64),
)
WS_FRAMES = st.lists(st.one_of(_VALID_WS, _VALID_WS, _RAW_WS), max_size=12)
# Certainly invalid as a first frame: cribd must close by itself.
CERTAIN_SPDY = st.builds(
    _raw_control, st.just(2), st.integers(1, 9), st.just(0), st.binary(max_size=16), st.none()
)
CERTAIN_WS = st.one_of(
    st.builds(ws_frame, st.just(True), st.just(0), st.just(2), st.just(False), _CHANNEL_DATA),  # unmasked
    st.builds(ws_frame, st.just(True), st.integers(1, 7), st.just(2), st.just(True), _CHANNEL_DATA),  # RSV
    st.builds(
        ws_frame,
        st.just(True),
        st.just(0),
        st.sampled_from([3, 4, 5, 6, 7, 11, 15]),
        st.just(True),
        _CHANNEL_DATA,
    ),  # a reserved opcode
)

MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "drop"]), st.integers(0, 10_000), st.binary(max_size=8)
    ),
    max_size=3,
)


def mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, extra in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (pos % 8)
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = extra
        else:
            del buf[i : i + 1 + len(extra)]
    return bytes(buf)


def _encode_spdy(frames: list[object]) -> bytes:
    enc = sf.FrameEncoder()
    return b"".join(f if isinstance(f, bytes) else enc.encode(f) for f in frames)  # type: ignore[arg-type]


# --- a session -------------------------------------------------------------------------------


def _url(bed: StreamBed, kind: str, flags: dict[str, bool]) -> str:
    rt = bed.daemon.runtime
    if kind == "exec":
        req = api_pb2.ExecRequest(container_id=bed.container, cmd=["sleep", MARKER], **flags)
        return rt.Exec(req, timeout=10).url
    if kind == "attach":
        return rt.Attach(api_pb2.AttachRequest(container_id=bed.container, **flags), timeout=10).url
    return rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=bed.pod, port=[80]), timeout=10).url


def _head(url: str, transport: str, kind: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    lines = [
        f"{'GET' if transport == 'websocket' else 'POST'} {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
    ]
    if transport == "websocket":
        protocol = "v4.channel.k8s.io" if kind == "portforward" else "v5.channel.k8s.io"
        lines += [
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            f"Sec-WebSocket-Protocol: {protocol}",
        ]
    else:
        protocol = "portforward.k8s.io" if kind == "portforward" else "v4.channel.k8s.io"
        lines += ["Connection: Upgrade", "Upgrade: SPDY/3.1", f"X-Stream-Protocol-Version: {protocol}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether cribd closes the connection within `within` s (what it sends is read and dropped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True
    return False


FLAGS = st.sampled_from(
    [
        {"stdout": True},
        {"stdin": True, "stdout": True, "stderr": True},
        {"stdin": True, "stdout": True, "tty": True},
        {"stderr": True},
    ]
)


@st.composite
def sessions(draw: st.DrawFn) -> dict[str, object]:
    transport = draw(st.sampled_from(["spdy", "websocket", "http"]))
    case: dict[str, object] = {
        "kind": draw(st.sampled_from(["exec", "attach", "portforward"])),
        "flags": draw(FLAGS),
        "transport": transport,
        "together": draw(st.booleans()),  # frames right behind the request, before the 101
        "certain": False,
    }
    if transport == "http":
        case["head_mutations"] = draw(MUTATIONS.filter(bool))
        case["upgrade"] = draw(st.sampled_from(["spdy", "websocket"]))
        case["payload"] = draw(st.binary(max_size=64))
        return case
    certain = draw(st.integers(0, 3)) == 0
    first = [draw(CERTAIN_SPDY if transport == "spdy" else CERTAIN_WS)] if certain else []
    frames = draw(SPDY_FRAMES if transport == "spdy" else WS_FRAMES)
    case["certain"] = certain
    case["frames"] = first + frames
    case["mutations"] = [] if certain else draw(MUTATIONS)
    return case


def _payload(case: dict[str, object]) -> bytes:
    if case["transport"] == "http":
        return case["payload"]  # type: ignore[return-value]
    frames = case["frames"]
    raw = _encode_spdy(frames) if case["transport"] == "spdy" else b"".join(frames)  # type: ignore[arg-type]
    if case["certain"]:
        return raw
    return mutate(raw, case["mutations"])  # type: ignore[arg-type]


def run_session(bed: StreamBed, case: dict[str, object]) -> list[str]:
    problems = []
    kind = str(case["kind"])
    url = _url(bed, kind, case["flags"])  # type: ignore[arg-type]
    parts = urllib.parse.urlsplit(url)
    transport = str(case["upgrade"] if case["transport"] == "http" else case["transport"])
    head = _head(url, transport, kind)
    if case["transport"] == "http":
        head = mutate(head, case["head_mutations"])  # type: ignore[arg-type]
    payload = _payload(case)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        try:
            if case["together"]:
                sock.sendall(head + payload)
            else:
                sock.sendall(head)
                sock.settimeout(5)
                _read_head(sock)
                sock.sendall(payload)
        except OSError:
            pass  # cribd closed already: fine, the checks below still apply
        closed = _closed_by_peer(sock, CERTAIN_CLOSE_S if case["certain"] else READ_S)
        TALLY["certainly invalid" if case["certain"] else "fuzzed"] += 1
        TALLY["closed by cribd" if closed else "closed by the client"] += 1
        if case["certain"] and not closed:
            problems.append(f"cribd kept a connection whose first frame is invalid open {CERTAIN_CLOSE_S}s")
    return problems


def _wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def leaks(bed: StreamBed) -> list[str]:
    problems = []
    if not _wait(lambda: total(bed.metrics, "crib_streaming_sessions_active") == 0, LEAK_WAIT_S):
        problems.append("a streaming session is still open")
    if not _wait(lambda: bed.fds() <= bed.fd_baseline, LEAK_WAIT_S):
        problems.append(f"cribd holds {bed.fds()} fds, {bed.fd_baseline} before")
    if not _wait(lambda: not bed.exec_left(), LEAK_WAIT_S):
        problems.append(f"an exec'd 'sleep {MARKER}' is still running")
    return problems


@pytest.mark.timeout(300 + EXAMPLES * 15)
def test_fuzzed_streaming_frames(sbed: StreamBed) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES <= 50,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=sessions())
    def example(case: dict[str, object]) -> None:
        problems = run_session(sbed, case)
        problems += leaks(sbed)
        try:
            sbed.daemon.runtime.Version(api_pb2.VersionRequest(), timeout=10)
        except Exception as exc:
            problems.append(f"cribd stopped serving: {exc}")
        problems += sbed.watch.problems(also=('"streaming.session_failed"',))
        assert not problems, problems

    example()
    begun = total(sbed.metrics, "crib_streaming_sessions_total")
    print(f"{EXAMPLES} fuzzed connections, {begun:g} upgraded into a streaming session; {dict(TALLY)}")
    # Enough of them got past the upgrade for the frames to have been parsed at all.
    assert begun >= EXAMPLES / 4
