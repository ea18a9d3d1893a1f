"""IP addresses parsed once per distinct value: the hot paths of the IKE stack parse the same few addresses per SA.

`ip_address(value)` is `ipaddress.ip_address(value)` memoised. The result is immutable and the
same for the same value, so sharing it changes nothing; a ValueError is raised anew each time
(lru_cache does not keep exceptions).
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


_parse = lru_cache(maxsize=4096)(ipaddress.ip_address)


def ip_address(value: str | bytes | int) -> Address:
    """ipaddress.ip_address(value), parsed once per distinct value (ValueError for anything else)."""
    try:
        return _parse(value)
    except TypeError:  # unhashable: ipaddress.ip_address gives its own ValueError
        return ipaddress.ip_address(value)


@lru_cache(maxsize=4096)
def _packed(value: str | bytes | int) -> bytes:
    return _parse(value).packed


def packed(value: str | bytes | int) -> bytes:
    """The address in network byte order (4 or 16 octets), computed once per distinct value."""
    try:
        return _packed(value)
    except TypeError:  # unhashable: ipaddress.ip_address gives its own ValueError
        return ipaddress.ip_address(value).packed
