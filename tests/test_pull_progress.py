"""Pull progress: the tracker's arithmetic, follow(), the puller's bookkeeping, cribctl's bars
and its fallback to PullImage when the daemon has no CribService."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from crib import log_setup
from crib.cri_server.crib_service import CribService, progress_proto
from crib.cri_server.rpc import _wrap_stream
from crib.cribctl import main, progress
from crib.cribctl.client import CommandError
from crib.cribctl.image_cmds import pull_with_progress
from crib.errors import InvalidArgument, NotFound
from crib.image_service.image_pull import ImagePuller
from crib.image_service.image_store import ImageRecord, LayerRef
from crib.image_service.manifest import Descriptor
from crib.image_service.pull_progress import BlobProgress, LayerState, PullSnapshot, PullTracker, follow
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.proto.crib.v1 import crib_pb2, crib_pb2_grpc

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
IMAGE_ID = "sha256:" + "c" * 64
WAIT_S = 5.0


def _record(ref: str = "example.com/app:1") -> ImageRecord:
    return ImageRecord(
        id=IMAGE_ID,
        repo_tags=[ref],
        repo_digests=["example.com/other@sha256:" + "0" * 64, "example.com/app@sha256:" + "d" * 64],
        manifest_digest="sha256:" + "e" * 64,
        layers=[LayerRef(D1, "gzip", 100, "x", "y"), LayerRef(D2, "gzip", 50, "x2", "y2")],
        blobs=[],
        size=150,
        config={},
    )


# --- tracker and snapshots ------------------------------------------------------------------------


def test_snapshot_sums_layers_and_follows_a_shared_download() -> None:
    a, b = PullTracker("example.com/a:1"), PullTracker("example.com/b:1")
    assert a.snapshot() == PullSnapshot("example.com/a:1")
    assert a.snapshot().bytes_total == 0
    a.set_resolved("example.com/a@sha256:" + "f" * 64, "example.com")
    a.set_manifest("sha256:" + "e" * 64, [(D1, 100), (D2, 50)])
    b.set_manifest("sha256:" + "9" * 64, [(D1, 100)])
    # One download of D1 feeds both pulls.
    blob = BlobProgress(D1, 100)
    a.attach_blob(0, blob)
    b.attach_blob(0, blob)
    blob.set_state(LayerState.DOWNLOADING)
    blob.add(30)
    a.set_layer(1, LayerState.ALREADY_PRESENT)
    snap = a.snapshot()
    assert [(layer.state, layer.bytes_done) for layer in snap.layers] == [
        (LayerState.DOWNLOADING, 30),
        (LayerState.ALREADY_PRESENT, 50),
    ]
    assert (snap.bytes_done, snap.bytes_total) == (80, 150)
    assert b.snapshot().bytes_done == 30
    # A registry sending more than the manifest says never shows more than the size.
    blob.add(500)
    assert a.snapshot().layers[0].bytes_done == 100
    a.detach_blob(0)
    b.detach_blob(0)
    assert blob.trackers == []
    a.set_layer(0, LayerState.EXTRACTING)
    assert a.snapshot().layers[0] == a.snapshot().layers[0].__class__(D1, 100, 100, LayerState.EXTRACTING)


def test_change_wakes_watchers_until_unsubscribed() -> None:
    tracker = PullTracker("r")
    calls: list[int] = []
    unsubscribe = tracker.subscribe(lambda: calls.append(1))
    tracker.set_manifest("m", [(D1, 10)])
    blob = BlobProgress(D1, 10)
    tracker.attach_blob(0, blob)
    blob.add(1)
    assert len(calls) == 3
    unsubscribe()
    blob.add(1)
    assert len(calls) == 3


def test_complete_fills_a_tracker_that_saw_nothing() -> None:
    tracker = PullTracker("example.com/app:1")
    tracker.complete(_record())
    snap = tracker.snapshot()
    assert snap.image_ref == IMAGE_ID
    assert snap.manifest_digest == "sha256:" + "e" * 64
    assert snap.resolved == "example.com/app@sha256:" + "d" * 64
    assert [(layer.state, layer.bytes_done) for layer in snap.layers] == [
        (LayerState.DONE, 100),
        (LayerState.DONE, 50),
    ]
    assert snap.bytes_done == snap.bytes_total == 150


# --- follow() -------------------------------------------------------------------------------------


async def test_follow_coalesces_changes_and_ends_with_the_image_ref() -> None:
    tracker = PullTracker("example.com/app:1")
    pull: asyncio.Future[ImageRecord] = asyncio.get_running_loop().create_future()
    snaps: list[tuple[float, PullSnapshot]] = []
    interval = 0.3

    got = asyncio.Event()

    async def consume() -> None:
        async for snap in follow(tracker, pull, interval=interval):
            snaps.append((time.monotonic(), snap))
            got.set()

    async def until(n: int) -> None:
        while len(snaps) < n:
            got.clear()
            await got.wait()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    assert len(snaps) == 1 and not snaps[0][1].layers  # at once, before anything is known
    tracker.set_manifest("m", [(D1, 100)])
    blob = BlobProgress(D1, 100)
    tracker.attach_blob(0, blob)
    for _ in range(50):
        blob.add(1)
    await asyncio.wait_for(until(2), WAIT_S)
    # 52 changes, one snapshot with all of them, no sooner than the interval.
    assert len(snaps) == 2 and snaps[1][1].bytes_done == 50
    assert snaps[1][0] - snaps[0][0] >= interval * 0.9
    pull.set_result(_record())
    await asyncio.wait_for(consumer, WAIT_S)
    # The end cuts the interval short: the final snapshot is not held back.
    assert snaps[-1][0] - snaps[1][0] < interval
    assert snaps[-1][1].image_ref == IMAGE_ID
    assert all(not s.image_ref for _, s in snaps[:-1])
    assert tracker._watchers == []


async def test_follow_raises_the_pulls_error() -> None:
    tracker = PullTracker("r")
    pull: asyncio.Future[ImageRecord] = asyncio.get_running_loop().create_future()
    pull.set_exception(NotFound("pull r: not found"))
    got = []
    with pytest.raises(NotFound):
        async for snap in follow(tracker, pull):
            got.append(snap)
    assert got == [] and tracker._watchers == []


# --- the puller's bookkeeping ---------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {what} within {WAIT_S}s")


def _puller() -> ImagePuller:
    content = SimpleNamespace(has=lambda digest: False)
    return ImagePuller(None, content, None, None, None, None)  # type: ignore[arg-type]


async def test_progress_pulls_share_one_pull_and_leave_no_trackers(monkeypatch: pytest.MonkeyPatch) -> None:
    puller = _puller()
    started: list[str] = []
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def fake_pull(ref: Any, credentials: Any, tracker: PullTracker) -> ImageRecord:
        started.append(str(ref))
        tracker.set_manifest("m", [(D1, 100)])
        try:
            await asyncio.wait_for(release.wait(), WAIT_S)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        tracker.set_layer(0, LayerState.DONE)
        return _record()

    monkeypatch.setattr(puller, "_pull_leased", fake_pull)

    async def watch(out: list[PullSnapshot]) -> None:
        async for snap in puller.pull_with_progress("example.com/app:1", interval=0.01):
            out.append(snap)

    first: list[PullSnapshot] = []
    second: list[PullSnapshot] = []
    quitter: list[PullSnapshot] = []
    tasks = [asyncio.create_task(watch(x)) for x in (first, second, quitter)]
    plain = asyncio.create_task(puller.pull("example.com/app:1"))
    await eventually(lambda: all(x and x[-1].layers for x in (first, second, quitter)), "layers seen")
    assert started == ["example.com/app:1"]
    assert set(puller._trackers) == {"example.com/app:1"}
    # One watcher giving up stops its own wait only.
    tasks[2].cancel()
    await asyncio.sleep(0.05)
    assert not cancelled.is_set() and tasks[2].cancelled()
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks[:2], plain), WAIT_S)
    assert plain.result().id == IMAGE_ID
    for snaps in (first, second):
        assert snaps[-1].image_ref == IMAGE_ID and snaps[-1].layers[0].state == LayerState.DONE
    assert puller._trackers == {} and not puller._pulls.running("example.com/app:1")


async def test_the_last_watcher_leaving_cancels_the_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    puller = _puller()
    cancelled = asyncio.Event()

    async def fake_pull(ref: Any, credentials: Any, tracker: PullTracker) -> ImageRecord:
        try:
            await asyncio.sleep(WAIT_S)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not cancelled")

    monkeypatch.setattr(puller, "_pull_leased", fake_pull)
    stream = puller.pull_with_progress("example.com/app:1")
    assert (await anext(stream)).reference == "example.com/app:1"
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    await asyncio.sleep(0)
    assert puller._trackers == {}


async def test_a_bad_reference_fails_before_any_snapshot() -> None:
    with pytest.raises(InvalidArgument):
        await anext(_puller().pull_with_progress("Upper/Case"))


async def test_no_entry_leaks_when_a_wait_is_cancelled_before_the_work_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A task cancelled before its first step never runs a finally in its
    # coroutine; the bookkeeping must not depend on one.
    puller = _puller()

    async def never(*args: Any) -> Any:
        raise AssertionError("must not start")

    monkeypatch.setattr(puller, "_pull_leased", never)
    monkeypatch.setattr(puller, "_fetch_blob", never)
    waiter = asyncio.create_task(puller.pull("example.com/app:1"))
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", D1, 100)
    tracker = PullTracker("t")
    tracker.set_manifest("m", [(D1, 100)])
    download = asyncio.create_task(
        puller._download(None, desc, "what", asyncio.Semaphore(1), None, (tracker, 0))  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)  # each waiter has started its work's task, which has not run yet
    assert puller._trackers and puller._blob_progress
    waiter.cancel()
    download.cancel()
    for t in (waiter, download):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(t, WAIT_S)
    await asyncio.sleep(0)
    assert puller._trackers == {} and puller._blob_progress == {}
    assert tracker.layers[0].blob is None


def test_progress_proto_maps_every_field() -> None:
    tracker = PullTracker("example.com/app:1")
    tracker.set_resolved("example.com/app@sha256:" + "f" * 64, "example.com")
    tracker.complete(_record())
    msg = progress_proto(tracker.snapshot())
    assert msg.image_ref == IMAGE_ID and msg.registry == "example.com"
    assert (msg.bytes_done, msg.bytes_total) == (150, 150)
    assert [(x.digest, x.size, x.bytes_done, x.state) for x in msg.layers] == [
        (D1, 100, 100, crib_pb2.LAYER_STATE_DONE),
        (D2, 50, 50, crib_pb2.LAYER_STATE_DONE),
    ]
    # Every state has its wire value.
    for state in LayerState:
        assert crib_pb2.LayerState.Name(int(state)) == f"LAYER_STATE_{state.name}"


async def test_servicer_refuses_an_empty_name_as_pull_image_does(tmp_path: Path) -> None:
    servicer = CribService(SimpleNamespace(root=tmp_path))  # type: ignore[arg-type]
    request = crib_pb2.PullImageWithProgressRequest(image=api_pb2.ImageSpec(image=""))
    with pytest.raises(InvalidArgument, match=r"^PullImageWithProgress: image\.image is empty$"):
        await anext(servicer.PullImageWithProgress(request, None))  # type: ignore[arg-type]


def test_request_is_wire_compatible_with_pull_image_request() -> None:
    cri = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image="x", annotations={"a": "b"}),
        auth=api_pb2.AuthConfig(username="u", password="p"),
        sandbox_config=api_pb2.PodSandboxConfig(hostname="h"),
    )
    ours = crib_pb2.PullImageWithProgressRequest.FromString(cri.SerializeToString())
    assert ours.image == cri.image and ours.auth == cri.auth and ours.sandbox_config == cri.sandbox_config


# --- rendering ------------------------------------------------------------------------------------


def _msg(states: list[tuple[int, int, int]], ref: str = "") -> crib_pb2.PullProgress:
    layers = [
        crib_pb2.LayerProgress(digest=f"sha256:{i}" + "a" * 63, size=size, bytes_done=done, state=state)
        for i, (state, done, size) in enumerate(states)
    ]
    return crib_pb2.PullProgress(
        reference="example.com/app:1",
        layers=layers,
        bytes_done=sum(x.bytes_done for x in layers),
        bytes_total=sum(x.size for x in layers),
        image_ref=ref,
    )


def test_bar() -> None:
    assert progress.bar(0, 100, 10) == "[          ]"
    assert progress.bar(50, 100, 10) == "[====>     ]"
    assert progress.bar(100, 100, 10) == "[==========]"
    assert progress.bar(0, 0, 4) == "[====]"  # an empty blob has nothing left to fetch
    assert progress.bar(1, 10**12, 10) == "[          ]"


def test_render_lines() -> None:
    assert progress.render(crib_pb2.PullProgress(reference="example.com/app:1")) == [
        "Resolving example.com/app:1"
    ]
    lines = progress.render(
        _msg(
            [
                (crib_pb2.LAYER_STATE_DOWNLOADING, 1_500_000, 3_000_000),
                (crib_pb2.LAYER_STATE_ALREADY_PRESENT, 10, 10),
            ]
        )
    )
    assert len(lines) == 3
    assert re.fullmatch(r"0aaaaaaaaaaa: Downloading +\[=+> +\] 1\.5MB/3MB", lines[0]), lines[0]
    assert re.fullmatch(r"1aaaaaaaaaaa: Already exists +\[=+\] 10B/10B", lines[1]), lines[1]
    assert re.fullmatch(r"total +: +\[=+> +\] 1\.5MB/3MB", lines[2]), lines[2]


def test_view_redraws_in_place_at_a_bounded_rate() -> None:
    out = io.StringIO()
    now = [0.0]
    view = progress.ProgressView(out, columns=lambda: 40, clock=lambda: now[0], min_interval=0.1)
    view.update(crib_pb2.PullProgress(reference="r"))
    assert out.getvalue() == "\r\x1b[2KResolving r\n"
    two = _msg([(crib_pb2.LAYER_STATE_WAITING, 0, 100), (crib_pb2.LAYER_STATE_WAITING, 0, 100)])
    now[0] = 0.05
    view.update(two)  # too soon: held back
    assert out.getvalue().count("\n") == 1
    now[0] = 0.2
    view.update(two)
    frame = out.getvalue().split("Resolving r\n", 1)[1]
    # Back up over the one line drawn, then three lines, each cut to the width.
    assert frame.startswith("\x1b[1A")
    assert frame.count("\r\x1b[2K") == 3
    assert all(len(line.split("\x1b[2K")[-1]) <= 39 for line in frame.splitlines())
    now[0] = 0.25
    done = _msg([(crib_pb2.LAYER_STATE_DONE, 100, 100)], ref=IMAGE_ID)
    view.update(done)
    before = out.getvalue()
    view.finish()  # the held-back last snapshot is drawn: fewer lines, the rest cleared
    last = out.getvalue()[len(before) :]
    assert last.startswith("\x1b[3A") and last.endswith("\x1b[J") and "Pull complete" in last
    view.finish()
    assert out.getvalue() == before + last  # nothing pending: nothing drawn


def test_wanted_only_on_a_real_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress.wanted(Tty(), {"TERM": "xterm"})
    assert not progress.wanted(Tty(), {"TERM": "dumb"})
    assert not progress.wanted(io.StringIO(), {"TERM": "xterm"})
    closed = io.StringIO()
    closed.close()
    assert not progress.wanted(closed, {})


# --- the client against fake daemons ------------------------------------------------------------


class _Call:
    """A fake server-streaming call: some messages, then maybe an error."""

    def __init__(self, messages: list[crib_pb2.PullProgress], error: grpc.StatusCode | None) -> None:
        self.messages, self.error = messages, error
        self.cancelled = False

    def __iter__(self) -> Iterator[crib_pb2.PullProgress]:
        yield from self.messages
        if self.error is not None:
            raise _RpcError(self.error)

    def cancel(self) -> None:
        self.cancelled = True


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "boom"


class _Stub:
    def __init__(self, call: _Call) -> None:
        self.call = call
        self.requests: list[Any] = []

    def PullImageWithProgress(self, request: Any, timeout: float | None = None) -> _Call:
        self.requests.append((request, timeout))
        return self.call


def test_client_falls_back_only_on_unimplemented_before_any_message() -> None:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="x"))
    view = progress.ProgressView(io.StringIO(), columns=lambda: 80)
    assert pull_with_progress(_Stub(_Call([], grpc.StatusCode.UNIMPLEMENTED)), request, 0, view) is None  # type: ignore[arg-type]
    one = _msg([(crib_pb2.LAYER_STATE_WAITING, 0, 1)])
    with pytest.raises(CommandError, match=r"^pulling image: rpc error: code = Unimplemented desc = boom$"):
        pull_with_progress(_Stub(_Call([one], grpc.StatusCode.UNIMPLEMENTED)), request, 0, view)  # type: ignore[arg-type]
    with pytest.raises(CommandError, match=r"^pulling image: rpc error: code = NotFound desc = boom$"):
        pull_with_progress(_Stub(_Call([], grpc.StatusCode.NOT_FOUND)), request, 0, view)  # type: ignore[arg-type]
    with pytest.raises(CommandError, match=r"^pulling image: boom$"):
        pull_with_progress(_Stub(_Call([], grpc.StatusCode.UNKNOWN)), request, 0, view)  # type: ignore[arg-type]
    stub = _Stub(_Call([one, _msg([(crib_pb2.LAYER_STATE_DONE, 1, 1)], ref=IMAGE_ID)], None))
    assert pull_with_progress(stub, request, 30, view) == IMAGE_ID  # type: ignore[arg-type]
    assert stub.requests[0][1] == 30


class FakeImages(api_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.pulls: list[api_pb2.PullImageRequest] = []

    def PullImage(self, request: api_pb2.PullImageRequest, context: grpc.ServicerContext) -> Any:
        self.pulls.append(request)
        return api_pb2.PullImageResponse(image_ref=IMAGE_ID)

    def ImageFsInfo(self, request: api_pb2.ImageFsInfoRequest, context: grpc.ServicerContext) -> Any:
        return api_pb2.ImageFsInfoResponse()


class FakeCrib(crib_pb2_grpc.CribServiceServicer):
    def __init__(self) -> None:
        self.requests: list[crib_pb2.PullImageWithProgressRequest] = []

    def PullImageWithProgress(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.requests.append(request)
        yield crib_pb2.PullProgress(reference=request.image.image)
        yield _msg([(crib_pb2.LAYER_STATE_DOWNLOADING, 5, 10)])
        yield _msg([(crib_pb2.LAYER_STATE_DONE, 10, 10)], ref=IMAGE_ID)


def _serve(tmp_path: Path, with_crib: bool) -> tuple[grpc.Server, str, FakeImages, FakeCrib]:
    images, crib = FakeImages(), FakeCrib()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api_pb2_grpc.add_ImageServiceServicer_to_server(images, server)
    if with_crib:
        crib_pb2_grpc.add_CribServiceServicer_to_server(crib, server)
    socket = f"unix://{tmp_path}/fake.sock"
    server.add_insecure_port(socket)
    server.start()
    return server, socket, images, crib


PULL_ARGS = ["pull", "--creds", "u:p", "-a", "k=v", "example.com/app:1"]


@pytest.mark.parametrize("with_crib", [True, False])
def test_cmd_pull_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, with_crib: bool
) -> None:
    monkeypatch.setattr(progress, "wanted", lambda stream: True)
    server, socket, images, crib = _serve(tmp_path, with_crib)
    try:
        code = main.main(["-r", socket, *PULL_ARGS])
    finally:
        server.stop(None)
    out, err = capsys.readouterr()
    assert (code, out) == (0, f"Image is up to date for {IMAGE_ID}\n")
    auth = api_pb2.AuthConfig(username="u", password="p")
    if with_crib:
        assert images.pulls == [] and len(crib.requests) == 1
        request = crib.requests[0]
        assert request.auth == auth and dict(request.image.annotations) == {"k": "v"}
        assert "\x1b[" in err and "Pull complete" in err and "total" in err
    else:
        # containerd and CRI-O have no CribService: PullImage, silently.
        assert err == "" and len(images.pulls) == 1
        assert images.pulls[0].auth == auth and dict(images.pulls[0].image.annotations) == {"k": "v"}


def test_cmd_pull_off_a_terminal_is_crictls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, socket, images, crib = _serve(tmp_path, with_crib=True)
    try:
        code = main.main(["-r", socket, *PULL_ARGS])
    finally:
        server.stop(None)
    assert (code, *capsys.readouterr()) == (0, f"Image is up to date for {IMAGE_ID}\n", "")
    assert len(images.pulls) == 1 and crib.requests == []


def test_cmd_pull_pod_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pod.json"
    config.write_text('{"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "hostname": "h"}')
    server, socket, images, _ = _serve(tmp_path, with_crib=False)
    try:
        assert main.main(["-r", socket, "pull", "--pod-config", str(config), "x"]) == 0
        assert main.main(["-r", socket, "pull", "--pod-config", str(tmp_path / "nope"), "x"]) == 1
    finally:
        server.stop(None)
    assert images.pulls[0].sandbox_config.hostname == "h"
    assert capsys.readouterr().err.endswith(f"load podSandboxConfig: config at {tmp_path}/nope not found\n")


async def test_a_stream_closed_at_a_yield_logs_its_call_as_cancelled() -> None:
    # What a server-streaming handler sees when its client goes away while a
    # message is being sent: it is closed at its yield, not cancelled.
    async def handler(request: Any, context: Any) -> AsyncIterator[crib_pb2.PullProgress]:
        for _ in range(3):
            yield crib_pb2.PullProgress()

    sink = io.StringIO()
    log_setup.configure("debug", "json", sink, cache=False)
    try:
        stream = _wrap_stream("PullImageWithProgress", handler, lambda r: {"image": "x"})(None, None)  # type: ignore[arg-type]
        await anext(stream)
        await stream.aclose()
    finally:
        log_setup.configure("info", "json", None, cache=False)
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(e["event"], e["method"], e["code"], e["image"]) for e in events] == [
        ("rpc", "PullImageWithProgress", "CANCELLED", "x")
    ]
