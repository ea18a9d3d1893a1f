"""SA keys files: the project's JSON form and Wireshark's decryption tables.

- ``load_keys(path) -> KeysFile`` / ``dump_keys(keys, path)``: the project's JSON
  ``{"ipsec_sas": [...]}`` (and, later, ``"ike_sas"``), see ``harness.keys.model``.
- ``load_esp_sa(path)`` / ``dump_esp_sa(sas, path)`` / ``esp_sa_lines(sas)``: Wireshark's
  ``esp_sa`` UAT file, see ``harness.keys.wireshark``.
- ``load_ikev2_decryption_table(path)`` / ``parse_ikev2_decryption_table(text)``: Wireshark's
  ``ikev2_decryption_table`` UAT file read into harness.ike.export.IkeSaKeys, see
  ``harness.keys.ikev2_table`` (the writer is ``IkeSaKeys.wireshark_line``).
- ``load_keys_files(paths) -> KeysFile``: any mix of the three kinds, told apart by content,
  merged (IKE SAs in ``sections["ike_sas"]``), see ``harness.keys.anyfile``.

Top-level sections are parsed by the functions in ``SECTIONS`` (name -> parser); an IKE SA
section (``ike_sas`` and Wireshark's ``ikev2_decryption_table``) plugs in there.
"""
from harness.keys.jsonfile import SECTIONS, KeysFile, dump_keys, keys_to_json, load_keys, parse_keys
from harness.keys.model import IpsecSaKeys
from harness.keys.wireshark import dump_esp_sa, esp_sa_lines, load_esp_sa, parse_esp_sa
from harness.keys.ikev2_table import load_ikev2_decryption_table, parse_ikev2_decryption_table
from harness.keys.anyfile import load_keys_file, load_keys_files

__all__ = ["IpsecSaKeys", "KeysFile", "SECTIONS", "load_keys", "parse_keys", "dump_keys", "keys_to_json",
           "load_esp_sa", "parse_esp_sa", "dump_esp_sa", "esp_sa_lines", "load_ikev2_decryption_table",
           "parse_ikev2_decryption_table", "load_keys_file", "load_keys_files"]
