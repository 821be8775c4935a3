"""cribctl's container commands, the pure parts: configs, tables, filters, stats, arguments.

Expected texts marked "crictl" were printed by crictl 1.36 against cribd and are
pasted here: these tests need neither Go nor crictl.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crib.cribctl import endpoint, events_cmds, main
from crib.cribctl.client import CommandError
from crib.cribctl.container_cmds import (
    container_filter,
    container_status_json,
    container_status_table,
    container_verbose,
    containers_table,
    select_containers,
    verify_container_status,
)
from crib.cribctl.create_cmds import pull_settings
from crib.cribctl.cri_config import ConfigError, load_container_config, parse_container_config
from crib.cribctl.stats_cmds import cpu_percent, stats_table
from crib.proto.cri import api_pb2
from tests.cribctl_samples import (
    CREATED,
    ID_A,
    ID_B,
    ID_C,
    IMAGE_ID,
    POD,
    SECOND,
    sample_container,
    sample_stats,
)

pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- container configs ----------------------------------------------------------------------------

CONTAINER_YAML = """\
metadata: {name: web, attempt: 2}
Image: {image: "busybox:1", annotations: {a: 1}}
command: [/bin/sh, -c]
args: [echo hi]
working_dir: /srv
envs:
- {key: PORT, value: 8080}       # a number for a string: "8080"
- {key: SECRET, value: aGVsbG8=}  # kept as written (cri-api's value is a string)
- {key: DEBUG, value: yes}        # YAML 1.1: true, then "true"
labels: {tier: web}
log_path: web/0.log
tty: true
linux:
  resources: {memory_limit_in_bytes: 67108864, cpu_shares: 512}
  security_context: {run_as_user: {value: 33}, readonly_rootfs: true}
