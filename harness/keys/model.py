"""One IPsec SA's keys (ESP or AH), validated against the transform registry."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from harness.addresses import ip_address
from harness.crypto import encr, integ
from harness.errors import ConfigError, UnknownTransform

PROTOCOLS = ("esp", "ah")
MODES = ("transport", "tunnel")


_VALID_SHAPES: set[tuple] = set()


@lru_cache(maxsize=None)
def _key_sizes(e) -> tuple[int, ...]:
    """The keying-material lengths (key plus salt) an encryption transform takes, ascending (fixed per transform)."""
    return tuple(sorted({e.key_size(b) for b in e.key_bits} if e.key_bits else {e.key_size()}))


@dataclass(frozen=True)
class IpsecSaKeys:
    """An SA as a keys file states it: encryption_key is the keying material (key || salt)."""

    protocol: str  # "esp" | "ah"
    spi: int
    src: str
    dst: str
    mode: str = "transport"
    encryption: str | None = None  # IANA name, e.g. ENCR_AES_GCM_16; None for AH
    encryption_key: bytes = b""
    integrity: str | None = None  # IANA name; None for AEAD ESP
    integrity_key: bytes = b""
    esn: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "SA") -> None:
        """ConfigError naming `where` and the offending key when the SA is inconsistent."""
        # Only the SPI's range and these fields' values (the keys' lengths) decide validity: a shape seen valid
        # before is valid again (the IKE stack builds two SAs of one shape per Child SA).
        try:
            shape: tuple | None = (self.protocol, self.mode, self.src, self.dst, self.encryption,
                                   len(self.encryption_key), self.integrity, len(self.integrity_key))
            known = shape in _VALID_SHAPES
        except TypeError:  # a field without a length or a hash: the full check decides
            shape, known = None, False
        if known and 0 <= self.spi <= 0xFFFFFFFF:
            return
        self._check(where)
        if shape is not None and len(_VALID_SHAPES) < 4096:
            _VALID_SHAPES.add(shape)

    def _check(self, where: str) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{where}: key {key!r}: {why}")

        if self.protocol not in PROTOCOLS:
            raise bad("protocol", f"{self.protocol!r} is not one of {PROTOCOLS}")
        if self.mode not in MODES:
            raise bad("mode", f"{self.mode!r} is not one of {MODES}")
        if not 0 <= self.spi <= 0xFFFFFFFF:
            raise bad("spi", f"{self.spi:#x} does not fit 32 bits")
        versions = []
        for key in ("src", "dst"):
            try:
                versions.append(ip_address(getattr(self, key)).version)
            except ValueError:
                raise bad(key, f"{getattr(self, key)!r} is not an IP address") from None
        if versions[0] != versions[1]:
            raise bad("dst", "src and dst are of different IP versions")
        aead = False
        if self.protocol == "ah":
            if self.encryption is not None:
                raise bad("encryption", "AH has no encryption transform")
        else:
            if self.encryption is None:
                raise bad("encryption", "missing (ESP needs one; ENCR_NULL for integrity only)")
            try:
                e = encr(self.encryption)
            except UnknownTransform as ex:
                raise bad("encryption", str(ex)) from None
            aead = e.aead
            allowed = _key_sizes(e)
            if len(self.encryption_key) not in allowed:
                raise bad("encryption_key", f"{len(self.encryption_key)} bytes; {e.name} takes {list(allowed)} (key plus {e.salt_size}-byte salt)")
        if self.integrity is None:
            if not aead:
                raise bad("integrity", f"missing ({self.protocol.upper()} without an AEAD cipher needs an integrity transform)")
            if self.integrity_key:
                raise bad("integrity_key", "given without an integrity transform")
            return
        if aead:
            raise bad("integrity", f"{self.encryption} is AEAD; RFC 7296 s3.3 forbids a separate integrity transform")
        try:
            i = integ(self.integrity)
        except UnknownTransform as ex:
            raise bad("integrity", str(ex)) from None
        if len(self.integrity_key) != i.key_size:
            raise bad("integrity_key", f"{len(self.integrity_key)} bytes; {i.name} takes {i.key_size}")

    @classmethod
    def checked(cls, where: str, **values) -> "IpsecSaKeys":
        """An SA from parsed fields, validated with errors naming `where` (file, entry) instead of "SA"."""
        sa = object.__new__(cls)
        for k, v in values.items():
            object.__setattr__(sa, k, v)
        sa.validate(where)
        return sa

    @property
    def ip_version(self) -> int:
        """4 or 6, from the SA's addresses."""
        return ip_address(self.src).version
