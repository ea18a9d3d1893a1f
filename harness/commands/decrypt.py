"""`ipsec-interop decrypt --keys KEYS IN.pcap [-o OUT.pcap] [--json]`: decrypt/verify a capture's ESP and AH.

KEYS is the project's JSON keys file or a Wireshark esp_sa table. Every packet of IN
(pcap or pcapng; Ethernet, Linux cooked v1/v2, raw IP or loopback link types) is classified;
ESP (raw or UDP-encapsulated on 4500) is decrypted and AH verified when KEYS has the SA. OUT
gets every packet, each protected one replaced by its inner packet (raw-IP link type, or
Ethernet with --linktype ethernet). Exit status 0 only when no packet failed to verify;
duplicates and reordering are reported, not failed (see harness.tools.capture_decrypt).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import ConfigError
from harness.keys import IpsecSaKeys, load_esp_sa, load_keys
from harness.tools.capture_decrypt import DecryptReport, decrypt_capture
from harness.tools.pcapio import LINKTYPE_ETHERNET, LINKTYPE_RAW, ethernet_frame, ip_of, read_capture, write_pcap


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--keys, the input capture, -o, --linktype, --json."""
    parser.add_argument("--keys", required=True, type=Path, help="keys file: JSON {\"ipsec_sas\": [...]} or a Wireshark esp_sa table")
    parser.add_argument("input", type=Path, help="capture to decrypt (pcap or pcapng)")
    parser.add_argument("-o", "--output", type=Path, help="write the decrypted capture here (pcap)")
    parser.add_argument("--linktype", choices=("raw", "ethernet"), default="raw", help="link type of the output (default raw IP)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")


def load_sas(path: Path) -> list[IpsecSaKeys]:
    """SAs from a JSON keys file or a Wireshark esp_sa table (told apart by the first character)."""
    try:
        head = path.read_text().lstrip()[:1]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read keys file: {e.strerror}") from None
    return load_keys(path).ipsec_sas if head == "{" else load_esp_sa(path)


def _write(report: DecryptReport, packets, path: Path, linktype: str) -> int:
    frames = []
    for pkt, res in zip(packets, report.results):
        if res.part_of is not None:
            continue  # a fragment of a packet written whole at the frame that completed it
        if res.inner is not None:
            ip = res.inner
        else:
            split = ip_of(pkt)
            if split is None:
                continue  # not IP: nothing to put in an IP capture
            ip = split[1]
        if linktype == "ethernet":
            link = res.link if pkt.linktype == LINKTYPE_ETHERNET and len(res.link) >= 14 else b""
            frames.append((pkt.ts_ns, ethernet_frame(ip, link[6:12] or bytes(6), link[0:6] or bytes(6))))
        else:
            frames.append((pkt.ts_ns, ip))
    return write_pcap(path, frames, LINKTYPE_ETHERNET if linktype == "ethernet" else LINKTYPE_RAW)


def run(args: argparse.Namespace) -> int:
    """Decrypt, write, report; 1 when a packet failed, else 0."""
    sas = load_sas(args.keys)
    packets = read_capture(args.input)
    report = decrypt_capture(packets, sas)
    written = _write(report, packets, args.output, args.linktype) if args.output else None
    counts = report.counts()
    if args.json:
        out = report.to_json()
        out.update(input=str(args.input), keys=str(args.keys), sas=len(sas))
        if written is not None:
            out.update(output=str(args.output), written=written)
        print(json.dumps(out))
    else:
        print(f"{args.input}: {counts['packets']} packets; ESP decrypted {counts['decrypted']}, verified (AH, ESP-NULL) "
              f"{counts['verified']}, failed {counts['failed']}, unknown SPI {counts['unknown_spi']}, not IPsec {counts['not_ipsec']}"
              + (f", fragments {counts['fragment']} (reassembled into {counts['reassembled']})" if counts["fragment"] else ""))
        if counts["duplicates"] or counts["out_of_order"]:
            print(f"  replay: {counts['duplicates']} duplicate(s), {counts['out_of_order']} out of order (reported, not failed)")
        for r in report.results:
            if r.status in ("failed", "unknown_spi"):
                print(f"  #{r.index}: {r.status} {r.protocol.upper()} SPI 0x{r.spi:08x} seq {r.seq}" + (f": {r.reason}" if r.reason else ""))
        if written is not None:
            print(f"  wrote {written} packets to {args.output}")
    return 1 if report.failed else 0
