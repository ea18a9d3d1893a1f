"""SA keys files: the project's JSON form and Wireshark's decryption tables.

- ``load_keys(path) -> KeysFile`` / ``dump_keys(keys, path)``: the project's JSON
  ``{"ipsec_sas": [...]}`` (and, later, ``"ike_sas"``), see ``harness.keys.model``.
- ``load_esp_sa(path)`` / ``dump_esp_sa(sas, path)`` / ``esp_sa_lines(sas)``: Wireshark's
  ``esp_sa`` UAT file, see ``harness.keys.wireshark``.

Top-level sections are parsed by the functions in ``SECTIONS`` (name -> parser); an IKE SA
section (``ike_sas`` and Wireshark's ``ikev2_decryption_table``) plugs in there.
"""
from harness.keys.jsonfile import SECTIONS, KeysFile, dump_keys, keys_to_json, load_keys, parse_keys
from harness.keys.model import IpsecSaKeys
from harness.keys.wireshark import dump_esp_sa, esp_sa_lines, load_esp_sa, parse_esp_sa

__all__ = ["IpsecSaKeys", "KeysFile", "SECTIONS", "load_keys", "parse_keys", "dump_keys", "keys_to_json",
           "load_esp_sa", "parse_esp_sa", "dump_esp_sa", "esp_sa_lines"]
