"""The scripts standing in for tools the test images lack, run on this machine's busybox and
static bash against local servers: what the e2e suites read from them is what they print."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.images.shims import CURL, NC_UDP

BUSYBOX = Path("/bin/busybox")
BASH_STATIC = Path("/bin/bash-static")
APPLETS = ("sh", "wget", "sed", "timeout", "mktemp", "cat", "rm", "tail", "printf")


@pytest.fixture
def path_dir(tmp_path: Path) -> Path:
    if not BUSYBOX.exists():
        pytest.fail("busybox-static is not installed (scripts/install.sh installs it)")
    d = tmp_path / "bin"
    d.mkdir()
    for applet in APPLETS:
        (d / applet).symlink_to(BUSYBOX)
    (d / "curl").write_bytes(CURL.replace(b"#!/bin/sh", f"#!{BUSYBOX} sh".encode(), 1))
    (d / "curl").chmod(0o755)
    return d


def run(path_dir: Path, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": str(path_dir), "TMPDIR": str(path_dir.parent)}
    return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=30, cwd=path_dir.parent)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/hostName":
            self.send_error(404)
            return
        body = b"netserver-0"
        self.send_response(200)
        self.send_header("X-Probe", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_curl_prints_the_body_as_the_dial_checks_read_it(path_dir: Path, http_url: str) -> None:
    r = run(
        path_dir,
        "curl",
        "-g",
        "-q",
        "-s",
        "--max-time",
        "15",
        "--connect-timeout",
        "1",
        f"{http_url}/hostName",
    )
    assert (r.returncode, r.stdout) == (0, b"netserver-0"), r.stderr


def test_curl_writes_the_status_code_and_error_status_still_exits_zero(path_dir: Path, http_url: str) -> None:
    r = run(
        path_dir, "curl", "-g", "-q", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{http_url}/missing"
    )
    assert (r.returncode, r.stdout) == (0, b"404")
    out = path_dir.parent / "body"
    r = run(path_dir, "curl", "-o", str(out), "-i", "-q", "-s", "-w", "%{http_code}", f"{http_url}/hostName")
    assert (r.returncode, r.stdout, out.read_bytes()) == (0, b"200", b"netserver-0")


def test_curl_include_puts_the_headers_before_the_body(path_dir: Path, http_url: str) -> None:
    r = run(path_dir, "curl", "-i", "-q", "-s", "--connect-timeout", "1", f"{http_url}/hostName")
    head, _, body = r.stdout.partition(b"\n\n")
    assert head.splitlines()[0].startswith(b"HTTP/1.") and b" 200 " in head.splitlines()[0]
    assert b"X-Probe: yes" in head.splitlines()
    assert body == b"netserver-0"


def test_curl_fails_as_curl_when_nothing_answers_or_an_option_is_unknown(path_dir: Path) -> None:
    r = run(path_dir, "curl", "-s", f"http://127.0.0.1:{free_port()}/")
    assert (r.returncode, r.stdout) == (7, b"")
    r = run(path_dir, "curl", "--data", "x", "http://127.0.0.1:1/")
    assert r.returncode == 2 and b"unsupported option --data" in r.stderr


@pytest.fixture
def nc(path_dir: Path) -> Path:
    if not BASH_STATIC.exists():
        pytest.fail("bash-static is not installed (scripts/install.sh installs it)")
    script = path_dir / "nc"
    script.write_bytes(NC_UDP.replace(b"#!/bin/bash", f"#!{BASH_STATIC}".encode(), 1))
    script.chmod(0o755)
    return script


def test_nc_udp_sends_stdin_and_prints_the_reply(path_dir: Path, nc: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        got: list[bytes] = []

        def answer() -> None:
            data, peer = server.recvfrom(1024)
            got.append(data)
            server.sendto(b"netserver-0", peer)

        t = threading.Thread(target=answer)
        t.start()
        r = run(
            path_dir, "nc", "-w", "1", "-u", "127.0.0.1", str(server.getsockname()[1]), stdin=b"hostName\n"
        )
        t.join(10)
    assert got == [b"hostName\n"]
    assert (r.returncode, r.stdout) == (0, b"netserver-0"), r.stderr


def test_nc_udp_without_a_reply_prints_nothing_and_fails(path_dir: Path, nc: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        r = run(
            path_dir, "nc", "-w", "1", "-u", "127.0.0.1", str(silent.getsockname()[1]), stdin=b"hostName\n"
        )
    assert r.returncode != 0 and r.stdout == b""


def test_nc_without_udp_is_busyboxs_nc(path_dir: Path, nc: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        argv = [str(nc), "127.0.0.1", str(server.getsockname()[1])]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env={"PATH": str(path_dir)})
        try:
            server.settimeout(10)
            conn, _ = server.accept()
            assert proc.stdin is not None
            proc.stdin.write(b"over tcp\n")
            proc.stdin.close()
            with conn:
                conn.settimeout(10)
                assert conn.recv(100) == b"over tcp\n"
            # busybox's nc ends when the peer closes.
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
