"""ESP encrypt+decrypt throughput: built-in stack vs scapy's SecurityAssociation vs bare `cryptography` calls.

    python3 benchmarks/bench_esp.py [--seconds 0.5] [--profile]

For AES-GCM-128 (ENCR_AES_GCM_16) and AES-CBC-128 + HMAC-SHA2-256-128, transport mode,
payloads of 64, 512 and 1400 bytes: packets per second for one encrypt plus one decrypt
of the same packet, all measured in this run, and the ratios
built-in / scapy (target >= 3) and built-in / bare (target >= 0.5 at 1400 bytes).
"bare" is the cryptography primitive calls an ESP packet needs (AESGCM encrypt+decrypt
with SPI||seq as AAD; AES-CBC + HMAC-SHA256 over SPI||seq||IV||ciphertext), no framing.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import struct
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import constant_time, hashes, hmac  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

SIZES = (64, 512, 1400)
SRC, DST = "198.18.0.1", "198.18.0.2"
Roundtrip = Callable[[], None]


def _keys(cipher: str) -> tuple[bytes, bytes]:
    return (os.urandom(20), b"") if cipher == "gcm" else (os.urandom(16), os.urandom(32))


def bare(cipher: str, payload: bytes) -> Roundtrip:
    """The primitive calls of one ESP packet, with no packet framing."""
    ekey, akey = _keys(cipher)
    aad = struct.pack("!II", 0x1000, 1)
    if cipher == "gcm":
        aead, salt = AESGCM(ekey[:16]), ekey[16:]

        def rt() -> None:
            iv = os.urandom(8)
            ct = aead.encrypt(salt + iv, payload, aad)
            aead.decrypt(salt + iv, ct, aad)
        return rt
    padded = payload + bytes(-len(payload) % 16)
    algo = algorithms.AES(ekey)

    def rt() -> None:
        iv = os.urandom(16)
        enc = Cipher(algo, modes.CBC(iv)).encryptor()
        ct = enc.update(padded) + enc.finalize()
        h = hmac.HMAC(akey, hashes.SHA256())
        h.update(aad + iv + ct)
        tag = h.finalize()[:16]
        h = hmac.HMAC(akey, hashes.SHA256())
        h.update(aad + iv + ct)
        if not constant_time.bytes_eq(h.finalize()[:16], tag):
            raise AssertionError("bare HMAC mismatch")
        dec = Cipher(algo, modes.CBC(iv)).decryptor()
        dec.update(ct) + dec.finalize()
    return rt


def scapy_sa(cipher: str, payload: bytes) -> Roundtrip:
    """scapy's SecurityAssociation encrypt() then decrypt() of an IPv4 packet."""
    from scapy.layers.inet import IP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw

    ekey, akey = _keys(cipher)
    if cipher == "gcm":
        sa = SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-GCM", crypt_key=ekey)
    else:
        sa = SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-CBC", crypt_key=ekey, auth_algo="SHA2-256-128", auth_key=akey)
    pkt = IP(src=SRC, dst=DST, proto=253) / Raw(payload)

    def rt() -> None:
        sa.decrypt(sa.encrypt(pkt))
    return rt


def builtin(cipher: str, payload: bytes) -> Roundtrip:
    """The built-in stack (harness.esp): Sender.protect then Receiver.unprotect of an IPv4 packet, transport mode."""
    from harness.esp import Receiver, SecurityAssociation, Sender
    from harness.esp.ip import addr_bytes, ipv4_header

    ekey, akey = _keys(cipher)
    sa = SecurityAssociation("esp", 0x1000, SRC, DST, "transport", "ENCR_AES_GCM_16" if cipher == "gcm" else "ENCR_AES_CBC", ekey,
                             None if cipher == "gcm" else "AUTH_HMAC_SHA2_256_128", akey)
    tx, rx = Sender(sa), Receiver(sa)
    inner = ipv4_header(addr_bytes(SRC), addr_bytes(DST), 253, len(payload)) + payload

    def rt() -> None:
        rx.unprotect(tx.protect(inner))
    return rt


def per_direction(size: int = 1400, count: int = 20000) -> tuple[float, float]:
    """Microseconds per packet of the built-in AES-GCM-128 Sender.protect and Receiver.unprotect alone (transport, IPv4)."""
    from harness.esp import Receiver, SecurityAssociation, Sender
    from harness.esp.ip import addr_bytes, ipv4_header

    sa = SecurityAssociation("esp", 0x1000, SRC, DST, "transport", "ENCR_AES_GCM_16", os.urandom(20))
    tx, rx = Sender(sa), Receiver(sa)
    inner = ipv4_header(addr_bytes(SRC), addr_bytes(DST), 253, size) + os.urandom(size)
    start = time.perf_counter()
    pkts = [tx.protect(inner) for _ in range(count)]
    mid = time.perf_counter()
    for pkt in pkts:
        rx.unprotect(pkt)
    end = time.perf_counter()
    return (mid - start) / count * 1e6, (end - mid) / count * 1e6


def measure(rt: Roundtrip, seconds: float) -> float:
    """Round trips per second over about `seconds` (after a short warm-up)."""
    for _ in range(20):
        rt()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            rt()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main(argv: list[str] | None = None) -> int:
    """Print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="measuring time per cell")
    ap.add_argument("--profile", action="store_true", help="also profile the built-in stack at 1400 bytes")
    args = ap.parse_args(argv)
    impls = {"builtin": builtin, "scapy": scapy_sa, "bare": bare}
    print(f"{'cipher':<14}{'bytes':>6}" + "".join(f"{k + ' pkt/s':>16}" for k in impls) + f"{'x scapy':>10}{'of bare':>10}")
    misses = []
    for cipher, label in (("gcm", "AES-GCM-128"), ("cbc", "AES-CBC/SHA256")):
        for size in SIZES:
            payload = os.urandom(size)
            rates = {k: measure(f(cipher, payload), args.seconds) for k, f in impls.items()}
            vs_scapy, vs_bare = rates["builtin"] / rates["scapy"], rates["builtin"] / rates["bare"]
            print(f"{label:<14}{size:>6}" + "".join(f"{rates[k]:>16,.0f}" for k in impls) + f"{vs_scapy:>10.2f}{vs_bare:>10.0%}")
            if vs_scapy < 3:
                misses.append(f"{label} {size} B: {vs_scapy:.2f}x scapy (target 3x)")
            if size == 1400 and vs_bare < 0.5:
                misses.append(f"{label} {size} B: {vs_bare:.0%} of bare (target 50%)")
    tx_us, rx_us = per_direction()
    print(f"built-in AES-GCM-128 1400 B per direction: protect {tx_us:.2f} us, unprotect {rx_us:.2f} us")
    print("targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))
    if args.profile:
        for cipher in ("gcm", "cbc"):
            rt = builtin(cipher, os.urandom(1400))
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(3000):
                rt()
            prof.disable()
            print(f"\nprofile: built-in {cipher} 1400 bytes, 3000 round trips")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
