"""bench/node_poll: RemovePodSandbox timed as the kubelet's garbage collection sends it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from bench import node_poll, report
from crib.proto.cri import api_pb2


@dataclass
class FakeClient:
    name: str
    calls: list[tuple[str, str, str]]
    made: int = 0
    daemon: SimpleNamespace = field(init=False)

    def __post_init__(self) -> None:
        self.daemon = SimpleNamespace(name=self.name)

    def pod_config(self) -> api_pb2.PodSandboxConfig:
        self.made += 1
        cfg = api_pb2.PodSandboxConfig()
        cfg.metadata.uid = f"{self.name}-{self.made}"
        return cfg

    def runp(self, cfg: api_pb2.PodSandboxConfig) -> str:
        self.calls.append((self.name, "run", cfg.metadata.uid))
        return cfg.metadata.uid

    def stopp(self, pod: str) -> None:
        self.calls.append((self.name, "stop", pod))

    def rmp(self, pod: str) -> None:
        self.calls.append((self.name, "remove", pod))


def test_every_pod_is_stopped_before_any_is_removed_and_each_removal_is_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "settle", lambda: 0.0)
    calls: list[tuple[str, str, str]] = []
    clients = {n: FakeClient(n, calls) for n in ("crib", "containerd")}
    samples: report.Samples = {n: {} for n in clients}
    node_poll.measure_later_removal(clients, samples, 100, 3)  # type: ignore[arg-type]
    kinds = [kind for _, kind, _ in calls]
    assert kinds == ["run", "stop"] * 6 + ["remove"] * 6
    for name in clients:
        made = [pod for n, kind, pod in calls if n == name and kind == "run"]
        assert [pod for n, kind, pod in calls if n == name and kind == "remove"] == made
        assert len(samples[name]["RemovePodSandbox of a pod stopped before, 100 pods"]) == 3
    # The runtimes take turns going first at removal, as in the other figures.
    removers = [n for n, kind, _ in calls if kind == "remove"]
    assert removers == ["crib", "containerd", "containerd", "crib", "crib", "containerd"]
