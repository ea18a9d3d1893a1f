"""Key export of IKE SAs: the project's JSON "ike_sas" entries and Wireshark's ikev2_decryption_table lines.

Child SAs are exported as harness.keys.IpsecSaKeys (one per direction), which harness.keys
writes as "ipsec_sas" and as Wireshark esp_sa lines.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from harness.errors import ConfigError

_WS = json.loads(resources.files("harness.ike").joinpath("wireshark_ikev2.json").read_text())
_KEYS = ("spi_i", "spi_r", "encryption", "key_bits", "sk_ei", "sk_er", "integrity", "sk_ai", "sk_ar")


@dataclass(frozen=True)
class IkeSaKeys:
    """An IKE SA's SPIs and SK_e/SK_a keys (SK_e include the AEAD salt); integrity None for AEAD."""

    spi_i: bytes
    spi_r: bytes
    encryption: str
    key_bits: int | None
    sk_ei: bytes
    sk_er: bytes
    integrity: str | None
    sk_ai: bytes
    sk_ar: bytes

    def to_json(self) -> dict[str, Any]:
        """The "ike_sas" entry: SPIs and keys as hex."""
        return {"spi_i": self.spi_i.hex(), "spi_r": self.spi_r.hex(), "encryption": self.encryption,
                "key_bits": self.key_bits, "sk_ei": self.sk_ei.hex(), "sk_er": self.sk_er.hex(),
                "integrity": self.integrity, "sk_ai": self.sk_ai.hex(), "sk_ar": self.sk_ar.hex()}

    @classmethod
    def from_json(cls, entry: Any, where: str = "ike_sas entry") -> "IkeSaKeys":
        """Parse an "ike_sas" entry; ConfigError naming where and the key."""
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}: key {unknown[0]!r}: unknown")
        vals: dict[str, Any] = {}
        for k in _KEYS:
            v = entry.get(k)
            if k in ("spi_i", "spi_r", "sk_ei", "sk_er", "sk_ai", "sk_ar"):
                try:
                    vals[k] = bytes.fromhex(v or "")
                except (TypeError, ValueError):
                    raise ConfigError(f"{where}: key {k!r}: {v!r} is not hex") from None
            else:
                vals[k] = v
        if len(vals["spi_i"]) != 8 or len(vals["spi_r"]) != 8:
            raise ConfigError(f"{where}: key 'spi_i'/'spi_r': IKE SPIs are 8 octets")
        if not isinstance(vals["encryption"], str):
            raise ConfigError(f"{where}: key 'encryption': missing")
        return cls(**vals)

    def wireshark_line(self) -> str:
        """One ikev2_decryption_table line (checked with tshark 4.0); ConfigError if Wireshark has no name for the transforms."""
        e = _WS["encryption"].get(f"{self.encryption}/{self.key_bits}")
        i = _WS["integrity"].get(self.integrity or "")
        if e is None or i is None:
            raise ConfigError(f"Wireshark 4.0 cannot decrypt IKE SA {self.spi_i.hex()}/{self.spi_r.hex()} "
                              f"({self.encryption}/{self.key_bits}, {self.integrity})")
        # UAT file syntax: byte fields are bare hex, string fields (the algorithm names) are quoted
        return ",".join([self.spi_i.hex(), self.spi_r.hex(), self.sk_ei.hex(), self.sk_er.hex(), f'"{e}"',
                         self.sk_ai.hex(), self.sk_ar.hex(), f'"{i}"'])
