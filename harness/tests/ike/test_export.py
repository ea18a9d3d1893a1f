"""IKE SA key export: the JSON "ike_sas" entry and Wireshark's ikev2_decryption_table line."""
from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.ike.export import IkeSaKeys

K = IkeSaKeys(bytes.fromhex("0011223344556677"), bytes.fromhex("8899aabbccddeeff"), "ENCR_AES_CBC", 128,
              b"\x01" * 16, b"\x02" * 16, "AUTH_HMAC_SHA2_256_128", b"\x03" * 32, b"\x04" * 32)


def test_json_round_trip():
    j = K.to_json()
    assert j["spi_i"] == "0011223344556677" and j["sk_ei"] == "01" * 16 and j["integrity"] == "AUTH_HMAC_SHA2_256_128"
    assert IkeSaKeys.from_json(j) == K


@pytest.mark.parametrize("bad", [{"spi_i": "00"}, {"sk_ei": "zz"}, {"color": "red"}, {"encryption": None}])
def test_json_rejects(bad):
    with pytest.raises(ConfigError):
        IkeSaKeys.from_json({**K.to_json(), **bad})


def test_wireshark_line():
    assert K.wireshark_line() == ("0011223344556677,8899aabbccddeeff," + "01" * 16 + "," + "02" * 16
                                  + ',"AES-CBC-128 [RFC3602]",' + "03" * 32 + "," + "04" * 32
                                  + ',"HMAC_SHA2_256_128 [RFC4868]"')
    gcm = IkeSaKeys(K.spi_i, K.spi_r, "ENCR_AES_GCM_16", 256, b"\x01" * 36, b"\x02" * 36, None, b"", b"")
    assert gcm.wireshark_line().endswith(',"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"')
    with pytest.raises(ConfigError):
        IkeSaKeys(K.spi_i, K.spi_r, "ENCR_CHACHA20_POLY1305", None, b"\x01" * 36, b"\x02" * 36, None, b"", b"").wireshark_line()


def test_keys_file_carries_ike_sas(tmp_path):
    from harness.keys import dump_keys, load_keys
    from harness.keys.jsonfile import KeysFile
    dump_keys(KeysFile(sections={"ike_sas": [K]}), tmp_path / "keys.json")
    assert load_keys(tmp_path / "keys.json").sections["ike_sas"] == [K]
