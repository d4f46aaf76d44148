#!/usr/bin/env python3
"""Prints the host's IPv4 address on docker's default bridge: where a `docker build` reaches the host.

hack/build-image.sh serves the image's wheels there for the length of a build. The address is read
from what is always there, in this order:
  1. the bridge interface's own address (`ip -j -4 addr show dev docker0`; the interface name from
     the network's `com.docker.network.bridge.name` option, docker0 when that option is absent);
  2. the IPAM config's `Gateway`, an optional field: Debian's docker 20.10 leaves it out
     (`{"Config":[{"Subnet":"172.17.0.0/16"}]}`) while docker0 has 172.17.0.1/16;
  3. the first host of the IPAM config's `Subnet`, which is the address docker gives the bridge.
Nothing found: exit 1 with what was looked at, so the fix is plain.

`bridge_address` is the decision, a pure function of the two tools' JSON; `main` only runs them.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

DEFAULT_INTERFACE = "docker0"


class NoBridgeAddress(Exception):
    """No IPv4 address for the bridge; the message lists each place looked at."""


def interface_name(network: dict) -> str:
    """The Linux interface behind a docker network (`docker network inspect` output, one network)."""
    options = network.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or DEFAULT_INTERFACE


def bridge_address(network: dict, interface_addrs: list) -> str:
    """The host's address on `network`, from `docker network inspect` (one network) and
    `ip -j -4 addr show dev IFACE` (its JSON list); every field is treated as optional."""
    looked = []
    iface = interface_name(network)
    for link in interface_addrs or []:
        for info in link.get("addr_info") or []:
            if info.get("family", "inet") == "inet" and info.get("local"):
                return info["local"]
    looked.append(f"interface {iface}: no IPv4 address")
    configs = (network.get("IPAM") or {}).get("Config") or []
    for config in configs:
        gateway = config.get("Gateway") or ""
        if gateway and ipaddress.ip_address(gateway.split("/")[0]).version == 4:
            return gateway.split("/")[0]
    for config in configs:
        subnet = config.get("Subnet") or ""
        if subnet and ipaddress.ip_network(subnet, strict=False).version == 4:
            return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    looked.append(f"IPAM.Config {json.dumps(configs)}: no IPv4 Gateway or Subnet")
    raise NoBridgeAddress("; ".join(looked))


def _run_json(argv: list) -> object:
    try:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"  ({' '.join(argv)} failed: {getattr(e, 'stderr', '') or e})", file=sys.stderr)
        return None
    return json.loads(out) if out.strip() else None


def main(argv: list) -> int:
    name = argv[1] if len(argv) > 1 else "bridge"
    inspected = _run_json(["docker", "network", "inspect", name]) or [{}]
    network = inspected[0] if isinstance(inspected, list) and inspected else {}
    addrs = _run_json(["ip", "-j", "-4", "addr", "show", "dev", interface_name(network)]) or []
    try:
        print(bridge_address(network, addrs))
    except NoBridgeAddress as e:
        print(f"error: no IPv4 address for docker network {name!r}: {e}. Is dockerd running "
              f"with its default bridge? (docker network inspect {name}; ip -4 addr)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
