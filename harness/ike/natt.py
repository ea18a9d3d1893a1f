"""NAT detection (RFC 7296 s2.23) and stateless cookies (s2.6), as pure functions.

NAT_DETECTION_*_IP data = SHA-1(SPIi | SPIr | IP address | port); in IKE_SA_INIT's request
SPIr is zero. A responder's COOKIE = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
"""
from __future__ import annotations

import hashlib
import hmac
from harness.addresses import packed


def nat_detection_hash(spi_i: bytes, spi_r: bytes, addr: str, port: int) -> bytes:
    """The 20-octet NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP data for one address and port."""
    return hashlib.sha1(spi_i + spi_r + packed(addr) + port.to_bytes(2, "big")).digest()


def nat_detected(spi_i: bytes, spi_r: bytes, addr: str, port: int, received: list[bytes]) -> bool:
    """True when none of the received hashes matches this address and port (a NAT changed it)."""
    want = nat_detection_hash(spi_i, spi_r, addr, port)
    return bool(received) and not any(hmac.compare_digest(want, r) for r in received)


def make_cookie(secret: bytes, version: int, ni: bytes, addr_i: str, spi_i: bytes) -> bytes:
    """COOKIE data: a 1-octet secret version and SHA-256(Ni | IPi | SPIi | secret) (RFC 7296 s2.6)."""
    return bytes([version & 0xFF]) + hashlib.sha256(ni + packed(addr_i) + spi_i + secret).digest()


def cookie_valid(secrets: dict[int, bytes], cookie: bytes, ni: bytes, addr_i: str, spi_i: bytes) -> bool:
    """True when the COOKIE was made by one of the (version -> secret) secrets for this Ni, IPi and SPIi."""
    if len(cookie) != 33 or cookie[0] not in secrets:
        return False
    return hmac.compare_digest(make_cookie(secrets[cookie[0]], cookie[0], ni, addr_i, spi_i), cookie)
