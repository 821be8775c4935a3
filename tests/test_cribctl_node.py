"""cribctl config, statsp's table, completion, help, go-template output and errors with no daemon.

Expected texts are crictl 1.36's for the same input (config files, tables,
error lines); e2e/test_cribctl_node.py runs the commands that need a runtime.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crib.cribctl import endpoint, info_cmds, main, output, util
from crib.cribctl.client import CommandError
from crib.cribctl.config_cmds import render_config
from crib.cribctl.endpoint import ClientConfig
from crib.cribctl.stats_cmds import statsp_table
from crib.proto.cri import api_pb2

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_DEFAULTS = (
    'runtime-endpoint: ""\n'
    'image-endpoint: ""\n'
    "timeout: 0\n"
    "debug: false\n"
    "pull-image-on-create: false\n"
    "disable-pull-on-run: false\n"
)


@pytest.fixture(autouse=True)
def no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "etc" / "crictl.yaml"
    monkeypatch.setattr(endpoint, "DEFAULT_CONFIG_PATH", path)
    monkeypatch.delenv("CRI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("CONTAINER_RUNTIME_ENDPOINT", raising=False)
    monkeypatch.delenv("IMAGE_SERVICE_ENDPOINT", raising=False)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- config -------------------------------------------------------------------------------------


def test_config_creates_the_default_file_with_every_option(
    capsys: pytest.CaptureFixture[str], no_default_config: Path
) -> None:
    assert run(capsys, "config", "--get", "timeout") == (0, "0\n", "")
    assert no_default_config.read_text() == ALL_DEFAULTS
    assert run(capsys, "config", "--set", "debug=true") == (0, "", "")
    assert no_default_config.read_text() == ALL_DEFAULTS.replace("debug: false", "debug: true")


def test_config_set_keeps_comments_quotes_and_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text('# my comment\ntimeout: 10 # ten\nruntime-endpoint: "unix:///x.sock"\n')
    assert run(capsys, "--config", str(f), "config", "--set", "image-endpoint=unix:///img.sock,debug=1") == (
        0,
        "",
        "",
    )
    assert f.read_text() == (
        "# my comment\n"
        "timeout: 10 # ten\n"
        'runtime-endpoint: "unix:///x.sock"\n'
        "image-endpoint: unix:///img.sock\n"
        "debug: true\n"
        "pull-image-on-create: false\n"
        "disable-pull-on-run: false\n"
    )
    # A positional key and value: set, with crictl's notice on stderr.
    code, out, err = run(capsys, "--config", str(f), "config", "timeout", "5")
    assert (code, out) == (0, "")
    assert err == 'cribctl: no --get, --set or --list provided, setting key "timeout" to value "5"\n'
    assert "timeout: 5 # ten\n" in f.read_text()
    # Quoting: the old quotes stay; a plain value that would read as another type is quoted.
    assert (
        run(
            capsys, "--config", str(f), "config", "--set", "runtime-endpoint=", "--set", "image-endpoint=true"
        )[0]
        == 0
    )
    text = f.read_text()
    assert 'runtime-endpoint: ""\n' in text and 'image-endpoint: "true"\n' in text
    assert endpoint.read_client_config(f) == ClientConfig("", "true", 5, True, False, False)


def test_config_get_and_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("runtime-endpoint: unix:///r.sock\ntimeout: 10\ndebug: true\n")
    assert run(capsys, "--config", str(f), "config", "--get", "runtime-endpoint") == (
        0,
        "unix:///r.sock\n",
        "",
    )
    assert run(capsys, "--config", str(f), "config", "--get", "debug") == (0, "true\n", "")
    assert run(capsys, "--config", str(f), "config", "--get", "image-endpoint") == (0, "\n", "")
    assert run(capsys, "--config", str(f), "config", "--list") == (
        0,
        "\x1b[2J\x1b[H"
        "KEY                    VALUE\n"
        "runtime-endpoint       unix:///r.sock\n"
        "image-endpoint         \n"
        "timeout                10\n"
        "debug                  true\n"
        "pull-image-on-create   false\n"
        "disable-pull-on-run    false\n",
        "",
    )
    assert (
        f.read_text() == "runtime-endpoint: unix:///r.sock\ntimeout: 10\ndebug: true\n"
    )  # reading writes nothing


def test_config_uses_cri_config_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "env.yaml"
    f.write_text("timeout: 7\n")
    monkeypatch.setenv("CRI_CONFIG_FILE", str(f))
    assert run(capsys, "config", "--get", "timeout") == (0, "7\n", "")
    assert run(capsys, "config", "--set", "timeout=8")[0] == 0
    assert f.read_text().startswith("timeout: 8\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--get", "nope"], "no configuration option named nope"),
        (["--set", "nope=1"], "no configuration option named nope"),
        (["--set", "timeout"], "incorrectly specified option: timeout"),
        (["--set", "timeout=x"], """parse timeout value 'x': strconv.Atoi: parsing "x": invalid syntax"""),
        (
            ["--set", "debug=maybe"],
            """parse debug value 'maybe': strconv.ParseBool: parsing "maybe": invalid syntax""",
        ),
        (
            ["timeout", "x"],
            """set "timeout" to "x": parse timeout value 'x': strconv.Atoi: parsing "x": invalid syntax""",
        ),
    ],
)
def test_config_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("timeout: 3\n")
    code, _, err = run(capsys, "--config", str(f), "config", *argv)
    assert code == 1
    assert err.splitlines()[-1] == f"cribctl: {message}"
    assert f.read_text() == "timeout: 3\n"


def test_config_without_arguments_shows_its_help(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("")
    code, out, _ = run(capsys, "--config", str(f), "config")
    assert code == 0 and out.startswith(
        "NAME:\n   cribctl config - Get, set and list crictl configuration options\n"
    )
    assert 'EXAMPLES:\n   # Set the key "debug" to "true"\n   cribctl config --set debug=true\n' in out


def test_render_config_rewrites_a_file_that_is_not_flat() -> None:
    nested = "runtime-endpoint:\n  nested: 1\n"
    assert render_config(nested, ClientConfig(timeout=4)) == ALL_DEFAULTS.replace("timeout: 0", "timeout: 4")
    assert render_config("", ClientConfig(runtime_endpoint="unix:///a b.sock")).startswith(
        "runtime-endpoint: unix:///a b.sock\n"
    )
    assert render_config("debug: 'x'\n", ClientConfig(image_endpoint="a: b")).splitlines()[:2] == [
        "debug: false",
        'runtime-endpoint: ""',
    ]
    assert 'image-endpoint: "a: b"' in render_config("", ClientConfig(image_endpoint="a: b"))


# --- statsp's table -------------------------------------------------------------------------------


def pod_stats(pod_id: str, name: str, cpu: int, ts: int, mem: int) -> api_pb2.PodSandboxStats:
    s = api_pb2.PodSandboxStats()
    s.attributes.id = pod_id
    s.attributes.metadata.name = name
    s.linux.cpu.timestamp = ts
    s.linux.cpu.usage_core_nano_seconds.value = cpu
    s.linux.memory.working_set_bytes.value = mem
    return s


def test_statsp_table() -> None:
    a1, b1 = "a" * 64, "b" * 64
    old = [pod_stats(a1, "web", 1_000_000_000, 10**9, 5_000_000), pod_stats(b1, "idle", 0, 10**9, 0)]
    new = [
        pod_stats(a1, "web", 1_500_000_000, 2 * 10**9, 5_242_880),
        pod_stats(b1, "idle", 0, 2 * 10**9, 0),  # no use at all: left out
        pod_stats("c" * 64, "late", 10, 2 * 10**9, 1000),  # not in the first sample: left out
    ]
    assert statsp_table(old, new) == (
        "POD                 POD ID              CPU %               MEM\n"
        "web                 aaaaaaaaaaaaa       50.00               5.243MB\n"
    )
    assert statsp_table([], []) == "POD                 POD ID              CPU %               MEM\n"
    with pytest.raises(CommandError, match="cpu stat is not updated during sample"):
        statsp_table(old, [pod_stats(a1, "web", 1_500_000_000, 10**9, 1)])
    both = pod_stats(a1, "web", 1, 1, 1)
    both.windows.cpu.timestamp = 1
    with pytest.raises(CommandError, match="has both linux and windows stats"):
        statsp_table([both], [both])


# --- completion -----------------------------------------------------------------------------------


def test_bash_completion_lists_commands_and_global_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "completion", "bash")
    assert code == 0 and run(capsys, "completion") == (0, out, "")  # bash is the default
    assert out.startswith("_cribctl() {\n") and out.endswith("\ncomplete -F _cribctl cribctl\n")
    words = out.split('opts="', 1)[1].split('"', 1)[0].split("\n")
    names = [n for names, _, _ in util.parser_commands(main.parser()) for n in names]
    assert words[: len(names)] == names
    for command in ("attach", "checkpoint", "completion", "config", "images", "image", "img", "statsp"):
        assert command in names
    assert names[-2:] == ["help", "h"] and names[:3] == ["attach", "checkpoint", "completion"]
    assert words[len(names) :] == [
        "--config",
        "--debug",
        "--image-endpoint",
        "--runtime-endpoint",
        "--timeout",
        "--help",
        "--version",
    ]
    subprocess.run(["bash", "-n"], input=out, text=True, check=True)


def test_zsh_and_fish_completion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "completion", "zsh")
    assert code == 0 and out.startswith("#compdef cribctl\n") and out.endswith("compdef _cribctl cribctl\n")
    assert "'statsp:List pod statistics." in out and "'img:List images'" in out
    assert "opts=('--config' '--debug' '--image-endpoint'" in out
    code, out, _ = run(capsys, "completion", "fish")
    assert code == 0 and out.startswith("# cribctl fish shell completion\n")
    lines = out.splitlines()
    assert (
        "complete -c cribctl -n '__fish_cribctl_no_subcommand' -f -a 'images image img' -d 'List images'"
        in lines
    )
    assert (
        "complete -c cribctl -n '__fish_seen_subcommand_from statsp' -f -l output -s o -r "
        "-d 'Output format, one of: json|yaml|table'" in lines
    )
    assert (
        "complete -c cribctl -n '__fish_seen_subcommand_from statsp' -f -l watch -s w "
        "-d 'Watch pod resources'" in lines
    )
    assert any("-l config -s c -r" in line for line in lines)


def test_completion_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "completion", "tcsh") == (1, "", "cribctl: only bash, zsh or fish are supported\n")
    code, out, _ = run(capsys, "completion", "bash", "zsh")
    assert code == 0 and out.startswith("NAME:\n   cribctl completion - Output shell completion code\n")


# --- help -----------------------------------------------------------------------------------------


def test_root_help_reads_like_crictls(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out == main.parser().format_help()
    assert out.startswith("NAME:\n   cribctl - crib's crictl-compatible CRI client\n\nUSAGE:\n")
    assert "   cribctl [global options] command [command options]\n" in out
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sections == ["NAME:", "USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"]
    commands = out.split("COMMANDS:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert any(re.fullmatch(r"   images, image, img +List images", line) for line in commands)
    assert "   update-runtime-config  Update the runtime configuration" in commands
    assert commands[-1].startswith("   help, h ") and commands[-1].endswith(
        "Shows a list of commands or help for one command"
    )
    # One column for the descriptions, as tabwriter lays them out.
    assert len({line.index(line.split("  ")[-1].strip()) for line in commands}) == 1
    assert "   --debug, -D " in out and "   --version, -v " in out and out.endswith("print the version\n")
    # With no command at all: the same help, and success (as crictl).
    assert run(capsys) == (0, out, "")


def test_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["statsp", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out == (
        "NAME:\n"
        "   cribctl statsp - List pod statistics. Stats represent a structured API that will fulfill the "
        "Kubelet's /stats/summary endpoint.\n"
        "\n"
        "USAGE:\n"
        "   cribctl statsp [command options] [ID...]\n"
        "\n"
        "OPTIONS:\n"
        "   --id value                       Filter by pod id\n"
        "   --label value [ --label value ]  Filter by key=value label\n"
        "   --output value, -o value         Output format, one of: json|yaml|table\n"
        "   --seconds value, -s value        Sample duration for CPU usage in seconds (default 1)\n"
        "   --watch, -w                      Watch pod resources (default: false)\n"
        "   --help, -h                       show help\n"
    )
    # `help COMMAND` and `h COMMAND` print the same.
    assert run(capsys, "help", "statsp") == (0, out, "")
    assert run(capsys, "h", "statsp") == (0, out, "")
    code, out, _ = run(capsys, "help", "images")
    assert code == 0 and out.startswith("NAME:\n   cribctl images - List images\n")
    code, out, _ = run(capsys, "help", "img")
    assert code == 0 and out.startswith("NAME:\n   cribctl images - List images\n")


def test_go_template_commands_document_template(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("inspect", "inspectp", "inspecti", "imagefsinfo", "info", "events"):
        code, out, _ = run(capsys, "help", command)
        assert code == 0
        assert "   --template value " in out, command
        assert "go-template" in out.split("--output value, -o value", 1)[1].split("\n", 1)[0], command


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "nosuch") == (3, "No help topic for 'nosuch'\n", "")
    assert run(capsys, "-r", "unix:///x.sock", "--timeout", "3s", "nosuch", "--flag") == (
        3,
        "No help topic for 'nosuch'\n",
        "",
    )
    assert run(capsys, "help", "nosuch") == (3, "No help topic for 'nosuch'\n", "")


# --- no daemon: one line, exit status 1 -------------------------------------------------------------


def test_dial_errors_read_like_grpc_go() -> None:
    core = (
        "rpc error: code = Unavailable desc = failed to connect to all addresses; last error: "
        "FAILED_PRECONDITION: unix:/run/x.sock: connect failed: addr: unix:/run/x.sock "
        "error: No such file or directory"
    )
    assert main.go_dial_error(core) == (
        'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
        'dial unix /run/x.sock: connect: no such file or directory"'
    )
    assert main.go_dial_error("rpc error: code = NotFound desc = x") == "rpc error: code = NotFound desc = x"


NO_DAEMON_COMMANDS = [
    ["version"],
    ["info"],
    ["pods"],
    ["ps"],
    ["images"],
    ["inspect", "x"],
    ["inspect", "-o", "go-template", "--template", "{{.status.id}}", "x"],
    ["inspecti", "x"],
    ["inspectp", "x"],
    ["imagefsinfo"],
    ["stats"],
    ["statsp"],
    ["runtime-config"],
    ["checkpoint", "-e", "/tmp/x.tar", "x"],
    ["stopp", "x"],
    ["logs", "x"],
    ["exec", "x", "ls"],
    ["events"],
    ["pull", "busybox"],
]


def _no_daemon(capsys: pytest.CaptureFixture[str], socket_path: Path, argv: list[str]) -> str:
    code, out, err = run(capsys, "--config", "/dev/null", "-r", f"unix://{socket_path}", "-t", "5s", *argv)
    assert (code, out) == (1, ""), argv
    assert err.count("\n") == 1 and err.startswith("cribctl: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv", NO_DAEMON_COMMANDS, ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_no_daemon_is_one_line_naming_the_socket(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "missing.sock"
    err = _no_daemon(capsys, missing, argv)
    assert f"dial unix {missing}: connect: no such file or directory" in err


def test_refused_connection_and_bad_endpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "refused.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound, never listening: connect is refused
    try:
        err = _no_daemon(capsys, path, ["pods"])
    finally:
        s.close()
    assert err == (
        f'cribctl: validate service connection: validate CRI v1 runtime API for endpoint "unix://{path}": '
        'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
        f'dial unix {path}: connect: connection refused"\n'
    )
    code, out, err = run(capsys, "--config", "/dev/null", "-r", "tcp://127.0.0.1:1", "version")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "tcp://127.0.0.1:1" in err


def test_no_daemon_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRI_", "CONTAINER_RUNTIME", "IMAGE_SERVICE"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "crib.cribctl.main",
            "--config",
            "/dev/null",
            "-r",
            f"unix://{tmp_path}/none.sock",
            "ps",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.count("\n") == 1 and f"dial unix {tmp_path}/none.sock: connect: no such file" in r.stderr


# --- go-template through a command's JSON -------------------------------------------------------------


class _Args:
    def __init__(self, command: str, template: str) -> None:
        self.command = command
        self.output = "go-template"
        self.template = template


def _printer(*docs: Any) -> Any:
    def command(args: Any, ep: Any) -> None:
        assert args.output == "json" and args.template == ""  # the command prints plain JSON
        for doc in docs:
            print(output.go_json_indent(doc))

    return command


def test_run_with_go_template(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"status": {"id": "abc", "size": "42", "n": 7}, "info": {"a": "<b>"}}
    output.run_with_go_template(
        _printer(doc), _Args("inspect", "{{.status.id}} {{.status.n}} {{.info.a}}"), None, ""
    )
    assert capsys.readouterr().out == "abc 7 <b>\n"
    # Streamed values are rendered one by one; an events template error is printed per event.
    output.run_with_go_template(_printer({"x": 1}, {"y": 2}), _Args("events", "{{.x}}"), None, "")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith(
        "failed to format container event with the error: failed to template data: template: "
    )
    with pytest.raises(CommandError) as exc:
        output.run_with_go_template(
            _printer(doc), _Args("inspect", "{{.nope}}"), None, "get the status of containers: "
        )
    assert str(exc.value) == (
        "get the status of containers: execute template: failed to template data: "
        'template: tmplExecuteRawJSON:1:2: executing "tmplExecuteRawJSON" at <.nope>: '
        'map has no entry for key "nope"'
    )
    # Text that is not JSON (a command's help) passes through.
    output.run_with_go_template(lambda a, e: print("NAME:\n   help"), _Args("inspect", "{{.x}}"), None, "")
    assert capsys.readouterr().out == "NAME:\n   help\n"
    # One parse for a stream of values.
    calls = []
    real_parse = output.gotemplate.parse
    monkeypatch.setattr(output.gotemplate, "parse", lambda t: calls.append(t) or real_parse(t))
    output.run_with_go_template(_printer({"x": 1}, {"x": 2}, {"x": 3}), _Args("events", "{{.x}}"), None, "")
    assert (capsys.readouterr().out, calls) == ("1\n2\n3\n", ["{{.x}}"])
    with pytest.raises(
        CommandError, match=r'^failed to parse go-template: template: :1: function "f" not defined$'
    ):
        output.run_with_go_template(_printer(doc), _Args("events", "{{f}}"), None, "")


def test_info_go_template_through_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = api_pb2.StatusResponse(info={"config": json.dumps({"root": "/var/lib/crib"})})
    r.status.conditions.add(type="RuntimeReady", status=True)

    class Stub:
        def Status(self, request: Any, timeout: float) -> api_pb2.StatusResponse:
            return r

    monkeypatch.setattr(info_cmds, "connect", lambda ep: Stub())
    code, out, err = run(
        capsys,
        "info",
        "-o",
        "go-template",
        "--template",
        "{{range .status.conditions}}{{.type}}={{.status}}{{end}} {{.config.root}}",
    )
    assert (code, out, err) == (0, "RuntimeReady=true /var/lib/crib\n", "")
    code, out, err = run(capsys, "info", "-o", "go-template", "--template", "{{.config.nope}}")
    assert code == 1 and err.startswith(
        "cribctl: getting status of runtime: execute template: failed to template data:"
    )
    assert run(capsys, "info", "-o", "xml") == (
        1,
        "",
        'cribctl: getting status of runtime: unsupported format: "xml"\n',
    )
