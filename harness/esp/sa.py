"""One IPsec SA of the built-in data plane (RFC 4301 s4.4.2): what the sender and receiver share.

`SecurityAssociation` is immutable; `Sender` and `Receiver` (harness.esp) hold the state
(sequence counter, replay window). `to_json()` gives the project's keys-file object,
`from_keys(IpsecSaKeys)` and `to_keys()` convert to and from harness.keys.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from harness.crypto import Encr, Integ, encr as lookup_encr, integ as lookup_integ
from harness.errors import ConfigError, KeyMaterialError, UnknownTransform
from harness.keys import IpsecSaKeys
from harness.keys.jsonfile import ipsec_sa_to_json

PROTOCOLS = ("esp", "ah")
MODES = ("transport", "tunnel")


@dataclass(frozen=True)
class SecurityAssociation:
    """An ESP or AH SA: src/dst are the outer addresses (tunnel endpoints, or the hosts in transport mode).

    encryption/integrity are IANA transform names (ENCR_AES_GCM_16, AUTH_HMAC_SHA2_256_128);
    encryption_key is key || salt. udp_encap = (source port, destination port) puts ESP in
    UDP (RFC 3948). ah_align overrides AH's alignment (4 for IPv4, 8 for IPv6 by default;
    Linux uses 8 for IPv4 unless the state has `flag align4`).
    """

    protocol: str
    spi: int
    src: str
    dst: str
    mode: str = "transport"
    encryption: str | None = None
    encryption_key: bytes = b""
    integrity: str | None = None
    integrity_key: bytes = b""
    esn: bool = False
    udp_encap: tuple[int, int] | None = None
    ah_align: int | None = None

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"SA {self.spi:#010x}: key {key!r}: {why}")

        if not isinstance(self.spi, int) or isinstance(self.spi, bool):
            raise ConfigError(f"SA: key 'spi': expected an int, got {type(self.spi).__name__}")
        for key in ("encryption_key", "integrity_key"):
            if not isinstance(getattr(self, key), bytes):
                raise bad(key, f"expected bytes, got {type(getattr(self, key)).__name__}")
        if self.udp_encap is not None and (len(self.udp_encap) != 2 or not all(isinstance(p, int) and 0 < p < 65536 for p in self.udp_encap)):
            raise bad("udp_encap", f"{self.udp_encap!r} is not (source port, destination port)")
        if self.protocol not in PROTOCOLS:
            raise bad("protocol", f"{self.protocol!r} is not one of {PROTOCOLS}")
        if self.mode not in MODES:
            raise bad("mode", f"{self.mode!r} is not one of {MODES}")
        if not 0 <= self.spi <= 0xFFFFFFFF:
            raise bad("spi", "does not fit 32 bits")
        try:
            v = {ipaddress.ip_address(self.src).version, ipaddress.ip_address(self.dst).version}
        except ValueError as e:
            raise bad("src/dst", str(e)) from None
        if len(v) != 1:
            raise bad("dst", "src and dst are of different IP versions")
        try:
            e = self.encr
            i = self.integ
            if e is not None:
                e._split(self.encryption_key)
            if i is not None and len(self.integrity_key) != i.key_size:
                raise KeyMaterialError(f"{i.name}: key is {len(self.integrity_key)} bytes, expected {i.key_size}")
        except (UnknownTransform, KeyMaterialError) as err:
            raise bad("encryption" if "ENCR" in str(err) else "integrity", str(err)) from None
        if self.protocol == "ah":
            if e is not None:
                raise bad("encryption", "AH does not encrypt")
            if i is None:
                raise bad("integrity", "AH needs an integrity transform")
            if self.udp_encap is not None:
                raise bad("udp_encap", "only ESP is UDP-encapsulated (RFC 3948)")
        else:
            if e is None:
                raise bad("encryption", "ESP needs an encryption transform (ENCR_NULL for none)")
            if e.aead and i is not None:
                raise bad("integrity", f"{e.name} is combined mode: no integrity transform")
            if not e.aead and i is None and e.family == "null":
                raise bad("integrity", "ENCR_NULL without integrity protects nothing (RFC 4303 s3.2)")
            if i is not None and i.family == "gmac":
                raise bad("integrity", f"{i.name} is for AH; ESP uses ENCR_NULL_AUTH_AES_GMAC (RFC 4543)")
        if self.ah_align not in (None, 4, 8):
            raise bad("ah_align", f"{self.ah_align} is not 4 or 8")

    @property
    def encr(self) -> Encr | None:
        """The encryption transform (None for AH)."""
        return None if self.encryption is None else lookup_encr(self.encryption)

    @property
    def integ(self) -> Integ | None:
        """The integrity transform (None for combined-mode ESP)."""
        return None if self.integrity is None else lookup_integ(self.integrity)

    @property
    def version(self) -> int:
        """4 or 6: the IP version of src and dst."""
        return ipaddress.ip_address(self.src).version

    def to_json(self) -> dict[str, Any]:
        """The project's keys-file object for this SA (keys as hex, SPI as "0x...")."""
        return ipsec_sa_to_json(self.to_keys())

    def to_keys(self) -> IpsecSaKeys:
        """The harness.keys form of this SA."""
        return IpsecSaKeys(protocol=self.protocol, spi=self.spi, src=self.src, dst=self.dst, mode=self.mode,
                           encryption=self.encryption, encryption_key=self.encryption_key,
                           integrity=self.integrity, integrity_key=self.integrity_key, esn=self.esn)

    @classmethod
    def from_keys(cls, keys: IpsecSaKeys, udp_encap: tuple[int, int] | None = None) -> "SecurityAssociation":
        """An SA from a keys-file entry (UDP encapsulation is not in keys files: pass it)."""
        return cls(protocol=keys.protocol, spi=keys.spi, src=keys.src, dst=keys.dst, mode=keys.mode,
                   encryption=keys.encryption, encryption_key=keys.encryption_key,
                   integrity=keys.integrity, integrity_key=keys.integrity_key, esn=keys.esn, udp_encap=udp_encap)
