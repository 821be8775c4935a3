"""CribService.PullImageWithProgress and `cribctl pull`'s bars against a real cribd and registry.

The stream is the same pull as PullImage: the same image ref, the same error
codes, one download shared with concurrent pulls, and a client that goes away
stops only its own wait (and the pull, when it was the last one waiting).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import grpc
import pytest

from crib.proto.cri import api_pb2
from crib.proto.crib.v1 import crib_pb2, crib_pb2_grpc
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv
from e2e.harness.cribd import Cribd
from e2e.harness.proxy import Proxy
from e2e.harness.registry import Registry
from e2e.harness.terminal import on_a_terminal, read_all
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.test_image_pull import _big_image, blobs, ingest_files, listed, pull, push

PULL_TIMEOUT_S = 120
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def stream_pull(
    daemon: Cribd, image: str, auth: api_pb2.AuthConfig | None = None, timeout: float = PULL_TIMEOUT_S
) -> grpc.Call:
    stub = crib_pb2_grpc.CribServiceStub(daemon.channel)
    request = crib_pb2.PullImageWithProgressRequest(image=api_pb2.ImageSpec(image=image), auth=auth)
    return stub.PullImageWithProgress(request, timeout=timeout)


def rpc_events(daemon: Cribd, method: str) -> list[dict]:
    events = []
    for line in daemon.log_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "rpc" and event.get("method") == method:
            events.append(event)
    return events


@pytest.fixture
def daemon(cribd_factory: Callable[..., Cribd]) -> Cribd:
    return cribd_factory().start()


@pytest.fixture
def slow(registry: Registry) -> Iterator[Proxy]:
    """The registry behind a proxy the test can throttle."""
    proxy = Proxy(registry.port).start()
    yield proxy
    proxy.stop()


def push_via(proxy: Proxy, repo: str, tag: str, image: builder.BuiltImage) -> str:
    # Pushed straight to the registry: only the pull goes through the throttle.
    with RegistryClient(f"http://127.0.0.1:{proxy.target_port}") as client:
        return client.push_image(repo, tag, image)


def _check_progress(messages: list[crib_pb2.PullProgress], name: str, image: builder.BuiltImage) -> None:
    """What every complete stream of a first pull of `image` shows."""
    sizes = [layer.size for layer in image.layers]
    assert messages, "no message"
    assert all(m.reference == name for m in messages)
    with_layers = [m for m in messages if m.layers]
    assert with_layers, "no message listed the layers"
    for m in with_layers:
        assert [x.digest for x in m.layers] == [d.digest for d in image.layers]
        assert [x.size for x in m.layers] == sizes
        assert m.bytes_total == sum(sizes) and m.bytes_done == sum(x.bytes_done for x in m.layers)
    done = [m.bytes_done for m in with_layers]
    assert done == sorted(done), f"bytes went back: {done}"
    # Seen midway, not only at both ends.
    assert len({d for d in done if 0 < d < sum(sizes)}) >= 2, done
    assert any(x.state == crib_pb2.LAYER_STATE_DOWNLOADING for m in with_layers for x in m.layers)
    assert all(not m.image_ref for m in messages[:-1])
    last = messages[-1]
    assert last.image_ref == image.config.digest
    assert last.bytes_done == last.bytes_total == sum(sizes)
    assert {x.state for x in last.layers} == {crib_pb2.LAYER_STATE_DONE}
    assert last.manifest_digest == image.manifest.digest


def test_stream_shows_layers_and_growing_bytes_then_pull_images_ref(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(21, mb=3)
    digest = push_via(slow, "progress/img", "1", image)
    name = f"127.0.0.1:{slow.port}/progress/img:1"
    slow.rate = 3 << 20  # about a second for the big layer: several snapshots
    messages = list(stream_pull(daemon, name))
    _check_progress(messages, name, image)
    assert messages[-1].resolved == f"127.0.0.1:{slow.port}/progress/img@{digest}"
    assert messages[-1].registry == f"127.0.0.1:{slow.port}"
    # PullImage of the same name answers the same ref.
    assert pull(daemon, name) == messages[-1].image_ref
    # Pulled again: every layer is there already, nothing is fetched.
    gets = len(slow.requests)
    again = list(stream_pull(daemon, name))
    assert again[-1].image_ref == image.config.digest
    assert {x.state for x in again[-1].layers} == {crib_pb2.LAYER_STATE_ALREADY_PRESENT}
    assert not any("/blobs/" in line for line in slow.requests[gets:])
    # cribd's log reaches its file through a pipe: maybe a moment after the reply.
    wait_until(lambda: len(rpc_events(daemon, "PullImageWithProgress")) == 2, timeout=10, what="rpc events")
    events = rpc_events(daemon, "PullImageWithProgress")
    assert [(e["code"], e["image"]) for e in events] == [("OK", name)] * 2
    assert all(e["duration_ms"] > 0 for e in events)


def test_concurrent_streams_and_pull_image_share_one_download(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(22, mb=3)
    push_via(slow, "progress/shared", "1", image)
    name = f"127.0.0.1:{slow.port}/progress/shared:1"
    slow.rate = 4 << 20
    streams: list[list[crib_pb2.PullProgress]] = [[], []]
    refs: list[str] = []
    errors: list[BaseException] = []

    def watch(out: list[crib_pb2.PullProgress]) -> None:
        try:
            out.extend(stream_pull(daemon, name))
        except BaseException as exc:
            errors.append(exc)

    def plain() -> None:
        try:
            refs.append(pull(daemon, name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=watch, args=(s,)) for s in streams]
    threads.append(threading.Thread(target=plain))
    for t in threads:
        t.start()
    for t in threads:
        t.join(PULL_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for messages in streams:
        _check_progress(messages, name, image)
    assert refs == [image.config.digest]
    big = image.layers[1].digest
    assert sum(big in line for line in slow.requests if line.startswith("GET")) == 1


def test_bad_names_and_missing_images_fail_as_pull_image_does(daemon: Cribd, registry: Registry) -> None:
    cases = ["Upper/Case", "", f"{registry.host}/no/such:image", "127.0.0.1:1/nothing/listens:here"]
    expected = [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAVAILABLE,
    ]
    for name, code in zip(cases, expected, strict=True):
        with pytest.raises(grpc.RpcError) as streamed:
            list(stream_pull(daemon, name))
        with pytest.raises(grpc.RpcError) as plain:
            pull(daemon, name)
        assert streamed.value.code() == plain.value.code() == code, name
        if name:
            assert streamed.value.details() == plain.value.details()
        else:
            assert streamed.value.details() == "PullImageWithProgress: image.image is empty"
    assert registry.host in plain.value.details() or "127.0.0.1:1" in plain.value.details()
    assert not blobs(daemon) and not listed(daemon)
    wait_until(lambda: len(rpc_events(daemon, "PullImageWithProgress")) == 4, timeout=10, what="rpc events")
    assert [e["code"] for e in rpc_events(daemon, "PullImageWithProgress")] == [c.name for c in expected]


def _read_until_downloading(call: grpc.Call, digest: str) -> crib_pb2.PullProgress:
    for message in call:
        for layer in message.layers:
            if layer.digest == digest and layer.bytes_done > 0:
                return message
    raise AssertionError("the stream ended before the layer was downloading")


def test_cancelling_the_stream_midway_stops_the_pull_and_leaves_nothing(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(23, mb=6)
    push_via(slow, "progress/cancel", "1", image)
    name = f"127.0.0.1:{slow.port}/progress/cancel:1"
    slow.rate = 1 << 20  # ~6 s for the big layer
    call = stream_pull(daemon, name)
    _read_until_downloading(call, image.layers[1].digest)
    call.cancel()
    # The last waiter left: cribd stops the pull at once and removes what it brought.
    wait_until(
        lambda: not ingest_files(daemon) and '"image.pull_failed"' in daemon.log_text(),
        timeout=20,
        what="the pull to stop",
    )
    assert listed(daemon) == [] and not blobs(daemon)
    assert slow.downstream_bytes < 6 << 20
    wait_until(lambda: bool(rpc_events(daemon, "PullImageWithProgress")), timeout=10, what="the rpc event")
    assert [e["code"] for e in rpc_events(daemon, "PullImageWithProgress")] == ["CANCELLED"]


def test_cancelling_one_stream_leaves_the_others_pull(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(24, mb=3)
    push_via(slow, "progress/others", "1", image)
    name = f"127.0.0.1:{slow.port}/progress/others:1"
    slow.rate = 2 << 20
    big = image.layers[1].digest
    quitter = stream_pull(daemon, name)
    _read_until_downloading(quitter, big)
    stayer = stream_pull(daemon, name)
    # Its first message shows the layers of the pull in flight: it has joined it.
    midway = _read_until_downloading(stayer, big)
    assert not midway.image_ref
    quitter.cancel()
    rest = list(stayer)
    assert rest and rest[-1].image_ref == image.config.digest
    done = [m.bytes_done for m in rest]
    assert done == sorted(done), done
    assert [i.id for i in listed(daemon)] == [image.config.digest]
    assert sum(big in line for line in slow.requests if line.startswith("GET")) == 1
    assert not ingest_files(daemon)
    wait_until(lambda: len(rpc_events(daemon, "PullImageWithProgress")) == 2, timeout=10, what="rpc events")
    assert sorted(e["code"] for e in rpc_events(daemon, "PullImageWithProgress")) == ["CANCELLED", "OK"]


# --- cribctl pull -------------------------------------------------------------------------------


def _cribctl_on_a_pty(
    daemon: Cribd, *args: str
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    return on_a_terminal(cribctl_argv(daemon, *args), {**client_env(), "TERM": "xterm"})


def test_cribctl_pull_on_a_terminal_draws_bars_and_ends_with_the_ref(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(25, mb=3)
    push_via(slow, "progress/tty", "1", image)
    name = f"127.0.0.1:{slow.port}/progress/tty:1"
    slow.rate = 3 << 20
    with _cribctl_on_a_pty(daemon, "pull", name) as (proc, master):
        raw = read_all(master, proc, CALL_TIMEOUT_S).decode()
        assert proc.wait(CALL_TIMEOUT_S) == 0, raw
    # Redrawn in place: the cursor goes back up over the previous frame.
    assert re.search(r"\x1b\[\d+A", raw), raw
    plain = ANSI.sub("", raw).replace("\r", "")
    big = image.layers[1].digest.removeprefix("sha256:")[:12]
    assert re.search(rf"^{big}: Downloading +\[", plain, re.M), plain
    assert re.search(rf"^{big}: Pull complete +\[=+\]", plain, re.M), plain
    assert re.search(r"^total +: +\[", plain, re.M), plain
    lines = [line for line in plain.splitlines() if line]
    assert lines[-1] == f"Image is up to date for {image.config.digest}"
    assert all(len(line) < 120 for line in lines)  # never wrapped, so moving up stays right


def test_ctrl_c_stops_cribctls_pull_and_cribds(daemon: Cribd, slow: Proxy) -> None:
    image = _big_image(26, mb=6)
    push_via(slow, "progress/interrupt", "1", image)
    slow.rate = 1 << 20
    with _cribctl_on_a_pty(daemon, "pull", f"127.0.0.1:{slow.port}/progress/interrupt:1") as (proc, master):
        seen = read_all(master, proc, CALL_TIMEOUT_S, until=b"Downloading")
        assert b"Downloading" in seen, seen
        os.write(master, b"\x03")  # the terminal sends SIGINT to cribctl
        rest = read_all(master, proc, CALL_TIMEOUT_S).decode()
        assert proc.wait(CALL_TIMEOUT_S) == 1, rest
    assert "cribctl: pulling image: interrupted: context canceled" in rest
    assert "Image is up to date" not in rest
    wait_until(
        lambda: not ingest_files(daemon) and '"image.pull_failed"' in daemon.log_text(),
        timeout=20,
        what="cribd to stop the pull",
    )
    assert listed(daemon) == [] and not blobs(daemon)


def test_cribctl_pull_off_a_terminal_prints_only_crictls_line(daemon: Cribd, registry: Registry) -> None:
    image = builder.busybox_image()
    push(registry, "progress/plain", "1", image)
    r = subprocess.run(
        cribctl_argv(daemon, "pull", f"{registry.host}/progress/plain:1"),
        capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env(), start_new_session=True,
    )  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (0, f"Image is up to date for {image.config.digest}\n", "")
    # crictl's path: PullImage, not the progress stream.
    wait_until(lambda: bool(rpc_events(daemon, "PullImage")), timeout=10, what="the PullImage event")
    assert [e["code"] for e in rpc_events(daemon, "PullImage")] == ["OK"]
    assert rpc_events(daemon, "PullImageWithProgress") == []
