"""The e2e test bed: a real cribd, a real registry, real images.

Fixtures:
- `cribd_factory(config_text="")` makes cribd instances (not started);
  `cribd` is one already serving. All are stopped and their temp dirs
  cleaned (processes, mounts, netns) at teardown, also when the test fails.
- `registry` and `auth_registry` (user `crib`, password `s3cret`): Debian's
  docker-registry on 127.0.0.1, one of each per test worker.
When a test fails, the log of every cribd it started is added to the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork, new_network
from e2e.harness.registry import Registry

AUTH_USER, AUTH_PASSWORD = "crib", "s3cret"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests drive real containers and need root")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, daemon in enumerate(getattr(item, "_cribds", [])):
            report.sections.append((f"cribd #{i} log ({daemon.log_path})", daemon.log_tail()))


@pytest.fixture
def cribd_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Cribd]]:
    made: list[Cribd] = []
    request.node._cribds = made

    def make(config_text: str = "") -> Cribd:
        daemon = Cribd(config_text)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.destroy()


@pytest.fixture
def cribd(cribd_factory: Callable[..., Cribd]) -> Cribd:
    return cribd_factory().start()


@pytest.fixture
def pod_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodNetwork]:
    """A bridge network of the test's own (bridge, subnet, IPAM dir), deleted afterwards."""
    net = new_network(tmp_path_factory.mktemp("net"))
    yield net
    net.destroy()


@pytest.fixture
def net_cribd(cribd_factory: Callable[..., Cribd], pod_network: PodNetwork) -> Cribd:
    """A cribd whose CNI conf dir holds `pod_network`."""
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    reg = Registry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    reg = Registry(users={AUTH_USER: AUTH_PASSWORD}).start()
    yield reg
    reg.stop()
