"""The built-in end's key ledger is per configuration: a pooled end's next case starts without the last case's SAs;
a tunnel between its own addresses is not a gateway's, whichever family the selectors have."""
from __future__ import annotations

from types import SimpleNamespace

from harness.keys import IpsecSaKeys
from harness.peers.builtin import BuiltinEnd
from harness.peers.connection import connection_from_dict


class _Tester:
    def address(self, version: int = 4) -> str:
        return "198.18.0.2" if version == 4 else "2001:db8::2"

    def ike_sockets(self, version: int) -> dict:
        return {}

    addresses = [SimpleNamespace(v4="198.18.0.2", v6="2001:db8::2", ifname="eth0")]  # its one interface: the data segment
    packet = {"eth0": "the data segment's packet socket"}


def test_load_starts_an_empty_ledger() -> None:
    end = BuiltinEnd(_Tester())
    end._call = lambda fn, timeout=30.0: fn()  # type: ignore[method-assign]  # no loop thread: no sockets needed
    end.ipsec_keys[("esp", 0x1234, "198.18.0.3")] = IpsecSaKeys(protocol="esp", spi=0x1234, src="198.18.0.2",
                                                               dst="198.18.0.3", encryption="ENCR_NULL",
                                                               integrity="AUTH_HMAC_SHA2_256_128",
                                                               integrity_key=bytes(32))
    end.ike_keys[b"\x01" * 16] = object()  # type: ignore[assignment]
    conn = connection_from_dict({"name": "case", "local_addr": "198.18.0.2", "remote_addr": "198.18.0.3",
                                 "auth": {"psk": "x" * 20}}, "test")
    end.load(conn)
    assert end.ipsec_keys == {} and end.ike_keys == {}


def test_a_4in6_tunnel_between_its_own_addresses_is_not_a_gateways() -> None:
    """IPv6 outer addresses with the two ends' own IPv4 addresses as selectors (RFC 4301 s5.1.2.1): the built-in end
    answers the traffic itself; it must not take its own IPv4 address for a LAN behind it and forward there."""
    end = BuiltinEnd(_Tester())
    end._call = lambda fn, timeout=30.0: fn()  # type: ignore[method-assign]
    end.load(connection_from_dict({"name": "case", "local_addr": "2001:db8::2", "remote_addr": "2001:db8::3",
                                   "mode": "tunnel", "local_ts": ["198.18.0.2/32"], "remote_ts": ["198.18.0.3/32"],
                                   "auth": {"psk": "x" * 20}}, "test"))
    assert end._lan_sock is None and end._lan_nets == ()
    end.load(connection_from_dict({"name": "case", "local_addr": "2001:db8::2", "remote_addr": "2001:db8::3",
                                   "mode": "tunnel", "local_ts": ["198.18.0.0/24"], "remote_ts": ["198.18.5.0/24"],
                                   "auth": {"psk": "x" * 20}}, "test"))
    assert end._lan_sock == "the data segment's packet socket"  # a subnet behind it: a gateway's tunnel
