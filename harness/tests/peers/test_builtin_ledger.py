"""The built-in end's key ledger is per configuration: a pooled end's next case starts without the last case's SAs."""
from __future__ import annotations

from harness.keys import IpsecSaKeys
from harness.peers.builtin import BuiltinEnd
from harness.peers.connection import connection_from_dict


class _Tester:
    def address(self, version: int = 4) -> str:
        return "198.18.0.2" if version == 4 else "2001:db8::2"

    def ike_sockets(self, version: int) -> dict:
        return {}


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
