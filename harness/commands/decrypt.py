"""`ipsec-interop decrypt --keys KEYS [--keys KEYS...] IN.pcap [-o OUT.pcap] [--strict] [--json]`: decrypt a capture's ESP, AH and IKE.

KEYS is the project's JSON keys file ("ipsec_sas", "ike_sas"), a Wireshark esp_sa table or a
Wireshark ikev2_decryption_table, told apart by content; --keys may be given more than once
(e.g. both Wireshark tables). IKE messages (UDP 500, 4500 behind the non-ESP marker) have
their SK and SKF payloads decrypted (SKF fragments reassembled, RFC 7383) and their inner
payloads listed; see harness.tools.ike_decrypt. OUT stays a capture of IP packets: IKE
messages are written to it as captured (still encrypted), because a decrypted IKE message
is no longer a valid datagram (its SK payload and ICV would not match). Every packet of IN
(pcap or pcapng; Ethernet, Linux cooked v1/v2, raw IP or loopback link types) is classified;
ESP (raw or UDP-encapsulated on 4500) is decrypted and AH verified when KEYS has the SA. OUT
gets every packet, each protected one replaced by its inner packet (raw-IP link type, or
Ethernet with --linktype ethernet). Exit status 0 only when no ESP/AH/IKE packet failed to verify;
IKE messages of IKE SAs without keys are counted (ike_unknown_spi), not failed;
duplicates and reordering are reported, not failed (see harness.tools.capture_decrypt).
ESP/AH packets whose SPI is in no keys file are counted (unknown_spi), not failed, unless
--strict: then they fail too (exit status 1), as in the wire check after every case
(harness.tools.wire_check), where an SPI neither end reported is a problem.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.keys import KeysFile
from harness.keys.anyfile import load_keys_files
from harness.tools.capture_decrypt import decrypt_capture, write_decrypted
from harness.tools.pcapio import read_capture


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--keys, the input capture, -o, --linktype, --strict, --json."""
    parser.add_argument("--keys", required=True, type=Path, action="append",
                        help="keys file (repeatable): JSON {\"ipsec_sas\": [...], \"ike_sas\": [...]}, a Wireshark esp_sa "
                             "or ikev2_decryption_table file")
    parser.add_argument("input", type=Path, help="capture to decrypt (pcap or pcapng)")
    parser.add_argument("-o", "--output", type=Path,
                        help="write the decrypted capture here (pcap of IP packets: ESP/AH replaced by the inner packet; "
                             "IKE messages are written as captured, their decrypted payloads are only in the summary)")
    parser.add_argument("--linktype", choices=("raw", "ethernet"), default="raw", help="link type of the output (default raw IP)")
    parser.add_argument("--strict", action="store_true",
                        help="ESP/AH packets whose SPI is in no keys file fail too (exit status 1); without it they are only counted")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")


def load_sas(paths: list[Path] | Path) -> KeysFile:
    """IPsec and IKE SAs of every keys file (JSON, esp_sa or ikev2_decryption_table, told apart by content)."""
    return load_keys_files(paths if isinstance(paths, list) else [paths])


def run(args: argparse.Namespace) -> int:
    """Decrypt, write, report; 1 when a packet failed (with --strict: or had an unknown SPI), else 0."""
    keys = load_sas(args.keys)
    sas, ike_sas = keys.ipsec_sas, keys.sections.get("ike_sas", [])
    packets = read_capture(args.input)
    report = decrypt_capture(packets, sas, ike_sas)
    written = write_decrypted(report, packets, args.output, args.linktype) if args.output else None
    counts = report.counts()
    if args.json:
        out = report.to_json()
        out.update(input=str(args.input), keys=[str(k) for k in args.keys], sas=len(sas), ike_sas=len(ike_sas))
        if args.strict:
            out["strict"] = True
        if written is not None:
            out.update(output=str(args.output), written=written)
        print(json.dumps(out))
    else:
        print(f"{args.input}: {counts['packets']} packets; ESP decrypted {counts['decrypted']}, verified (AH, ESP-NULL) "
              f"{counts['verified']}, failed {counts['failed']}, unknown SPI {counts['unknown_spi']}"
              + (" (failed: --strict)" if args.strict and counts["unknown_spi"] else "") + f", not IPsec {counts['not_ipsec']}"
              + (f", fragments {counts['fragment']} (reassembled into {counts['reassembled']})" if counts["fragment"] else ""))
        if counts["duplicates"] or counts["out_of_order"]:
            print(f"  replay: {counts['duplicates']} duplicate(s), {counts['out_of_order']} out of order (reported, not failed)")
        for r in report.results:
            if r.status in ("failed", "unknown_spi"):
                print(f"  #{r.index}: {r.status} {r.protocol.upper()} SPI 0x{r.spi:08x} seq {r.seq}" + (f": {r.reason}" if r.reason else ""))
        if counts["ike_messages"]:
            print(f"  IKE: {counts['ike_messages']} messages; decrypted {counts['ike_decrypted']}, failed {counts['ike_failed']}, "
                  f"unknown IKE SA {counts['ike_unknown_spi']}, unencrypted {counts['ike_unencrypted']}"
                  + (f", {counts['ike_reassembled']} reassembled from SKF fragments" if counts["ike_reassembled"] else ""))
        for r in report.results:
            if r.ike is not None and (r.ike.status != "decrypted" or not r.ike.fragment or r.ike.reassembled_from):
                print(f"  #{r.index}: IKE {r.ike.status}: {r.ike.describe()}" + (f": {r.ike.reason}" if r.ike.reason else ""))
        for spis, mid, missing in report.ike_incomplete:
            print(f"  IKE SA {spis} Message ID {mid}: fragments {missing} missing")
        if written is not None:
            print(f"  wrote {written} packets to {args.output}")
    strict_failed = counts["unknown_spi"] if args.strict else 0
    return 1 if (report.failed or report.ike_failed or strict_failed) else 0
