"""Which CNI config a node uses, and why it is not ready without one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crib.cni import network
from crib.cni.config import NetworkConfigList, NetworkNotReady, load_network
from crib.cni.network import Attachment, CNICache


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bridge", "host-local", "loopback", "portmap"):
        p = d / name
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    return d


def _write(d: Path, name: str, data: object) -> None:
    d.mkdir(exist_ok=True)
    (d / name).write_text(data if isinstance(data, str) else json.dumps(data))


CONFLIST = {"cniVersion": "1.0.0", "name": "crib", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}


def test_missing_dir_and_empty_dir_are_not_ready(tmp_path: Path, bin_dir: Path) -> None:
    with pytest.raises(NetworkNotReady, match="does not exist"):
        load_network(str(tmp_path / "net.d"), [str(bin_dir)])
    (tmp_path / "net.d").mkdir()
    with pytest.raises(NetworkNotReady, match="no usable network config"):
        load_network(str(tmp_path / "net.d"), [str(bin_dir)])


def test_first_usable_file_in_name_order_wins(tmp_path: Path, bin_dir: Path) -> None:
    conf = tmp_path / "net.d"
    _write(conf, "05-broken.conflist", "{not json")
    _write(conf, "10-crib.conflist", CONFLIST)
    _write(conf, "20-other.conf", {"cniVersion": "0.4.0", "name": "other", "type": "bridge"})
    _write(conf, "00-ignored.txt", CONFLIST | {"name": "txt"})
    net = load_network(str(conf), [str(bin_dir)])
    assert (net.name, net.path.name, net.cni_version) == ("crib", "10-crib.conflist", "1.0.0")
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]


def test_a_single_plugin_conf_is_a_list_of_one(tmp_path: Path, bin_dir: Path) -> None:
    conf = tmp_path / "net.d"
    _write(conf, "10-one.conf", {"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "cni0"})
    net = load_network(str(conf), [str(bin_dir)])
    assert net.name == "one"
    assert net.plugins == [{"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "cni0"}]


def test_the_named_network_is_chosen(tmp_path: Path, bin_dir: Path) -> None:
    conf = tmp_path / "net.d"
    _write(conf, "10-crib.conflist", CONFLIST)
    _write(conf, "20-pods.conflist", CONFLIST | {"name": "pods"})
    assert load_network(str(conf), [str(bin_dir)], "pods").name == "pods"
    with pytest.raises(NetworkNotReady, match="no usable network 'absent'"):
        load_network(str(conf), [str(bin_dir)], "absent")


def test_missing_plugin_binaries_make_a_config_unusable(tmp_path: Path, bin_dir: Path) -> None:
    conf = tmp_path / "net.d"
    _write(conf, "10-crib.conflist", CONFLIST | {"plugins": [{"type": "bridge"}, {"type": "flannel"}]})
    with pytest.raises(NetworkNotReady, match="flannel not found"):
        load_network(str(conf), [str(bin_dir)])
    os.chmod(bin_dir / "bridge", 0o644)
    _write(conf, "10-crib.conflist", CONFLIST)
    with pytest.raises(NetworkNotReady, match="bridge not found"):
        load_network(str(conf), [str(bin_dir)])


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("a.conflist", {"name": "x", "plugins": []}, "non-empty 'plugins'"),
        ("a.conflist", {"plugins": [{"type": "bridge"}]}, "no network 'name'"),
        ("a.conflist", {"name": "x", "plugins": [{"kind": "bridge"}]}, "plugin 0 has no 'type'"),
        ("a.conf", ["bridge"], "not a JSON object"),
        ("a.conf", {"name": "x", "type": "../../bin/sh"}, "not found"),
    ],
)
def test_invalid_configs_are_skipped_with_a_reason(
    tmp_path: Path, bin_dir: Path, name: str, data: object, why: str
) -> None:
    conf = tmp_path / "net.d"
    _write(conf, name, data)
    with pytest.raises(NetworkNotReady) as info:
        load_network(str(conf), [str(bin_dir)])
    assert why in str(info.value)


def test_the_shipped_default_network_is_usable() -> None:
    conf_dir = Path(__file__).resolve().parents[1] / "deploy" / "cni"
    net = load_network(str(conf_dir), ["/usr/lib/cni"])
    assert net.name == "crib"
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0]["capabilities"] == {"ipRanges": True}


def test_the_cni_cache_lists_its_entries_for_the_orphan_sweep(tmp_path: Path) -> None:
    cache = CNICache(tmp_path / "results")
    raw = {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}]}
    net = NetworkConfigList("net", "1.0.0", tmp_path / "net.conflist", raw["plugins"], raw)
    att = Attachment(container_id="pod1", netns="/run/netns/pod1", args={"K8S_POD_NAME": "p"})
    cache.save(net, att, {"ips": []})
    (tmp_path / "results" / "half-written.tmp").write_text("{")
    (tmp_path / "results" / "garbage").write_text("not json")
    [entry] = cache.entries()
    assert (entry.network, entry.attachment, entry.config) == ("net", att, raw)
    assert not (tmp_path / "results" / "half-written.tmp").exists()


async def test_del_gives_the_plugins_the_capability_args_add_had(tmp_path: Path) -> None:
    """A pod added before the kubelet sent the node's pod CIDR is deleted with ADD's ipRanges
    (none), not today's: host-local refuses ranges that overlap its own (`kubeadm reset` hit it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    plugin = bin_dir / "bridge"
    # Records each call's config and answers ADD with an empty result.
    plugin.write_text(f'#!/bin/sh\ncat >> {seen}\necho >> {seen}\necho \'{{"cniVersion": "1.0.0"}}\'\n')
    plugin.chmod(0o755)
    raw = {
        "cniVersion": "1.0.0",
        "name": "net",
        "plugins": [{"type": "bridge", "capabilities": {"ipRanges": True}}],
    }
    net = NetworkConfigList("net", "1.0.0", tmp_path / "net.conflist", raw["plugins"], raw)
    cache = CNICache(tmp_path / "results")
    att = Attachment(container_id="pod1", netns="/run/netns/pod1")
    await network.add(net, att, [str(bin_dir)], cache)
    later = Attachment(
        container_id="pod1",
        netns="/run/netns/pod1",
        capability_args={"ipRanges": [[{"subnet": "10.88.0.0/24"}]]},
    )
    await network.delete(net, later, [str(bin_dir)], cache)
    add, delete = (json.loads(line) for line in seen.read_text().splitlines() if line)
    assert "runtimeConfig" not in add
    assert "runtimeConfig" not in delete, delete
    assert delete["prevResult"] == {"cniVersion": "1.0.0"}
