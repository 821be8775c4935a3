"""The benchmarks' replay floor (bench/grpc_floor.py) and the helpers that report on it.

A replay floor must send exactly the bytes it was given, for each method it was given
(whatever the request), and nothing for any other: crib / replay is only honest if the
floor's reply is crib's reply to the byte. The floors run as child processes, as in the
benchmarks, on a socket in a temp dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from bench import daemon_idle, report
from bench.daemon_idle import start_replay_floor
from bench.floor_server import MAX_MESSAGE_BYTES, METHOD, VERSION_REPLY, replay_handlers
from bench.grpc_floor import capture_replies, method_path
from crib.cri_server import daemon as cribd
from crib.proto.cri import api_pb2, api_pb2_grpc

CONTAINER_STATUS = "/runtime.v1.RuntimeService/ContainerStatus"
LIST_IMAGES = "/runtime.v1.ImageService/ListImages"


def test_method_path_finds_the_service_of_each_cri_method() -> None:
    assert method_path("Version") == METHOD
    assert method_path("ContainerStatus") == CONTAINER_STATUS
    assert method_path("ListImages") == LIST_IMAGES
    assert method_path("ImageFsInfo") == "/runtime.v1.ImageService/ImageFsInfo"
    with pytest.raises(KeyError):
        method_path("NoSuchCall")


def test_floors_serve_with_cribs_message_limits() -> None:
    # A floor with grpcio's 4 MB default would refuse a 500-pod reply crib sends.
    assert MAX_MESSAGE_BYTES == cribd.MAX_MESSAGE_BYTES


def test_replay_handlers_want_full_method_paths() -> None:
    with pytest.raises(ValueError, match="full method path"):
        replay_handlers({"ContainerStatus": b""}, "aio")
    with pytest.raises(ValueError, match="kind"):
        replay_handlers({CONTAINER_STATUS: b""}, "threads")


@pytest.mark.parametrize("kind", ["aio", "sync"])
def test_a_replay_floor_answers_each_method_with_its_bytes(kind: str) -> None:
    status = api_pb2.ContainerStatusResponse(
        status=api_pb2.ContainerStatus(id="c" * 64, state=api_pb2.CONTAINER_RUNNING, image_ref="sha256:ab")
    ).SerializeToString()
    # An unknown field (number 99, varint 1) after the message: a server that parsed and
    # serialized the reply again could reorder or drop it; the replay must send it as given.
    status += b"\x98\x06\x01"
    images = api_pb2.ListImagesResponse(
        images=[api_pb2.Image(id=f"sha256:{i:064x}", size=i) for i in range(1, 400)]
    ).SerializeToString()
    floor = start_replay_floor({CONTAINER_STATUS: status, LIST_IMAGES: images}, kind)
    try:
        assert floor.name == f"replay ({kind})"
        # The request is ignored: any container ID gets the one reply.
        got = capture_replies(
            floor.socket,
            {
                CONTAINER_STATUS: api_pb2.ContainerStatusRequest(container_id="another"),
                LIST_IMAGES: api_pb2.ListImagesRequest(),
                METHOD: api_pb2.VersionRequest(),
            },
        )
        assert got == {CONTAINER_STATUS: status, LIST_IMAGES: images, METHOD: VERSION_REPLY}
        with grpc.insecure_channel(f"unix://{floor.socket}") as ch:
            rt = api_pb2_grpc.RuntimeServiceStub(ch)
            # A client with the CRI's messages reads the replayed reply as the runtime's.
            parsed = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id="x"), timeout=10)
            assert parsed.status.id == "c" * 64
            with pytest.raises(grpc.RpcError) as err:
                rt.Status(api_pb2.StatusRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        floor.stop()
    assert floor.proc.poll() is not None
    assert not floor.dir.exists()


def test_a_replay_floor_keeps_a_given_version_reply() -> None:
    mine = api_pb2.VersionResponse(runtime_name="crib", runtime_version="9").SerializeToString()
    floor = start_replay_floor({METHOD: mine}, "aio", name="floor (test)")
    try:
        assert floor.name == "floor (test)"
        assert capture_replies(floor.socket, {METHOD: api_pb2.VersionRequest()}) == {METHOD: mine}
    finally:
        floor.stop()


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_memory_floors_hold_only_what_they_say() -> None:
    # daemon_idle's floor is a bare server: no benchmark module, no SQLite, no structlog. Its
    # design floor adds exactly crib's two design libraries, set up and in use.
    floor = daemon_idle.start_floor(libraries=False)
    design = daemon_idle.start_floor(libraries=True)
    try:
        assert (floor.name, design.name) == (daemon_idle.FLOOR, daemon_idle.DESIGN_FLOOR)
        assert "_sqlite3" not in _mapped(floor.proc.pid)
        assert "_sqlite3" in _mapped(design.proc.pid)
        assert (design.dir / "state.db-wal").exists()  # WAL mode, as crib's state store
        logged = (design.dir / "floor.log").read_text().splitlines()
        assert [json.loads(line)["event"] for line in logged] == ["floor.started"]
        assert not (floor.dir / "state.db").exists()
        assert (floor.dir / "floor.log").read_text() == ""
    finally:
        floor.stop()
        design.stop()


def test_in_turn_lets_every_server_go_first() -> None:
    # Two alternate, as every two-runtime benchmark had them.
    assert [report.in_turn(["crib", "ctrd"], r) for r in range(3)] == [
        ["crib", "ctrd"],
        ["ctrd", "crib"],
        ["crib", "ctrd"],
    ]
    three = ["crib", "ctrd", "replay"]
    orders = [report.in_turn(three, r) for r in range(3)]
    assert sorted(o[0] for o in orders) == sorted(three)
    assert sorted(o[1] for o in orders) == sorted(three)
    assert all(sorted(o) == sorted(three) for o in orders)
    assert report.in_turn([], 4) == []


def test_the_table_shows_crib_over_the_replay_floor() -> None:
    samples: report.Samples = {
        "crib": {"ListPodSandbox, 100 pods": [1.1] * 5, "ListContainerStats, 100 pods": [20.0] * 5},
        "containerd": {"ListPodSandbox, 100 pods": [0.55] * 5, "ListContainerStats, 100 pods": [200.0] * 5},
        "replay": {"ListPodSandbox, 100 pods": [1.0] * 5},
    }
    assert report.ratios(samples, "crib", "replay") == pytest.approx({"ListPodSandbox, 100 pods": 1.1})
    text = report.table(samples, ratio_of=[("crib", "containerd"), ("crib", "replay")])
    head, lists, stats = text.splitlines()
    assert head.split()[-2:] == ["crib/containerd", "crib/replay"]
    assert lists.split()[-2:] == ["2.00", "1.10"]
    # The floor has no stats calls: no ratio, and not flagged as short of samples.
    assert stats.split()[-2:] == ["0.10", "-"]
    assert "only" not in stats
    # Two runtimes still get their ratio without asking.
    two = report.table({n: samples[n] for n in ("crib", "containerd")})
    assert two.splitlines()[0].split()[-1] == "crib/containerd"
    assert two.splitlines()[1].split()[-1] == "2.00"


def test_show_and_save_keeps_the_ratios_with_the_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    samples: report.Samples = {
        "crib": {"ListImages, go client: median ms": [0.5, 0.6, 0.55]},
        "replay (aio)": {"ListImages, go client: median ms": [0.5, 0.5, 0.5]},
    }
    # containerd is absent (not installed): its pair is left out, not a KeyError.
    path = report.show_and_save("t", samples, "figure", [("crib", "containerd"), ("crib", "replay (aio)")])
    doc = json.loads(path.read_text())
    assert doc["ratios"] == {"crib/replay (aio)": {"ListImages, go client: median ms": 1.1}}
    assert doc["samples"] == samples
    # What a syscall costs on this machine, to read the figures of two sittings beside.
    assert isinstance(doc["machine"]["syscall_ns"], int) and doc["machine"]["syscall_ns"] > 0
    out = capsys.readouterr().out
    assert "crib/replay (aio)" in out and "crib/containerd" not in out and str(path) in out


def test_paired_ratios_divide_each_round_by_its_own_floor() -> None:
    # Rounds 2 and 3 were slow for both servers, round 1 for crib alone: crib's median lands
    # in the slow rounds, the floor's in the fast ones, and their ratio says 2.2; each round's
    # own ratio is 1.1 in four rounds of five.
    samples: report.Samples = {
        "crib": {"Version": [2.2, 2.2, 2.2, 1.1, 1.1], "out of step": [1.0, 1.0], "zero": [1.0]},
        "replay": {"Version": [1.0, 2.0, 2.0, 1.0, 1.0], "out of step": [1.0], "zero": [0.0]},
    }
    assert report.ratios(samples, "crib", "replay")["Version"] == pytest.approx(2.2)
    # Rounds out of step would pair the wrong samples, and a zero has no ratio: left out.
    assert report.paired_ratios(samples, "crib", "replay") == {"Version": pytest.approx(1.1)}
    assert report.paired_ratios(samples, "crib", "containerd") == {}
