"""The project's JSON keys file: round trip, and every bad input named by file, entry and key."""
from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.keys import IpsecSaKeys, KeysFile, dump_keys, load_keys, parse_keys

GOOD = [
    {"protocol": "esp", "spi": "0x00001000", "src": "198.18.0.1", "dst": "198.18.0.2", "mode": "tunnel",
     "encryption": "ENCR_AES_GCM_16", "encryption_key": "00" * 20, "esn": False},
    {"protocol": "esp", "spi": "0x00001001", "src": "2001:db8::1", "dst": "2001:db8::2", "mode": "transport",
     "encryption": "ENCR_AES_CBC", "encryption_key": "11" * 32, "integrity": "AUTH_HMAC_SHA2_256_128", "integrity_key": "22" * 32, "esn": True},
    {"protocol": "ah", "spi": "0x00001002", "src": "198.18.0.1", "dst": "198.18.0.2", "mode": "transport",
     "integrity": "AUTH_HMAC_SHA1_96", "integrity_key": "33" * 20, "esn": False},
    {"protocol": "esp", "spi": "0x00001003", "src": "198.18.0.2", "dst": "198.18.0.1", "mode": "transport",
     "encryption": "ENCR_NULL", "encryption_key": "", "integrity": "AUTH_HMAC_SHA2_512_256", "integrity_key": "44" * 64, "esn": False},
]


def test_round_trip(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"ipsec_sas": GOOD}))
    keys = load_keys(path)
    assert [sa.spi for sa in keys.ipsec_sas] == [0x1000, 0x1001, 0x1002, 0x1003]
    assert keys.ipsec_sas[0].encryption_key == bytes(20) and keys.ipsec_sas[0].integrity is None
    assert keys.ipsec_sas[2].encryption is None and keys.ipsec_sas[2].protocol == "ah"
    assert keys.find(0x1001)[0].esn is True
    out = tmp_path / "out.json"
    dump_keys(keys, out)
    assert json.loads(out.read_text()) == {"ipsec_sas": [{k: v for k, v in e.items() if not (k == "encryption_key" and e.get("encryption") is None)} for e in GOOD]}
    assert load_keys(out).ipsec_sas == keys.ipsec_sas


def _bad(entry_patch, drop=()):
    entries = [dict(e) for e in GOOD]
    entries[1].update(entry_patch)
    for k in drop:
        entries[1].pop(k)
    return {"ipsec_sas": entries}


@pytest.mark.parametrize("patch,drop,key", [
    ({"protocol": "ipcomp"}, (), "protocol"),
    ({"spi": "zz"}, (), "spi"),
    ({"spi": "0x100000000"}, (), "spi"),
    ({"spi": 1.5}, (), "spi"),
    ({"src": "not-an-address"}, (), "src"),
    ({"dst": "198.18.0.2"}, (), "dst"),  # mixed IPv6/IPv4
    ({"mode": "beet"}, (), "mode"),
    ({"encryption": "ENCR_ROT13"}, (), "encryption"),
    ({"encryption_key": "11" * 31}, (), "encryption_key"),
    ({"encryption_key": "xyz"}, (), "encryption_key"),
    ({"integrity_key": "22" * 31}, (), "integrity_key"),
    ({"integrity": "AUTH_NOPE"}, (), "integrity"),
    ({}, ("integrity", "integrity_key"), "integrity"),
    ({}, ("encryption",), "encryption"),
    ({}, ("dst",), "dst"),
    ({"esn": "yes"}, (), "esn"),
    ({"colour": "blue"}, (), "colour"),
])
def test_bad_entry_names_file_index_and_key(tmp_path, patch, drop, key):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_bad(patch, drop)))
    with pytest.raises(ConfigError) as e:
        load_keys(path)
    msg = str(e.value)
    assert str(path) in msg and "ipsec_sas[1]" in msg and f"key {key!r}" in msg


def test_aead_with_integrity_is_rejected():
    entry = dict(GOOD[0], integrity="AUTH_HMAC_SHA2_256_128", integrity_key="00" * 32)
    with pytest.raises(ConfigError, match=r"ipsec_sas\[0\]: key 'integrity'"):
        parse_keys({"ipsec_sas": [entry]}, "k.json")


def test_ah_with_encryption_is_rejected():
    entry = dict(GOOD[2], encryption="ENCR_AES_CBC", encryption_key="00" * 16)
    with pytest.raises(ConfigError, match=r"ipsec_sas\[0\]: key 'encryption'"):
        parse_keys({"ipsec_sas": [entry]}, "k.json")


def test_duplicate_spi_is_rejected():
    with pytest.raises(ConfigError, match=r"ipsec_sas\[1\]: key 'spi'.*ipsec_sas\[0\]"):
        parse_keys({"ipsec_sas": [GOOD[0], GOOD[0]]}, "k.json")


@pytest.mark.parametrize("text,fragment", [("{", "not JSON"), ("[]", "expected a JSON object"),
                                           ('{"ipsec_sas": {}}', "key 'ipsec_sas'"), ('{"ike": []}', "key 'ike'")])
def test_bad_file(tmp_path, text, fragment):
    path = tmp_path / "k.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as e:
        load_keys(path)
    assert str(path) in str(e.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="cannot read keys file"):
        load_keys(tmp_path / "absent.json")


def test_constructor_validates():
    with pytest.raises(ConfigError, match="key 'integrity_key'"):
        IpsecSaKeys("ah", 1, "198.18.0.1", "198.18.0.2", integrity="AUTH_HMAC_SHA1_96", integrity_key=b"short")
    assert KeysFile().ipsec_sas == []
