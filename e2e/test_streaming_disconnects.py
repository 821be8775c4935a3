"""Streaming clients that vanish at random points leave no session, fd, process or token.

Each client is cribctl in a process of its own, SIGKILLed at a random instant from before
its Exec call to well into the session, over SPDY or WebSocket: some die before the
upgrade, some mid-upgrade, some while their command runs. Afterwards the exec'd commands
are gone from the container, cribd holds the fds it held before, and its metrics show no
session open. `CRIB_DISCONNECTS=1000` runs the long version.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.harness.clients import client_env, cribctl_argv
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.scrape import metrics_url, total
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    exec_sync,
    import_busybox,
    pod_config,
    remove_pod,
    run_container,
    run_pod,
)

SESSIONS = int(os.environ.get("CRIB_DISCONNECTS", "40"))
# The marker the exec'd commands carry, to find them in the container.
MARKER = "4242"


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _ps(daemon: Cribd, cid: str) -> str:
    return exec_sync(daemon, cid, ["ps", "-o", "args"]).stdout.decode()


# About how long `cribctl version` takes on an idle machine (Python's start, the imports,
# one call); a little over, so that an idle machine keeps the window as it was.
NOMINAL_START_S = 0.5


def _pace(daemon: Cribd) -> float:
    """How much slower than nominal a cribctl starts here and now, at least 1: under load
    (other suites on 2 cores) it takes seconds, and a fixed window would kill most clients
    before their Exec call, testing little (the long run is re-measured every 100 clients)."""
    started = time.monotonic()
    argv = cribctl_argv(daemon, "version")
    subprocess.run(argv, capture_output=True, env=client_env(), timeout=60, check=True)
    return max(1.0, (time.monotonic() - started) / NOMINAL_START_S)


@pytest.fixture
def streaming_cribd(cribd_factory: Callable[..., Cribd], pod_network: PodNetwork) -> Cribd:
    daemon = cribd_factory('[metrics]\naddress = "127.0.0.1:0"\n')
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start()


def test_clients_that_vanish_leave_nothing(streaming_cribd: Cribd, tmp_path: Path) -> None:
    daemon = streaming_cribd
    assert daemon.proc is not None
    import_busybox(daemon)
    pod_id = run_pod(daemon, pod_config("vanishing"))
    try:
        cid = run_container(daemon, pod_id, container_config("target", ["sleep", "3600"]))
        url = metrics_url(daemon)
        exec_sync(daemon, cid, ["true"])  # warm: the exec path's lazy set-up is not a leak
        baseline = _fds(daemon.proc.pid)
        rng = random.Random(4242)
        pace = 1.0
        for i in range(SESSIONS):
            if i % 100 == 0:
                pace = _pace(daemon)
            kind = rng.choice(["exec", "exec-tty", "attach"])
            transport = rng.choice(["spdy", "websocket"])
            if kind == "attach":
                args = ["attach", "-i", "-r", transport, cid]
            else:
                tty = ["-it"] if kind == "exec-tty" else ["-i"]
                args = ["exec", *tty, "-r", transport, cid, "sleep", MARKER]
            client = subprocess.Popen(
                cribctl_argv(daemon, *args),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=client_env(),
            )
            # The instant of death (not a wait for anything): cribctl takes ~0.4 s to reach
            # its Exec call, so this spans before the call, the upgrade and the session;
            # stretched by `pace` on a machine where cribctl starts slower than that.
            time.sleep(rng.uniform(0.1, 1.6) * pace)
            client.kill()
            client.wait(30)
        # Enough of them died inside a session for the test to mean something.
        begun = total(url, "crib_streaming_sessions_total")
        print(f"{SESSIONS} clients killed, {begun:g} of them inside a streaming session")
        assert begun >= SESSIONS / 4
        # What the vanished clients started is ended, and what cribd held is given back.
        wait_until(lambda: f"sleep {MARKER}" not in _ps(daemon, cid), 30, "the exec'd commands to end")
        wait_until(lambda: total(url, "crib_streaming_sessions_active") == 0, 30, "no streaming session open")
        wait_until(lambda: _fds(daemon.proc.pid) <= baseline, 30, f"cribd's fds back to {baseline}")
        # The container is untouched and still takes sessions.
        assert exec_sync(daemon, cid, ["echo", "still here"]).stdout == b"still here\n"
    finally:
        remove_pod(daemon, pod_id)
