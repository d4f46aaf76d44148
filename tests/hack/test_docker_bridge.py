"""hack/docker_bridge.py: the host's address on docker's bridge, read from what is always there.

The decision is a pure function of two tools' JSON, so its cases run here without docker; the real
daemon is asked in tests/hack/test_setup_steps.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("docker_bridge", ROOT / "hack/docker_bridge.py")
docker_bridge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docker_bridge)

# `docker network inspect bridge` on Debian's docker 20.10: no Gateway in the IPAM config
DEBIAN_20_10 = {"Name": "bridge", "IPAM": {"Driver": "default", "Options": None,
                                           "Config": [{"Subnet": "172.17.0.0/16"}]},
                "Options": {"com.docker.network.bridge.name": "docker0"}}
DOCKER0 = [{"ifname": "docker0", "addr_info": [{"family": "inet", "local": "172.17.0.1", "prefixlen": 16}]}]


def test_the_interface_address_wins_over_every_inspect_field():
    with_gateway = {**DEBIAN_20_10, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.9.9"}]}}
    assert docker_bridge.bridge_address(with_gateway, DOCKER0) == "172.17.0.1"


def test_debian_20_10_inspect_output_without_a_gateway_gives_the_subnets_first_host():
    assert docker_bridge.bridge_address(DEBIAN_20_10, []) == "172.17.0.1"


def test_a_gateway_is_used_when_present_and_the_interface_is_unreadable():
    network = {"IPAM": {"Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.254"}]}}
    assert docker_bridge.bridge_address(network, []) == "10.5.0.254"


def test_ipv6_entries_are_passed_over():
    network = {"IPAM": {"Config": [{"Subnet": "fd00::/64", "Gateway": "fd00::1"}, {"Subnet": "192.168.77.0/24"}]}}
    addrs = [{"ifname": "docker0", "addr_info": [{"family": "inet6", "local": "fd00::1"}]}]
    assert docker_bridge.bridge_address(network, addrs) == "192.168.77.1"


@pytest.mark.parametrize("network", [{}, {"IPAM": None}, {"IPAM": {"Config": None}}, {"IPAM": {"Config": [{}]}}])
def test_nothing_found_names_each_place_looked_at(network):
    with pytest.raises(docker_bridge.NoBridgeAddress) as e:
        docker_bridge.bridge_address(network, [{"ifname": "docker0"}])
    assert "interface docker0" in str(e.value) and "IPAM.Config" in str(e.value)


def test_the_interface_name_comes_from_the_networks_options():
    assert docker_bridge.interface_name({"Options": {"com.docker.network.bridge.name": "br-x"}}) == "br-x"
    assert docker_bridge.interface_name({"Options": None}) == "docker0"
