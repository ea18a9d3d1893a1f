"""`ipsec-interop decrypt` on IKE: SK/SKF payloads of a capture of the built-in stack, with JSON and Wireshark keys.

The capture (harness.tools.ike_capture) holds two IKE SAs: one on port 500 (IKE_SA_INIT,
IKE_AUTH, CREATE_CHILD_SA rekey, two INFORMATIONAL deletes), one on 4500 behind the non-ESP
marker whose IKE_AUTH request and response travel in two SKF fragments each, plus six ESP
packets (two UDP-encapsulated): 22 frames, 16 IKE messages, 4 of them IKE_SA_INIT.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.ike.export import IkeSaKeys
from harness.ike.message import Message
from harness.keys.anyfile import kind_of, load_keys_file, load_keys_files
from harness.keys.ikev2_table import parse_ikev2_decryption_table
from harness.tools.ike_capture import LoopbackCapture, loopback_capture

TRANSFORMS = ["aes128-sha256-modp2048", "aes256gcm16-prfsha384-ecp256", "chacha20poly1305-prfsha256-x25519"]
NO_WS = "tshark 4.0 has no ChaCha20-Poly1305 for IKEv2 (no ikev2_decryption_table name)"
ALL_DECRYPTED = dict(packets=22, decrypted=6, failed=0, unknown_spi=0, ike_messages=16, ike_decrypted=12,
                     ike_failed=0, ike_unknown_spi=0, ike_unencrypted=4, ike_reassembled=2, ike_incomplete=0)


@functools.lru_cache(maxsize=None)
def capture(ike: str) -> LoopbackCapture:
    return loopback_capture(ike)


def _files(tmp_path: Path, cap: LoopbackCapture, keys: dict | None = None, order=None) -> tuple[Path, Path]:
    pcap, kfile = tmp_path / "ike.pcap", tmp_path / "keys.json"
    cap.write(pcap, order)
    kfile.write_text(json.dumps(cap.keys if keys is None else keys))
    return pcap, kfile


def _run(capsys, *argv) -> tuple[int, dict]:
    code = main(["decrypt", *map(str, argv), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _subset(rep: dict, expected: dict) -> dict:
    return {k: rep[k] for k in expected}


def _by_frame(rep: dict) -> dict[int, dict]:
    return {m["index"]: m for m in rep["ike"]}


def test_capture_is_what_the_counts_assume():
    cap = capture(TRANSFORMS[0])
    heads = [Message.decode(d.data).header for _, d in cap.ike]
    assert (len(cap.frames), len(cap.ike), len(cap.esp)) == (22, 16, 6)
    assert sum(h.exchange_name == "IKE_SA_INIT" for h in heads) == 4
    assert sum(d.data[16] == 53 for _, d in cap.ike) == 4  # SKF (RFC 7383) as first payload
    assert sorted({h.exchange_name for h in heads}) == ["CREATE_CHILD_SA", "IKE_AUTH", "IKE_SA_INIT", "INFORMATIONAL"]
    assert (len(cap.keys["ike_sas"]), len(cap.keys["ipsec_sas"])) == (2, 6)


@pytest.mark.rfc(7296, "3.14", "MUST")
@pytest.mark.rfc(7383, "2.6", "MUST")
@pytest.mark.parametrize("ike", TRANSFORMS)
def test_json_keys_decrypt_every_ike_message_and_esp_packet(tmp_path, capsys, ike):
    cap = capture(ike)
    code, rep = _run(capsys, "--keys", _files(tmp_path, cap)[1], _files(tmp_path, cap)[0])
    assert code == 0 and _subset(rep, ALL_DECRYPTED) == ALL_DECRYPTED
    m = _by_frame(rep)
    assert m[3]["payloads"] == ["IDi", "AUTH", "SA", "TSi", "TSr"] and m[3]["direction"] == "initiator -> responder"
    assert m[4]["payloads"] == ["IDr", "AUTH", "SA", "TSi", "TSr"] and m[4]["response"]
    assert (m[7]["exchange"], m[7]["message_id"], m[7]["payloads"][0]) == ("CREATE_CHILD_SA", 2, "N(REKEY_SA)")
    assert [(m[n]["exchange"], m[n]["payloads"]) for n in (9, 10, 13, 14)] == [("INFORMATIONAL", ["D"])] * 4
    assert m[17]["fragment"] == [1, 2] and m[17]["payloads"] == []
    assert m[18]["reassembled_from"] == [17, 18] and m[18]["payloads"] == ["IDi", "AUTH", "SA", "TSi", "TSr"]
    assert m[20]["reassembled_from"] == [19, 20] and m[20]["payloads"] == ["IDr", "AUTH", "SA", "TSi", "TSr"]
    assert m[1]["status"] == "unencrypted" and m[1]["spi_r"] == "00" * 8


@pytest.mark.parametrize("ike", TRANSFORMS)
def test_wireshark_tables_decrypt_like_json(tmp_path, capsys, ike):
    cap = capture(ike)
    if not cap.tables["ikev2_decryption_table"]:
        pytest.skip(NO_WS)
    pcap, _ = _files(tmp_path, cap)
    table, esp_sa = tmp_path / "ikev2_decryption_table", tmp_path / "esp_sa"
    table.write_text("# written by IkeEndpoint.wireshark()\n" + "\n".join(cap.tables["ikev2_decryption_table"]) + "\n")
    esp_sa.write_text("\n".join(cap.tables["esp_sa"]) + "\n")
    assert (kind_of(table.read_text()), kind_of(esp_sa.read_text())) == ("ikev2_decryption_table", "esp_sa")
    code, rep = _run(capsys, "--keys", table, "--keys", esp_sa, pcap)
    assert code == 0 and _subset(rep, ALL_DECRYPTED) == ALL_DECRYPTED and rep["ike_sas"] == 2
    # the table holds the same IKE SAs as the JSON export
    assert parse_ikev2_decryption_table(table.read_text()) == [IkeSaKeys.from_json(e) for e in cap.keys["ike_sas"]]


@pytest.mark.parametrize("ike,key,sender,failed", [
    ("aes128-sha256-modp2048", "sk_ai", "initiator -> responder", [3, 7, 9, 13, 17, 18]),
    ("aes128-sha256-modp2048", "sk_ar", "responder -> initiator", [4, 8, 10, 14, 19, 20]),
    ("aes256gcm16-prfsha384-ecp256", "sk_ei", "initiator -> responder", [3, 7, 9, 13, 17, 18]),
])
def test_wrong_key_fails_that_direction_and_exit_1(tmp_path, capsys, ike, key, sender, failed):
    cap = capture(ike)
    keys = json.loads(json.dumps(cap.keys))
    for e in keys["ike_sas"]:
        raw = bytearray.fromhex(e[key])
        raw[0] ^= 0x01
        e[key] = raw.hex()
    pcap, kfile = _files(tmp_path, cap, keys)
    code, rep = _run(capsys, "--keys", kfile, pcap)
    assert code == 1
    bad = sorted(m["index"] for m in rep["ike"] if m["status"] == "failed")
    assert bad == failed and all(_by_frame(rep)[n]["direction"] == sender for n in bad)
    assert (rep["ike_failed"], rep["ike_decrypted"], rep["failed"], rep["decrypted"]) == (6, 6, 0, 6)
    assert all(_by_frame(rep)[n]["reason"] for n in bad)


def test_without_ike_keys_ike_messages_are_unknown_not_failed(tmp_path, capsys):
    cap = capture(TRANSFORMS[0])
    pcap, kfile = _files(tmp_path, cap, {"ipsec_sas": cap.keys["ipsec_sas"]})
    code, rep = _run(capsys, "--keys", kfile, pcap)
    assert code == 0
    assert _subset(rep, ALL_DECRYPTED) == dict(ALL_DECRYPTED, ike_decrypted=0, ike_unknown_spi=12, ike_reassembled=0)


@pytest.mark.rfc(7383, "2.6", "MUST")
def test_skf_fragments_out_of_order_reassemble(tmp_path, capsys):
    cap = capture(TRANSFORMS[1])
    order = list(range(1, 23))
    order[16], order[17], order[18], order[19] = 18, 17, 20, 19  # fragment 2 before fragment 1, both directions
    pcap, kfile = _files(tmp_path, cap, order=order)
    code, rep = _run(capsys, "--keys", kfile, pcap)
    assert code == 0 and _subset(rep, ALL_DECRYPTED) == ALL_DECRYPTED
    m = _by_frame(rep)
    assert (m[17]["fragment"], m[18]["fragment"]) == ([2, 2], [1, 2])
    assert m[18]["reassembled_from"] == [17, 18] and m[18]["payloads"] == ["IDi", "AUTH", "SA", "TSi", "TSr"]


def test_missing_fragment_is_reported_incomplete_not_failed(tmp_path, capsys):
    cap = capture(TRANSFORMS[0])
    pcap, kfile = _files(tmp_path, cap, order=[n for n in range(1, 23) if n != 17])
    code, rep = _run(capsys, "--keys", kfile, pcap)
    assert code == 0 and (rep["ike_messages"], rep["ike_reassembled"], rep["ike_incomplete"], rep["ike_failed"]) == (15, 1, 1, 0)
    assert rep["ike_incomplete_messages"][0]["missing"] == [1] and rep["ike_incomplete_messages"][0]["message_id"] == 1


def test_human_summary_lists_exchange_message_id_direction_payloads(tmp_path, capsys):
    cap = capture(TRANSFORMS[0])
    pcap, kfile = _files(tmp_path, cap)
    assert main(["decrypt", "--keys", str(kfile), str(pcap)]) == 0
    out = capsys.readouterr().out
    assert "IKE: 16 messages; decrypted 12, failed 0, unknown IKE SA 0, unencrypted 4, 2 reassembled" in out
    assert "#3: IKE decrypted: IKE_AUTH request 1 initiator -> responder [ IDi AUTH SA TSi TSr ]" in out
    assert "#18: IKE decrypted: IKE_AUTH request 1 initiator -> responder fragment 2/2 [ IDi AUTH SA TSi TSr ] " \
           "(reassembled from frames 17, 18)" in out
    assert "#17:" not in out  # a fragment is listed with the frame completing its message


def _table_line(ike: str = TRANSFORMS[0]) -> str:
    return capture(ike).tables["ikev2_decryption_table"][0]


def _fields_replaced(i: int, value: str) -> str:
    f = _table_line().split(",")
    f[i] = value
    return ",".join(f)


@pytest.mark.parametrize("line,fragment", [
    ("0011223344556677,00", "2 fields, expected 8"),
    (lambda: _fields_replaced(0, "00112233"), "key 'spi_i': 4 octets"),
    (lambda: _fields_replaced(1, "zz" * 8), "key 'spi_r': 'zzzz"),
    (lambda: _fields_replaced(2, "0011"), "key 'sk_ei'"),
    (lambda: _fields_replaced(4, '"Blowfish [RFC2451]"'), "key 'encryption': 'Blowfish"),
    (lambda: _fields_replaced(6, "00"), "key 'sk_ar'"),
    (lambda: _fields_replaced(7, '"HMAC_CRC32"'), "key 'integrity'"),
    (lambda: _fields_replaced(7, '"NONE [RFC4306]'), "unterminated quote"),
], ids=["field-count", "short-spi", "bad-hex", "short-sk_ei", "unknown-encryption", "short-sk_ar", "unknown-integrity",
        "unterminated"])
def test_malformed_ikev2_table_line_named(tmp_path, capsys, line, fragment):
    text = "# comment\n" + (line() if callable(line) else line) + "\n"
    with pytest.raises(ConfigError, match="line 2") as e:
        parse_ikev2_decryption_table(text, "tbl")
    assert fragment in str(e.value) and str(e.value).startswith("tbl: line 2")
    table, pcap = tmp_path / "ikev2_decryption_table", tmp_path / "in.pcap"
    table.write_text(_table_line() + "\n" + text)  # a good first row: told apart as an ikev2_decryption_table
    capture(TRANSFORMS[0]).write(pcap)
    assert main(["decrypt", "--keys", str(table), str(pcap)]) == 2
    err = capsys.readouterr().err
    assert f"{table}: line 3" in err and fragment in err


def test_quoted_hex_fields_and_comments_accepted():
    f = _table_line().split(",")
    quoted = ",".join(f'"{x}"' if not x.startswith('"') else x for x in f)
    assert parse_ikev2_decryption_table(f"# c\n\n{quoted}\n") == parse_ikev2_decryption_table(_table_line())


def test_json_ike_sa_with_wrong_key_length_named(tmp_path):
    keys = json.loads(json.dumps(capture(TRANSFORMS[0]).keys))
    keys["ike_sas"][1]["sk_ei"] = "00" * 5
    kfile = tmp_path / "k.json"
    kfile.write_text(json.dumps(keys))
    with pytest.raises(ConfigError, match=r"k\.json: ike_sas\[1\]: key 'sk_ei'"):
        load_keys_file(kfile)


def test_unrecognised_keys_file_named(tmp_path):
    k = tmp_path / "k.txt"
    k.write_text("# only a comment\nspi=1\n")
    with pytest.raises(ConfigError, match=r"k\.txt: first row 'spi=1'"):
        load_keys_file(k)
    k.write_text("# only comments\n")
    assert load_keys_files([k, k]).ipsec_sas == [] and load_keys_files([k]).sections["ike_sas"] == []


SUBSTRUCTURES = {"2", "3"}  # Proposal and Transform substructures: Wireshark lists them in isakmp.typepayload too


@pytest.mark.tshark
@pytest.mark.parametrize("ike", TRANSFORMS)
def test_tshark_dissects_and_decrypts_every_ike_message_like_our_decoder(tmp_path, capsys, ike):
    from harness.tools.tshark import problems, tshark_ike_rows, tshark_path
    if tshark_path() is None:
        pytest.skip("tshark is not installed")
    cap = capture(ike)
    if not cap.tables["ikev2_decryption_table"]:
        pytest.skip(NO_WS)
    pcap, kfile = _files(tmp_path, cap)
    rows = {int(r["frame.number"][0]): r for r in tshark_ike_rows(pcap, cap.tables)}
    assert len(rows) == 22
    assert {n: problems(r) for n, r in rows.items() if problems(r)} == {}
    _, rep = _run(capsys, "--keys", kfile, pcap)
    compared = 0
    for m in rep["ike"]:
        row = rows[m["index"]]
        assert row["isakmp.exchangetype"] == [{"IKE_SA_INIT": "34", "IKE_AUTH": "35", "CREATE_CHILD_SA": "36",
                                               "INFORMATIONAL": "37"}[m["exchange"]]]
        types = [t for t in row["isakmp.typepayload"] if t not in SUBSTRUCTURES]
        if m["status"] == "decrypted" and m.get("fragment") and not m.get("reassembled_from"):
            assert types == ["53"]  # a fragment that does not complete its message: nothing inside to show yet
            continue
        if m["status"] == "decrypted":
            types = types[1:]  # the SK (46) or SKF (53) payload itself
        assert types == [str(t) for t in m["payload_types"]], m
        compared += 1
    assert compared == 14