mounts:
- {container_path: /data, host_path: /tmp, readonly: true, propagation: 2}
stopSignal: 23                    # lowerCamelCase and an enum number (SIGTERM)
"""


def test_container_config_as_crictl_reads_it() -> None:
    config = parse_container_config(CONTAINER_YAML)
    assert (config.metadata.name, config.metadata.attempt) == ("web", 2)
    assert config.image.image == "busybox:1" and dict(config.image.annotations) == {"a": "1"}
    assert list(config.command) == ["/bin/sh", "-c"] and list(config.args) == ["echo hi"]
    assert [(e.key, e.value) for e in config.envs] == [
        ("PORT", b"8080"),
        ("SECRET", b"aGVsbG8="),
        ("DEBUG", b"true"),
    ]
    assert config.linux.resources.memory_limit_in_bytes == 64 << 20
    assert config.linux.security_context.run_as_user.value == 33
    assert config.mounts[0].propagation == api_pb2.PROPAGATION_BIDIRECTIONAL
    assert config.tty and config.log_path == "web/0.log" and config.stop_signal == api_pb2.SIGTERM
    json_config = parse_container_config(
        json.dumps({"metadata": {"name": "j"}, "envs": [{"key": "A", "value": 1}]})
    )
    assert json_config.envs[0].value == b"1"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "metadata: {name: x}\nimage: {image: a}\nenvs: [{key: A, value: [1]}]\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into "
            "Go struct field KeyValue.envs.value of type string",
        ),
        (
            "metadata: {name: x}\ncommand: sh\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into "
            "Go struct field ContainerConfig.command of type []string",
        ),
    ],
)
def test_container_config_errors(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_container_config(text)
    assert str(err.value) == error


def test_load_container_config_checks_as_crictl(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"

    def error(text: str) -> str:
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_container_config(str(path))
        return str(err.value)

    assert error("image: {image: a}\n") == "metadata is not set"
    assert error("metadata: {attempt: 1}\n") == 'name is not in metadata "attempt:1"'
    assert error("metadata: {name: x}\n") == "image is not set"
    # crictl:
    assert error("metadata: {name: x}\nimage: {user_specified_image: b}\n") == (
        'image field is not set in image "user_specified_image:\\"b\\""'
    )
    with pytest.raises(ConfigError) as err:
        load_container_config(str(tmp_path / "absent.yaml"))
    assert str(err.value) == f"config at {tmp_path}/absent.yaml not found"
    with pytest.raises(ConfigError) as err:
        load_container_config(str(tmp_path))
    assert str(err.value) == f"read {tmp_path}: is a directory"


def test_pull_settings_follow_the_config_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pull_settings(None) == (False, False)
    explicit = tmp_path / "crictl.yaml"
    explicit.write_text("pull-image-on-create: true\ndisable-pull-on-run: 'true'\n")
    assert pull_settings(str(explicit)) == (True, True)
    monkeypatch.setattr(endpoint, "DEFAULT_CONFIG_PATH", explicit)
    assert pull_settings(None) == (True, True)
    explicit.write_text("nonsense: 1\n")
    assert pull_settings(None) == (False, False)  # a broken default file counts as none
    with pytest.raises(endpoint.ClientConfigError):
        pull_settings(str(explicit))


# --- listing and showing containers ---------------------------------------------------------------


CONTAINERS = [
    sample_container(ID_A, "a", api_pb2.CONTAINER_RUNNING, CREATED, app="a"),
    sample_container(
        ID_B,
        "b",
        api_pb2.CONTAINER_EXITED,
        CREATED + 2 * SECOND,
        IMAGE_ID,
        app="b",
        **{"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "prod"},
    ),
    sample_container(ID_C, "c", api_pb2.CONTAINER_CREATED, CREATED + SECOND, app="c"),
]


def test_container_filter_is_what_goes_to_the_runtime() -> None:
    assert container_filter() == api_pb2.ContainerFilter(
        state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING)
    )
    assert container_filter(show_all=True) == api_pb2.ContainerFilter()
    assert container_filter(state="Exited", labels={"a": "1"}, container_id="ab", pod_id="cd") == (
        api_pb2.ContainerFilter(
            id="ab",
            pod_sandbox_id="cd",
            state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_EXITED),
            label_selector={"a": "1"},
        )
    )
    assert container_filter(state="unknown").state.state == api_pb2.CONTAINER_UNKNOWN
    assert not container_filter(latest=True).HasField("state")
    assert not container_filter(state="created", last=2).HasField("state")
    with pytest.raises(CommandError) as err:
        container_filter(state="paused")
    assert str(err.value) == "--state should be one of created, running, exited or unknown"


def test_select_containers() -> None:
    def names(**kw: Any) -> list[str]:
        return [c.metadata.name for c in select_containers(list(CONTAINERS), **kw)]

    assert names() == ["b", "c", "a"]  # newest first
    assert names(name="^[ab]$") == ["b", "a"]
    assert names(namespace="prod") == ["b"]
    assert names(namespace="unknown") == ["c", "a"]  # no namespace label: "unknown", as crictl
    assert names(latest=True) == ["b"]
    assert names(last=2) == ["b", "c"]
    assert names(name="(") == []  # a pattern that does not compile matches nothing
    assert names(image_matches=lambda c: c.image.image == IMAGE_ID) == ["b"]


def test_containers_table() -> None:
    now = CREATED + 65 * SECOND
    rows = select_containers(list(CONTAINERS))
    assert containers_table(rows, now) == (
        "CONTAINER           IMAGE                CREATED              STATE               NAME"
        "                ATTEMPT             POD ID              POD                 NAMESPACE\n"
        "a052041bafa17       85ff7cf95cd2e        About a minute ago   Exited              b"
        "                   1                   3a596a4dd8e68       web-0               prod\n"
        "467f500796478       crib.e2e/busybox:1   About a minute ago   Created             c"
        "                   0                   3a596a4dd8e68       unknown             unknown\n"
        "78c311b921667       crib.e2e/busybox:1   About a minute ago   Running             a"
        "                   0                   3a596a4dd8e68       unknown             unknown\n"
    )
    wide = containers_table(rows[:1], now, no_trunc=True, resolve_image=lambda image: f"<{image}>")
    assert wide.splitlines()[1].split() == [
        ID_B, f"<{IMAGE_ID}>", "About", "a", "minute", "ago", "Exited", "b", "1", POD, "web-0", "prod"
    ]  # fmt: skip
    # The header alone when nothing is listed (crictl prints it too).
    assert containers_table([], now) == (
        "CONTAINER           IMAGE               CREATED             STATE               NAME"
        "                ATTEMPT             POD ID              POD                 NAMESPACE\n"
    )
    with pytest.raises(CommandError) as err:
        containers_table([sample_container(ID_A, "x", 9, CREATED)], now)
    assert str(err.value) == 'Unknown container state "9"'


def test_container_verbose() -> None:
    c = api_pb2.Container()
    c.CopyFrom(CONTAINERS[1])
    c.annotations["note"] = "x"
    assert container_verbose(c, CREATED + 5 * SECOND) == (
        f"ID: {ID_B}\nPodID: {POD}\nNamespace: prod\nName: b\nAttempt: 1\nState: Exited\n"
        f"Image: {IMAGE_ID}\nCreated: 3 seconds ago\nLabels:\n\tapp -> b\n\tio.kubernetes.pod.name -> web-0\n"
        "\tio.kubernetes.pod.namespace -> prod\nAnnotations:\n\tnote -> x\n\n"
    )


def _status(state: int, **kw: Any) -> api_pb2.ContainerStatus:
    return api_pb2.ContainerStatus(
        id=ID_A,
        metadata=api_pb2.ContainerMetadata(name="a", attempt=kw.pop("attempt", 0)),
        state=state,
        created_at=CREATED,
        image=api_pb2.ImageSpec(image="crib.e2e/busybox:1"),
        image_ref=IMAGE_ID,
        log_path="/logs/a.log",
        **kw,
    )


def test_container_status_table() -> None:
    running = api_pb2.ContainerStatusResponse(
        status=_status(api_pb2.CONTAINER_RUNNING, started_at=CREATED + 2 * SECOND, labels={"app": "a"}),
        info={"info": '{"pid": 1}'},
    )
    now = CREATED + 20 * SECOND
    # crictl (as printed against cribd, times aside):
    assert container_status_table(running, True, now) == (
        f"ID: {ID_A}\nName: a\nState: CONTAINER_RUNNING\nCreated: 20 seconds ago\nStarted: 18 seconds ago\n"
        'Labels:\n\tapp -> a\nInfo: map[info:{"pid": 1}]\n'
    )
    exited = api_pb2.ContainerStatusResponse(
        status=_status(
            api_pb2.CONTAINER_EXITED,
            attempt=3,
            started_at=CREATED,
            finished_at=CREATED + SECOND,
            exit_code=137,
        )
    )
    assert container_status_table(exited, False, now) == (
        f"ID: {ID_A}\nName: a\nAttempt: 3\nState: CONTAINER_EXITED\nCreated: 20 seconds ago\n"
        "Started: 20 seconds ago\nFinished: 19 seconds ago\nExit Code: 137\n"
    )
    created = api_pb2.ContainerStatusResponse(status=_status(api_pb2.CONTAINER_CREATED))
    assert "Started" not in container_status_table(created, False, now)


def test_container_status_json_times(local_zone: Callable[[str], None]) -> None:
    doc = container_status_json(_status(api_pb2.CONTAINER_CREATED))
    assert (doc["createdAt"], doc["startedAt"], doc["finishedAt"]) == (
        "2026-11-28T06:43:46.106651483Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    )
    assert doc["resources"] is None and doc["user"] is None  # unset messages: null, as crictl
    local_zone("Europe/Berlin")
    doc = container_status_json(
        _status(api_pb2.CONTAINER_EXITED, started_at=CREATED, finished_at=CREATED + 1)
    )
    assert doc["startedAt"] == "2026-11-28T07:43:46.106651483+01:00"
    assert doc["finishedAt"] == "2026-11-28T07:43:46.106651484+01:00"
    doc = container_status_json(_status(api_pb2.CONTAINER_UNKNOWN, started_at=0, finished_at=0))
    assert doc["startedAt"] == "1970-01-01T01:00:00+01:00" and doc["finishedAt"] == "0001-01-01T00:00:00Z"


def test_verify_container_status() -> None:
    assert verify_container_status(_status(api_pb2.CONTAINER_RUNNING)) is None
    st = _status(api_pb2.CONTAINER_RUNNING)
    st.image_ref = ""
    assert verify_container_status(st) == "status.ImageRef is not set"
    st.ClearField("image")
    assert verify_container_status(st) == "status.Image is not set"
    st.metadata.name = ""
    assert verify_container_status(st) == 'metadata.Name is not in metadata ""'


# --- stats ----------------------------------------------------------------------------------------


def test_cpu_percent() -> None:
    old = sample_stats(ID_A, "a", 66_000_000, CREATED, 1)
    new = sample_stats(ID_A, "a", 67_400_000, CREATED + SECOND, 1)
    assert cpu_percent(old, new) == pytest.approx(0.14)
    assert f"{cpu_percent(old, new):.2f}" == "0.14"
    busy = sample_stats(ID_A, "a", 66_000_000 + 2 * SECOND, CREATED + SECOND, 1)
    assert f"{cpu_percent(old, busy):.2f}" == "200.00"  # two cores
    assert cpu_percent(old, sample_stats(ID_A, "a", 0, 0, 1)) == 0.0
    with pytest.raises(CommandError) as err:
        cpu_percent(old, sample_stats(ID_A, "a", 67_000_000, CREATED, 1))
    assert str(err.value) == "cpu stat is not updated during sample"


def test_stats_table() -> None:
    old = [
        sample_stats(ID_A, "a", 66_000_000, CREATED, 794_624),
        sample_stats(ID_C, "c", 0, 0, 0, 4096, 1),
    ]
    new = [
        sample_stats(ID_A, "a", 67_400_000, CREATED + SECOND, 794_624),
        sample_stats(ID_B, "b", 5, CREATED, 10),  # new since the first sample: left out
        sample_stats(ID_C, "c", 0, 0, 0, 4096, 1),
    ]
    # crictl (its row against cribd, same numbers):
    assert stats_table(old, new, False) == (
        "CONTAINER           NAME                CPU %               MEM                 DISK"
        "                INODES              SWAP\n"
        "78c311b921667       a                   0.14                794.6kB             8.192kB"
        "             4                   0B\n"
    )
    assert stats_table(old, new, True).splitlines()[2].split() == [
        "467f500796478",
        "c",
        "0.00",
        "0B",
        "4.096kB",
        "1",
        "0B",
    ]


# --- argument parsing -----------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    return main.parser().parse_args(list(argv))


def test_argument_parsing() -> None:
    args = _parse("-t", "5s", "exec", "-s", "--timeout", "3", ID_A, "sh", "-c", "echo -n; exit 2")
    assert (args.sync, args.exec_timeout, args.argv) == (
        True,
        ("3", "timeout"),
        [ID_A, "sh", "-c", "echo -n; exit 2"],
    )
    assert args.timeout == "5s"  # the global --timeout is not the subcommand's
    args = _parse("stop", "-t", "10", "a", "b")
    assert (args.stop_timeout, args.ids, args.timeout) == (("10", "t"), ["a", "b"], None)
    args = _parse(
        "ps", "-aqv", "--label", "a=1,b=2", "-s", "exited", "-p", "pod", "-n", "2", "-r", "--no-trunc"
    )
    assert (args.all, args.quiet, args.verbose, args.label, args.state, args.pod, args.last) == (
        True, True, True, ["a=1", "b=2"], "exited", "pod", ("2", "n")
    )  # fmt: skip
    assert args.resolve_image_path and args.no_trunc and args.output == "table"
    args = _parse("logs", "-ft", "--tail", "5", "--since", "1m", "-s", "stderr", "x")
    assert (args.follow, args.timestamps, args.tail, args.since, args.stream, args.ids) == (
        True, True, ("5", "tail"), "1m", "stderr", ["x"]
    )  # fmt: skip
    assert _parse("event").command == "event" and main.COMMANDS["event"] is events_cmds.cmd_events
    args = _parse("create", "-T", "30s", "--with-pull", "--pt", "1m", "p", "c.yaml", "p.yaml")
    assert (args.cancel_timeout, args.with_pull, args.pull_timeout, args.configs) == (
        ("30s", "T"), True, "1m", ["p", "c.yaml", "p.yaml"]
    )  # fmt: skip
    args = _parse("update", "--memory", "0x100", "--cpuset-cpus", "0-1", "--oom-score-adj", "x", "a")
    assert (args.memory, args.cpuset_cpus, args.oom_score_adj) == (("0x100", "memory"), "0-1", "x")
    assert _parse("run", "-r", "crun", "c", "p").runtime == "crun"
    assert _parse("rm", "-afk").keep_logs
