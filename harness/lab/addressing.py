"""Lab addresses per xdist worker: IPv4 from 198.18.0.0/15, IPv6 from 2001:db8::/32, never anything else.

Worker W, data segment s (0..7): 198.18.(W*8+s).0/24 and 2001:db8:W:s::/64.
Worker W, management segment:     198.19.W.0/24     and 2001:db8:W:ff::/64.
"""
from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network, ip_network

from harness.errors import LabError

V4_BLOCK = ip_network("198.18.0.0/15")
V6_BLOCK = ip_network("2001:db8::/32")
MAX_WORKERS = 32
SEGMENTS_PER_WORKER = 8
MANAGEMENT_V6_INDEX = 0xFF


def _check(worker: int, segment: int | None = None) -> None:
    if not 0 <= worker < MAX_WORKERS:
        raise LabError(f"worker index {worker}: the address plan holds workers 0..{MAX_WORKERS - 1}")
    if segment is not None and not 0 <= segment < SEGMENTS_PER_WORKER:
        raise LabError(f"segment index {segment}: a worker has segments 0..{SEGMENTS_PER_WORKER - 1}")


def segment_v4(worker: int, segment: int) -> IPv4Network:
    """The IPv4 /24 of data segment `segment` of worker `worker`."""
    _check(worker, segment)
    return IPv4Network(f"198.18.{worker * SEGMENTS_PER_WORKER + segment}.0/24")


def segment_v6(worker: int, segment: int) -> IPv6Network:
    """The IPv6 /64 of data segment `segment` of worker `worker`."""
    _check(worker, segment)
    return IPv6Network(f"2001:db8:{worker:x}:{segment:x}::/64")


def management_v4(worker: int) -> IPv4Network:
    """The IPv4 /24 of worker `worker`'s management segment."""
    _check(worker)
    return IPv4Network(f"198.19.{worker}.0/24")


def management_v6(worker: int) -> IPv6Network:
    """The IPv6 /64 of worker `worker`'s management segment."""
    _check(worker)
    return IPv6Network(f"2001:db8:{worker:x}:{MANAGEMENT_V6_INDEX:x}::/64")


def host_v4(net: IPv4Network, host: int) -> IPv4Interface:
    """Host number `host` of net, as an interface address with net's prefix."""
    if not 0 < host < net.num_addresses - 1:
        raise LabError(f"host number {host} outside {net}")
    return IPv4Interface(f"{net.network_address + host}/{net.prefixlen}")


def host_v6(net: IPv6Network, host: int) -> IPv6Interface:
    """Host number `host` of net, as an interface address with net's prefix."""
    if not 0 < host < 2 ** 16:
        raise LabError(f"host number {host} outside the lab's host range of {net}")
    return IPv6Interface(f"{net.network_address + host}/{net.prefixlen}")


def in_lab_ranges(address: str) -> bool:
    """True if address (with or without prefix) lies in 198.18.0.0/15 or 2001:db8::/32."""
    net = ip_network(address, strict=False)
    block = V4_BLOCK if net.version == 4 else V6_BLOCK
    return net.subnet_of(block)  # type: ignore[arg-type]
