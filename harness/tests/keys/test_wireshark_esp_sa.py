"""Wireshark esp_sa UAT export/import."""
from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.keys import IpsecSaKeys, dump_esp_sa, esp_sa_lines, load_esp_sa, parse_esp_sa

GCM = IpsecSaKeys("esp", 0x1000, "198.18.0.1", "198.18.0.2", "tunnel", "ENCR_AES_GCM_16", bytes(range(20)))
CBC = IpsecSaKeys("esp", 0xC0FFEE01, "2001:db8::1", "2001:db8::2", "transport", "ENCR_AES_CBC", b"\x11" * 16,
                  "AUTH_HMAC_SHA2_256_128", b"\x22" * 32)
CHACHA = IpsecSaKeys("esp", 0x2000, "198.18.0.1", "198.18.0.2", "transport", "ENCR_CHACHA20_POLY1305", b"\x33" * 36)
AH = IpsecSaKeys("ah", 0x3000, "198.18.0.1", "198.18.0.2", integrity="AUTH_HMAC_SHA1_96", integrity_key=b"\x44" * 20)


def test_row_format():
    rows, skipped = esp_sa_lines([GCM, CBC])
    assert skipped == []
    assert rows[0] == ('"IPv4","198.18.0.1","198.18.0.2","0x00001000","AES-GCM with 16 octet ICV [RFC4106]",'
                       '"0x000102030405060708090a0b0c0d0e0f10111213","NULL","0x"')
    assert rows[1] == ('"IPv6","2001:db8::1","2001:db8::2","0xc0ffee01","AES-CBC [RFC3602]","0x' + "11" * 16
                       + '","HMAC-SHA-256-128 [RFC4868]","0x' + "22" * 32 + '"')


def test_unsupported_transforms_are_listed_not_written(tmp_path):
    path = tmp_path / "esp_sa"
    skipped = dump_esp_sa([GCM, CHACHA, AH], path)
    assert len(skipped) == 2 and "ENCR_CHACHA20_POLY1305" in skipped[0] and "AH" in skipped[1]
    assert [sa.spi for sa in load_esp_sa(path)] == [0x1000]


def test_round_trip(tmp_path):
    path = tmp_path / "esp_sa"
    dump_esp_sa([GCM, CBC], path)
    back = load_esp_sa(path)
    assert [(s.spi, s.src, s.dst, s.encryption, s.encryption_key, s.integrity, s.integrity_key) for s in back] == \
           [(s.spi, s.src, s.dst, s.encryption, s.encryption_key, s.integrity, s.integrity_key) for s in (GCM, CBC)]


def test_escapes_are_decoded():
    row = '"IPv4","198.18.0.1","198.18.0.2","0x00000001","AES-CBC [RFC3602]","0x' + "00" * 16 + '","HMAC-SHA-1-96 [RFC2404]","0x' + "ab" * 20 + '"'
    assert parse_esp_sa("# comment\n\n" + row.replace("RFC3602", "RFC\\x33602"))[0].encryption == "ENCR_AES_CBC"


@pytest.mark.parametrize("row,fragment", [
    ('"IPv4","198.18.0.1"', "2 fields"),
    ('"IPv5","198.18.0.1","198.18.0.2","0x1","NULL","0x","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "key 'protocol'"),
    ('"IPv4","198.18.0.1","198.18.0.2","0x1","DES-CBC [RFC2405]","0x00","NULL","0x"', "key 'encryption_algo'"),
    ('"IPv4","198.18.0.1","198.18.0.2","0x1","NULL","0x","MAC-RIPEMD-160-96 [RFC2857]","0x00"', "key 'authentication_algo'"),
    ('"IPv4","198.18.0.1","198.18.0.2","*","NULL","0x","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "key 'spi'"),
    ('"IPv4","198.18.0.1","198.18.0.2","0x1","AES-CBC [RFC3602]","0x0g","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "key 'encryption_key'"),
    ('"IPv4","198.18.0.1","198.18.0.2","0x1","AES-CBC [RFC3602]","0x00","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "key 'encryption_key'"),
    ('"IPv6","198.18.0.1","198.18.0.2","0x1","NULL","0x","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "key 'protocol'"),
    ('"IPv4",198.18.0.1', "expected '\"'"),
    ('"IPv4"x', "expected ','"),
    ('"IPv4', "unterminated"),
])
def test_bad_rows_name_file_entry_and_field(row, fragment):
    with pytest.raises(ConfigError, match=fragment) as e:
        parse_esp_sa('"IPv4","198.18.0.1","198.18.0.2","0x00000009","NULL","0x","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"\n' + row, "esp_sa")
    assert "esp_sa: entry 1 (line 2)" in str(e.value)
