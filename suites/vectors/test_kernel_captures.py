"""`ipsec-interop decrypt` on captures of real Linux kernel ESP/AH traffic (vectors/captures, see its README)."""
from __future__ import annotations

import json
import struct

import pytest

from harness.cli import main
from harness.tools.pcapio import LINKTYPE_RAW, CapturedPacket, read_capture, write_pcap
from harness.vectors import VECTORS_DIR

CAPTURES = VECTORS_DIR / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())["captures"]


def _decrypt(capsys, *argv) -> tuple[int, dict]:
    code = main(["decrypt", *map(str, argv), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _echo_of(ip: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, ICMP type, ICMP payload after the 8-byte header) of an inner IPv4/IPv6 packet."""
    import ipaddress
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        assert ip[9] == 1, f"inner protocol {ip[9]}, expected ICMP"
        total = struct.unpack_from("!H", ip, 2)[0]
        return str(ipaddress.ip_address(ip[12:16])), str(ipaddress.ip_address(ip[16:20])), ip[ihl], ip[ihl + 8: total]
    assert ip[6] == 58, f"inner next header {ip[6]}, expected ICMPv6"
    return str(ipaddress.ip_address(ip[8:24])), str(ipaddress.ip_address(ip[24:40])), ip[40], ip[48: 40 + struct.unpack_from("!H", ip, 4)[0]]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_decrypts_kernel_capture(name, tmp_path, capsys):
    entry = MANIFEST[name]
    out = tmp_path / "inner.pcap"
    code, rep = _decrypt(capsys, "--keys", CAPTURES / entry["keys"], CAPTURES / entry["file"], "-o", out)
    frames, n = entry["expected"]["packets"], entry["expected"]["echo_packets"]
    ah_or_null = name.startswith("ah-") or "-null-" in name
    assert code == 0, rep
    assert (rep["packets"], rep["failed"], rep["unknown_spi"], rep["not_ipsec"]) == (frames, 0, 0, 0)
    assert (rep["verified"], rep["decrypted"]) == ((n, 0) if ah_or_null else (0, n))
    assert rep["fragment"] == frames - n and rep["reassembled"] == (n if frames > n else 0)  # outer fragments (RFC 4301 s8.1)
    assert rep["duplicates"] == rep["out_of_order"] == 0
    inner = read_capture(out)
    assert len(inner) == n and {p.linktype for p in inner} == {LINKTYPE_RAW}
    echo = entry["echo"]
    for i, pkt in enumerate(inner):
        src, dst, icmp_type, payload = _echo_of(pkt.data)
        request = i % 2 == 0
        assert (src, dst) == ((echo["src"], echo["dst"]) if request else (echo["dst"], echo["src"]))
        assert icmp_type == ((8 if request else 0) if ":" not in src else (128 if request else 129))
        assert payload == bytes.fromhex(echo["payload"])


def _rewrite(tmp_path, name, edit) -> str:
    entry = MANIFEST[name]
    pkts = edit(read_capture(CAPTURES / entry["file"]))
    path = tmp_path / "edited.pcap"
    write_pcap(path, [(p.ts_ns, p.data) for p in pkts], pkts[0].linktype)
    return str(path)


GCM = "esp-aes-gcm-16-128-transport-v4"
AH = "ah-sha256-transport-v4"


@pytest.mark.parametrize("name", [GCM, AH, "esp-aes-cbc-256-sha512-transport-v6"])
def test_tampered_packet_fails_and_sets_exit_status(name, tmp_path, capsys):
    def flip(pkts):
        p = pkts[2]
        return pkts[:2] + [CapturedPacket(p.index, p.ts_ns, p.linktype, p.data[:-1] + bytes([p.data[-1] ^ 1]))] + pkts[3:]
    code, rep = _decrypt(capsys, "--keys", CAPTURES / MANIFEST[name]["keys"], _rewrite(tmp_path, name, flip))
    assert code == 1
    assert rep["failed"] == 1 and rep["results"][2]["status"] == "failed"


def test_retransmitted_and_reordered_packets_are_reported_not_failed(tmp_path, capsys):
    # A->B sequence numbers become 1, 3, 2 (late), 2 (again); B->A stays 1, 2, 3
    code, rep = _decrypt(capsys, "--keys", CAPTURES / MANIFEST[GCM]["keys"],
                         _rewrite(tmp_path, GCM, lambda p: [p[0], p[1], p[4], p[3], p[2], p[5], p[2]]))
    assert code == 0
    assert (rep["decrypted"], rep["failed"], rep["duplicates"], rep["out_of_order"]) == (7, 0, 1, 1)
    assert rep["results"][4]["replay"] == "out_of_order" and rep["results"][6]["replay"] == "duplicate"


def test_unknown_spi_is_counted(tmp_path, capsys):
    keys = json.loads((CAPTURES / MANIFEST[GCM]["keys"]).read_text())
    keys["ipsec_sas"] = keys["ipsec_sas"][:1]  # only A -> B
    kpath = tmp_path / "half.json"
    kpath.write_text(json.dumps(keys))
    code, rep = _decrypt(capsys, "--keys", kpath, CAPTURES / MANIFEST[GCM]["file"])
    assert code == 0 and (rep["decrypted"], rep["unknown_spi"]) == (3, 3)


@pytest.mark.parametrize("name", [GCM, "esp-aes-cbc-128-sha256-tunnel-v4-sll", "esp-aes-gcm-16-256-udpencap-tunnel-v4"])
def test_wireshark_esp_sa_table_works_as_keys(tmp_path, capsys, name):
    """esp_sa has no mode column: tunnel-mode packets still come out as the inner packets."""
    from harness.keys import dump_esp_sa, load_keys
    table = tmp_path / "esp_sa"
    dump_esp_sa(load_keys(CAPTURES / MANIFEST[name]["keys"]).ipsec_sas, table)
    out = tmp_path / "inner.pcap"
    code, rep = _decrypt(capsys, "--keys", table, CAPTURES / MANIFEST[name]["file"], "-o", out)
    assert code == 0 and rep["decrypted"] == 6
    echo = MANIFEST[name]["echo"]
    assert [_echo_of(p.data)[:2] for p in read_capture(out)] == [(echo["src"], echo["dst"]), (echo["dst"], echo["src"])] * 3
