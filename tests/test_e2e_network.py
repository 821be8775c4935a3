"""The e2e pod network claims only its own iptables rules, so parallel tests keep theirs."""

from pathlib import Path

import pytest

from e2e.harness import network
from e2e.harness.network import PodNetwork


def test_claims_whole_addresses_and_its_own_name_only() -> None:
    net = PodNetwork("crib-e2e-0-3", "br", "10.100.22.0/24", "10.100.22.1", Path("/nonexistent"))
    assert net._mentions("-A POSTROUTING -s 10.100.22.2/32 -j CNI-abc")
    assert net._mentions('-A CNI-abc -m comment --comment "name: \\"crib-e2e-0-3\\" id: \\"x\\"" -j ACCEPT')
    assert not net._mentions("-A POSTROUTING -s 10.100.226.2/32 -j CNI-def")
    assert not net._mentions("-A POSTROUTING -s 110.100.22.2/32 -j CNI-def")
    assert not net._mentions('-A CNI-def -m comment --comment "name: \\"crib-e2e-0-33\\" id: \\"y\\"" -j X')


def test_a_claimed_subnet_is_not_handed_out_again_until_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker 49 with octets 240+: no bridge of a real test has such a name.
    monkeypatch.setattr(network, "CLAIMS_DIR", tmp_path)
    first = network._claim(49, 240)
    try:
        # A second claim opens the file anew: its lock conflicts as another session's would.
        second = network._claim(49, 240)
        assert (first, second) == (240, 241)
        network._release(network._bridge(49, second))
        assert network._claim(49, 241) == 241
        network._release(network._bridge(49, 241))
    finally:
        network._release(network._bridge(49, first))
    assert network._claim(49, 240) == 240
    network._release(network._bridge(49, 240))
