"""cribd's TOML config: defaults, every section, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from crib import config as cfg
from crib.config import Config, ConfigError
from crib.image_service.images import pin_matches

FULL = """
listen = "unix:///run/x/crib.sock"
root = "/srv/crib"
state = "/run/x"
log_level = "debug"
log_format = "console"

[image]
sandbox_image = "registry.k8s.io/pause:3.10"
insecure_registries = ["127.0.0.1:5000"]
auth_file = "/etc/crib/auth.json"
config_path = "/etc/crib/certs.d"
max_concurrent_downloads = 5
stall_timeout = 30
signature_policy = "/etc/crib/policy.json"

[image.mirrors."docker.io"]
endpoints = ["http://127.0.0.1:5000", "https://mirror.example"]
mirrors_only = true

[cni]
bin_dirs = ["/usr/lib/cni"]
conf_dir = "/etc/cni/net.d"
network_name = "crib"

[runtime]
default_handler = "crun"
conmon = "/usr/bin/conmon"
cgroup_driver = "systemd"

[runtime.handlers.crun]
binary = "/usr/bin/crun"

[runtime.handlers.kata-fc]
binary = "kata-runtime"

[streaming]
address = "127.0.0.1"
port = 10010

[tracing]
endpoint = "http://127.0.0.1:4318/v1/traces"
sampling_ratio = 0.25
service_name = "cribd-node1"
"""


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cfg, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    c = cfg.load(None)
    assert c.socket_path == Path("/run/crib/crib.sock")
    assert c.root == "/var/lib/crib"
    assert c.image.max_concurrent_downloads == 3
    assert c.image.stall_timeout == 60.0
    assert c.image.config_path == ""  # no hosts dir: [image.mirrors] alone
    assert c.image.signature_policy == ""
    assert c.runtime.default_handler == "runc"
    assert {n: h.binary for n, h in c.runtime.handlers.items()} == {"runc": "runc", "crun": "crun"}
    assert c.runtime.cgroup_driver == "cgroupfs"
    assert (c.streaming.address, c.streaming.port) == ("127.0.0.1", 0)
    assert (c.tracing.endpoint, c.tracing.sampling_ratio, c.tracing.service_name) == ("", 1.0, "cribd")


def test_every_section_is_read() -> None:
    c = cfg.parse(FULL)
    assert c.socket_path == Path("/run/x/crib.sock")
    assert c.log_format == "console"
    assert c.image.mirrors["docker.io"].endpoints == ["http://127.0.0.1:5000", "https://mirror.example"]
    assert c.image.mirrors["docker.io"].mirrors_only is True
    assert c.image.stall_timeout == 30.0
    assert c.image.config_path == "/etc/crib/certs.d"
    assert c.image.signature_policy == "/etc/crib/policy.json"
    assert c.cni.network_name == "crib"
    assert set(c.runtime.handlers) == {"crun", "kata-fc"}
    assert c.runtime.handlers["kata-fc"].binary == "kata-runtime"
    assert c.streaming.port == 10010
    assert c.tracing.endpoint == "http://127.0.0.1:4318/v1/traces"
    assert (c.tracing.sampling_ratio, c.tracing.service_name) == (0.25, "cribd-node1")


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("lisen = '/x'", "lisen", "unknown key"),
        ("[image]\nmax_downloads = 2", "image.max_downloads", "unknown key"),
        ("[image]\nmax_concurrent_downloads = '3'", "image.max_concurrent_downloads", "expected an integer"),
        ("[image]\nmax_concurrent_downloads = true", "image.max_concurrent_downloads", "expected an integer"),
        ("[image]\nmax_concurrent_downloads = 0", "image.max_concurrent_downloads", "at least 1"),
        ("[image]\nstall_timeout = -1", "image.stall_timeout", "positive"),
        ("[image]\nsignature_policy = 'policy.json'", "image.signature_policy", "absolute"),
        ("[image]\nsignature_policy = true", "image.signature_policy", "expected a string"),
        ("[image]\ninsecure_registries = 'a'", "image.insecure_registries", "expected a list"),
        ("[image]\ninsecure_registries = [1]", "image.insecure_registries[0]", "expected a string"),
        (
            "[image.mirrors.'docker.io']\nendpoint = ['http://x']",
            'image.mirrors."docker.io".endpoint',
            "unknown key",
        ),
        (
            "[image.mirrors.'docker.io']\nendpoints = []",
            'image.mirrors."docker.io".endpoints',
            "at least one",
        ),
        (
            "[image.mirrors.'docker.io']\nendpoints = ['ftp://x']",
            'image.mirrors."docker.io".endpoints[0]',
            "http",
        ),
        ("[image]\nconfig_path = 'certs.d'", "image.config_path", "absolute"),
        ("[image]\nconfig_path = ['/etc/crib/certs.d']", "image.config_path", "expected a string"),
        ("[cni]\nbin_dirs = ['relative']", "cni.bin_dirs[0]", "absolute"),
        ("[runtime]\ncgroup_driver = 'cgroupv3'", "runtime.cgroup_driver", "one of"),
        ("[runtime]\ndefault_handler = 'kata'", "runtime.default_handler", "not one of"),
        ("[runtime.handlers.runc]\npath = 'runc'", "runtime.handlers.runc.path", "unknown key"),
        ("[runtime.handlers.runc]\nbinary = ''", "runtime.handlers.runc.binary", "empty"),
        ("[runtime]\nhandlers = {}", "runtime.handlers", "at least one"),
        ("[streaming]\nport = 70000", "streaming.port", "0..65535"),
        ("[streaming]\naddress = 'localhost'", "streaming.address", "IP address"),
        ("[streaming]\nidle_timeout = 0", "streaming.idle_timeout", "positive"),
        ("[streaming]\ncreation_timeout = -1", "streaming.creation_timeout", "positive"),
        ("[streaming]\ntls_cert = '/c.pem'", "streaming.tls_cert", "go together"),
        ("[tracing]\nendpoint = '127.0.0.1:4318'", "tracing.endpoint", "http:// or https:// URL"),
        ("[tracing]\nendpoint = 'grpc://collector:4317'", "tracing.endpoint", "http:// or https:// URL"),
        ("[tracing]\nendpoint = 'http://'", "tracing.endpoint", "http:// or https:// URL"),
        ("[tracing]\nsampling_ratio = 1.5", "tracing.sampling_ratio", "0..1"),
        ("[tracing]\nsampling_ratio = -0.1", "tracing.sampling_ratio", "0..1"),
        ("[tracing]\nsampling_ratio = '1'", "tracing.sampling_ratio", "expected a number"),
        ("[tracing]\nservice_name = ''", "tracing.service_name", "empty"),
        ("[tracing]\nendpont = 'http://x'", "tracing.endpont", "unknown key"),
        ("log_level = 'verbose'", "log_level", "one of"),
        ("root = 'var/lib/crib'", "root", "absolute"),
        ("image = 3", "image", "expected a table"),
    ],
)
def test_bad_config_names_the_key(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse(text)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(key)


def test_invalid_toml_is_refused() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.parse("[image\n")


def test_flags_override_the_file_and_are_validated() -> None:
    c = cfg.apply_overrides(cfg.parse(FULL), root="/tmp/r", log_level=None, listen="unix:///tmp/r.sock")
    assert c.root == "/tmp/r"
    assert c.log_level == "debug"
    assert c.socket_path == Path("/tmp/r.sock")
    with pytest.raises(ConfigError) as info:
        cfg.apply_overrides(Config(), state="relative/dir")
    assert info.value.key == "state"


def test_listen_defaults_to_the_state_dir() -> None:
    c = cfg.apply_overrides(Config(), state="/tmp/s")
    assert c.socket_path == Path("/tmp/s/crib.sock")


def test_printed_config_reads_back_unchanged() -> None:
    original = cfg.parse(FULL)
    text = cfg.to_toml(original)
    assert '[image.mirrors."docker.io"]' in text
    assert 'config_path = "/etc/crib/certs.d"' in text
    assert '[tracing]\nendpoint = "http://127.0.0.1:4318/v1/traces"\nsampling_ratio = 0.25' in text
    assert cfg.parse(text) == original
    # Printing resolves an empty `listen` to the socket path it stands for.
    defaults = cfg.apply_overrides(Config())
    assert cfg.parse(cfg.to_toml(defaults)).to_dict() == defaults.to_dict()


def test_the_shipped_sample_config_is_valid() -> None:
    sample = Path(__file__).resolve().parents[1] / "deploy" / "crib.toml"
    c = cfg.parse(sample.read_text(), str(sample))
    assert c.runtime.default_handler == "runc"
    assert "/usr/lib/cni" in c.cni.bin_dirs


def test_pin_patterns_follow_cri_o() -> None:
    assert pin_matches("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36")
    assert not pin_matches("docker.io/library/busybox", "docker.io/library/busybox:1.36")
    assert pin_matches("registry.k8s.io/pause*", "registry.k8s.io/pause:3.10")
    assert not pin_matches("registry.k8s.io/pause*", "example.com/registry.k8s.io/pause:1")
    assert pin_matches("*agent*", "example.com/node-agent:2")
    assert not pin_matches("*agent*", "example.com/node:2")
