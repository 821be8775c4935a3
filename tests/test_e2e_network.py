"""The e2e pod network claims only its own iptables rules, so parallel tests keep theirs."""

from pathlib import Path

from e2e.harness.network import PodNetwork


def test_claims_whole_addresses_and_its_own_name_only() -> None:
    net = PodNetwork("crib-e2e-0-3", "br", "10.100.22.0/24", "10.100.22.1", Path("/nonexistent"))
    assert net._mentions("-A POSTROUTING -s 10.100.22.2/32 -j CNI-abc")
    assert net._mentions('-A CNI-abc -m comment --comment "name: \\"crib-e2e-0-3\\" id: \\"x\\"" -j ACCEPT')
    assert not net._mentions("-A POSTROUTING -s 10.100.226.2/32 -j CNI-def")
    assert not net._mentions("-A POSTROUTING -s 110.100.22.2/32 -j CNI-def")
    assert not net._mentions('-A CNI-def -m comment --comment "name: \\"crib-e2e-0-33\\" id: \\"y\\"" -j X')
